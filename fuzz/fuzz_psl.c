/* fuzz_psl.c -- libFuzzer harness for the Public Suffix List parser (psl.c):
 * the input is a list; when it parses, a registrable domain found for any of
 * a few names is a suffix of that name, made of whole labels */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "psl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "a.b.example.com", "www.ck", "x.y.kobe.jp", "com",
					     "foo.co.uk.", "a.b.c.d.e.f", "xn--p1ai" };
	char err[PSL_ERRLEN], out[256];
	struct psl *l = psl_parse((const char *)data, size, err);

	if (!l)
		return 0;
	if (psl_rule_count(l) == 0)
		abort();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]), k;
		if (names[i][n - 1] == '.')
			n--;
		if (!psl_registrable(l, names[i], out, sizeof(out)))
			continue;
		k = strlen(out);
		if (k == 0 || k > n || memcmp(names[i] + n - k, out, k) != 0 ||
		    (k < n && names[i][n - k - 1] != '.'))
			abort();
	}
	psl_free(l);
	return 0;
}
