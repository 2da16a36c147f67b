/* fuzz_inject.c -- libFuzzer harness for header injection and the leak scan:
 * input "NAME\nVALUE" (no newline: an Authorization value); checks invariants */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "inject.h"
#include "policy.h"
#include "secrets.h"
static const char *const vals[] = { "TOKEN1", "TOK2:pw", "UVWXYZ" }; /* A, C approved */
static struct secretset *set; /* immutable, built once */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "fuzz";
	const char *in = (const char *)data, *nl = memchr(in, '\n', size);
	const char *name = nl ? in : "Authorization", *val = nl ? nl + 1 : in;
	size_t nlen = nl ? (size_t)(nl - in) : 13, vlen = nl ? size - nlen - 1 : size;
	char err[SECRETS_ERRLEN], sname[2] = "A";
	struct policy *p = set ? NULL : policy_new();
	uint64_t used = 0, approved = 1 | 4;
	bool basic = vlen >= 6 && strncasecmp(val, "basic ", 6) == 0;
	struct obuf out;

	for (size_t i = 0; p && i < 3; i++, sname[0]++)
		policy_add_secret(p, sname, "h.test", SECRET_VALUE, vals[i], err);
	if (p && !(set = secretset_load(p, key, err)))
		abort();
	policy_unref(p);
	obuf_init(&out, 2 * vlen + 64);
	if (!inject_header(set, approved, name, nlen, val, vlen, &out, &used))
		abort(); /* values are shorter than placeholders: the cap is ample */
	if ((used & ~approved) || (!used && (out.len != vlen || (vlen && memcmp(out.p, val, vlen)))))
		abort(); /* only approved injected; nothing injected: unchanged */
	for (size_t i = 0; i < 3; i += 2) /* every approved placeholder replaced */
		if (out.len && memmem(out.p, out.len, secretset_placeholder(set, i), PLACEHOLDER_LEN))
			abort();
	if (inject_scan_leaks(set, approved, val, vlen, basic) & approved)
		abort(); /* approved placeholders are never leaks */
	if ((inject_scan_leaks(set, 0, val, vlen, basic) & 2) !=
	    inject_scan_leaks(set, approved, val, vlen, basic))
		abort(); /* B is reported whatever else is approved */
	obuf_dispose(&out);
	return 0;
}
