/* pattern.c -- allowNet/denyNet patterns and targets: strict parsing into a
 * normalised form (lower-case names, IP addresses, CIDR ranges) and matching */
#include "pattern.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define WHYLEN 128  /* room for the reason part of an error message */
#define QUOTEMAX 64 /* at most about this many characters of the offending text */

struct pattern {
	char *text;                /* as written, NUL-terminated */
	bool is_ip;                /* IP or CIDR; else a name */
	bool wildcard;             /* "*.name": matches strict subdomains of name */
	char name[HOST_MAX + 1];   /* lower-case, no trailing dot, without "*." */
	struct ipaddr ip;          /* network address if is_ip */
	unsigned prefix;           /* 32 / 128 for a single address */
	uint16_t port;             /* 0 = any port */
};

struct patlist {
	struct pattern **v;
	size_t n, cap;
};

/* What parse_host may accept beyond a plain name or address. */
enum { HOST_WILD = 1, HOST_CIDR = 2 };

/* A host reduced to its normal form (the common part of patterns and targets). */
struct host {
	bool is_ip;
	bool wildcard;
	char name[HOST_MAX + 1];
	struct ipaddr ip;
	unsigned prefix;
};

/* The parts of "host[:port]" / "[v6][:port]". */
struct split {
	const char *host, *port;
	size_t hn, pn;
	bool bracketed, has_port;
};

/* ---- error messages ---- */

/* Copies s (n bytes) into out, escaping quotes, backslashes and non-printable
 * bytes, truncating long input with "...". */
static void quote(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 8 >= outlen || o >= QUOTEMAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(out + o, outlen - o, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

/* err = `invalid <what> "<s>": <why>` */
static void seterr(char *err, const char *what, const char *s, size_t n, const char *why)
{
	char q[QUOTEMAX + 8];

	quote(s, n, q, sizeof(q));
	snprintf(err, PATTERN_ERRLEN, "invalid %s \"%s\": %s", what, q, why);
}

static bool fail(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, WHYLEN, fmt, ap);
	va_end(ap);
	return false;
}

/* ---- lexical checks ---- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
	       c == '_';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool has(const char *s, size_t n, char c)
{
	return memchr(s, c, n) != NULL;
}

static bool has_str(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);

	for (size_t i = 0; i + k <= n; i++)
		if (memcmp(s + i, needle, k) == 0)
			return true;
	return false;
}

/* Refuses what can never be part of a host or authority: non-ASCII bytes,
 * control bytes and whitespace, URLs, userinfo. */
static bool check_text(const char *s, size_t n, char *why)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80)
			return fail(why, "non-ASCII (Unicode) names are not supported; "
					 "write the punycode (xn--) form");
		if (c <= 0x20 || c == 0x7f)
			return fail(why, "whitespace or control character at offset %zu", i);
	}
	if (has_str(s, n, "://"))
		return fail(why, "URLs are not allowed; write only the host (and :port)");
	if (has(s, n, '@'))
		return fail(why, "userinfo (\"user@\") is not allowed");
	return true;
}

/* A port: 1 to 5 ASCII digits with a value of 1..65535. */
static bool parse_port(const char *s, size_t n, uint16_t *out, char *why)
{
	unsigned v = 0;

	if (n == 0)
		return fail(why, "empty port after ':'");
	if (n > 5)
		return fail(why, "port must be at most 5 digits");
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return fail(why, "port must be decimal digits");
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return fail(why, "port must be 1 to 65535");
	*out = (uint16_t)v;
	return true;
}

/* A CIDR prefix length: decimal without leading zeros, at most max. */
static bool parse_prefix(const char *s, size_t n, unsigned max, unsigned *out, char *why)
{
	unsigned v = 0;

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return fail(why, "invalid CIDR prefix length");
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return fail(why, "invalid CIDR prefix length");
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return fail(why, "CIDR prefix length %u is over %u", v, max);
	*out = v;
	return true;
}

/* ---- hosts ---- */

/* Fills h->prefix from the "/len" text (or the full length if none) and
 * checks the address has no bits set beyond it. */
static bool set_prefix(struct host *h, const char *pfx, size_t pn, bool v6_syntax,
		       char *why)
{
	unsigned max = v6_syntax ? 128 : 32, p = max;

	if (pfx && !parse_prefix(pfx, pn, max, &p, why))
		return false;
	if (v6_syntax && h->ip.family == 4) { /* a mapped IPv4 range */
		if (p < 96)
			return fail(why, "CIDR has host bits set");
		p -= 96;
	}
	if (!addr_host_bits_clear(&h->ip, p))
		return fail(why, "CIDR has host bits set (the address must be the network's "
				 "first address)");
	h->prefix = p;
	return true;
}

/* The inside of "[...]": an IPv6 address, or an IPv6 CIDR if allowed. */
static bool parse_v6(const char *s, size_t n, int flags, struct host *h, char *why)
{
	const char *slash = memchr(s, '/', n);
	size_t an = slash ? (size_t)(slash - s) : n;

	if (has(s, n, '%'))
		return fail(why, "IPv6 zone indexes (\"%%...\") are not allowed");
	if (slash && !(flags & HOST_CIDR))
		return fail(why, "a CIDR range is not allowed here");
	if (!addr_parse_ipv6(s, an, &h->ip))
		return fail(why, "not a valid IPv6 address inside \"[...]\"");
	h->is_ip = true;
	return set_prefix(h, slash ? slash + 1 : NULL, slash ? n - an - 1 : 0, true, why);
}

/* true if s looks like an attempt at a numeric IPv4 address. */
static bool looks_numeric(const char *s, size_t n)
{
	if (n == 0 || !is_digit(s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]) && s[i] != '.' && s[i] != 'x' && s[i] != 'X' &&
		    !((s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* "a.b.c.d/len" (any numeric IPv4 form before the slash). */
static bool parse_cidr4(const char *s, size_t n, const char *slash, struct host *h,
			char *why)
{
	size_t an = (size_t)(slash - s);

	if (!addr_parse_ipv4(s, an, &h->ip)) {
		if (looks_numeric(s, an))
			return fail(why, "not a valid IPv4 address before '/'");
		return fail(why, "paths are not allowed; write only the host (and :port)");
	}
	h->is_ip = true;
	return set_prefix(h, slash + 1, n - an - 1, false, why);
}

/* Checks the labels of a name: 1..63 characters of [A-Za-z0-9_-] each. */
static bool check_labels(const char *s, size_t n, char *why)
{
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.') {
			if (!is_label_char(s[i]))
				return fail(why, "invalid character '%c' in a name "
						 "(letters, digits, '-' and '_' only)", s[i]);
			continue;
		}
		if (i == start)
			return fail(why, "empty label (\"..\", or a leading or extra trailing dot)");
		if (i - start > 63)
			return fail(why, "label longer than 63 characters");
		start = i + 1;
	}
	return true;
}

/* true if the last label of s is all digits. */
static bool last_label_numeric(const char *s, size_t n)
{
	size_t i = n;

	while (i > 0 && s[i - 1] != '.')
		i--;
	if (i == n)
		return false;
	for (; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

/* A name, optionally "*." + name; s has had its trailing dot stripped. */
static bool parse_name(const char *s, size_t n, int flags, struct host *h, char *why)
{
	struct ipaddr dummy;

	if (n > HOST_MAX)
		return fail(why, "name longer than %d characters", HOST_MAX);
	if (n == 1 && s[0] == '*' && (flags & HOST_WILD))
		return fail(why, "\"*\" alone is not allowed (it would match every host)");
	if (n >= 2 && s[0] == '*' && s[1] == '.' && (flags & HOST_WILD)) {
		h->wildcard = true;
		s += 2;
		n -= 2;
	}
	if (has(s, n, '*'))
		return fail(why, (flags & HOST_WILD) ? "'*' is only allowed as a whole first "
						      "label, as \"*.example.com\"" :
						      "'*' is not allowed in a host");
	if (!check_labels(s, n, why))
		return false;
	if (last_label_numeric(s, n) || (h->wildcard && addr_parse_ipv4(s, n, &dummy)))
		return fail(why, h->wildcard ? "a wildcard needs a name, not an address" :
					       "not a valid IPv4 address (a name's last label "
					       "cannot be all digits)");
	for (size_t i = 0; i < n; i++)
		h->name[i] = lower(s[i]);
	h->name[n] = '\0';
	return true;
}

/* Normalises a host (no port) into *h. bracketed: s was inside "[...]". */
static bool parse_host(const char *s, size_t n, bool bracketed, int flags, struct host *h,
		       char *why)
{
	const char *slash;

	memset(h, 0, sizeof(*h));
	if (n == 0)
		return fail(why, "empty host");
	if (bracketed)
		return parse_v6(s, n, flags, h, why);
	if (has(s, n, '['))
		return fail(why, "'[' may only start a bracketed IPv6 address");
	if ((slash = memchr(s, '/', n))) {
		if (!(flags & HOST_CIDR))
			return fail(why, "paths are not allowed; write only the host (and :port)");
		return parse_cidr4(s, n, slash, h, why);
	}
	if (s[n - 1] == '.')
		n--;
	if (n == 0)
		return fail(why, "empty host");
	if (addr_parse_ipv4(s, n, &h->ip)) {
		h->is_ip = true;
		h->prefix = 32;
		return true;
	}
	return parse_name(s, n, flags, h, why);
}

/* Splits "host", "host:port", "[v6]" or "[v6]:port". Returns false with a
 * reason; *bare_v6 is set when the text has two or more ':' outside brackets. */
static bool split_hostport(const char *s, size_t n, struct split *sp, bool *bare_v6,
			   char *why)
{
	const char *c;
	size_t colons = 0;

	memset(sp, 0, sizeof(*sp));
	*bare_v6 = false;
	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close)
			return fail(why, "missing ']' after a bracketed IPv6 address");
		sp->host = s + 1;
		sp->hn = (size_t)(close - s - 1);
		sp->bracketed = true;
		c = close + 1;
		if (c == s + n)
			return true;
		if (*c != ':')
			return fail(why, "only \":port\" may follow \"]\"");
		sp->port = c + 1;
		sp->pn = n - (size_t)(sp->port - s);
		sp->has_port = true;
		return true;
	}
	if (has(s, n, ']'))
		return fail(why, "unexpected ']'");
	for (size_t i = 0; i < n; i++)
		colons += s[i] == ':';
	if (colons >= 2) {
		*bare_v6 = true;
		return false;
	}
	c = memchr(s, ':', n);
	sp->host = s;
	sp->hn = c ? (size_t)(c - s) : n;
	if (c) {
		sp->port = c + 1;
		sp->pn = n - sp->hn - 1;
		sp->has_port = true;
	}
	return true;
}

/* The reason for an unbracketed IPv6 text, suggesting the bracketed form. */
static bool bare_v6_reason(const char *s, size_t n, char *why)
{
	char q[QUOTEMAX + 8];
	const char *slash = memchr(s, '/', n);
	struct ipaddr a;

	if (has(s, n, '%'))
		return fail(why, "IPv6 zone indexes (\"%%...\") are not allowed");
	if (!addr_parse_ipv6(s, slash ? (size_t)(slash - s) : n, &a))
		return fail(why, "unexpected ':' (write host:port, and IPv6 as \"[v6]:port\")");
	quote(s, n, q, sizeof(q));
	return fail(why, "IPv6 addresses must be bracketed, as \"[%s]\"", q);
}

/* Common front end of patterns and authorities: lexical checks, split, port. */
static bool parse_hostport(const char *s, size_t n, int flags, struct host *h,
			   uint16_t *port, bool *has_port, char *why)
{
	struct split sp;
	bool bare_v6;

	if (n == 0)
		return fail(why, "empty");
	if (!check_text(s, n, why))
		return false;
	if (!split_hostport(s, n, &sp, &bare_v6, why))
		return bare_v6 ? bare_v6_reason(s, n, why) : false;
	if (sp.has_port && !parse_port(sp.port, sp.pn, port, why))
		return false;
	*has_port = sp.has_port;
	return parse_host(sp.host, sp.hn, sp.bracketed, flags, h, why);
}

/* ---- patterns ---- */

struct pattern *pattern_parse(const char *s, size_t n, char *err)
{
	char why[WHYLEN];
	struct host h;
	uint16_t port = 0;
	bool has_port = false;
	struct pattern *p;

	if (n == 0) {
		seterr(err, "pattern", s, n, "empty pattern");
		return NULL;
	}
	if (!parse_hostport(s, n, HOST_WILD | HOST_CIDR, &h, &port, &has_port, why)) {
		seterr(err, "pattern", s, n, why);
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->text = xstrndup(s, n);
	p->is_ip = h.is_ip;
	p->wildcard = h.wildcard;
	memcpy(p->name, h.name, sizeof(p->name));
	p->ip = h.ip;
	p->prefix = h.prefix;
	p->port = has_port ? port : 0;
	return p;
}

void pattern_free(struct pattern *p)
{
	if (!p)
		return;
	free(p->text);
	free(p);
}

const char *pattern_text(const struct pattern *p)
{
	return p->text;
}

bool pattern_is_ip(const struct pattern *p)
{
	return p->is_ip;
}

/* Is name (normalised) a strict subdomain of suffix? */
static bool is_subdomain(const char *name, const char *suffix)
{
	size_t nl = strlen(name), sl = strlen(suffix);

	return nl > sl + 1 && name[nl - sl - 1] == '.' && strcmp(name + nl - sl, suffix) == 0;
}

bool pattern_match_target(const struct pattern *p, const struct target *t)
{
	if (p->is_ip)
		return t->is_ip && pattern_match_addr(p, &t->ip, t->port);
	if (t->is_ip || (p->port && p->port != t->port))
		return false;
	return p->wildcard ? is_subdomain(t->host, p->name) : strcmp(t->host, p->name) == 0;
}

bool pattern_match_addr(const struct pattern *p, const struct ipaddr *a, uint16_t port)
{
	if (!p->is_ip || (p->port && p->port != port))
		return false;
	return addr_in_cidr(a, &p->ip, p->prefix);
}

/* ---- targets ---- */

/* Fills *t from a parsed host and port. */
static void target_set(struct target *t, const struct host *h, uint16_t port)
{
	memset(t, 0, sizeof(*t));
	t->is_ip = h->is_ip;
	t->port = port;
	if (h->is_ip) {
		t->ip = h->ip;
		addr_format(&h->ip, t->host);
	} else {
		memcpy(t->host, h->name, sizeof(t->host));
	}
}

bool target_from_host(const char *host, size_t n, uint16_t port, struct target *t, char *err)
{
	char why[WHYLEN];
	struct host h;
	bool ok;

	if (n == 0)
		ok = fail(why, "empty host");
	else if (port == 0)
		ok = fail(why, "port 0 is not allowed");
	else if (!check_text(host, n, why))
		ok = false;
	else if (has(host, n, '/'))
		ok = fail(why, "paths are not allowed");
	else if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
		ok = parse_host(host + 1, n - 2, true, 0, &h, why);
	else if (has(host, n, ':'))
		ok = parse_host(host, n, true, 0, &h, why); /* unbracketed IPv6 */
	else
		ok = parse_host(host, n, false, 0, &h, why);
	if (!ok) {
		seterr(err, "host", host, n, why);
		return false;
	}
	target_set(t, &h, port);
	return true;
}

bool target_parse_authority(const char *s, size_t n, uint16_t default_port,
			    struct target *t, char *err)
{
	char why[WHYLEN];
	struct host h;
	uint16_t port = 0;
	bool has_port = false, ok;

	if (n == 0)
		ok = fail(why, "empty host");
	else if (!check_text(s, n, why))
		ok = false;
	else if (has(s, n, '/') || has(s, n, '?') || has(s, n, '#'))
		ok = fail(why, "paths are not allowed in an authority");
	else
		ok = parse_hostport(s, n, 0, &h, &port, &has_port, why);
	if (ok && !has_port && default_port == 0)
		ok = fail(why, "a port is required (host:port)");
	if (!ok) {
		seterr(err, "authority", s, n, why);
		return false;
	}
	target_set(t, &h, has_port ? port : default_port);
	return true;
}

/* ---- lists ---- */

struct patlist *patlist_new(void)
{
	return xcalloc(1, sizeof(struct patlist));
}

void patlist_free(struct patlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		pattern_free(l->v[i]);
	free(l->v);
	free(l);
}

void patlist_add(struct patlist *l, struct pattern *p)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = p;
}

bool patlist_add_csv(struct patlist *l, const char *s, char *err)
{
	struct patlist tmp = { NULL, 0, 0 };
	const char *item = s;
	bool ok = true;

	if (*s == '\0')
		return true;
	for (;;) {
		const char *comma = strchr(item, ',');
		size_t n = comma ? (size_t)(comma - item) : strlen(item);
		struct pattern *p = pattern_parse(item, n, err);
		if (!p) {
			ok = false;
			goto out;
		}
		patlist_add(&tmp, p);
		if (!comma)
			break;
		item = comma + 1;
	}
	for (size_t i = 0; i < tmp.n; i++)
		patlist_add(l, tmp.v[i]);
	tmp.n = 0;
out:
	for (size_t i = 0; i < tmp.n; i++)
		pattern_free(tmp.v[i]);
	free(tmp.v);
	return ok;
}

size_t patlist_len(const struct patlist *l)
{
	return l->n;
}

const struct pattern *patlist_get(const struct patlist *l, size_t i)
{
	return i < l->n ? l->v[i] : NULL;
}

const struct pattern *patlist_match_target(const struct patlist *l, const struct target *t)
{
	for (size_t i = 0; i < l->n; i++)
		if (pattern_match_target(l->v[i], t))
			return l->v[i];
	return NULL;
}

const struct pattern *patlist_match_addr(const struct patlist *l, const struct ipaddr *a,
					 uint16_t port)
{
	for (size_t i = 0; i < l->n; i++)
		if (pattern_match_addr(l->v[i], a, port))
			return l->v[i];
	return NULL;
}

uint16_t pattern_port(const struct pattern *p)
{
	return p->port;
}
