/* pattern_test.c -- unit tests for allowNet patterns, targets, pattern lists
 * and the IP address helpers (policy/pattern.c, policy/addr.c) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "pattern.h"
#include "tap.h"

/* ---- helpers ---- */

static struct ipaddr ip(const char *s)
{
	struct ipaddr a;
	size_t n = strlen(s);

	memset(&a, 0, sizeof(a));
	if (!(strchr(s, ':') ? addr_parse_ipv6(s, n, &a) : addr_parse_ipv4(s, n, &a)))
		printf("# test bug: cannot parse %s\n", s);
	return a;
}

/* Does pattern pat match host:port (host normalised by target_from_host)? */
static void match(const char *pat, const char *host, uint16_t port, bool want)
{
	char err[PATTERN_ERRLEN];
	struct pattern *p = pattern_parse(pat, strlen(pat), err);
	struct target t;

	if (!p) {
		ok(0, "pattern %s parses: %s", pat, err);
		return;
	}
	if (!target_from_host(host, strlen(host), port, &t, err))
		ok(0, "target %s is valid: %s", host, err);
	else
		ok(pattern_match_target(p, &t) == want, "%s %s %s:%u", pat,
		   want ? "matches" : "does not match", host, port);
	pattern_free(p);
}

/* pat must be refused with a message naming it and containing needle. */
static void bad(const char *pat, size_t n, const char *needle)
{
	char err[PATTERN_ERRLEN] = "";
	struct pattern *p = pattern_parse(pat, n, err);

	if (!ok(!p && strncmp(err, "invalid pattern \"", 17) == 0 && strstr(err, needle) &&
			!strchr(err, '\n'),
		"refused: %.*s (%s)", (int)(n > 80 ? 80 : n), pat, needle))
		printf("#   err: %s\n", err);
	pattern_free(p);
}

static void bad_s(const char *pat, const char *needle)
{
	char want[PATTERN_ERRLEN];
	char err[PATTERN_ERRLEN] = "";
	struct pattern *p = pattern_parse(pat, strlen(pat), err);

	snprintf(want, sizeof(want), "invalid pattern \"%s\": ", pat);
	if (!ok(!p && strncmp(err, want, strlen(want)) == 0 && strstr(err, needle),
		"refused: \"%s\" (%s)", pat, needle))
		printf("#   err: %s\n", err);
	pattern_free(p);
}

static void good(const char *pat)
{
	char err[PATTERN_ERRLEN];
	struct pattern *p = pattern_parse(pat, strlen(pat), err);

	if (!ok(p != NULL, "accepted: \"%s\"", pat))
		printf("#   err: %s\n", err);
	pattern_free(p);
}

/* ---- the spec's table and matching semantics ---- */

static void test_table(void)
{
	match("example.com", "example.com", 443, true);
	match("example.com", "example.com", 80, true);
	match("example.com", "www.example.com", 443, false);
	match("example.com", "example.org", 443, false);
	match("example.com", "xexample.com", 443, false);
	match("example.com", "example.com.evil.net", 443, false);
	match("example.com:443", "example.com", 443, true);
	match("example.com:443", "example.com", 80, false);
	match("example.com:443", "www.example.com", 443, false);
	match("*.example.com", "a.example.com", 443, true);
	match("*.example.com", "a.b.c.example.com", 80, true);
	match("*.example.com", "example.com", 443, false);
	match("*.example.com", "xexample.com", 443, false);
	match("*.example.com", "a.xexample.com", 443, false);
	match("*.example.com", "example.com.evil.net", 443, false);
	match("*.example.com", "a.example.com.evil.net", 443, false);
	match("*.example.com:443", "api.example.com", 443, true);
	match("*.example.com:443", "api.example.com", 8443, false);
	match("*.example.com:443", "example.com", 443, false);
	match("*.com", "example.com", 443, true);
	match("*.com", "a.b.com", 443, true);
	match("*.com", "com", 443, false);
	match("203.0.113.110", "203.0.113.110", 1, true);
	match("203.0.113.110", "203.0.113.110", 65535, true);
	match("203.0.113.110", "203.0.113.111", 443, false);
	match("203.0.113.110:80", "203.0.113.110", 80, true);
	match("203.0.113.110:80", "203.0.113.110", 443, false);
	match("[2001:db8::1]", "2001:db8::1", 443, true);
	match("[2001:db8::1]", "[2001:db8::1]", 22, true);
	match("[2001:db8::1]", "2001:db8::2", 443, false);
	match("[2001:db8::1]:443", "[2001:db8::1]", 443, true);
	match("[2001:db8::1]:443", "[2001:db8::1]", 80, false);
	match("10.0.0.0/8", "10.0.0.1", 443, true);
	match("10.0.0.0/8", "10.255.255.255", 443, true);
	match("10.0.0.0/8", "11.0.0.0", 443, false);
	match("10.0.0.0/8", "9.255.255.255", 443, false);
	match("[2001:db8::/32]", "2001:db8:ffff::1", 443, true);
	match("[2001:db8::/32]", "2001:db9::1", 443, false);
	match("[2001:db8::/32]", "10.0.0.1", 443, false);
	match("10.0.0.0/8:5432", "10.1.2.3", 5432, true);
	match("10.0.0.0/8:5432", "10.1.2.3", 5433, false);
	match("0.0.0.0/0", "8.8.8.8", 443, true);
	match("0.0.0.0/0", "2001:db8::1", 443, false);
	match("[::/0]", "2001:db8::1", 443, true);
	match("192.168.1.0/24", "192.168.1.77", 443, true);
	match("192.168.1.0/24", "192.168.2.1", 443, false);
	match("172.16.0.0/12", "172.31.255.1", 443, true);
	match("172.16.0.0/12", "172.32.0.1", 443, false);
}

static void test_case_and_dot(void)
{
	match("example.com", "EXAMPLE.COM", 443, true);
	match("Example.COM", "example.com", 443, true);
	match("example.com", "example.com.", 443, true);
	match("example.com.", "example.com", 443, true);
	match("EXAMPLE.com.:443", "Example.Com.", 443, true);
	match("*.Example.Com", "API.example.COM.", 443, true);
	match("*.example.com.", "a.example.com", 443, true);
	match("_srv._tcp.example.com", "_SRV._tcp.example.com", 443, true);
	match("[2001:DB8::A]", "2001:db8::a", 443, true);
	bad_s("example.com..", "empty label");
}

static void test_names_vs_ips(void)
{
	match("127.0.0.1", "localhost", 80, false);
	match("localhost", "127.0.0.1", 80, false);
	match("*.in-addr.arpa", "127.0.0.1", 80, false);
	match("2130706433", "127.0.0.1", 80, true);
	match("0x7f.1", "127.0.0.1", 80, true);
	match("127.1", "127.0.0.1", 80, true);
	match("0177.0.0.1", "127.0.0.1", 80, true);
	match("0x7f000001", "127.0.0.1", 80, true);
	match("127.0.1", "127.0.0.1", 80, true);
	match("127.0.0.1", "2130706433", 80, true);
	match("127.0.0.1", "0x7f.1", 80, true);
	match("127.0.0.1", "127.1", 80, true);
	match("127.0.0.1", "0177.0.0.1", 80, true);
	match("127.0.0.1", "127.0.0.1.", 80, true);
	match("127.0.0.0/8", "0x7f.0.0.2", 80, true);
	match("1.2.3.04", "1.2.3.4", 80, true);
	match("4294967295", "255.255.255.255", 80, true);
	match("[::ffff:10.0.0.1]", "10.0.0.1", 80, true);
	match("10.0.0.1", "[::ffff:10.0.0.1]", 80, true);
	match("10.0.0.1", "::ffff:10.0.0.1", 80, true);
	match("10.0.0.1", "[::ffff:a00:1]", 80, true);
	match("[::ffff:10.0.0.0/104]", "10.9.9.9", 80, true);
	match("[::ffff:10.0.0.0/104]", "11.0.0.1", 80, false);
	match("10.0.0.0/8", "[::ffff:10.2.3.4]", 80, true);
	match("[::ffff:0:0/96]", "8.8.8.8", 80, true);
	match("[2001:0db8:0000:0000:0000:0000:0000:0001]", "2001:db8::1", 443, true);
	match("[2001:db8::1]", "2001:db8:0:0:0:0:0:1", 443, true);
	match("[::1]", "0:0:0:0:0:0:0:1", 443, true);
	match("[::1]", "127.0.0.1", 443, false);
	match("[2001:db8:0:0:1::]", "2001:db8::1:0:0:0", 443, true);
}

static void test_bad_patterns(void)
{
	char err[PATTERN_ERRLEN];
	char longlabel[80], longname[300];

	ok(!pattern_parse("::1", 3, err), "bare ::1 refused");
	is_str(err, "invalid pattern \"::1\": IPv6 addresses must be bracketed, as \"[::1]\"",
	       "bare ::1 message suggests [::1]");
	bad_s("2001:db8::1", "as \"[2001:db8::1]\"");
	bad_s("2001:db8::/32", "as \"[2001:db8::/32]\"");
	bad_s("[fe80::1%eth0]", "zone");
	bad_s("fe80::1%eth0", "zone");
	bad_s("[fe80::1%25eth0]:443", "zone");
	bad("", 0, "empty");
	bad_s("a..b", "empty label");
	bad_s(".a", "empty label");
	bad_s(".", "empty host");
	bad_s("*", "\"*\" alone");
	bad_s("*.", "\"*\" alone");
	bad_s("*:443", "\"*\" alone");
	bad_s("a.*.com", "'*'");
	bad_s("*a.com", "'*'");
	bad_s("**.com", "'*'");
	bad_s("*.*.com", "'*'");
	bad_s("a*", "'*'");
	bad_s("*..com", "empty label");
	bad_s("example.com:0", "1 to 65535");
	bad_s("example.com:65536", "1 to 65535");
	bad_s("example.com:99999", "1 to 65535");
	bad_s("example.com:abc", "digits");
	bad_s("example.com:-1", "digits");
	bad_s("example.com:+80", "digits");
	bad_s("example.com:123456", "5 digits");
	bad_s("example.com:", "empty port");
	bad_s("[::1]:", "empty port");
	bad_s("[::1]:0", "1 to 65535");
	bad_s("example.com:443:1", "unexpected ':'");
	bad_s("https://x", "URL");
	bad_s("http://example.com:80/", "URL");
	bad_s("example.com/", "paths");
	bad_s("example.com/foo", "paths");
	bad_s("user@example.com", "userinfo");
	bad_s("u:p@example.com", "userinfo");
	memset(longlabel, 'a', 64);
	memcpy(longlabel + 64, ".com", 5);
	bad(longlabel, strlen(longlabel), "63");
	longlabel[1] = '.';
	good(longlabel + 2); /* 62 + ".com" */
	for (int i = 0; i < 254; i++)
		longname[i] = i % 2 ? '.' : 'a';
	longname[253] = 'b';
	longname[254] = '\0';
	bad(longname, 254, "253");
	longname[253] = '\0';
	good(longname); /* exactly 253 */
	longname[253] = '.';
	good(longname); /* 253 + trailing dot */
	bad("\xc3\xa9xample.com", 12, "punycode");
	ok(!pattern_parse("\xc3\xa9xample.com", 12, err) && strstr(err, "\"\\xc3\\xa9xample.com\""),
	   "Unicode bytes escaped in message: %s", err);
	bad("ex\x80mple.com", 11, "punycode");
	bad("exa\0mple.com", 12, "control");
	bad_s("exa mple.com", "whitespace");
	bad_s(" example.com", "whitespace");
	bad_s("example.com ", "whitespace");
	bad("example.com\t", 12, "whitespace");
	bad_s("exam!ple.com", "invalid character '!'");
	bad_s("a,b.com", "invalid character ','");
	bad_s("exa%mple.com", "invalid character '%'");
	bad_s("256.1.1.1", "IPv4");
	bad_s("1.2.3.4.5", "IPv4");
	bad_s("1.2.3.256", "IPv4");
	bad_s("08.1.1.1", "IPv4");
	bad_s("0x100.1", "IPv4");
	bad_s("4294967296", "IPv4");
	bad_s("example.123", "IPv4");
	bad_s("10.0.0.1/8", "host bits");
	bad_s("10.0.0.0/6", "host bits");
	good("10.0.0.0/7");
	bad_s("[2001:db8::1/32]", "host bits");
	bad_s("[::ffff:10.0.0.0/80]", "host bits");
	bad_s("10.0.0.0/33", "over 32");
	bad_s("[2001:db8::/129]", "over 128");
	bad_s("10.0.0.0/", "prefix");
	bad_s("10.0.0.0/08", "prefix");
	bad_s("10.0.0.0/8x", "prefix");
	bad_s("10.0.0.0/-8", "prefix");
	bad_s("256.0.0.0/8", "IPv4 address before '/'");
	bad_s("[1.2.3.4]", "not a valid IPv6");
	bad_s("[example.com]", "not a valid IPv6");
	bad_s("[]", "empty host");
	bad_s("[::1", "missing ']'");
	bad_s("[::1]x", "only \":port\"");
	bad_s("[::1]/64", "only \":port\"");
	bad_s("::1]", "unexpected ']'");
	bad_s("a[b", "'['");
	bad_s(":443", "empty host");
	bad_s("*.1.2.3.4", "wildcard needs a name");
	bad_s("*.0x7f", "wildcard needs a name");
	bad_s("*.123", "wildcard needs a name");
	bad_s("*.example.com/8", "paths");
}

static void test_good_patterns(void)
{
	char err[PATTERN_ERRLEN];
	struct pattern *p;

	good("*.com");
	good("*.example.com:443");
	good("localhost");
	good("xn--exmple-cua.com");
	good("a-b_c.example");
	good("example.com:00443");
	good("0x");           /* not an inet_aton() number: a name */
	good("example.0x1f"); /* last label not all digits */
	good("[::]");
	good("[::1]:65535");
	good("0.0.0.0/0");
	p = pattern_parse("*.Example.com:443", 17, err);
	ok(p && strcmp(pattern_text(p), "*.Example.com:443") == 0 && !pattern_is_ip(p),
	   "pattern_text is as written, name pattern not ip");
	pattern_free(p);
	p = pattern_parse("10.0.0.0/8:5432xyz", 15, err);
	ok(p && strcmp(pattern_text(p), "10.0.0.0/8:5432") == 0 && pattern_is_ip(p),
	   "n bytes only; CIDR is an ip pattern");
	pattern_free(p);
	pattern_free(NULL);
	ok(1, "pattern_free(NULL) is a no-op");
}

static void test_match_addr(void)
{
	char err[PATTERN_ERRLEN];
	struct pattern *p = pattern_parse("10.0.0.0/8:5432", 15, err);
	struct pattern *n = pattern_parse("example.com", 11, err);
	struct ipaddr a = ip("10.1.2.3"), b = ip("::ffff:10.1.2.3"), c = ip("2001:db8::1");

	ok(p && pattern_match_addr(p, &a, 5432), "match_addr CIDR with port");
	ok(p && !pattern_match_addr(p, &a, 5433), "match_addr wrong port");
	ok(p && pattern_match_addr(p, &b, 5432), "match_addr mapped address");
	ok(p && !pattern_match_addr(p, &c, 5432), "match_addr other family");
	ok(n && !pattern_match_addr(n, &a, 5432), "name pattern never matches an address");
	pattern_free(p);
	pattern_free(n);
}

/* ---- targets ---- */

static void host_is(const char *in, uint16_t port, bool is_ip, const char *want)
{
	char err[PATTERN_ERRLEN];
	struct target t;

	if (!ok(target_from_host(in, strlen(in), port, &t, err) && t.is_ip == is_ip &&
			strcmp(t.host, want) == 0 && t.port == port,
		"target_from_host(\"%s\") -> %s%s", in, want, is_ip ? " (ip)" : ""))
		printf("#   got %s, err %s\n", t.host, err);
}

static void host_bad(const char *in, uint16_t port, const char *needle)
{
	char err[PATTERN_ERRLEN] = "";
	struct target t;

	memset(&t, 0x5a, sizeof(t));
	if (!ok(!target_from_host(in, strlen(in), port, &t, err) &&
			strncmp(err, "invalid host \"", 14) == 0 && strstr(err, needle) &&
			t.port == 0x5a5a,
		"target_from_host refuses \"%s\" (%s)", in, needle))
		printf("#   err: %s\n", err);
}

static void test_target_from_host(void)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	host_is("Example.COM.", 443, false, "example.com");
	host_is("2130706433", 80, true, "127.0.0.1");
	host_is("0x7f.1", 80, true, "127.0.0.1");
	host_is("[2001:DB8:0:0:0:0:0:1]", 443, true, "2001:db8::1");
	host_is("2001:db8::1", 443, true, "2001:db8::1");
	host_is("::ffff:10.0.0.1", 443, true, "10.0.0.1");
	host_is("_dmarc.example.com", 443, false, "_dmarc.example.com");
	ok(target_from_host("::ffff:10.0.0.1", 15, 1, &t, err) && t.ip.family == 4,
	   "mapped target is family 4");
	host_bad("*.example.com", 443, "'*'");
	host_bad("a..b", 443, "empty label");
	host_bad("256.1.1.1", 443, "IPv4");
	host_bad("example.com", 0, "port 0");
	host_bad("", 443, "empty host");
	host_bad("fe80::1%eth0", 443, "zone");
	host_bad("[fe80::1%eth0]", 443, "zone");
	host_bad("example.com/x", 443, "paths");
	host_bad("10.0.0.0/8", 443, "paths");
	host_bad("\xe4\xbe\x8b.com", 443, "punycode");
	host_bad("example.com:443", 443, "IPv6");
}

static void auth_is(const char *in, uint16_t dflt, bool is_ip, const char *host, uint16_t port)
{
	char err[PATTERN_ERRLEN] = "";
	struct target t;

	memset(&t, 0, sizeof(t));
	if (!ok(target_parse_authority(in, strlen(in), dflt, &t, err) && t.is_ip == is_ip &&
			strcmp(t.host, host) == 0 && t.port == port,
		"authority \"%s\" (default %u) -> %s port %u", in, dflt, host, port))
		printf("#   got %s:%u, err %s\n", t.host, t.port, err);
}

static void auth_bad(const char *in, uint16_t dflt, const char *needle)
{
	char err[PATTERN_ERRLEN] = "";
	struct target t;

	memset(&t, 0x5a, sizeof(t));
	if (!ok(!target_parse_authority(in, strlen(in), dflt, &t, err) &&
			strncmp(err, "invalid authority \"", 19) == 0 && strstr(err, needle) &&
			t.port == 0x5a5a,
		"authority \"%s\" refused (%s)", in, needle))
		printf("#   err: %s\n", err);
}

static void test_authority(void)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	auth_is("example.com:443", 0, false, "example.com", 443);
	auth_is("EXAMPLE.com.:8443", 0, false, "example.com", 8443);
	auth_is("[::1]:8080", 0, true, "::1", 8080);
	auth_is("[2001:DB8::0:1]:443", 0, true, "2001:db8::1", 443);
	auth_is("[::ffff:127.0.0.1]:80", 0, true, "127.0.0.1", 80);
	auth_is("127.1:80", 0, true, "127.0.0.1", 80);
	auth_is("2130706433:80", 0, true, "127.0.0.1", 80);
	auth_is("example.com", 443, false, "example.com", 443);
	auth_is("example.com", 80, false, "example.com", 80);
	auth_is("[::1]", 80, true, "::1", 80);
	auth_is("example.com:65535", 0, false, "example.com", 65535);
	auth_is("example.com:1", 0, false, "example.com", 1);
	ok(target_parse_authority("example.com:443 junk", 15, 0, &t, err) && t.port == 443,
	   "authority reads only n bytes");
	auth_bad("example.com", 0, "port is required");
	auth_bad("[::1]", 0, "port is required");
	auth_bad("example.com:0", 0, "1 to 65535");
	auth_bad("example.com:65536", 0, "1 to 65535");
	auth_bad("example.com:44a", 0, "digits");
	auth_bad("example.com:", 443, "empty port");
	auth_bad("example.com:123456", 0, "5 digits");
	auth_bad("user@example.com:443", 0, "userinfo");
	auth_bad("user:pw@example.com:443", 0, "userinfo");
	auth_bad(":443", 0, "empty host");
	auth_bad("", 443, "empty host");
	auth_bad("[]:443", 0, "empty host");
	auth_bad("::1:443", 0, "bracketed");
	auth_bad("example.com:443/path", 0, "paths");
	auth_bad("example.com?x", 443, "paths");
	auth_bad("example.com#x", 443, "paths");
	auth_bad("http://example.com", 0, "URL");
	auth_bad("[fe80::1%25eth0]:443", 0, "zone");
	auth_bad("*.example.com:443", 0, "'*'");
	auth_bad("10.0.0.0/8:443", 0, "paths");
	auth_bad("a..b:443", 0, "empty label");
	auth_bad("example.com :443", 0, "whitespace");
	auth_bad("256.1.1.1:443", 0, "IPv4");
	auth_bad("[::1]443", 0, "only \":port\"");
}

/* ---- addresses ---- */

static void special(const char *s, bool want)
{
	struct ipaddr a = ip(s);

	ok(addr_is_special(&a) == want, "%s is %sspecial", s, want ? "" : "not ");
}

static void test_special(void)
{
	static const char *yes[] = {
		"127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
		"172.31.255.255", "192.168.0.1", "192.168.255.255", "100.64.0.1", "100.127.255.255",
		"169.254.169.254", "169.254.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.1",
		"239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.170", "198.18.0.1",
		"198.19.255.255", "::1", "::", "fe80::1", "febf::1", "fec0::1", "fc00::1",
		"fd00::1", "ff02::1", "ff0e::1", "::ffff:127.0.0.1", "::ffff:192.168.1.1",
		"64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::", "2002:a9fe:a9fe::1",
		"::127.0.0.1", "::8.8.8.8", "100::1", "2001::1", "2001:2::1", "64:ff9b:1::1",
	};
	static const char *no[] = {
		"8.8.8.8", "1.1.1.1", "203.0.113.5", "192.0.2.1", "198.51.100.7",
		"172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1", "169.253.255.255",
		"11.0.0.1", "192.169.0.1", "223.255.255.255", "2001:db8::1", "2606:4700::1",
		"2a00:1450:4001::200e", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8",
		"2001:200::1",
	};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		special(yes[i], true);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		special(no[i], false);
}

static void fmt(const char *in, const char *want)
{
	char buf[ADDR_STRLEN];
	struct ipaddr a = ip(in);

	is_str(addr_format(&a, buf), want, "addr_format(%s)", in);
}

static void test_format(void)
{
	char buf[ADDR_STRLEN];
	struct ipaddr a;

	fmt("1.2.3.4", "1.2.3.4");
	fmt("0.0.0.0", "0.0.0.0");
	fmt("255.255.255.255", "255.255.255.255");
	fmt("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1");
	fmt("::", "::");
	fmt("::1", "::1");
	fmt("1::", "1::");
	fmt("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1");
	fmt("2001:0:0:1:0:0:0:1", "2001:0:0:1::1");
	fmt("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1");
	fmt("fe80::1:2", "fe80::1:2");
	fmt("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	fmt("::ffff:1.2.3.4", "1.2.3.4");
	fmt("::1.2.3.4", "::102:304");
	memset(&a, 0, sizeof(a));
	a.family = 6;
	memset(a.b, 0xff, 16);
	ok(strlen(addr_format(&a, buf)) < ADDR_STRLEN, "longest IPv6 fits ADDR_STRLEN");
}

static void test_parse_addr(void)
{
	struct ipaddr a;

	ok(addr_parse_ipv4("1.2.3.4xyz", 7, &a) && a.b[3] == 4, "ipv4: only n bytes read");
	ok(!addr_parse_ipv4("", 0, &a), "ipv4: empty refused");
	ok(!addr_parse_ipv4("1..2", 4, &a), "ipv4: empty part refused");
	ok(!addr_parse_ipv4("1.2.3.4.", 8, &a), "ipv4: trailing dot refused");
	ok(!addr_parse_ipv4(" 1.2.3.4", 8, &a), "ipv4: whitespace refused");
	ok(!addr_parse_ipv4("+1", 2, &a) && !addr_parse_ipv4("-1", 2, &a), "ipv4: signs refused");
	ok(!addr_parse_ipv4("0x", 2, &a), "ipv4: 0x without digits refused");
	ok(!addr_parse_ipv4("09", 2, &a), "ipv4: bad octal refused");
	ok(!addr_parse_ipv4("1.2.65536", 9, &a), "ipv4: last of 3 parts over 16 bits refused");
	ok(addr_parse_ipv4("1.2.65535", 9, &a) && a.b[2] == 255 && a.b[3] == 255,
	   "ipv4: last of 3 parts fills 16 bits");
	ok(addr_parse_ipv4("1.16777215", 10, &a) && a.b[1] == 255, "ipv4: 2 parts, 24 bits");
	ok(addr_parse_ipv4("0XFF.0Xff.0.0377", 16, &a) && a.b[0] == 255 && a.b[3] == 255,
	   "ipv4: hex and octal parts");
	ok(!addr_parse_ipv4("99999999999999999999", 20, &a), "ipv4: huge number refused");
	ok(addr_parse_ipv6("::1", 3, &a) && a.family == 6 && a.b[15] == 1, "ipv6: ::1");
	ok(!addr_parse_ipv6("fe80::1%eth0", 12, &a), "ipv6: zone refused");
	ok(!addr_parse_ipv6("fe80::1%1", 9, &a), "ipv6: numeric zone refused");
	ok(!addr_parse_ipv6("1.2.3.4", 7, &a), "ipv6: dotted quad refused");
	ok(!addr_parse_ipv6(":::", 3, &a), "ipv6: ::: refused");
	ok(!addr_parse_ipv6("", 0, &a), "ipv6: empty refused");
	ok(!addr_parse_ipv6(" ::1", 4, &a), "ipv6: whitespace refused");
	ok(addr_parse_ipv6("::ffff:1.2.3.4", 14, &a) && a.family == 4 && a.b[0] == 1,
	   "ipv6: mapped normalised to IPv4");
}

static void test_cidr_and_sockaddr(void)
{
	struct ipaddr a = ip("10.1.2.3"), n8 = ip("10.0.0.0"), v6 = ip("2001:db8::1");
	struct ipaddr n6 = ip("2001:db8::"), out;
	struct sockaddr_storage ss;
	struct sockaddr_in6 in6;
	uint16_t port = 0;

	ok(addr_in_cidr(&a, &n8, 8), "10.1.2.3 in 10.0.0.0/8");
	ok(!addr_in_cidr(&a, &n8, 16), "10.1.2.3 not in 10.0.0.0/16");
	ok(addr_in_cidr(&a, &n8, 0), "/0 holds every IPv4");
	ok(!addr_in_cidr(&a, &n8, 33), "prefix 33 never matches");
	ok(!addr_in_cidr(&v6, &n8, 0), "IPv6 not in an IPv4 range");
	ok(addr_in_cidr(&v6, &n6, 127) && !addr_in_cidr(&v6, &n6, 128), "IPv6 /127 vs /128");
	ok(addr_in_cidr(&a, &a, 32), "address in its own /32");
	ok(addr_in_cidr(&a, &n8, 15) && addr_in_cidr(&a, &n8, 12) && !addr_in_cidr(&a, &n8, 24),
	   "non-byte prefixes");
	ok(addr_to_sockaddr(&a, 443, (struct sockaddr *)&ss) == sizeof(struct sockaddr_in) &&
		   addr_from_sockaddr((struct sockaddr *)&ss, &out, &port) && addr_equal(&a, &out) &&
		   port == 443,
	   "IPv4 sockaddr round trip");
	ok(addr_to_sockaddr(&v6, 8443, (struct sockaddr *)&ss) == sizeof(struct sockaddr_in6) &&
		   addr_from_sockaddr((struct sockaddr *)&ss, &out, NULL) && addr_equal(&v6, &out),
	   "IPv6 sockaddr round trip");
	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
	ok(addr_from_sockaddr((struct sockaddr *)&in6, &out, NULL) && out.family == 4 &&
		   addr_equal(&out, &a),
	   "mapped sockaddr_in6 normalised to IPv4");
	ss.ss_family = AF_UNIX;
	ok(!addr_from_sockaddr((struct sockaddr *)&ss, &out, NULL), "AF_UNIX refused");
	ok(!addr_equal(&a, &v6), "addr_equal across families");
}

/* ---- lists ---- */

static void test_patlist(void)
{
	char err[PATTERN_ERRLEN];
	struct patlist *l = patlist_new();
	struct target t;
	struct ipaddr a = ip("10.1.2.3"), b = ip("192.0.2.1");
	const struct pattern *m;

	ok(patlist_add_csv(l, "", err) && patlist_len(l) == 0, "empty csv adds nothing");
	ok(patlist_add_csv(l, "*.example.com:443,api.example.com,10.0.0.0/8,10.1.0.0/16", err) &&
		   patlist_len(l) == 4,
	   "csv adds four");
	ok(!patlist_add_csv(l, "ok.example.com,bad..example.com", err) && patlist_len(l) == 4,
	   "one bad item: error, list unchanged");
	ok(strstr(err, "\"bad..example.com\"") && !strstr(err, "ok.example"),
	   "csv error names the bad item: %s", err);
	ok(!patlist_add_csv(l, "a.com, b.com", err) && patlist_len(l) == 4,
	   "whitespace after comma refused");
	ok(!patlist_add_csv(l, "a.com,", err) && patlist_len(l) == 4, "trailing comma refused");
	ok(!patlist_add_csv(l, ",a.com", err) && patlist_len(l) == 4, "leading comma refused");
	ok(!patlist_add_csv(l, "a.com,,b.com", err) && patlist_len(l) == 4, "empty item refused");
	ok(!patlist_add_csv(l, "::1", err) && patlist_len(l) == 4, "bare IPv6 in csv refused");
	target_from_host("api.example.com", 15, 443, &t, err);
	m = patlist_match_target(l, &t);
	is_str(m ? pattern_text(m) : NULL, "*.example.com:443", "first match wins (443)");
	t.port = 80;
	m = patlist_match_target(l, &t);
	is_str(m ? pattern_text(m) : NULL, "api.example.com", "next match (port 80)");
	target_from_host("example.com", 11, 443, &t, err);
	ok(patlist_match_target(l, &t) == NULL, "no match -> NULL");
	target_from_host("10.1.2.3", 8, 443, &t, err);
	m = patlist_match_target(l, &t);
	is_str(m ? pattern_text(m) : NULL, "10.0.0.0/8", "first CIDR wins for a target");
	m = patlist_match_addr(l, &a, 1);
	is_str(m ? pattern_text(m) : NULL, "10.0.0.0/8", "match_addr first match");
	ok(patlist_match_addr(l, &b, 443) == NULL, "match_addr skips names, none match");
	is_str(pattern_text(patlist_get(l, 1)), "api.example.com", "patlist_get(1)");
	ok(patlist_get(l, 4) == NULL, "patlist_get out of range");
	patlist_add(l, pattern_parse("192.0.2.1:443", 13, err));
	m = patlist_match_addr(l, &b, 443);
	ok(patlist_len(l) == 5 && m == patlist_get(l, 4), "patlist_add appends");
	patlist_free(l);
	patlist_free(NULL);
	l = patlist_new();
	ok(patlist_add_csv(l, "a.com", err) && patlist_len(l) == 1, "single item csv");
	for (int i = 0; i < 40; i++)
		patlist_add_csv(l, "b.com,c.com", err);
	ok(patlist_len(l) == 81, "list grows");
	patlist_free(l);
}

int main(void)
{
	test_table();
	test_case_and_dot();
	test_names_vs_ips();
	test_bad_patterns();
	test_good_patterns();
	test_match_addr();
	test_target_from_host();
	test_authority();
	test_special();
	test_format();
	test_parse_addr();
	test_cidr_and_sockaddr();
	test_patlist();
	return done_testing();
}
