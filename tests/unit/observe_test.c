/* observe_test.c -- the observer (observe.c) fed audit event lines as the
 * proxy writes them, and what obsreport.c makes of its rows: the report's
 * order and fields, the learned allowNet (exact names, *. by registrable
 * domain, 443/80 dropped, IPv6 in brackets), the -c keys kept without an
 * inline secret value, the _other row */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "observe.h"
#include "obsreport.h"
#include "psl.h"
#include "tap.h"

static void ev(struct observe *o, const char *line)
{
	observe_event(o, line, strlen(line));
}

static void conn(struct observe *o, int id, const char *host, int port, const char *mode,
		 const char *decision, const char *why, int up, int down)
{
	char l[1024];

	snprintf(l, sizeof(l), "{\"level\":\"info\",\"event\":\"connect\",\"id\":%d,\"mode\":\"%s\","
		 "\"host\":\"%s\",\"port\":%d,\"decision\":\"%s\",\"%s\":\"%s\",\"intercept\":false}\n",
		 id, mode, host, port, decision, !strcmp(decision, "allow") ? "rule" : "reason", why);
	ev(o, l);
	snprintf(l, sizeof(l), "{\"event\":\"close\",\"id\":%d,\"bytes_up\":%d,\"bytes_down\":%d}",
		 id, up, down);
	ev(o, l);
}

static const struct obs_row *find(const struct obs_row *r, size_t n, const char *host, int port,
				  enum obs_proto p)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(r[i].host, host) && r[i].port == port && r[i].proto == p)
			return &r[i];
	return NULL;
}

static void test_rows(void)
{
	struct observe *o = observe_new(100);
	struct obs_row *r;
	const struct obs_row *x;
	size_t n;

	conn(o, 1, "api.test", 443, "transparent", "allow", "api.test", 10, 20);
	conn(o, 2, "api.test", 443, "transparent", "allow", "api.test", 1, 2);
	conn(o, 3, "new.test", 443, "transparent", "allow", "(learn)", 5, 5);
	conn(o, 4, "bad.test", 443, "transparent", "deny", "denied", 0, 0);
	/* intercepted: a request with a secret's name, then the close */
	ev(o, "{\"event\":\"connect\",\"id\":5,\"mode\":\"transparent\",\"host\":\"s.test\",\"port\":443,"
	      "\"decision\":\"allow\",\"rule\":\"s.test\",\"intercept\":true}");
	ev(o, "{\"event\":\"request\",\"id\":5,\"host\":\"s.test\",\"port\":443,\"status\":200,"
	      "\"secrets\":[\"KEY\"],\"bytes_up\":100,\"bytes_down\":200}");
	ev(o, "{\"event\":\"close\",\"id\":5,\"bytes_up\":130,\"bytes_down\":260}");
	/* transparent plain HTTP: the request moves it from tunnel to http */
	ev(o, "{\"event\":\"connect\",\"id\":6,\"mode\":\"transparent\",\"host\":\"h.test\",\"port\":80,"
	      "\"decision\":\"allow\",\"rule\":\"*\",\"intercept\":false}");
	ev(o, "{\"event\":\"request\",\"id\":6,\"host\":\"h.test\",\"port\":80,\"status\":200,"
	      "\"bytes_up\":50,\"bytes_down\":60}");
	ev(o, "{\"event\":\"close\",\"id\":6,\"bytes_up\":50,\"bytes_down\":60}");
	/* an allowed connection refused later (SNI naming another host) */
	ev(o, "{\"event\":\"connect\",\"id\":7,\"mode\":\"connect\",\"host\":\"m.test\",\"port\":443,"
	      "\"decision\":\"allow\",\"rule\":\"m.test\",\"intercept\":false}");
	ev(o, "{\"event\":\"refuse\",\"id\":7,\"reason\":\"sni-mismatch\"}");
	ev(o, "{\"event\":\"dns\",\"name\":\"exfil.test\",\"qtype\":1,\"rcode\":\"NXDOMAIN\"}");
	ev(o, "{\"event\":\"dns\",\"name\":\"exfil.test\",\"qtype\":1,\"rcode\":\"NXDOMAIN\"}");
	ev(o, "{\"event\":\"dns\",\"name\":\"api.test\",\"qtype\":1,\"answer\":\"198.18.0.1\"}");
	ev(o, "{\"event\":\"dns\",\"name\":\"quiet.test\",\"qtype\":1,\"answer\":\"198.18.0.2\"}");
	ev(o, "{\"event\":\"start\"}");
	ev(o, "not json");
	r = observe_rows(o, &n);
	ok(n == 8, "6 destinations, 2 DNS-only names (%zu rows)", n);
	ok(n >= 2 && r[0].decision == OBS_DENY && r[1].decision == OBS_DENY, "refusals first");
	x = find(r, n, "api.test", 443, OBS_TUNNEL);
	ok(x && x->conns == 2 && x->bytes_up == 11 && x->bytes_down == 22 && !strcmp(x->why, "api.test"),
	   "api.test: 2 connections, bytes summed");
	x = find(r, n, "new.test", 443, OBS_TUNNEL);
	ok(x && x->decision == OBS_LEARNED && !strcmp(x->why, "not-allowed"), "new.test learned");
	x = find(r, n, "s.test", 443, OBS_INTERCEPTED);
	ok(x && x->requests == 1 && x->bytes_up == 130 && x->bytes_down == 260 &&
	   !strcmp(x->secrets, "KEY"), "intercepted: request, bytes once, the secret's name");
	x = find(r, n, "h.test", 80, OBS_HTTP);
	ok(x && x->conns == 1 && x->requests == 1 && x->bytes_up == 50 &&
	   !find(r, n, "h.test", 80, OBS_TUNNEL), "transparent plain HTTP counted as http");
	x = find(r, n, "m.test", 443, OBS_TUNNEL);
	ok(x && x->decision == OBS_DENY && !strcmp(x->why, "sni-mismatch") && x->conns == 1,
	   "refused after the connect: moved to a deny row");
	x = find(r, n, "exfil.test", 0, OBS_DNS_ONLY);
	ok(x && x->queries == 2 && x->decision == OBS_DENY && !strcmp(x->why, "NXDOMAIN"),
	   "DNS-only refused name");
	x = find(r, n, "quiet.test", 0, OBS_DNS_ONLY);
	ok(x && !strcmp(x->why, "answered"), "DNS-only answered name");
	ok(!find(r, n, "api.test", 0, OBS_DNS_ONLY), "a name connected to is not DNS-only");
	ok(r[n - 1].proto == OBS_DNS_ONLY, "DNS-only rows last");
	free(r);
	observe_free(o);
}

static void test_other(void)
{
	struct observe *o = observe_new(2);
	struct obs_row *r;
	size_t n;

	conn(o, 1, "a.test", 443, "connect", "allow", "*", 1, 1);
	conn(o, 2, "b.test", 443, "connect", "allow", "*", 1, 1);
	conn(o, 3, "c.test", 443, "connect", "allow", "*", 1, 1);
	conn(o, 4, "d.test", 443, "connect", "allow", "*", 1, 1);
	r = observe_rows(o, &n);
	ok(n == 3 && r[2].decision == OBS_OTHER && !strcmp(r[2].host, OBS_OTHER_HOST) &&
	   r[2].conns == 2 && r[2].bytes_up == 2, "two rows, then _other with the rest");
	ok(observe_overflow(o) == 2, "overflow counted (%llu)", (unsigned long long)observe_overflow(o));
	free(r);
	observe_free(o);
}

static bool has(const char *json, const char *s)
{
	return strstr(json, s) != NULL;
}

static void test_learned(void)
{
	static const char LIST[] = "test\ncom\nco.uk\n";
	char err[256] = "", *dropped = NULL, *out, cfg[] = "/tmp/observe_test_XXXXXX";
	struct psl *psl = psl_parse(LIST, strlen(LIST), err);
	struct observe *o = observe_new(100);
	int fd = mkstemp(cfg);
	const char *c = "{\"allowNet\":[\"keep.test\"],\"denyNet\":[\"no.test\"],\"rulesDefault\":\"allow\","
			"\"secrets\":{\"A\":{\"hosts\":[\"s.test\"],\"valueFromEnv\":\"A_SRC\"},"
			"\"B\":{\"hosts\":[\"s.test\"],\"value\":\"sk-never-written\"}}}";
	const char *configs[] = { cfg, NULL };

	ok(fd >= 0 && write(fd, c, strlen(c)) == (ssize_t)strlen(c), "a -c file");
	close(fd);
	conn(o, 1, "a.example.com", 443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 2, "b.example.com", 443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 3, "example.com", 80, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 4, "one.example.co.uk", 443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 5, "x.other.com", 8443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 6, "y.other.com", 9443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 7, "203.0.113.5", 22, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 8, "2001:db8::1", 443, "transparent", "allow", "(learn)", 1, 1);
	conn(o, 9, "keep.test", 443, "transparent", "allow", "keep.test", 1, 1);
	conn(o, 10, "no.test", 443, "transparent", "deny", "denied", 0, 0);
	conn(o, 11, "10.0.0.1", 443, "transparent", "deny", "private-address", 0, 0);
	out = obsreport_learned(o, psl, configs, &dropped, err);
	ok(out != NULL, "learned (%s)", err);
	if (!out)
		out = calloc(1, 1);
	ok(has(out, "\"*.example.com\"") && has(out, "\"example.com\""),
	   "two names under example.com: *.example.com, and example.com itself");
	ok(!has(out, "a.example.com"), "no exact name under the wildcard");
	ok(has(out, "\"one.example.co.uk\""), "one name under its registrable domain: exact");
	ok(has(out, "\"x.other.com:8443\"") && has(out, "\"y.other.com:9443\"") &&
	   !has(out, "*.other.com"), "ports kept; names on different ports are not grouped");
	ok(has(out, "\"203.0.113.5:22\"") && has(out, "\"[2001:db8::1]\""), "IPs as IPs");
	ok(has(out, "\"keep.test\"") && has(out, "\"denyNet\"") && has(out, "\"no.test\"") &&
	   has(out, "\"rulesDefault\": \"allow\"") && has(out, "\"A_SRC\""), "-c keys kept");
	ok(!has(out, "sk-never-written") && !has(out, "\"B\"") && dropped && !strcmp(dropped, "B"),
	   "an inline secret value is never written (B left out and named)");
	ok(!has(out, "10.0.0.1") && !has(out, "no.test\",\n    \"") , "refused destinations not allowed");
	free(out);
	free(dropped);
	dropped = NULL;
	out = obsreport_learned(o, NULL, NULL, &dropped, err);
	ok(out && has(out, "\"a.example.com\"") && has(out, "\"b.example.com\"") &&
	   !has(out, "*."), "without the list: exact names only");
	free(out);
	configs[0] = "/nonexistent/policy.json";
	out = obsreport_learned(o, psl, configs, &dropped, err);
	ok(!out && strstr(err, "/nonexistent/policy.json"), "an unreadable -c file: error (%s)", err);
	unlink(cfg);
	observe_free(o);
	psl_free(psl);
}

static void sconn(struct observe *o, int id, const char *sandbox, const char *host)
{
	char l[1024];

	snprintf(l, sizeof(l), "{\"event\":\"connect\",\"id\":%d,\"sandbox\":\"%s\",\"mode\":"
		 "\"connect\",\"host\":\"%s\",\"port\":443,\"decision\":\"allow\",\"rule\":"
		 "\"(learn)\",\"intercept\":false}", id, sandbox, host);
	ev(o, l);
}

static bool write_tmp(char *path, const char *text)
{
	int fd = mkstemp(path);
	bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);

	if (fd >= 0)
		close(fd);
	return ok;
}

/* A sandboxes file: each sandbox learns only what it used, its policy
 * (inline or a file of its own) written inline; rows and the report keep
 * sandboxes apart. */
static void test_sandboxes(void)
{
	char err[256] = "", *dropped = NULL, *out, pol[] = "/tmp/observe_pol_XXXXXX";
	char main_[] = "/tmp/observe_sbx_XXXXXX", text[1024], *as;
	struct observe *o = observe_new(100);
	const char *configs[] = { main_, NULL };
	struct obs_row *r;
	size_t n;
	json_t *j, *a, *b;

	ok(write_tmp(pol, "{\"allowNet\":[\"file.test\"],\"secrets\":{\"S\":{\"hosts\":"
			  "[\"s.test\"],\"value\":\"sk-inline-never\"}}}"), "b's policy file");
	snprintf(text, sizeof(text), "{\"sandboxes\":{\"a\":{\"listen\":\"127.0.0.1:1\",\"policy\":"
		 "{\"allowNet\":[\"keep-a.test\"]}},\"b\":{\"listen\":\"127.0.0.1:2\","
		 "\"policy\":\"%s\"}}}", strrchr(pol, '/') + 1);
	ok(write_tmp(main_, text), "a sandboxes file");
	sconn(o, 1, "a", "x.one.test");
	sconn(o, 2, "a", "y.one.test");
	sconn(o, 3, "b", "x.one.test");
	sconn(o, 4, "b", "only-b.test");
	sconn(o, 5, "api-made", "api.test");
	r = observe_rows(o, &n);
	ok(n == 5, "one row per sandbox and destination (%zu)", n);
	ok(n == 5 && !strcmp(r[0].sandbox, "a") && !strcmp(r[2].sandbox, "api-made") &&
	   !strcmp(r[3].sandbox, "b"), "ordered by sandbox, then host");
	free(r);
	out = obsreport_learned(o, NULL, configs, &dropped, err);
	ok(out != NULL, "learned (%s)", err);
	j = out ? json_loads(out, 0, NULL) : NULL;
	a = json_object_get(json_object_get(json_object_get(json_object_get(j, "sandboxes"), "a"),
					    "policy"), "allowNet");
	b = json_object_get(json_object_get(json_object_get(json_object_get(j, "sandboxes"), "b"),
					    "policy"), "allowNet");
	ok(json_object_size(j) == 1 && json_array_size(a) == 3 && json_array_size(b) == 3,
	   "only \"sandboxes\"; a: keep-a.test + its two names, b: file.test + its two");
	ok(out && has(out, "\"keep-a.test\"") && has(out, "\"file.test\"") &&
	   has(out, "\"only-b.test\"") && has(out, "\"127.0.0.1:2\""),
	   "each sandbox's own keys and selectors kept, a policy file inlined");
	as = json_dumps(a, 0);
	ok(as && strstr(as, "y.one.test") && !strstr(as, "only-b.test"),
	   "what b used is not allowed to a");
	free(as);
	ok(out && !has(out, "api.test") && !has(out, "api-made"),
	   "a sandbox not in the file (control API) is not written");
	ok(out && !has(out, "sk-inline-never") && dropped && !strcmp(dropped, "S"),
	   "an inline secret value in a sandbox's policy file is never written");
	json_decref(j);
	free(out);
	free(dropped);
	unlink(pol);
	unlink(main_);
	observe_free(o);
}

int main(void)
{
	test_rows();
	test_other();
	test_learned();
	test_sandboxes();
	return done_testing();
}
