/* fuzz_injparam.c -- libFuzzer harness for the query/form rewriter: input
 * "q" or "f" (query or form names) then the pairs text; checks invariants */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "inject.h"
#include "injparam.h"
#include "injspec.h"
#include "policy.h"
#include "secrets.h"
static struct policy *pol;    /* A: query key, form client_secret; B: headers only */
static struct secretset *set; /* immutable, built once */
static size_t count(const char *p, size_t n) /* raw "TOK/" in p */
{
	size_t k = 0;
	for (const char *q; n >= 4 && (q = memmem(p, n, "TOK/", 4)); n -= (size_t)(q - p) + 1, p = q + 1)
		k++;
	return k;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	char err[SECRETS_ERRLEN];
	enum injwhere w = size && data[0] == 'f' ? INJ_FORM : INJ_QUERY;
	const char *t = size ? (const char *)data + 1 : "";
	size_t n = size ? size - 1 : 0;
	struct obuf out, none;
	uint64_t used = 0, u0 = 0;

	if (!pol) {
		struct injspec *s = injspec_new();
		pol = policy_new();
		policy_add_secret(pol, "A", "h.test", SECRET_VALUE, "TOK/+ \"1", err);
		policy_add_secret(pol, "B", "h.test", SECRET_VALUE, "UVWXYZ", err);
		if (!injspec_add_csv(s, "query:key,form:client_secret", err) ||
		    !policy_set_secret_inject(pol, "A", s, err) || !(set = secretset_load(pol, key, err)))
			abort();
	}
	obuf_init(&out, n + 64);
	obuf_init(&none, n + 64);
	if (!injparam_rewrite(pol, set, 3, w, t, n, &out, &used) ||
	    !injparam_rewrite(pol, set, 2, w, t, n, &none, &u0))
		abort(); /* a value (8 bytes, 24 encoded) is shorter than its placeholder */
	if (used & ~1u || u0 || none.len != n || (n && memcmp(none.p, t, n)))
		abort(); /* only A injects; A not approved: unchanged */
	if (!used && (out.len != n || (n && memcmp(out.p, t, n))))
		abort(); /* nothing injected: unchanged */
	if (used && count(out.p, out.len) > count(t, n))
		abort(); /* the value always goes percent-encoded */
	obuf_dispose(&out);
	obuf_dispose(&none);
	return 0;
}
