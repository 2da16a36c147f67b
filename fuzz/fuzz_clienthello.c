/* fuzz_clienthello.c -- libFuzzer harness for the ClientHello parser: checks
 * the SNI's and the ALPN offer's invariants and that a prefix either needs
 * more bytes or already gives the same answer as the whole input */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clienthello.h"

/* The name: 1..255 printable bytes (none but on CH_SNI). The offer: "h2" and
 * "http/1.1", each at most once, length-prefixed, filling offer_len exactly. */
static void check(enum ch_result r, const char *sni, const struct ch_alpn *a)
{
	size_t len = strlen(sni), seen = 0, bit;

	if ((r == CH_SNI) != (len > 0) || len > 255 || a->offer_len > CH_ALPN_CAP ||
	    (!a->present && (a->names || a->offer_len)))
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)sni[i] < 0x21 || (unsigned char)sni[i] > 0x7e)
			abort();
	for (size_t i = 0; i < a->offer_len; i += 1 + a->offer[i]) {
		bit = a->offer[i] == 2 ? 1 : a->offer[i] == 8 ? 2 : 0;
		if (!bit || i + 1 + a->offer[i] > a->offer_len || (seen & bit) ||
		    memcmp(a->offer + i + 1, bit == 1 ? "h2" : "http/1.1", a->offer[i]))
			abort();
		seen |= bit;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char sni[256] = "", sni2[256] = "", small[8];
	struct ch_alpn a = { 0 }, a2 = { 0 };
	enum ch_result r = clienthello_parse(data, size, sni, sizeof(sni), &a), p;

	check(r, sni, &a);
	if (size > 0) {
		p = clienthello_parse(data, size - 1 - data[size / 2] % size, sni2, sizeof(sni2), &a2);
		if (p != CH_NEED_MORE && (p != r || strcmp(sni, sni2) != 0 || a.present != a2.present ||
					  a.names != a2.names || a.offer_len != a2.offer_len ||
					  memcmp(a.offer, a2.offer, sizeof(a.offer)) != 0))
			abort();
	}
	/* a small output buffer only turns CH_SNI into CH_ERROR; no ALPN output changes nothing */
	p = clienthello_parse(data, size, small, sizeof(small), NULL);
	if (p != r && !(r == CH_SNI && p == CH_ERROR))
		abort();
	return 0;
}
