/* sbxreg_test.c -- the registry of sandboxes created at runtime: add,
 * replace, remove, match by single address and by range, conflicts (and
 * the one being replaced is not its own conflict), growth past many
 * entries; and the control API's body loader (config_load_sandbox) with the
 * path of the bad value */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#include "config.h"
#include "pattern.h"
#include "policy.h"
#include "sandboxes.h"
#include "sbxreg.h"

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

/* A one-sandbox table: name, a source, and a listener or NULL. */
static struct sbtable *one(const char *name, const char *src, const char *listen)
{
	char err[SBX_ERRLEN];
	struct sbtable *t = sbx_new();
	int i = sbx_add(t, name, err);

	if (src && !sbx_add_source(t, i, src, err))
		exit(2);
	if (listen && !sbx_add_listen(t, i, listen, err))
		exit(2);
	return t;
}

static void *match(const struct sbxreg *r, const char *client, uint16_t lport)
{
	struct ipaddr l = ip("127.0.0.1"), c = ip(client);

	return sbxreg_match(r, &l, lport, &c);
}

static void test_registry(void)
{
	struct sbxreg *r = sbxreg_new();
	int a, b, c, d;
	struct sbtable *t;

	ok(sbxreg_put(r, one("a", "10.0.0.1", NULL), &a) == NULL, "a added");
	ok(sbxreg_put(r, one("b", "10.1.0.0/16", NULL), &b) == NULL, "b (a range) added");
	ok(sbxreg_put(r, one("c", "10.0.0.2", "127.0.0.1:3129"), &c) == NULL, "c added");
	ok(sbxreg_count(r) == 3 && sbxreg_get(r, "b") == &b && !sbxreg_get(r, "x"), "get");
	ok(match(r, "10.0.0.1", 3128) == &a, "a by its address");
	ok(match(r, "10.1.2.3", 3128) == &b, "b by its range");
	ok(match(r, "10.0.0.2", 3128) == NULL && match(r, "10.0.0.2", 3129) == &c,
	   "c only on its listener");
	ok(match(r, "10.0.0.9", 3128) == NULL, "nobody's address");

	t = one("n", "10.0.0.1", NULL);
	ok(sbxreg_conflict(r, t, 0, NULL) && !strcmp(sbxreg_conflict(r, t, 0, NULL), "a"),
	   "same address: conflicts with a");
	ok(sbxreg_conflict(r, t, 0, "a") == NULL, "not with itself when replacing a");
	sbx_free(t);
	t = one("n", "10.1.9.9", NULL);
	ok(sbxreg_conflict(r, t, 0, NULL) && !strcmp(sbxreg_conflict(r, t, 0, NULL), "b"),
	   "inside b's range");
	sbx_free(t);
	t = one("n", "10.0.0.0/24", NULL);
	ok(sbxreg_conflict(r, t, 0, NULL) != NULL, "a range holding a's address");
	sbx_free(t);
	t = one("n", "10.0.0.2", "127.0.0.1:3130");
	ok(sbxreg_conflict(r, t, 0, NULL) == NULL, "c's address on another listener: no conflict");
	sbx_free(t);

	ok(sbxreg_put(r, one("a", "10.0.0.3", NULL), &d) == &a, "replacing a returns its value");
	ok(match(r, "10.0.0.1", 3128) == NULL && match(r, "10.0.0.3", 3128) == &d,
	   "a moved to its new address");
	ok(sbxreg_remove(r, "b") == &b && sbxreg_remove(r, "b") == NULL, "remove b, once");
	ok(match(r, "10.1.2.3", 3128) == NULL && sbxreg_count(r) == 2, "b gone");
	sbxreg_free(r, NULL);
}

static void test_many(void)
{
	struct sbxreg *r = sbxreg_new();
	static int v[20000];
	char name[32], src[32];
	bool all = true;

	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(src, sizeof(src), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
		sbxreg_put(r, one(name, src, NULL), &v[i]);
	}
	for (int i = 0; i < 20000 && all; i += 7) {
		snprintf(src, sizeof(src), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
		all = match(r, src, 1) == &v[i];
	}
	ok(sbxreg_count(r) == 20000 && all, "20,000 sandboxes, each found by its address");
	for (int i = 0; i < 20000; i += 2) {
		snprintf(name, sizeof(name), "s%d", i);
		all = all && sbxreg_remove(r, name) == &v[i];
	}
	ok(all && sbxreg_count(r) == 10000 && match(r, "10.0.0.2", 1) == NULL &&
	   match(r, "10.0.0.3", 1) == &v[3], "half removed, the rest still found");
	sbxreg_free(r, NULL);
}

static struct sbtable *load(const char *text, char *err, char *where)
{
	return config_load_sandbox("sb", text, strlen(text), err, where);
}

static void test_body(void)
{
	char err[CONFIG_ERRLEN], where[CONFIG_WHERELEN];
	const char *good = "{\"source\":\"10.0.0.1\",\"allowNet\":[\"a.test\"],"
			   "\"secrets\":{\"K\":{\"hosts\":[\"a.test\"],\"value\":\"SECRETVAL\"}}}";
	struct sbtable *t = config_load_sandbox("sb", good, strlen(good), err, where);

	ok(t && sbx_count(t) == 1 && !strcmp(sbx_name(t, 0), "sb") &&
	   !strcmp(policy_scope(sbx_policy(t, 0)), "sb") &&
	   policy_secret_count(sbx_policy(t, 0)) == 1, "a good body: one sandbox, scoped");
	sbx_free(t);
	t = load("{\"source\":\"10.0.0.1\",\"secrets\":{\"K\":{\"hosts\":"
		 "[\"a.test\",\"\"],\"value\":\"SECRETVAL\"}}}", err, where);
	ok(!t, "an empty host pattern is refused");
	is_str(where, "secrets.K.hosts[1]", "its path");
	ok(strstr(err, "body:1:") && !strstr(err, "SECRETVAL"), "message: %s", err);
	t = load("{\"allowNet\":[]}", err, where);
	ok(!t && where[0] == '\0' && strstr(err, "neither"), "no selector: %s", err);
	t = load("{\"source\":\"10.0.0.1\",\"policy\":{}}", err, where);
	ok(!t && !strcmp(where, "policy") && strstr(err, "unknown key"), "policy key: %s", err);
	t = config_load_sandbox("bad name", "{\"source\":\"10.0.0.1\"}", 21, err, where);
	ok(!t && strstr(err, "invalid sandbox name"), "bad name: %s", err);
	t = load("{\"source\":\"10.0.0.1\",\"secrets\":{\"K\":{\"hosts\":[\"a.test\"],"
		 "\"value\":\"SECRETVAL", err, where);
	ok(!t && strstr(err, "body:1:") && !strstr(err, "SECRETVAL"),
	   "a syntax error does not quote the text near it: %s", err);
}

int main(void)
{
	test_registry();
	test_many();
	test_body();
	return done_testing();
}
