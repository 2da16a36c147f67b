/* fuzz_redact.c -- libFuzzer harness for the streaming redactor: whatever the
 * chunking (chosen by the first byte) its output must equal redact_string's,
 * for raw, base64(url), hex, JSON-escaped and percent-encoded forms */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "inject.h"
#include "policy.h"
#include "redact.h"
#include "secrets.h"
static const char *const vals[] = { "ab", "abab", "aab", "b", "sk-live-1", "sk-live-12",
				    "a/b c+d=\"", "k\\<&\xc3\xa9\xf0\x9f\x98\x80x" };
static struct secretset *set; /* immutable, built once; the redactor is per input */
static void sink(void *ctx, const char *p, size_t n)
{
	if (n == 0 || !obuf_add(ctx, p, n))
		abort();
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	char err[SECRETS_ERRLEN], name[2] = "A";
	struct policy *p = set ? NULL : policy_new();
	size_t n = size - 2, off = 0, c;
	unsigned seed = size ? data[0] : 0;
	uint64_t mask = size > 1 && data[1] ? data[1] : 0xff;
	struct obuf want, got;
	struct redactor *r;

	for (size_t i = 0; p && i < 8; i++, name[0]++)
		policy_add_secret(p, name, "h.test", SECRET_VALUE, vals[i], err);
	if (p && !(set = secretset_load(p, key, err)))
		abort();
	policy_unref(p);
	if (size < 2)
		return 0;
	obuf_init(&want, n * 2 * PLACEHOLDER_LEN + 1), obuf_init(&got, n * 2 * PLACEHOLDER_LEN + 1);
	if (!redact_string(set, mask, (const char *)data + 2, n, &want))
		abort();
	r = redactor_new(set, mask);
	for (; off < n; off += c) { /* < 128: fixed chunk size; else pseudo-random 0..15 */
		c = data[0] < 128 ? data[0] % 16 + 1u : ((seed = seed * 1103515245 + 12345) >> 16) & 15;
		redactor_feed(r, (const char *)data + 2 + off, c = c > n - off ? n - off : c, sink, &got);
	}
	redactor_flush(r, sink, &got);
	if (got.len != want.len || (want.len && memcmp(got.p, want.p, want.len) != 0))
		abort();
	redactor_free(r), obuf_dispose(&want), obuf_dispose(&got);
	return 0;
}
