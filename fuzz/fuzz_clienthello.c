/* fuzz_clienthello.c -- libFuzzer harness for the ClientHello SNI parser:
 * checks the name's invariants and that a prefix either needs more bytes or
 * already gives the same answer as the whole input */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clienthello.h"

static void check_name(const char *sni)
{
	size_t len = strlen(sni);

	if (len == 0 || len > 255)
		abort();
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)sni[i] < 0x21 || (unsigned char)sni[i] > 0x7e)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char sni[256], sni2[256], small[8];
	enum ch_result r, p;

	r = clienthello_parse(data, size, sni, sizeof(sni));
	if (r == CH_SNI)
		check_name(sni);
	if (size > 0) {
		p = clienthello_parse(data, size - 1 - data[size / 2] % size, sni2, sizeof(sni2));
		if (p != CH_NEED_MORE && (p != r || (p == CH_SNI && strcmp(sni, sni2) != 0)))
			abort();
	}
	/* a small output buffer only turns CH_SNI into CH_ERROR */
	p = clienthello_parse(data, size, small, sizeof(small));
	if (p != r && !(r == CH_SNI && p == CH_ERROR))
		abort();
	return 0;
}
