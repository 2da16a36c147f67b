/* fuzz_wsredact.c -- libFuzzer harness for the WebSocket frame redactor: any
 * server byte stream, cut into chunks chosen by the first byte, must never
 * crash it; when it accepts the stream, its output must be well-formed
 * unmasked frames, and no secret value may appear in a decoded message or
 * control payload */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "policy.h"
#include "secrets.h"
#include "wsredact.h"

static const char *const vals[] = { "sk-live-1", "secret-value-42", "abab" };
static struct secretset *set;

static void sink(void *ctx, const char *p, size_t n)
{
	if (!obuf_add(ctx, p, n))
		abort();
}

static void no_value(const char *p, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		if (memmem(p, n, vals[i], strlen(vals[i])))
			abort();
}

/* Decodes the output frames; aborts on a malformed one or a value seen. */
static void check_output(const struct obuf *o)
{
	struct obuf msg;
	size_t off = 0;

	obuf_init(&msg, o->len + 1);
	while (off < o->len) {
		const unsigned char *h = (const unsigned char *)o->p + off;
		uint64_t len;
		size_t hl = 2;

		if (o->len - off < 2 || (h[1] & 0x80) || (h[0] & 0x70))
			abort();
		len = h[1] & 127;
		if (len == 126 && o->len - off >= 4)
			len = (uint64_t)h[2] << 8 | h[3], hl = 4;
		else if (len == 127 && o->len - off >= 10) {
			len = 0, hl = 10;
			for (int i = 0; i < 8; i++)
				len = len << 8 | h[2 + i];
		} else if (len >= 126) {
			abort();
		}
		if (o->len - off < hl || o->len - off - hl < len)
			abort();
		if ((h[0] & 15) >= 8) {
			no_value((const char *)h + hl, len);
		} else {
			if (!obuf_add(&msg, (const char *)h + hl, len))
				abort();
			if (h[0] & 0x80) {
				no_value(msg.p, msg.len);
				msg.len = 0;
			}
		}
		off += hl + len;
	}
	no_value(msg.p, msg.len); /* an unfinished message's emitted part, too */
	obuf_dispose(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	char err[SECRETS_ERRLEN], name[2] = "A";
	struct wsredact *w;
	struct obuf out;
	size_t step, off;
	bool ok = true;

	if (!set) {
		struct policy *p = policy_new();
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++, name[0]++)
			policy_add_secret(p, name, "h.test", SECRET_VALUE, vals[i], err);
		if (!(set = secretset_load(p, key, err)))
			abort();
		policy_unref(p);
	}
	if (size < 1)
		return 0;
	step = data[0] % 32 + 1;
	obuf_init(&out, size * 16 + 4096);
	w = wsredact_new(set, 7);
	for (off = 1; off < size && ok; off += step)
		ok = wsredact_feed(w, (const char *)data + off, size - off < step ? size - off : step,
				   sink, &out);
	if (ok)
		check_output(&out);
	wsredact_free(w);
	obuf_dispose(&out);
	return 0;
}
