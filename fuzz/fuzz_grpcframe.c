/* fuzz_grpcframe.c -- libFuzzer harness for gRPC reply bodies redacted per
 * message (grpcframe.c through h2body.c's gRPC mode): whatever the chunking
 * (the first byte), a body that does not fail comes out as whole gRPC
 * messages, uncompressed, none holding a secret's value */
#include <stdlib.h>
#include <string.h>
#include "h2body.h"
#include "policy.h"
#include "secrets.h"
static struct secretset *set; /* immutable, built once; the body is per input */
static void check(const uint8_t *p, size_t n) /* whole messages, flag 0, no value */
{
	for (size_t off = 0, l; off < n; off += 5 + l) {
		if (n - off < 5 || p[off] != 0)
			abort();
		l = (size_t)p[off + 1] << 24 | (size_t)p[off + 2] << 16 | (size_t)p[off + 3] << 8 | p[off + 4];
		if (l > n - off - 5 || memmem(p + off + 5, l, "sk-live-12", 10))
			abort();
	}
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	static uint8_t out[1 << 20];
	char err[SECRETS_ERRLEN];
	struct policy *p = set ? NULL : policy_new();
	const char *why = NULL;
	size_t off = 1, got = 0, c;
	struct h2body *b;

	if (p && (!policy_add_secret(p, "A", "h.test", SECRET_VALUE, "sk-live-12", err) ||
		  !(set = secretset_load(p, key, err))))
		abort();
	policy_unref(p);
	if (size < 1)
		return 0;
	b = h2body_new(data[0] & 1 ? 64 : 4096); /* small: messages over it are streamed */
	h2body_setup(b, NULL, 0, set, 1);
	h2body_grpc(b);
	for (; off < size && !why; off += c) {
		c = (size_t)(data[0] >> 1) % 64 + 1;
		c = c < size - off ? c : size - off;
		if (!h2body_in(b, data + off, c))
			c = 0; /* over the window: pumped first */
		h2body_pump(b, 4096, &why);
		got += h2body_take(b, out + got, sizeof(out) - got);
	}
	h2body_in_end(b);
	while (!why && !h2body_out_done(b) && h2body_pending(b))
		h2body_pump(b, 4096, &why), got += h2body_take(b, out + got, sizeof(out) - got);
	got += h2body_take(b, out + got, sizeof(out) - got);
	if (!why && h2body_out_done(b))
		check(out, got);
	h2body_free(b);
	return 0;
}
