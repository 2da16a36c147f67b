/* rules.c -- request rules: host patterns, methods and PCRE2 path patterns
 * (compiled once, JIT when available, match limits), first match wins; the
 * path normaliser; per-thread match data so the request path takes no lock */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rules.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "errmsg.h"

#define METHOD_MAX 32             /* longest method token accepted */
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (512 * 1024)

struct rule {
	struct patlist *hosts; /* owned; never empty */
	char **methods;        /* owned; NULL = any */
	size_t nmethods;
	pcre2_code *re;        /* owned; NULL = any path */
	bool anchored;         /* re can only match at offset 0 */
	bool jit;              /* re is JIT-compiled */
	bool allow;
};

struct ruleset {
	struct rule *rules;
	size_t n;
	bool default_allow; /* rulesDefault; false = deny */
};

#define seterr(err, ...) errmsg_set((err), RULES_ERRLEN, __VA_ARGS__)

struct ruleset *ruleset_new(void)
{
	return xcalloc(1, sizeof(struct ruleset));
}

static void rule_dispose(struct rule *r)
{
	patlist_free(r->hosts);
	r->hosts = NULL;
	for (size_t i = 0; i < r->nmethods; i++)
		free(r->methods[i]);
	free(r->methods);
	r->methods = NULL;
	pcre2_code_free(r->re);
	r->re = NULL;
}

void ruleset_free(struct ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_dispose(&rs->rules[i]);
	free(rs->rules);
	free(rs);
}

/* RFC 9110 tchar */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool rules_method_valid(const char *m, size_t n)
{
	if (n == 0 || n > METHOD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)m[i]) || (m[i] >= 'a' && m[i] <= 'z'))
			return false;
	return true;
}

/* Compiles pattern re (n bytes) for matching on bytes; NULL with err. */
static pcre2_code *compile(const char *re, size_t n, bool *anchored, bool *jit, char *err)
{
	int code;
	PCRE2_SIZE off;
	uint32_t opts = 0;
	size_t jitsize = 0;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, n, PCRE2_NEVER_UTF, &code, &off, NULL);

	if (!c) {
		PCRE2_UCHAR msg[160];
		if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
			snprintf((char *)msg, sizeof(msg), "error %d", code);
		seterr(err, "%s at offset %zu", (const char *)msg, (size_t)off);
		return NULL;
	}
	/* JIT where the platform has it; the interpreter otherwise (same limits) */
	(void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	/* (not its return value: with (*NO_JIT) in the pattern it "succeeds") */
	*jit = pcre2_pattern_info(c, PCRE2_INFO_JITSIZE, &jitsize) == 0 && jitsize > 0;
	/* ^, \A, \G or (?s).* at the start of every alternative: one start position */
	pcre2_pattern_info(c, PCRE2_INFO_ALLOPTIONS, &opts);
	*anchored = (opts & PCRE2_ANCHORED) != 0;
	return c;
}

bool ruleset_add(struct ruleset *rs, struct patlist *hosts, const char *const *methods,
		 size_t nmethods, const char *path, size_t plen, bool allow, char *err)
{
	struct rule r = { .hosts = hosts, .allow = allow };
	char perr[RULES_ERRLEN];
	bool ok = false;

	if (!hosts || patlist_len(hosts) == 0) {
		seterr(err, "a rule needs at least one host pattern");
		goto out;
	}
	for (size_t i = 0; i < nmethods; i++)
		if (!methods[i] || !rules_method_valid(methods[i], strlen(methods[i]))) {
			seterr(err, "invalid method \"%.40s\" (an upper-case HTTP method token)",
			       methods[i] ? methods[i] : "");
			goto out;
		}
	if (path && !(r.re = compile(path, plen, &r.anchored, &r.jit, perr))) {
		seterr(err, "invalid regular expression: %s", perr);
		goto out;
	}
	if (nmethods) {
		r.methods = xcalloc(nmethods, sizeof(*r.methods));
		for (size_t i = 0; i < nmethods; i++)
			r.methods[i] = xstrdup(methods[i]);
		r.nmethods = nmethods;
	}
	rs->rules = xrealloc(rs->rules, (rs->n + 1) * sizeof(*rs->rules));
	rs->rules[rs->n++] = r;
	r.hosts = NULL; /* the ruleset owns it now */
	r.re = NULL;
	ok = true;
out:
	patlist_free(r.hosts);
	pcre2_code_free(r.re);
	return ok;
}

void ruleset_set_default(struct ruleset *rs, bool allow)
{
	rs->default_allow = allow;
}

bool ruleset_default(const struct ruleset *rs)
{
	return rs->default_allow;
}

size_t ruleset_len(const struct ruleset *rs)
{
	return rs ? rs->n : 0;
}

bool ruleset_names_host(const struct ruleset *rs, const struct target *t)
{
	for (size_t i = 0; rs && i < rs->n; i++)
		if (patlist_match_target(rs->rules[i].hosts, t))
			return true;
	return false;
}

/* ---- the path normaliser ---- */

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* Any "." or ".." segment, or an empty one before the last ("//")? A
 * segment's ";parameters" are ignored first, as servers that strip them
 * (Tomcat, Jetty: "/a/..;/admin" is "/admin" there) read it; a segment of
 * parameters alone ("/;x/admin") is as ambiguous as an empty one. */
static const char *check_segments(const char *p, size_t n)
{
	size_t start = 1; /* p[0] == '/' */

	for (size_t i = 1; i <= n; i++) {
		const char *semi;
		size_t len;
		if (i < n && p[i] != '/')
			continue;
		len = i - start;
		semi = memchr(p + start, ';', len);
		if (semi && semi == p + start)
			return "empty segment with parameters (/;)";
		if (semi)
			len = (size_t)(semi - (p + start));
		if ((len == 1 && p[start] == '.') || (len == 2 && p[start] == '.' && p[start + 1] == '.'))
			return semi ? "dot-segment with parameters (..;)" : "dot-segment";
		if (len == 0 && i < n)
			return "empty segment (//)";
		start = i + 1;
	}
	return NULL;
}

const char *rules_normalize_path(const char *target, size_t n, char *out, size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *p = target, *end = target + n, *why;
	size_t o = 0;

	/* absolute-form: drop "scheme://authority" */
	if ((n >= 7 && strncasecmp(p, "http://", 7) == 0) ||
	    (n >= 8 && strncasecmp(p, "https://", 8) == 0)) {
		p += p[4] == ':' ? 7 : 8;
		while (p < end && *p != '/' && *p != '?' && *p != '#')
			p++;
		if (p == end || *p == '?') {
			out[o++] = '/';
			p = end;
		}
	}
	if (p < end && *p != '/') {
		*outlen = 0;
		out[0] = '\0';
		return "does not start with '/'";
	}
	for (; p < end && *p != '?'; p++) {
		unsigned char c = (unsigned char)*p;
		int hi, lo;

		if (c < 0x20 || c == 0x7f) {
			why = "NUL or control byte";
			goto ambiguous;
		}
		if (c == '\\') {
			why = "backslash";
			goto ambiguous;
		}
		if (c == '#') {
			why = "'#' in the path";
			goto ambiguous;
		}
		if (c != '%') {
			out[o++] = (char)c;
			continue;
		}
		if (end - p < 3 || (hi = hex_digit(p[1])) < 0 || (lo = hex_digit(p[2])) < 0) {
			why = "malformed percent-escape";
			goto ambiguous;
		}
		c = (unsigned char)(hi << 4 | lo);
		p += 2;
		if (c == '/') {
			why = "encoded slash (%2F)";
			goto ambiguous;
		}
		if (c == '\\') {
			why = "encoded backslash (%5C)";
			goto ambiguous;
		}
		if (c < 0x20 || c == 0x7f) {
			why = "encoded NUL or control byte";
			goto ambiguous;
		}
		if (unreserved(c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o == 0) {
		why = "empty path";
		goto ambiguous;
	}
	out[o] = '\0';
	if ((why = check_segments(out, o)))
		goto ambiguous;
	*outlen = o;
	return NULL;
ambiguous:
	out[0] = '\0';
	*outlen = 0;
	return why;
}

/* ---- matching: per-thread scratch (match data, context, JIT stack, path buffer) ---- */

struct scratch {
	pcre2_match_data *md;    /* one ovector pair: we only ask "does it match" */
	pcre2_match_context *mc; /* limits; the match limit is set per call */
	pcre2_jit_stack *js;     /* NULL: PCRE2's default 32 KiB on the machine stack */
	char *buf;               /* the normalised path */
	size_t cap;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static __thread struct scratch *scratch_tls; /* also a root for LeakSanitizer */

static void scratch_free(void *arg)
{
	struct scratch *s = arg;

	if (!s)
		return;
	pcre2_match_data_free(s->md);
	pcre2_match_context_free(s->mc);
	pcre2_jit_stack_free(s->js);
	free(s->buf);
	free(s);
	scratch_tls = NULL;
}

static void scratch_key_init(void)
{
	if (pthread_key_create(&scratch_key, scratch_free) != 0)
		abort();
}

/* This thread's scratch with buf of at least need bytes (aborts on OOM, as xmalloc). */
static struct scratch *scratch_get(size_t need)
{
	struct scratch *s = scratch_tls;

	if (!s) {
		pthread_once(&scratch_once, scratch_key_init);
		s = xcalloc(1, sizeof(*s));
		s->md = pcre2_match_data_create(1, NULL);
		s->mc = pcre2_match_context_create(NULL);
		if (!s->md || !s->mc) {
			fprintf(stderr, "egressd: out of memory (pcre2 match data)\n");
			abort();
		}
		pcre2_set_depth_limit(s->mc, RULES_DEPTH_LIMIT);
		pcre2_set_heap_limit(s->mc, RULES_HEAP_LIMIT_KIB);
		s->js = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
		if (s->js)
			pcre2_jit_stack_assign(s->mc, NULL, s->js);
		scratch_tls = s;
		pthread_setspecific(scratch_key, s); /* freed at thread exit */
	}
	if (s->cap < need) {
		size_t cap = need < 1024 ? 1024 : need;
		free(s->buf);
		s->buf = xmalloc(cap);
		s->cap = cap;
	}
	return s;
}

/* 1 match, 0 no match, -1 error (limit hit): fail closed. */
static int match_path(const struct rule *r, struct scratch *s, const char *path, size_t n)
{
	uint32_t limit = RULES_MATCH_LIMIT;
	int rc;

	if (!r->anchored) {
		size_t per = (r->jit ? RULES_MATCH_BUDGET_JIT : RULES_MATCH_BUDGET) / (n + 1);
		limit = per < RULES_MATCH_FLOOR ? RULES_MATCH_FLOOR : per < limit ? (uint32_t)per : limit;
	}
	pcre2_set_match_limit(s->mc, limit);
	rc = pcre2_match(r->re, (PCRE2_SPTR)path, n, 0, 0, s->md, s->mc);
	if (rc >= 0) /* 0: matched, ovector too small for the groups (we need none) */
		return 1;
	return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
}

static bool method_matches(const struct rule *r, const char *method)
{
	if (r->nmethods == 0)
		return true;
	for (size_t i = 0; i < r->nmethods; i++)
		if (strcmp(r->methods[i], method) == 0)
			return true;
	return false;
}

bool ruleset_check(const struct ruleset *rs, const struct target *t, const char *method,
		   const char *target, size_t tlen, struct rule_verdict *v)
{
	struct scratch *s = NULL;
	struct rule_verdict out = { .allow = rs && rs->default_allow, .how = RULE_BY_DEFAULT };
	const char *why;
	size_t plen = 0;

	for (size_t i = 0; rs && i < rs->n; i++) {
		const struct rule *r = &rs->rules[i];
		int m;

		if (!patlist_match_target(r->hosts, t))
			continue;
		if (!s) {
			/* the first rule naming the host: the path must be unambiguous */
			s = scratch_get(tlen + 2);
			if ((why = rules_normalize_path(target, tlen, s->buf, &plen))) {
				out = (struct rule_verdict){ .how = RULE_AMBIGUOUS, .why = why };
				goto out;
			}
		}
		if (!method_matches(r, method))
			continue;
		m = r->re ? match_path(r, s, s->buf, plen) : 1;
		if (m != 0) { /* a match decides; an error refuses (fail closed) */
			out = (struct rule_verdict){ .allow = m > 0 && r->allow,
						     .how = m > 0 ? RULE_BY_RULE : RULE_MATCH_ERROR,
						     .index = i };
			goto out;
		}
	}
out:
	if (s)
		*v = out;
	return s != NULL;
}

void rules_verdict_text(const struct rule_verdict *v, char *out, size_t n)
{
	switch (v->how) {
	case RULE_BY_RULE:
		snprintf(out, n, " refused by rule %zu (rule-denied)", v->index);
		break;
	case RULE_BY_DEFAULT:
		snprintf(out, n, " refused by rulesDefault: no rule matches (rule-denied)");
		break;
	case RULE_AMBIGUOUS:
		snprintf(out, n, " refused: ambiguous path: %s (rule-denied)", v->why);
		break;
	case RULE_MATCH_ERROR:
		snprintf(out, n, " refused: rule %zu's path pattern hit the match limit (rule-denied)",
			 v->index);
		break;
	}
}
