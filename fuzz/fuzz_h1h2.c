/* fuzz_h1h2.c -- libFuzzer harness for the HTTP/1.1-to-h2 bridge: records
 * [dir|len hi, len lo, bytes]; dir 1: wire bytes from the upstream (h2
 * frames to a client session), 0: HTTP/1.1 request bytes from the engine.
 * What one call hands on stays bounded (a reply head is capped at 64 KiB
 * however HPACK expands it; body bytes at most double with chunk framing),
 * request bytes held never exceed those fed, and nothing is fed once the
 * bridge said EOF or failed (as sock.c stops). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "h1h2.h"

static size_t wired, replied;

static void wire(void *arg, const char *p, size_t n)
{
	(void)arg, (void)p;
	wired += n;
}

static void reply(void *arg, const char *p, size_t n)
{
	(void)arg, (void)p;
	replied += n;
}

static const struct h1h2_cbs cbs = { wire, reply };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct h1h2 *b = h1h2_new(&cbs, NULL);
	const char *why = NULL;
	size_t fed = 0;
	int rc = 0;

	for (size_t off = 0, n; b && rc == 0 && off + 2 <= size; off += n) {
		bool up = data[off] & 1;
		n = (size_t)(data[off] >> 1) << 8 | data[off + 1];
		off += 2, n = n < size - off ? n : size - off;
		replied = 0;
		rc = up ? h1h2_recv(b, (const char *)data + off, n, &why) :
			  h1h2_request(b, (const char *)data + off, n);
		fed += up ? 0 : n;
		if (replied > (n / 9 + 1) * (64 * 1024 + 256) + 2 * n || h1h2_pending(b) > fed ||
		    (rc != 0 && up && !why))
			abort();
	}
	h1h2_free(b);
	return 0;
}
