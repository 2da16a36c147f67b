/* fuzz_rules.c -- libFuzzer harness for request rules: "METHOD\nTARGET" goes
 * through the path normaliser (invariants checked) and a fixed ruleset with
 * pathological patterns; an input starting with '{' is a policy file whose
 * rules are loaded and asked about a fixed request */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "config.h"
#include "policy.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const hosts[] = { "a.test", "b.test", "c.test" }; /* c: no rules */

static struct policy *fixed(void)
{
	static const char text[] = "{\"rulesDefault\": \"allow\", \"rules\": ["
		"{\"host\": \"a.test\", \"method\": \"GET\", \"path\": \"^/repos/acme/\", \"action\": \"allow\"},"
		"{\"host\": \"a.test\", \"action\": \"deny\"},"
		"{\"host\": \"b.test\", \"path\": \"(a|aa)+$\", \"action\": \"deny\"},"
		"{\"host\": \"b.test\", \"method\": \"POST\", \"path\": \"^/(x+x+)+y\", \"action\": \"allow\"}]}";
	static struct policy *p; /* immutable once loaded, like a served policy */
	char err[CONFIG_ERRLEN];

	if (!p && !config_load_buffer(p = policy_new(), "fixed", text, sizeof(text) - 1, err))
		abort();
	return p;
}

/* Asks p about method/tgt for each host; returns how many hosts have rules. */
static int ask(const struct policy *p, const char *method, const char *tgt, size_t n, bool amb)
{
	struct rule_verdict v;
	struct target t;
	char err[PATTERN_ERRLEN];
	int applied = 0;

	for (size_t i = 0; i < 3; i++) {
		if (!target_from_host(hosts[i], strlen(hosts[i]), 443, &t, err))
			abort();
		if (policy_check_request(p, &t, method, tgt, n, &v)) {
			applied++;
			if (amb != (v.how == RULE_AMBIGUOUS) || (amb && v.allow))
				abort(); /* an ambiguous path is refused before any rule */
		}
	}
	return applied;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *nl = memchr(in, '\n', size), *tgt, *why;
	size_t ml = nl ? (size_t)(nl - in) : 0, n = nl ? size - ml - 1 : size, len = 0, l2;
	char method[40], *out = xmalloc(n + 1), *again = xmalloc(n + 1), cerr[CONFIG_ERRLEN];
	struct policy *p;

	if (size > 0 && in[0] == '{') {
		p = policy_new();
		if (config_load_buffer(p, "fuzz.json", in, size, cerr))
			ask(p, "GET", "/repos/acme/x?y=1", 17, false);
		policy_unref(p);
		goto out;
	}
	tgt = nl ? nl + 1 : in;
	snprintf(method, sizeof(method), "%.*s", (int)(ml < 39 ? ml : 39), in);
	why = rules_normalize_path(tgt, n, out, &len);
	/* a normal form is short, absolute, free of what makes a path ambiguous,
	 * with upper-case escapes only, and a fixed point */
	if (!why && (len > n || !len || out[0] != '/' || strlen(out) != len || strstr(out, "//") ||
		     strstr(out, "/./") || strstr(out, "/../") || strpbrk(out, "\\#?") ||
		     !strcmp(out + (len > 2 ? len - 2 : 0), "/.") ||
		     !strcmp(out + (len > 3 ? len - 3 : 0), "/..") ||
		     rules_normalize_path(out, len, again, &l2) || l2 != len || memcmp(out, again, len)))
		abort();
	for (size_t i = 0; !why && i < len; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f ||
		    (out[i] == '%' && (i + 2 >= len || !strchr("0123456789ABCDEF", out[i + 1]) ||
				       !strchr("0123456789ABCDEF", out[i + 2]) || !out[i + 1] || !out[i + 2])))
			abort();
	if (ask(fixed(), method, tgt, n, why != NULL) != 2)
		abort(); /* a.test and b.test have rules, c.test none */
out:
	free(out);
	free(again);
	return 0;
}
