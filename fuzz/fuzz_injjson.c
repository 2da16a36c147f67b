/* fuzz_injjson.c -- libFuzzer harness for the JSON body rewriter, whole and
 * through the bounded holder in two pieces; checks invariants */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "inject.h"
#include "injbody.h"
#include "injjson.h"
#include "injspec.h"
#include "policy.h"
#include "secrets.h"
static struct policy *pol;    /* A: $.client_secret, $.a.b; B: headers only */
static struct secretset *set; /* immutable, built once */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	const char *t = (const char *)data;
	char err[SECRETS_ERRLEN];
	struct obuf out, none, held;
	struct injbody *b = injbody_new(INJ_JSON, size, size / 2);
	uint64_t used = 0, u0 = 0, uh = 0;
	enum injjson_result r, r0;

	if (!pol) {
		struct injspec *s = injspec_new();
		pol = policy_new();
		policy_add_secret(pol, "A", "h.test", SECRET_VALUE, "TOK\"\\\x01/", err);
		policy_add_secret(pol, "B", "h.test", SECRET_VALUE, "UVWXYZ", err);
		if (!injspec_add_csv(s, "json:$.client_secret,json:$.a.b", err) ||
		    !policy_set_secret_inject(pol, "A", s, err) || !(set = secretset_load(pol, key, err)))
			abort();
	}
	obuf_init(&out, size + 64);
	obuf_init(&none, size + 64);
	obuf_init(&held, size + 64);
	r = injjson_rewrite(pol, set, 3, t, size, &out, &used);
	r0 = injjson_rewrite(pol, set, 2, t, size, &none, &u0);
	if (r == INJJSON_CAP || r != r0 || u0 || (used & ~1u))
		abort(); /* the values are shorter than placeholders; parsing ignores the mask */
	if (r == INJJSON_NOT_JSON ? out.len || none.len : none.len != size || memcmp(none.p, t, size))
		abort(); /* not JSON: nothing appended; nothing approved: unchanged */
	if (r == INJJSON_OK && !used && (out.len != size || memcmp(out.p, t, size)))
		abort(); /* nothing injected: unchanged */
	injbody_feed(b, t, size / 2);
	injbody_feed(b, t + size / 2, size - size / 2);
	if (injbody_over(b) || !injbody_finish(b, pol, set, 3, &held, &uh) || uh != used ||
	    held.len != (r == INJJSON_OK ? out.len : size) ||
	    (held.len && memcmp(held.p, r == INJJSON_OK ? out.p : t, held.len)))
		abort(); /* held in pieces = rewritten whole (or unchanged if not JSON) */
	injbody_free(b);
	obuf_dispose(&out);
	obuf_dispose(&none);
	obuf_dispose(&held);
	return 0;
}
