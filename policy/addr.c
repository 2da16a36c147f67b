/* addr.c -- IP addresses: strict parsing (incl. C-resolver numeric IPv4 forms),
 * IPv4-mapped normalisation, RFC 5952 formatting, CIDR membership and the
 * special-purpose ranges */
#include "addr.h"
#include "errmsg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };


/* One inet_aton() part: decimal, 0-prefixed octal or 0x-prefixed hex, at
 * least one digit, value at most 0xffffffff. */
static bool parse_part(const char *s, size_t n, uint32_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;
	size_t i = 0;

	if (n == 0)
		return false;
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
		if (n == 2)
			return false;
	} else if (n >= 2 && s[0] == '0') {
		base = 8;
		i = 1;
	}
	for (; i < n; i++) {
		int d = hex_digit(s[i]);
		if (d < 0 || (unsigned)d >= base)
			return false;
		v = v * base + (unsigned)d;
		if (v > 0xffffffffu)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

bool addr_parse_ipv4(const char *s, size_t n, struct ipaddr *out)
{
	uint32_t parts[4], v;
	size_t np = 0, start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (np == 4 || !parse_part(s + start, i - start, &parts[np]))
			return false;
		np++;
		start = i + 1;
	}
	v = 0;
	for (size_t i = 0; i + 1 < np; i++) {
		if (parts[i] > 0xff)
			return false;
		v |= parts[i] << (8 * (3 - i));
	}
	if (np > 1 && parts[np - 1] >> (8 * (5 - np))) /* last part fills the rest */
		return false;
	v |= parts[np - 1];
	out->family = 4;
	memset(out->b, 0, sizeof(out->b));
	out->b[0] = (uint8_t)(v >> 24);
	out->b[1] = (uint8_t)(v >> 16);
	out->b[2] = (uint8_t)(v >> 8);
	out->b[3] = (uint8_t)v;
	return true;
}

/* Rewrites ::ffff:a.b.c.d as the IPv4 address a.b.c.d. */
static void normalise_mapped(struct ipaddr *a)
{
	if (a->family != 6 || memcmp(a->b, mapped_prefix, 12) != 0)
		return;
	memmove(a->b, a->b + 12, 4);
	memset(a->b + 4, 0, 12);
	a->family = 4;
}

bool addr_parse_ipv6(const char *s, size_t n, struct ipaddr *out)
{
	char buf[INET6_ADDRSTRLEN];
	struct ipaddr a;

	if (n == 0 || n >= sizeof(buf))
		return false;
	for (size_t i = 0; i < n; i++)
		if (hex_digit(s[i]) < 0 && s[i] != ':' && s[i] != '.')
			return false; /* also rejects "%zone", whitespace and NUL */
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET6, buf, a.b) != 1)
		return false;
	a.family = 6;
	normalise_mapped(&a);
	*out = a;
	return true;
}

/* The longest run (>= 2) of zero 16-bit words, leftmost on ties; len 0 if none. */
static void zero_run(const uint8_t *b, int *best, int *best_len)
{
	*best = -1;
	*best_len = 0;
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && b[2 * j] == 0 && b[2 * j + 1] == 0)
			j++;
		if (j - i > *best_len && j - i >= 2) {
			*best = i;
			*best_len = j - i;
		}
		i = j > i ? j : i + 1;
	}
}

static void format_v6(const uint8_t *b, char *buf)
{
	int best, best_len;
	char *p = buf;

	zero_run(b, &best, &best_len);
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			p += sprintf(p, "::");
			i += best_len - 1;
			continue;
		}
		if (i > 0 && i != best + best_len)
			*p++ = ':';
		p += sprintf(p, "%x", (unsigned)(b[2 * i] << 8 | b[2 * i + 1]));
	}
	*p = '\0';
}

const char *addr_format(const struct ipaddr *a, char *buf)
{
	if (a->family == 4)
		snprintf(buf, ADDR_STRLEN, "%u.%u.%u.%u", a->b[0], a->b[1], a->b[2], a->b[3]);
	else
		format_v6(a->b, buf);
	return buf;
}

bool addr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out, uint16_t *port)
{
	struct ipaddr a;
	uint16_t p;

	memset(&a, 0, sizeof(a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		a.family = 4;
		memcpy(a.b, &in->sin_addr, 4);
		p = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		a.family = 6;
		memcpy(a.b, &in6->sin6_addr, 16);
		normalise_mapped(&a);
		p = ntohs(in6->sin6_port);
	} else {
		return false;
	}
	*out = a;
	if (port)
		*port = p;
	return true;
}

unsigned addr_to_sockaddr(const struct ipaddr *a, uint16_t port, struct sockaddr *ss)
{
	if (a->family == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		memset(in, 0, sizeof(*in));
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, a->b, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	memset(in6, 0, sizeof(*in6));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	memcpy(&in6->sin6_addr, a->b, 16);
	return sizeof(*in6);
}

bool addr_equal(const struct ipaddr *a, const struct ipaddr *b)
{
	return a->family == b->family && memcmp(a->b, b->b, a->family == 4 ? 4 : 16) == 0;
}

bool addr_in_cidr(const struct ipaddr *a, const struct ipaddr *net, unsigned prefix)
{
	unsigned bits = a->family == 4 ? 32 : 128, full = prefix / 8, rest = prefix % 8;

	if (a->family != net->family || prefix > bits)
		return false;
	if (memcmp(a->b, net->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a->b[full] & mask) == (net->b[full] & mask);
}

struct range {
	uint8_t b[16];
	unsigned prefix;
};

/* IPv4 special-purpose ranges (IANA registry, minus documentation ranges). */
static const struct range special4[] = {
	{ { 0 }, 8 },               /* "this network", incl. 0.0.0.0 */
	{ { 10 }, 8 },              /* RFC 1918 */
	{ { 100, 64 }, 10 },        /* CGNAT */
	{ { 127 }, 8 },             /* loopback */
	{ { 169, 254 }, 16 },       /* link-local, incl. 169.254.169.254 */
	{ { 172, 16 }, 12 },        /* RFC 1918 */
	{ { 192, 0, 0 }, 24 },      /* IETF protocol assignments */
	{ { 192, 88, 99 }, 24 },    /* deprecated 6to4 relay anycast */
	{ { 192, 168 }, 16 },       /* RFC 1918 */
	{ { 198, 18 }, 15 },        /* benchmarking */
	{ { 224 }, 4 },             /* multicast */
	{ { 240 }, 4 },             /* reserved, incl. 255.255.255.255 */
};

/* IPv6 special-purpose ranges inside 2000::/3 (everything outside 2000::/3
 * but NAT64 is special: see addr_is_special). */
static const struct range special6[] = {
	{ { 0x20, 0x01, 0x00, 0x00 }, 23 }, /* IETF protocol assignments, Teredo */
};

static bool in_ranges(const struct ipaddr *a, const struct range *r, size_t n)
{
	struct ipaddr net;

	net.family = a->family;
	for (size_t i = 0; i < n; i++) {
		memcpy(net.b, r[i].b, 16);
		if (addr_in_cidr(a, &net, r[i].prefix))
			return true;
	}
	return false;
}

static bool special_embedded4(const uint8_t *b4)
{
	struct ipaddr v4;

	memset(&v4, 0, sizeof(v4));
	v4.family = 4;
	memcpy(v4.b, b4, 4);
	return in_ranges(&v4, special4, sizeof(special4) / sizeof(special4[0]));
}

static bool is_special6(const uint8_t *b)
{
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	struct ipaddr a;

	if (memcmp(b, nat64, 12) == 0) /* 64:ff9b::/96 */
		return special_embedded4(b + 12);
	if (memcmp(b, mapped_prefix, 12) == 0)
		return special_embedded4(b + 12);
	if ((b[0] & 0xe0) != 0x20) /* outside global unicast 2000::/3: ::, ::1, */
		return true;       /* IPv4-compatible, discard, ULA, link/site-local, multicast */
	if (b[0] == 0x20 && b[1] == 0x02 && special_embedded4(b + 2)) /* 6to4 */
		return true;
	a.family = 6;
	memcpy(a.b, b, 16);
	return in_ranges(&a, special6, sizeof(special6) / sizeof(special6[0]));
}

bool addr_is_special(const struct ipaddr *a)
{
	if (a->family == 4)
		return special_embedded4(a->b);
	return is_special6(a->b);
}

bool addr_host_bits_clear(const struct ipaddr *a, unsigned prefix)
{
	unsigned bytes = a->family == 4 ? 4 : 16;

	for (unsigned i = 0; i < bytes * 8; i++)
		if (i >= prefix && (a->b[i / 8] & (0x80 >> (i % 8))))
			return false;
	return true;
}

/* 1-3 decimal digits, no leading zero unless "0", at most max. */
static bool parse_prefix(const char *s, size_t n, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

bool addr_parse_cidr(const char *s, size_t n, struct ipaddr *net, unsigned *prefix,
		     char *why, size_t cap)
{
	const char *a = s, *pfx = NULL, *slash;
	size_t an = n, pn = 0;
	bool bracketed = n > 0 && s[0] == '[', v6;

	if (bracketed) {
		const char *close = memchr(s, ']', n);
		if (!close)
			return errmsg_set(why, cap, "missing ']'"), false;
		a = s + 1;
		an = (size_t)(close - a);
		if (close + 1 < s + n && close[1] == '/' && !memchr(a, '/', an)) {
			pfx = close + 2;
			pn = n - (size_t)(pfx - s);
		} else if (close + 1 != s + n) {
			return errmsg_set(why, cap, "expected [ADDR], [ADDR]/N or [ADDR/N]"), false;
		}
	}
	if (!pfx && (slash = memchr(a, '/', an))) {
		pfx = slash + 1;
		pn = an - (size_t)(pfx - a);
		an = (size_t)(slash - a);
	}
	v6 = bracketed || memchr(a, ':', an) != NULL;
	if (an == 0 || !(v6 ? addr_parse_ipv6(a, an, net) : addr_parse_ipv4(a, an, net)))
		return errmsg_set(why, cap, "invalid address"), false;
	*prefix = v6 ? 128 : 32;
	if (pfx && !parse_prefix(pfx, pn, *prefix, prefix))
		return errmsg_set(why, cap, "invalid prefix length"), false;
	if (v6 && net->family == 4) {
		/* ::ffff:a.b.c.d/N: the IPv4 part is the last 32 bits */
		if (*prefix < 96)
			return errmsg_set(why, cap, "a mapped IPv4 range needs a prefix of at least 96"), false;
		*prefix -= 96;
	}
	if (!addr_host_bits_clear(net, *prefix))
		return errmsg_set(why, cap, "host bits set after the prefix"), false;
	return true;
}
