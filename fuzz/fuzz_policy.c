/* fuzz_policy.c -- libFuzzer harness for the allowNet pattern parser and
 * matcher: parse, re-parse the text (same meaning), match fixed targets */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "pattern.h"

static const char *const hosts[] = { "example.com", "a.example.com", "127.0.0.1",
				     "10.1.2.3", "::1", "2001:db8::1", "8.8.8.8" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[PATTERN_ERRLEN], *csv = xstrndup((const char *)data, size);
	struct pattern *p = pattern_parse((const char *)data, size, err), *q;
	struct patlist *l = patlist_new();
	struct target t;

	if (!p && (strncmp(err, "invalid pattern \"", 17) != 0 || strchr(err, '\n')))
		abort();
	q = p ? pattern_parse(pattern_text(p), strlen(pattern_text(p)), err) : NULL;
	if (p && (!q || pattern_is_ip(p) != pattern_is_ip(q)))
		abort(); /* a pattern's own text always re-parses */
	for (size_t i = 0; p && i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		if (!target_from_host(hosts[i], strlen(hosts[i]), 443, &t, err))
			abort();
		if (pattern_match_target(p, &t) != pattern_match_target(q, &t))
			abort();
		if (t.is_ip && pattern_match_addr(p, &t.ip, 443) != pattern_match_target(p, &t))
			abort();
	}
	size_t before = patlist_len(l);
	if (!patlist_add_csv(l, csv, err) && patlist_len(l) != before)
		abort(); /* a failed add leaves the list unchanged */
	if (target_from_host(csv, strlen(csv), 80, &t, err))
		(void)patlist_match_target(l, &t);
	pattern_free(p);
	pattern_free(q);
	patlist_free(l);
	free(csv);
	return 0;
}
