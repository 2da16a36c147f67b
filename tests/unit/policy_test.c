/* policy_test.c -- unit tests for policy.c: decisions, the address guard,
 * pins, interception, secrets and reference counting */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "policy.h"
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

static struct ipaddr ip(const char *s)
{
	struct ipaddr a;

	memset(&a, 0, sizeof(a));
	if (!(strchr(s, ':') ? addr_parse_ipv6(s, strlen(s), &a)
			     : addr_parse_ipv4(s, strlen(s), &a)))
		printf("# bad test address %s\n", s);
	return a;
}

/* Checks the decision on host:port: allowed or not, reason, rule text. */
static void decide(const struct policy *p, const char *host, uint16_t port, bool allow,
		   enum reason reason, const char *rule)
{
	struct target t = tgt(host, port);
	struct decision d;

	memset(&d, 0xa5, sizeof(d));
	policy_check_target(p, &t, &d);
	ok(d.allow == allow && d.reason == reason &&
	   (rule ? d.rule && strcmp(d.rule, rule) == 0 : d.rule == NULL),
	   "%s:%u -> %s %s rule %s", host, (unsigned)port, allow ? "allow" : "refuse",
	   reason_str(reason), rule ? rule : "(none)");
	if (d.allow != allow || d.reason != reason)
		printf("#   got %s %s rule %s\n", d.allow ? "allow" : "refuse",
		       reason_str(d.reason), d.rule ? d.rule : "(none)");
}

static void guard(const struct policy *p, const char *addr, uint16_t port, enum reason want)
{
	struct ipaddr a = ip(addr);
	enum reason got = policy_check_addr(p, &a, port);

	ok(got == want, "address %s port %u -> %s", addr, (unsigned)port, reason_str(want));
	if (got != want)
		printf("#   got %s\n", reason_str(got));
}

static void test_decisions(void)
{
	char err[PATTERN_ERRLEN];
	struct policy *p = policy_new();

	/* absent allowNet: unrestricted, no rule */
	ok(!policy_allow_present(p), "new policy: allowNet absent");
	decide(p, "example.com", 443, true, REASON_NONE, NULL);
	decide(p, "203.0.113.7", 80, true, REASON_NONE, NULL);

	/* a failed add leaves allowNet absent */
	ok(!policy_add_allow(p, "bad..example.com", err), "invalid allow pattern refused");
	ok(err[0] != '\0', "  with a message: %s", err);
	ok(!policy_allow_present(p), "  allowNet still absent");
	ok(!policy_add_allow(p, "example.com,*", err), "a list with one bad pattern refused");
	ok(!policy_allow_present(p), "  allowNet still absent");
	decide(p, "example.com", 443, true, REASON_NONE, NULL);

	/* present but empty: deny everything */
	ok(policy_add_allow(p, "", err), "empty allowNet accepted");
	ok(policy_allow_present(p), "  allowNet present");
	decide(p, "example.com", 443, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "203.0.113.7", 80, false, REASON_NOT_ALLOWED, NULL);
	policy_unref(p);

	/* first matching allow pattern decides; ports */
	p = policy_new();
	ok(policy_add_allow(p, "*.example.com,api.example.com,example.com:443", err),
	   "allow list accepted");
	ok(policy_add_allow(p, "203.0.113.110,[2001:db8::1]:443,10.0.0.0/8:5432", err),
	   "second allow list accepted");
	decide(p, "api.example.com", 443, true, REASON_NONE, "*.example.com");
	decide(p, "API.Example.COM.", 8443, true, REASON_NONE, "*.example.com");
	decide(p, "a.b.example.com", 80, true, REASON_NONE, "*.example.com");
	decide(p, "example.com", 443, true, REASON_NONE, "example.com:443");
	decide(p, "example.com", 80, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "example.org", 443, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "notexample.com", 443, false, REASON_NOT_ALLOWED, NULL);

	/* IP targets against IP patterns, in any numeric form */
	decide(p, "203.0.113.110", 80, true, REASON_NONE, "203.0.113.110");
	decide(p, "3405803886", 22, true, REASON_NONE, "203.0.113.110");
	decide(p, "[::ffff:203.0.113.110]", 443, true, REASON_NONE, "203.0.113.110");
	decide(p, "203.0.113.111", 80, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "[2001:db8::1]", 443, true, REASON_NONE, "[2001:db8::1]:443");
	decide(p, "2001:db8:0::1", 443, true, REASON_NONE, "[2001:db8::1]:443");
	decide(p, "[2001:db8::1]", 80, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "10.20.30.40", 5432, true, REASON_NONE, "10.0.0.0/8:5432");
	decide(p, "10.20.30.40", 5433, false, REASON_NOT_ALLOWED, NULL);
	decide(p, "11.0.0.1", 5432, false, REASON_NOT_ALLOWED, NULL);

	/* deny wins over any allow, however specific */
	ok(policy_add_allow(p, "internal.example.net:443", err), "specific allow added");
	ok(policy_add_deny(p, "*.example.net,secret.example.com,203.0.113.0/24", err),
	   "deny list accepted");
	decide(p, "internal.example.net", 443, false, REASON_DENIED, "*.example.net");
	decide(p, "secret.example.com", 443, false, REASON_DENIED, "secret.example.com");
	decide(p, "other.example.com", 443, true, REASON_NONE, "*.example.com");
	decide(p, "203.0.113.110", 80, false, REASON_DENIED, "203.0.113.0/24");
	ok(!policy_add_deny(p, "https://example.com", err), "URL as deny pattern refused");
	policy_unref(p);

	/* deny applies with allowNet absent too */
	p = policy_new();
	ok(policy_add_deny(p, "evil.example.com:443", err), "deny only");
	decide(p, "evil.example.com", 443, false, REASON_DENIED, "evil.example.com:443");
	decide(p, "evil.example.com", 80, true, REASON_NONE, NULL);
	policy_unref(p);
}

static void test_guard(void)
{
	char err[PATTERN_ERRLEN];
	struct policy *p = policy_new();

	/* unrestricted names still do not reach special-purpose addresses */
	guard(p, "127.0.0.1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "10.1.2.3", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "192.168.1.1", 80, REASON_PRIVATE_ADDRESS);
	guard(p, "169.254.169.254", 80, REASON_PRIVATE_ADDRESS);
	guard(p, "100.64.0.1", 80, REASON_PRIVATE_ADDRESS);
	guard(p, "::1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "fd00::1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "::ffff:10.0.0.1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "::ffff:127.0.0.1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "93.184.216.34", 443, REASON_NONE);
	guard(p, "203.0.113.5", 443, REASON_NONE);
	guard(p, "2001:db8::5", 443, REASON_NONE);
	guard(p, "::ffff:93.184.216.34", 443, REASON_NONE);

	/* a name pattern never opens a private address */
	ok(policy_add_allow(p, "example.com,localhost", err), "name patterns added");
	guard(p, "127.0.0.1", 443, REASON_PRIVATE_ADDRESS);

	/* an IP/CIDR allow pattern does, port-aware */
	ok(policy_add_allow(p, "10.0.0.0/8,127.0.0.1:8080,[fd00::5]", err), "IP patterns added");
	guard(p, "10.1.2.3", 443, REASON_NONE);
	guard(p, "::ffff:10.9.9.9", 1, REASON_NONE);
	guard(p, "127.0.0.1", 8080, REASON_NONE);
	guard(p, "127.0.0.1", 8081, REASON_PRIVATE_ADDRESS);
	guard(p, "fd00::5", 443, REASON_NONE);
	guard(p, "fd00::6", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "192.168.1.1", 80, REASON_PRIVATE_ADDRESS);

	/* --allow-private ranges */
	ok(policy_add_allow_private(p, "192.168.0.0/16", err), "allow-private 192.168.0.0/16");
	ok(policy_add_allow_private(p, "[fe80::]/10", err), "allow-private [fe80::]/10");
	ok(policy_add_allow_private(p, "[fc00::/7]", err), "allow-private [fc00::/7]");
	ok(policy_add_allow_private(p, "169.254.169.254", err), "allow-private single address");
	ok(policy_add_allow_private(p, "::ffff:100.64.0.0/106", err),
	   "allow-private mapped IPv4 range");
	ok(policy_add_allow_private(p, "::1", err), "allow-private ::1 unbracketed");
	guard(p, "192.168.200.1", 80, REASON_NONE);
	guard(p, "::ffff:192.168.0.1", 80, REASON_NONE);
	guard(p, "fe80::1", 80, REASON_NONE);
	guard(p, "fd12:3456::1", 80, REASON_NONE);
	guard(p, "169.254.169.254", 80, REASON_NONE);
	guard(p, "169.254.169.253", 80, REASON_PRIVATE_ADDRESS);
	guard(p, "100.64.0.1", 80, REASON_NONE);
	guard(p, "100.128.0.1", 80, REASON_NONE); /* just past 100.64.0.0/10 */
	guard(p, "127.0.0.2", 80, REASON_PRIVATE_ADDRESS);
	guard(p, "::1", 80, REASON_NONE);
	guard(p, "172.16.0.1", 80, REASON_PRIVATE_ADDRESS);

	/* a deny CIDR refuses a resolved address, private or not, allowed or not */
	ok(policy_add_deny(p, "93.184.0.0/16,192.168.66.0/24,10.6.6.6,[2001:db8:bad::/48]", err),
	   "deny CIDRs added");
	guard(p, "93.184.216.34", 443, REASON_DENIED);
	guard(p, "::ffff:93.184.216.34", 443, REASON_DENIED);
	guard(p, "192.168.66.1", 443, REASON_DENIED);
	guard(p, "10.6.6.6", 443, REASON_DENIED);
	guard(p, "10.6.6.7", 443, REASON_NONE);
	guard(p, "2001:db8:bad::1", 443, REASON_DENIED);
	guard(p, "2001:db8:600d::1", 443, REASON_NONE);
	policy_unref(p);

	/* --allow-private syntax */
	p = policy_new();
	static const char *const bad[] = {
		"", "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1",
		"[10.0.0.0]/8", "[10.0.0.1]", "fd00::/129", "fd00::1/64", "[fd00::]/", "[fd00::",
		"[fd00::]x", "[fd00::/8]/8", "abc", "example.com", "::ffff:10.0.0.0/95",
		"fe80::1%eth0", "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0.0/8/8",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ok(!policy_add_allow_private(p, bad[i], err) && err[0],
		   "allow-private \"%s\" refused: %s", bad[i], err);
	}
	guard(p, "10.0.0.1", 80, REASON_PRIVATE_ADDRESS);
	ok(policy_add_allow_private(p, "0.0.0.0/0", err), "allow-private 0.0.0.0/0");
	guard(p, "10.0.0.1", 80, REASON_NONE);
	guard(p, "fd00::1", 80, REASON_PRIVATE_ADDRESS);
	policy_unref(p);
}

static void pin_is(const struct policy *p, const char *host, uint16_t port, const char *want)
{
	struct ipaddr got, w;
	bool found;

	memset(&got, 0, sizeof(got));
	found = policy_pin_lookup(p, host, port, &got);
	if (!want) {
		ok(!found, "no pin for %s:%u", host, (unsigned)port);
		return;
	}
	w = ip(want);
	ok(found && addr_equal(&got, &w), "pin %s:%u -> %s", host, (unsigned)port, want);
}

static void test_pins(void)
{
	char err[PATTERN_ERRLEN];
	struct policy *p = policy_new();

	pin_is(p, "example.com", 443, NULL);
	ok(policy_add_pin(p, "Example.COM.:443:127.0.0.1", err), "pin with IPv4");
	ok(policy_add_pin(p, "v6.example.com:443:[2001:db8::2]", err), "pin with bracketed IPv6");
	ok(policy_add_pin(p, "v6b.example.com:8443:2001:db8::3", err), "pin with bare IPv6");
	ok(policy_add_pin(p, "example.com:80:203.0.113.9", err), "same host, other port");
	ok(policy_add_pin(p, "mapped.example.com:1:[::ffff:10.0.0.1]", err), "pin mapped IPv6");
	pin_is(p, "example.com", 443, "127.0.0.1");
	pin_is(p, "EXAMPLE.com.", 443, "127.0.0.1");
	pin_is(p, "example.com", 80, "203.0.113.9");
	pin_is(p, "example.com", 8080, NULL);
	pin_is(p, "www.example.com", 443, NULL);
	pin_is(p, "v6.example.com", 443, "2001:db8::2");
	pin_is(p, "v6b.example.com", 8443, "2001:db8::3");
	pin_is(p, "mapped.example.com", 1, "10.0.0.1");
	pin_is(p, "bad..name", 443, NULL);

	static const char *const bad[] = {
		"", "example.com", "example.com:443", "example.com:443:", "example.com::1.2.3.4",
		"example.com:0:1.2.3.4", "example.com:65536:1.2.3.4", "example.com:+443:1.2.3.4",
		"example.com:0443x:1.2.3.4", ":443:1.2.3.4", "bad..host:443:1.2.3.4",
		"example.com:443:1.2.3.4,5.6.7.8", "example.com:443:not-an-ip",
		"example.com:443:1.2.3.4 ", "example.com:443:[::1", "example.com:443:fe80::1%eth0",
		"https://example.com:443:1.2.3.4", "example.com:443:127.0.0.2",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ok(!policy_add_pin(p, bad[i], err) && err[0], "pin \"%s\" refused: %s", bad[i],
		   err);
	}
	pin_is(p, "example.com", 443, "127.0.0.1");
	policy_unref(p);
}

static void test_secrets_and_intercept(void)
{
	char err[PATTERN_ERRLEN];
	struct policy *p = policy_new();
	struct target t;
	struct patlist *l;

	t = tgt("api.example.com", 443);
	ok(!policy_intercepts(p, &t), "nothing intercepted by default");
	ok(policy_secret_count(p) == 0, "no secrets by default");

	ok(policy_add_secret(p, "OPENAI_API_KEY", "api.example.com", SECRET_VALUE,
			     "sk-not-real", err), "literal secret added");
	ok(policy_add_secret(p, "_gh9", "api.github.com,*.github.com:443", SECRET_FROM_ENV,
			     "GH_TOKEN", err), "env secret added");
	ok(policy_add_secret(p, "DB", "db.example.com:5432", SECRET_FROM_FILE, "/run/db", err),
	   "file secret added");
	ok(policy_secret_count(p) == 3, "three secrets");
	is_str(policy_secret_name(p, 0), "OPENAI_API_KEY", "name 0");
	is_str(policy_secret_name(p, 1), "_gh9", "name 1");
	ok(policy_secret_source(p, 0) == SECRET_VALUE, "source 0 literal");
	ok(policy_secret_source(p, 1) == SECRET_FROM_ENV, "source 1 env");
	ok(policy_secret_source(p, 2) == SECRET_FROM_FILE, "source 2 file");
	is_str(policy_secret_source_arg(p, 0), "sk-not-real", "arg 0");
	is_str(policy_secret_source_arg(p, 1), "GH_TOKEN", "arg 1");
	is_str(policy_secret_source_arg(p, 2), "/run/db", "arg 2");
	ok(patlist_len(policy_secret_hosts(p, 1)) == 2, "secret 1 has two hosts");
	ok(policy_secret_name(p, 3) == NULL, "out-of-range name is NULL");

	t = tgt("api.example.com", 443);
	ok(policy_intercepts(p, &t), "secret host intercepted");
	t = tgt("API.EXAMPLE.COM.", 8443);
	ok(policy_intercepts(p, &t), "secret host (any port) intercepted");
	t = tgt("www.example.com", 443);
	ok(!policy_intercepts(p, &t), "other host not intercepted");
	t = tgt("x.github.com", 443);
	ok(policy_intercepts(p, &t), "wildcard secret host intercepted");
	t = tgt("x.github.com", 80);
	ok(!policy_intercepts(p, &t), "wildcard secret host, other port, not intercepted");
	t = tgt("db.example.com", 5433);
	ok(!policy_intercepts(p, &t), "port-bound secret host on another port not intercepted");
	ok(policy_add_intercept(p, "*.example.org,203.0.113.0/24:443", err), "intercept list");
	t = tgt("a.example.org", 443);
	ok(policy_intercepts(p, &t), "--intercept host intercepted");
	t = tgt("203.0.113.50", 443);
	ok(policy_intercepts(p, &t), "--intercept CIDR intercepted");
	t = tgt("example.org", 443);
	ok(!policy_intercepts(p, &t), "apex not intercepted by *.example.org");
	ok(!policy_add_intercept(p, "*", err), "intercept \"*\" refused");

	/* validation */
	static const char *const bad_names[] = {
		"", "1ABC", "A-B", "A B", "A=B", "\xc3\x89T\xc3\x89", "A.B", "$X",
	};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		err[0] = '\0';
		ok(!policy_add_secret(p, bad_names[i], "a.example.com", SECRET_VALUE, "v", err) &&
		   err[0], "secret name \"%s\" refused: %s", bad_names[i], err);
	}
	char longname[300];
	memset(longname, 'A', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ok(!policy_add_secret(p, longname, "a.example.com", SECRET_VALUE, "v", err),
	   "300-character secret name refused");
	ok(!policy_add_secret(p, "DB", "a.example.com", SECRET_VALUE, "v", err),
	   "duplicate secret name refused: %s", err);
	ok(!policy_add_secret(p, "NOHOSTS", "", SECRET_VALUE, "v", err),
	   "secret without hosts refused: %s", err);
	ok(!policy_add_secret(p, "NOHOSTS", NULL, SECRET_VALUE, "v", err),
	   "secret with NULL hosts refused");
	ok(!policy_add_secret(p, "BADHOST", "a..example.com", SECRET_VALUE, "v", err),
	   "secret with a bad host pattern refused: %s", err);
	ok(!policy_add_secret(p, "EMPTY", "a.example.com", SECRET_VALUE, "", err),
	   "empty literal value refused: %s", err);
	ok(!policy_add_secret(p, "EMPTY", "a.example.com", SECRET_FROM_ENV, "", err),
	   "empty env name refused");
	ok(!policy_add_secret(p, "EMPTY", "a.example.com", SECRET_FROM_FILE, NULL, err),
	   "NULL file path refused");
	ok(policy_secret_count(p) == 3, "still three secrets after the refusals");

	/* the list form takes ownership even on error (ASan checks the leak) */
	l = patlist_new();
	ok(patlist_add_csv(l, "x.example.com", err), "host list built");
	ok(!policy_add_secret_list(p, "9BAD", l, SECRET_VALUE, "v", err),
	   "list form: bad name refused");
	l = patlist_new();
	ok(!policy_add_secret_list(p, "EMPTYLIST", l, SECRET_VALUE, "v", err),
	   "list form: empty list refused");
	l = patlist_new();
	ok(patlist_add_csv(l, "y.example.com", err), "host list built");
	ok(policy_add_secret_list(p, "LISTED", l, SECRET_FROM_ENV, "LISTED_VALUE", err),
	   "list form accepted");
	t = tgt("y.example.com", 443);
	ok(policy_intercepts(p, &t), "list-form secret host intercepted");
	policy_unref(p);
}

static void *refloop(void *arg)
{
	struct policy *p = arg;

	for (int i = 0; i < 20000; i++) {
		policy_ref(p);
		policy_unref(p);
	}
	return NULL;
}

static void test_refcount(void)
{
	char err[PATTERN_ERRLEN];
	struct policy *p = policy_new();
	pthread_t th[4];
	int started = 0;

	policy_unref(NULL);
	ok(1, "policy_unref(NULL) is a no-op");
	ok(policy_add_secret(p, "K", "k.example.com", SECRET_VALUE, "wipe-me", err), "secret");
	policy_ref(p);
	policy_unref(p);
	is_str(policy_secret_name(p, 0), "K", "policy alive after ref+unref");
	for (int i = 0; i < 4; i++)
		if (pthread_create(&th[i], NULL, refloop, p) == 0)
			started++;
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	ok(started == 4, "four threads ref/unref concurrently");
	is_str(policy_secret_name(p, 0), "K", "policy alive after concurrent ref/unref");
	policy_unref(p); /* freed here; ASan reports a leak or double free */
}

/* --learn: allowNet's refusals become allows with POLICY_LEARN_RULE;
 * denyNet, the address guard and refuse_all stay as they are. */
static void test_learn(void)
{
	struct policy *p = policy_new();
	char err[PATTERN_ERRLEN];

	ok(policy_add_allow(p, "api.test", err) && policy_add_deny(p, "bad.test,*.deny.test:8443", err),
	   "patterns");
	ok(!policy_learning(p), "not learning by default");
	decide(p, "new.test", 443, false, REASON_NOT_ALLOWED, NULL);
	ok(!policy_could_allow_name(p, "new.test"), "DNS: new.test not answered");
	policy_set_learn(p, true);
	ok(policy_learning(p), "learning");
	decide(p, "api.test", 443, true, REASON_NONE, "api.test");
	decide(p, "new.test", 443, true, REASON_NONE, POLICY_LEARN_RULE);
	decide(p, "203.0.113.9", 22, true, REASON_NONE, POLICY_LEARN_RULE);
	decide(p, "bad.test", 443, false, REASON_DENIED, "bad.test");
	decide(p, "x.deny.test", 8443, false, REASON_DENIED, "*.deny.test:8443");
	guard(p, "10.0.0.1", 443, REASON_PRIVATE_ADDRESS);
	guard(p, "127.0.0.1", 80, REASON_PRIVATE_ADDRESS);
	ok(policy_could_allow_name(p, "new.test"), "DNS: new.test answered while learning");
	ok(policy_could_allow_name(p, "x.deny.test"), "DNS: a name denied on one port only");
	ok(!policy_could_allow_name(p, "bad.test"), "DNS: a name denied on every port is not");
	policy_set_refuse_all(p, REASON_UNKNOWN_SOURCE);
	decide(p, "new.test", 443, false, REASON_UNKNOWN_SOURCE, NULL);
	policy_unref(p);
}

int main(void)
{
	test_decisions();
	test_learn();
	test_guard();
	test_pins();
	test_secrets_and_intercept();
	test_refcount();
	return done_testing();
}
