/* sandboxes_test.c -- the sandbox table: names, selectors, overlap checks,
 * which sandbox claims a connection, and the "sandboxes" policy section */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "config.h"
#include "pattern.h"
#include "policy.h"
#include "sandboxes.h"

static struct ipaddr ip(const char *s)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	if (!target_from_host(s, strlen(s), 1, &t, err) || !t.is_ip) {
		fprintf(stderr, "bad test address %s\n", s);
		exit(2);
	}
	return t.ip;
}

static int match(const struct sbtable *t, const char *la, uint16_t lport, const char *client)
{
	struct ipaddr l = ip(la), c = ip(client);

	return sbx_match(t, &l, lport, &c);
}

static void test_match(void)
{
	char err[SBX_ERRLEN];
	struct sbtable *t = sbx_new();
	int a = sbx_add(t, "a", err), b = sbx_add(t, "b", err), c = sbx_add(t, "c.ci-1", err);

	ok(a == 0 && b == 1 && c == 2, "three sandboxes added");
	ok(sbx_add_source(t, a, "10.200.1.2", err), "a: one address");
	ok(sbx_add_source(t, b, "10.200.2.0/30", err) && sbx_add_source(t, b, "[fd00:1::]/64", err),
	   "b: an IPv4 and an IPv6 range");
	ok(sbx_add_listen(t, c, "127.0.0.1:3129", err) && sbx_add_source(t, c, "127.0.0.0/8", err),
	   "c: a listener, loopback clients");
	ok(sbx_validate(t, err), "disjoint sandboxes validate: %s", err);
	ok(match(t, "0.0.0.0", 3128, "10.200.1.2") == a, "a's address -> a");
	ok(match(t, "0.0.0.0", 3128, "10.200.1.3") == -1, "the next address -> none");
	ok(match(t, "0.0.0.0", 3128, "10.200.2.3") == b, "inside b's /30 -> b");
	ok(match(t, "0.0.0.0", 3128, "10.200.2.4") == -1, "outside b's /30 -> none");
	ok(match(t, "0.0.0.0", 3128, "fd00:1::99") == b, "b's IPv6 range -> b");
	ok(match(t, "0.0.0.0", 3128, "::ffff:10.200.1.2") == a, "an IPv4-mapped client is its IPv4");
	ok(match(t, "127.0.0.1", 3129, "127.0.0.1") == c, "c's listener -> c");
	ok(match(t, "127.0.0.1", 3128, "127.0.0.1") == -1, "another port of the same address -> none");
	ok(sbx_find(t, "c.ci-1") == c && sbx_find(t, "zz") == -1, "find by name");
	ok(sbx_named(t), "a table of sandboxes is named");
	sbx_free(t);
}

static void test_errors(void)
{
	char err[SBX_ERRLEN];
	struct sbtable *t = sbx_new();
	int a = sbx_add(t, "a", err), b;

	ok(sbx_add(t, "a", err) < 0 && strstr(err, "duplicate"), "duplicate name: %s", err);
	ok(sbx_add(t, "", err) < 0 && sbx_add(t, "a b", err) < 0 && sbx_add(t, "a/b", err) < 0,
	   "invalid names refused: %s", err);
	ok(!sbx_add_source(t, a, "10.0.0.1/8", err) && strstr(err, "host bits"), "%s", err);
	ok(!sbx_add_source(t, a, "example.com", err), "a name is not a source: %s", err);
	ok(!sbx_add_listen(t, a, "127.0.0.1", err) && !sbx_add_listen(t, a, "localhost:1", err),
	   "listen needs IP:PORT: %s", err);
	ok(!sbx_validate(t, err) && strstr(err, "neither"), "a sandbox without selectors: %s", err);
	sbx_add_source(t, a, "10.0.0.0/8", err);
	b = sbx_add(t, "b", err);
	sbx_add_source(t, b, "10.1.2.0/24", err);
	ok(!sbx_validate(t, err) && strstr(err, "\"a\" and \"b\""), "nested ranges overlap: %s", err);
	sbx_add_listen(t, b, "127.0.0.1:1", err);
	ok(!sbx_validate(t, err), "b on a listener still overlaps a on every listener");
	sbx_add_listen(t, a, "127.0.0.1:2", err);
	ok(sbx_validate(t, err), "a and b on different listeners: fine (%s)", err);
	sbx_free(t);
}

static void test_config(void)
{
	static const char text[] =
		"{\"sandboxes\": {\n"
		" \"a\": {\"source\": \"10.0.0.2\", \"policy\": {\"allowNet\": [\"a.test\"],\n"
		"        \"secrets\": {\"K\": {\"hosts\": [\"a.test\"], \"value\": \"value-a-0123456789\"}}}},\n"
		" \"b\": {\"source\": [\"10.0.0.3\"], \"policy\": {\"allowNet\": []}}\n"
		"}}\n";
	char err[CONFIG_ERRLEN] = "";
	struct policy *p = policy_new(), *pa;
	struct sbtable *t = NULL;
	struct target tg;
	struct decision d;

	ok(config_load_buffer_main(p, "t.json", text, strlen(text), false, &t, err) && t,
	   "sandboxes section loads: %s", err);
	if (!t)
		return;
	ok(sbx_count(t) == 2 && !strcmp(sbx_name(t, 0), "a"), "two sandboxes, in order");
	pa = sbx_policy(t, 0);
	ok(!strcmp(policy_scope(pa), "a") && policy_secret_count(pa) == 1, "a's policy, scoped");
	target_from_host("a.test", 6, 443, &tg, err);
	policy_check_target(sbx_policy(t, 1), &tg, &d);
	ok(!d.allow, "b denies a.test");
	policy_check_target(pa, &tg, &d);
	ok(d.allow, "a allows a.test");
	ok(!policy_allow_present(p), "the base policy is untouched");
	sbx_free(t);
	ok(!config_load_buffer(p, "t.json", text, strlen(text), err) && strstr(err, "top level"),
	   "a sandbox-less loader refuses the section: %s", err);
	policy_unref(p);
}

static void test_refuse_all(void)
{
	struct policy *p = policy_new();
	struct target tg;
	struct decision d;
	char err[PATTERN_ERRLEN];

	policy_set_refuse_all(p, REASON_UNKNOWN_SOURCE);
	target_from_host("a.test", 6, 443, &tg, err);
	policy_check_target(p, &tg, &d);
	ok(!d.allow && d.reason == REASON_UNKNOWN_SOURCE, "refuse-all policy: unknown-source");
	ok(!policy_could_allow_name(p, "a.test") && !policy_intercepts(p, &tg),
	   "nothing resolvable or intercepted");
	ok(!strcmp(reason_str(REASON_UNKNOWN_SOURCE), "unknown-source") &&
	   reason_status(REASON_UNKNOWN_SOURCE) == 403, "reason name and status");
	policy_unref(p);
}

int main(void)
{
	test_match();
	test_errors();
	test_config();
	test_refuse_all();
	return done_testing();
}
