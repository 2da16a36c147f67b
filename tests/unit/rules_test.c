/* rules_test.c -- unit tests for rules.c: the path normaliser (bypass
 * attempts included), rule building errors, matching, first-match order,
 * rulesDefault, match-limit refusal, and rules loaded from a policy file */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "policy.h"
#include "rules.h"
#include "tap.h"

static struct target tgt(const char *host, uint16_t port)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	memset(&t, 0, sizeof(t));
	if (!target_from_host(host, strlen(host), port, &t, err))
		printf("# bad test target %s: %s\n", host, err);
	return t;
}

static struct patlist *hosts(const char *csv)
{
	struct patlist *l = patlist_new();
	char err[PATTERN_ERRLEN];

	if (!patlist_add_csv(l, csv, err))
		printf("# bad test hosts %s: %s\n", csv, err);
	return l;
}

/* ---- normalisation ---- */

/* want NULL: ambiguous (why contains want_why) */
static void norm(const char *in, const char *want, const char *want_why)
{
	size_t n = strlen(in), len = 99;
	char *out = malloc(n + 1);
	const char *why = rules_normalize_path(in, n, out, &len);

	if (want) {
		if (!ok(!why && strcmp(out, want) == 0 && len == strlen(want),
			"normalise %s -> %s", in, want))
			printf("#   got: %s (%s)\n", why ? "ambiguous" : out, why ? why : "");
	} else {
		if (!ok(why && strstr(why, want_why) && len == 0 && out[0] == '\0',
			"normalise %s -> ambiguous (%s)", in, want_why))
			printf("#   got: %s (%s)\n", why ? "ambiguous" : out, why ? why : "");
	}
	free(out);
}

static void test_normalise(void)
{
	norm("/", "/", NULL);
	norm("/repos/acme/x", "/repos/acme/x", NULL);
	norm("/repos/acme/x?q=1&r=/../", "/repos/acme/x", NULL);
	norm("/repos/acme/", "/repos/acme/", NULL);
	norm("/%61dmin", "/admin", NULL);
	norm("/%41%5a%30%39%2d%2E%5f%7e", "/AZ09-._~", NULL);
	norm("/a%2fb", NULL, "encoded slash");
	norm("/a%2Fb", NULL, "encoded slash");
	norm("/a%5cb", NULL, "encoded backslash");
	norm("/a%20b%3f%e9", "/a%20b%3F%E9", NULL);
	norm("/a%25%32%66", "/a%252f", NULL); /* %25 stays: one decoding, as the upstream */
	norm("/a/../admin", NULL, "dot-segment");
	norm("/a/./admin", NULL, "dot-segment");
	norm("/a/.", NULL, "dot-segment");
	norm("/a/..", NULL, "dot-segment");
	norm("/..", NULL, "dot-segment");
	norm("/a/%2e%2e/admin", NULL, "dot-segment");
	norm("/a/.%2E/admin", NULL, "dot-segment");
	norm("/a/%2e/admin", NULL, "dot-segment");
	norm("/a/..;/admin", NULL, "dot-segment with parameters");
	norm("/a/..;x=1/admin", NULL, "dot-segment with parameters");
	norm("/a/.;/admin", NULL, "dot-segment with parameters");
	norm("/a/%2e%2e;/admin", NULL, "dot-segment with parameters");
	norm("/a/..;", NULL, "dot-segment with parameters");
	norm("/;x/admin", NULL, "empty segment with parameters");
	norm("/a/;/b", NULL, "empty segment with parameters");
	norm("/a/;", NULL, "empty segment with parameters");
	norm("/cars;color=red/x;v=2", "/cars;color=red/x;v=2", NULL); /* matrix parameters */
	norm("/a/...;x", "/a/...;x", NULL);
	norm("/a/%3B/b", "/a/%3B/b", NULL); /* an encoded ';' is not a separator */
	norm("/a/...", "/a/...", NULL);
	norm("/a/..b/.c", "/a/..b/.c", NULL);
	norm("//admin", NULL, "empty segment");
	norm("/a//b", NULL, "empty segment");
	norm("/a/b//", NULL, "empty segment");
	norm("/a\\b", NULL, "backslash");
	norm("/a\x01", NULL, "control");
	norm("/a%00", NULL, "encoded NUL");
	norm("/a%0a", NULL, "encoded NUL or control");
	norm("/a%7F", NULL, "encoded NUL or control");
	norm("/a%", NULL, "malformed");
	norm("/a%4", NULL, "malformed");
	norm("/a%zz", NULL, "malformed");
	norm("/a#frag", NULL, "'#'");
	norm("*", NULL, "start with '/'");
	norm("admin", NULL, "start with '/'");
	norm("", NULL, "empty");
	norm("?q", NULL, "start with '/'");
	norm("https://api.github.com/repos/acme/x?y", "/repos/acme/x", NULL);
	norm("HTTP://h:8080/%61", "/a", NULL);
	norm("http://h", "/", NULL);
	norm("http://h?q=/x", "/", NULL);
	norm("https://h/a/../b", NULL, "dot-segment");
	norm("/caf\xc3\xa9", "/caf\xc3\xa9", NULL);
	{
		/* a NUL byte inside the target (the length is given) */
		char out[8];
		size_t len;
		ok(rules_normalize_path("/a\0b", 4, out, &len) != NULL,
		   "normalise: a raw NUL byte is ambiguous");
	}
}

/* ---- building ---- */

static void test_add_errors(void)
{
	struct ruleset *rs = ruleset_new();
	char err[RULES_ERRLEN];
	const char *bad_m[] = { "get" }, *bad_m2[] = { "GE T" }, *good_m[] = { "GET", "M-SEARCH" };

	ok(!ruleset_add(rs, hosts(""), NULL, 0, NULL, 0, true, err) && strstr(err, "host"),
	   "a rule without hosts is refused (%s)", err);
	ok(!ruleset_add(rs, hosts("a.test"), bad_m, 1, NULL, 0, true, err) &&
		   strstr(err, "invalid method \"get\""),
	   "a lower-case method is refused (%s)", err);
	ok(!ruleset_add(rs, hosts("a.test"), bad_m2, 1, NULL, 0, true, err),
	   "a method with a space is refused (%s)", err);
	ok(!ruleset_add(rs, hosts("a.test"), NULL, 0, "^(", 2, true, err) &&
		   strstr(err, "invalid regular expression") && strstr(err, "offset 2") &&
		   strstr(err, "missing closing parenthesis"),
	   "a bad regex names PCRE2's message and offset (%s)", err);
	ok(!ruleset_add(rs, hosts("a.test"), NULL, 0, "(*UTF)x", 7, true, err) &&
		   strstr(err, "UTF"),
	   "UTF mode cannot be switched on by the pattern (%s)", err);
	ok(ruleset_len(rs) == 0, "failed adds leave the ruleset empty");
	ok(ruleset_add(rs, hosts("a.test"), good_m, 2, "x", 1, true, err),
	   "methods GET, M-SEARCH and a path are accepted");
	ok(ruleset_len(rs) == 1 && !ruleset_default(rs), "one rule; default is deny");
	ok(rules_method_valid("PROPFIND", 8) && !rules_method_valid("", 0) &&
		   !rules_method_valid("GET\r", 4) &&
		   !rules_method_valid("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 33),
	   "method tokens: 1-32 tchars");
	ruleset_free(rs);
	ruleset_free(NULL);
}

/* ---- matching ---- */

struct req {
	const char *host;
	uint16_t port;
	const char *method, *target;
	int want;          /* -1: not subject to rules; 0 deny; 1 allow */
	enum rule_how how;
	size_t index;
};

static void check_reqs(const struct ruleset *rs, const struct req *r, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		struct target t = tgt(r[i].host, r[i].port);
		struct rule_verdict v = { .index = 999 };
		bool applies = ruleset_check(rs, &t, r[i].method, r[i].target, strlen(r[i].target), &v);
		bool good;

		if (r[i].want < 0)
			good = !applies;
		else
			good = applies && v.allow == (r[i].want == 1) && v.how == r[i].how &&
			       ((r[i].how != RULE_BY_RULE && r[i].how != RULE_MATCH_ERROR) ||
				v.index == r[i].index);
		if (!ok(good, "%s: %s %s:%u%s -> %s", what, r[i].method, r[i].host, r[i].port,
			r[i].target, r[i].want < 0 ? "not subject to rules" :
			r[i].want ? "allow" : "deny"))
			printf("#   got applies=%d allow=%d how=%d index=%zu why=%s\n", applies,
			       v.allow, v.how, v.index, v.why ? v.why : "");
	}
}

static void add(struct ruleset *rs, const char *hcsv, const char *methods, const char *path,
		bool allow)
{
	const char *m[8];
	size_t nm = 0;
	char buf[128], err[RULES_ERRLEN];

	if (methods) {
		char *tok = buf, *comma;
		snprintf(buf, sizeof(buf), "%s", methods);
		for (; nm < 8; tok = comma + 1) {
			m[nm++] = tok;
			if (!(comma = strchr(tok, ',')))
				break;
			*comma = '\0';
		}
	}
	if (!ruleset_add(rs, hosts(hcsv), m, nm, path, path ? strlen(path) : 0, allow, err))
		printf("# bad test rule: %s\n", err);
}

static void test_match(void)
{
	struct ruleset *rs = ruleset_new();

	add(rs, "api.github.com", "GET", "^/repos/acme/", true);
	add(rs, "api.github.com", NULL, NULL, false);
	add(rs, "*.example.com:8443,example.org", "GET,HEAD", "\\.json$", true);
	add(rs, "files.test", NULL, "^/admin", false);
	add(rs, "files.test", "PUT", NULL, false);

	const struct req reqs[] = {
		{ "api.github.com", 443, "GET", "/repos/acme/x", 1, RULE_BY_RULE, 0 },
		{ "API.GitHub.com", 443, "GET", "/repos/acme/x?y=1", 1, RULE_BY_RULE, 0 },
		{ "api.github.com", 443, "POST", "/repos/acme/x", 0, RULE_BY_RULE, 1 },
		{ "api.github.com", 443, "get", "/repos/acme/x", 0, RULE_BY_RULE, 1 },
		{ "api.github.com", 443, "GET", "/repos/other/x", 0, RULE_BY_RULE, 1 },
		{ "api.github.com", 443, "GET", "/x/repos/acme/", 0, RULE_BY_RULE, 1 },
		{ "api.github.com", 443, "GET", "/%72epos/acme/x", 1, RULE_BY_RULE, 0 },
		{ "api.github.com", 443, "GET", "https://api.github.com/repos/acme/x", 1, RULE_BY_RULE, 0 },
		{ "api.github.com", 443, "GET", "/repos/acme/../../admin", 0, RULE_AMBIGUOUS, 0 },
		{ "api.github.com", 443, "GET", "/repos/acme%2f..%2fadmin", 0, RULE_AMBIGUOUS, 0 },
		{ "api.github.com", 80, "GET", "/repos/acme/x", 1, RULE_BY_RULE, 0 },
		{ "github.com", 443, "POST", "/anything", -1, 0, 0 },
		{ "a.example.com", 8443, "GET", "/v1/x.json", 1, RULE_BY_RULE, 2 },
		{ "a.example.com", 8443, "GET", "/v1/x.json?q", 1, RULE_BY_RULE, 2 },
		{ "a.example.com", 8443, "HEAD", "/v1/x.json", 1, RULE_BY_RULE, 2 },
		{ "a.example.com", 8443, "POST", "/v1/x.json", 0, RULE_BY_DEFAULT, 0 },
		{ "a.example.com", 8443, "GET", "/v1/x.jsonp", 0, RULE_BY_DEFAULT, 0 },
		{ "a.example.com", 443, "GET", "/v1/x.json", -1, 0, 0 },
		{ "example.com", 8443, "GET", "/x.json", -1, 0, 0 },
		{ "example.org", 1, "GET", "/x.json", 1, RULE_BY_RULE, 2 },
		{ "files.test", 443, "GET", "/admin/x", 0, RULE_BY_RULE, 3 },
		{ "files.test", 443, "GET", "/%61dmin/x", 0, RULE_BY_RULE, 3 },
		{ "files.test", 443, "GET", "/%41dmin/x", 0, RULE_BY_DEFAULT, 0 },
		{ "files.test", 443, "GET", "//admin", 0, RULE_AMBIGUOUS, 0 },
		{ "files.test", 443, "GET", "/x/../admin", 0, RULE_AMBIGUOUS, 0 },
		{ "files.test", 443, "GET", "/x/%2E%2E/admin", 0, RULE_AMBIGUOUS, 0 },
		{ "files.test", 443, "GET", "/x\\..\\admin", 0, RULE_AMBIGUOUS, 0 },
		{ "files.test", 443, "PUT", "/x", 0, RULE_BY_RULE, 4 },
		{ "files.test", 443, "GET", "/x", 0, RULE_BY_DEFAULT, 0 },
	};
	check_reqs(rs, reqs, sizeof(reqs) / sizeof(reqs[0]), "deny default");

	ruleset_set_default(rs, true);
	const struct req reqs2[] = {
		{ "files.test", 443, "GET", "/x", 1, RULE_BY_DEFAULT, 0 },
		{ "files.test", 443, "GET", "/Admin", 1, RULE_BY_DEFAULT, 0 },
		{ "files.test", 443, "GET", "/admin", 0, RULE_BY_RULE, 3 },
		{ "files.test", 443, "GET", "/a/./admin", 0, RULE_AMBIGUOUS, 0 },
		{ "a.example.com", 8443, "DELETE", "/v1/x", 1, RULE_BY_DEFAULT, 0 },
		{ "nobody.test", 443, "DELETE", "/", -1, 0, 0 },
	};
	check_reqs(rs, reqs2, sizeof(reqs2) / sizeof(reqs2[0]), "allow default");
	ruleset_free(rs);
}

static void test_first_match(void)
{
	struct ruleset *rs = ruleset_new();

	/* the same request matches rules 0, 1 and 2: the first one decides */
	add(rs, "h.test", NULL, "^/a", false);
	add(rs, "h.test", "GET", "^/a/b", true);
	add(rs, "h.test", NULL, NULL, true);
	ruleset_set_default(rs, true);
	const struct req reqs[] = {
		{ "h.test", 443, "GET", "/a/b", 0, RULE_BY_RULE, 0 },
		{ "h.test", 443, "GET", "/b", 1, RULE_BY_RULE, 2 },
	};
	check_reqs(rs, reqs, 2, "first match (deny first)");
	ruleset_free(rs);

	rs = ruleset_new();
	add(rs, "h.test", "GET", "^/a/b", true);
	add(rs, "h.test", NULL, "^/a", false);
	const struct req reqs2[] = {
		{ "h.test", 443, "GET", "/a/b", 1, RULE_BY_RULE, 0 },
		{ "h.test", 443, "POST", "/a/b", 0, RULE_BY_RULE, 1 },
		{ "h.test", 443, "GET", "/a/c", 0, RULE_BY_RULE, 1 },
		{ "h.test", 443, "GET", "/c", 0, RULE_BY_DEFAULT, 0 },
	};
	check_reqs(rs, reqs2, 4, "first match (allow first)");
	ruleset_free(rs);

	/* no rules at all: nothing is subject to them */
	rs = ruleset_new();
	struct target t = tgt("h.test", 443);
	struct rule_verdict v;
	ok(!ruleset_check(rs, &t, "GET", "/", 1, &v) && !ruleset_check(NULL, &t, "GET", "/", 1, &v),
	   "an empty (or absent) ruleset decides nothing");
	ok(!ruleset_names_host(rs, &t), "an empty ruleset names no host");
	ruleset_free(rs);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A pathological pattern against a long path: refused (fail closed) fast. */
static void limit_case(const char *pattern, const char *path, size_t plen, int want_allow,
		       enum rule_how want_how, const char *what)
{
	struct ruleset *rs = ruleset_new();
	struct target t = tgt("h.test", 443);
	struct rule_verdict v = { .index = 99 };
	double t0, dt;
	bool applies;

	add(rs, "h.test", NULL, pattern, true);
	ruleset_set_default(rs, true);
	t0 = now();
	applies = ruleset_check(rs, &t, "GET", path, plen, &v);
	dt = now() - t0;
	if (!ok(applies && v.allow == (want_allow == 1) && v.how == want_how && dt < 2.0,
		"%s: %s on %zu bytes -> %s in %.3fs", what, pattern, plen,
		want_how == RULE_MATCH_ERROR ? "refused (match limit)" : "decided", dt))
		printf("#   got applies=%d allow=%d how=%d index=%zu\n", applies, v.allow, v.how,
		       v.index);
	if (want_how == RULE_MATCH_ERROR)
		ok(v.index == 0, "  the verdict names rule 0");
	ruleset_free(rs);
}

static void test_limits(void)
{
	size_t n = 60000;
	char *p = malloc(n + 8), *q = malloc(n + 8), r[1024];

	/* "/aaaa...ab" */
	p[0] = '/';
	memset(p + 1, 'a', n);
	p[n + 1] = 'b';
	limit_case("^/(a|aa)+$", p, n + 2, 0, RULE_MATCH_ERROR, "exponential, anchored");
	limit_case("^/(a+)+$", p, n + 2, 0, RULE_MATCH_ERROR, "nested quantifier, anchored");
	limit_case("(a|aa)+$", p, n + 2, 0, RULE_MATCH_ERROR, "exponential, unanchored");
	limit_case("^/(a+)+b$", p, n + 2, 1, RULE_BY_RULE, "nested quantifier that matches");
	/* unanchored, each start position just under a per-position limit:
	 * runs of 22 a's then 'b', no "bd" anywhere, a 'd' at the end */
	q[0] = '/';
	for (size_t i = 1; i + 23 < n; i += 23) {
		memset(q + i, 'a', 22);
		q[i + 22] = 'b';
	}
	memcpy(q + n - 24, "xxxxxxxxxxxxxxxxxxxxxxxd", 24);
	limit_case("(a|aa)+bd", q, n, 0, RULE_MATCH_ERROR, "exponential per start position");
	limit_case("[ab]+x", q, n, 1, RULE_BY_RULE, "linear pattern on the same path");
	/* the price of the bound: a group repeated over most of a very long path
	 * exceeds the per-position limit of an unanchored pattern (fail closed),
	 * while the same pattern on a 1 KiB path is fine */
	limit_case("(?:a|b)+x", q, n, 0, RULE_MATCH_ERROR, "group repeat over 60 KB, unanchored");
	memcpy(r, q + n - 1024, 1024);
	r[0] = '/';
	limit_case("(?:a|b)+x", r, 1024, 1, RULE_BY_RULE, "group repeat over 1 KiB");
	/* the same with the interpreter ((*NO_JIT)): its smaller budget */
	limit_case("(*NO_JIT)^/(a|aa)+$", p, n + 2, 0, RULE_MATCH_ERROR, "interpreter, exponential");
	limit_case("(*NO_JIT)(a|aa)+bd", q, n, 0, RULE_MATCH_ERROR,
		   "interpreter, exponential per start position");
	limit_case("(*NO_JIT)[ab]+x", q, n, 1, RULE_BY_RULE, "interpreter, linear");
	r[512] = '/';
	limit_case("(*NO_JIT)(?:a|b)+x", r + 512, 512, 1, RULE_BY_RULE,
		   "interpreter, group repeat over 512 bytes");
	limit_case("a*bz", q, n, 1, RULE_BY_DEFAULT, "quadratic scan");
	/* a short path is not refused by a pattern that needs some backtracking */
	limit_case("^/(a|aa)+b$", "/aaaaaaaaaaaaab", 15, 1, RULE_BY_RULE, "short path");
	free(p);
	free(q);
}

/* ---- through a policy file ---- */

static void test_policy(void)
{
	static const char text[] =
		"{\n"
		"  \"allowNet\": [\"api.github.com\"],\n"
		"  \"rulesDefault\": \"allow\",\n"
		"  \"rules\": [\n"
		"    {\"host\": \"api.github.com\", \"method\": \"GET\", \"path\": \"^/repos/acme/\", "
		"\"action\": \"allow\"},\n"
		"    {\"host\": [\"api.github.com\", \"uploads.github.com:443\"], "
		"\"method\": [\"POST\", \"PUT\"], \"action\": \"deny\"}\n"
		"  ]\n"
		"}\n";
	char err[CONFIG_ERRLEN];
	struct policy *p = policy_new();
	struct target gh = tgt("api.github.com", 443), up = tgt("uploads.github.com", 443),
		      up80 = tgt("uploads.github.com", 80);
	struct rule_verdict v;

	ok(config_load_buffer(p, "r.json", text, strlen(text), err), "policy with rules loads (%s)",
	   err);
	ok(ruleset_len(policy_rules(p)) == 2 && ruleset_default(policy_rules(p)),
	   "  two rules, rulesDefault allow");
	ok(policy_intercepts(p, &gh) && policy_intercepts(p, &up) && !policy_intercepts(p, &up80),
	   "  hosts named by rules are intercepted (port-specific pattern respected)");
	ok(policy_intercept_present(p), "  the policy needs interception");
	ok(policy_check_request(p, &gh, "GET", "/repos/acme/x", 13, &v) && v.allow &&
		   v.how == RULE_BY_RULE && v.index == 0, "  GET /repos/acme/x: rule 0");
	ok(policy_check_request(p, &up, "PUT", "/x", 2, &v) && !v.allow && v.index == 1,
	   "  PUT to uploads: rule 1");
	ok(policy_check_request(p, &gh, "DELETE", "/x", 2, &v) && v.allow &&
		   v.how == RULE_BY_DEFAULT, "  DELETE: rulesDefault allow");
	ok(!config_load_buffer(p, "second.json", "{\"rulesDefault\": \"deny\"}", 24, err) &&
		   strstr(err, "second.json:1:2: rulesDefault: request rules are already defined"),
	   "  a second file with rules is refused (%s)", err);
	ok(ruleset_default(policy_rules(p)), "  ... and changes nothing");
	policy_unref(p);

	p = policy_new();
	ok(config_load_buffer(p, "d.json", "{\"rulesDefault\": \"allow\"}", 25, err) &&
		   policy_rules(p) && ruleset_len(policy_rules(p)) == 0 &&
		   !policy_intercept_present(p),
	   "rulesDefault alone: no rules, nothing intercepted");
	ok(config_load_buffer(p, "e.json", "{\"allowNet\": []}", 16, err),
	   "a later file without rules still loads");
	policy_unref(p);
}

int main(void)
{
	test_normalise();
	test_add_errors();
	test_match();
	test_first_match();
	test_limits();
	test_policy();
	return done_testing();
}
