/* config.c -- loading a JSON policy file (jansson) into a policy, with
 * FILE:LINE:COL errors that point at the offending key or value */
#include "config.h"
#include "errmsg.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"
#include "pattern.h"
#include "policy.h"
#include "rules.h"
#include "sandboxes.h"

#define CONFIG_MAX_BYTES ((size_t)4 << 20) /* a policy file larger than this is refused */
#define PATH_DEPTH 8 /* sandboxes.NAME.policy.rules[i].host[j] and the like */
#define NPOS ((size_t)-1)
#define SECRET_NAME_MAX 255 /* as policy.c: longest secret name */

/* One step from a JSON value to a child: an object key or an array index. */
struct step {
	const char *key; /* NULL: an index */
	size_t index;
};

struct loader {
	const char *name;   /* file name for messages */
	const char *text;   /* the whole JSON text, already accepted by jansson */
	size_t len;
	struct policy *p;
	bool apply;         /* false: validate only; true: add to p */
	struct sbtable *sbt; /* "sandboxes" allowed (the main file) when non-NULL */
	bool has_sandboxes; /* the root holds "sandboxes" */
	bool tolerant;      /* a sandbox's policy file may fail (recorded in sbt) */
	char *err;          /* CONFIG_ERRLEN bytes */
	struct step path[PATH_DEPTH];
	size_t depth;       /* steps in path: where the value being checked is */
	struct ruleset *rules; /* "rules"/"rulesDefault", built in the validation
				  pass, handed to p after the apply pass */
};

/* ---- jansson memory: wiped on free, since it holds literal secret values ---- */

static void *wiping_malloc(size_t n)
{
	return malloc(n);
}

static void wiping_free(void *ptr)
{
	if (ptr)
		xwipe(ptr, malloc_usable_size(ptr));
	free(ptr);
}

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

static void set_alloc_funcs(void)
{
	json_set_alloc_funcs(wiping_malloc, wiping_free);
}

/* ---- position locator: a minimal tokenizer over JSON jansson accepted ---- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && is_ws(s[i]))
		i++;
	return i;
}

/* i at an opening quote; returns the index just after the closing quote. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return len;
}

/* i at the first byte of a value; returns the index just after it. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
	size_t depth = 0;

	if (i >= len)
		return len;
	if (s[i] == '"')
		return skip_string(s, len, i);
	if (s[i] != '{' && s[i] != '[') {
		while (i < len && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']')
			i++;
		return i;
	}
	while (i < len) {
		char c = s[i];
		if (c == '"') {
			i = skip_string(s, len, i);
			continue;
		}
		i++;
		if (c == '{' || c == '[')
			depth++;
		else if ((c == '}' || c == ']') && --depth == 0)
			break;
	}
	return i;
}


/* Reads \uXXXX's four digits at s[i]; -1 if malformed. */
static long hex4(const char *s, size_t len, size_t i)
{
	long v = 0;

	if (i + 4 > len)
		return -1;
	for (size_t k = 0; k < 4; k++) {
		int h = hex_digit(s[i + k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static size_t utf8_encode(unsigned long cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The byte a one-character escape (\n, \", ...) stands for, or -1. */
static int simple_escape(char e)
{
	switch (e) {
	case '"': return '"';
	case '\\': return '\\';
	case '/': return '/';
	case 'b': return '\b';
	case 'f': return '\f';
	case 'n': return '\n';
	case 'r': return '\r';
	case 't': return '\t';
	}
	return -1;
}

/* Does the JSON string whose opening quote is at s[i] decode to key? */
static bool string_equals(const char *s, size_t len, size_t i, const char *key)
{
	size_t k = 0, klen = strlen(key);
	unsigned char buf[4];
	size_t bn;

	for (i++; i < len && s[i] != '"'; k += bn) {
		if (s[i] != '\\') {
			buf[0] = (unsigned char)s[i++];
			bn = 1;
		} else if (i + 1 < len && s[i + 1] == 'u') {
			long cp = hex4(s, len, i + 2), lo;
			if (cp < 0)
				return false;
			i += 6;
			if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < len && s[i] == '\\' &&
			    s[i + 1] == 'u' && (lo = hex4(s, len, i + 2)) >= 0xdc00 && lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				i += 6;
			}
			bn = utf8_encode((unsigned long)cp, buf);
		} else {
			int c = i + 1 < len ? simple_escape(s[i + 1]) : -1;
			if (c < 0)
				return false;
			buf[0] = (unsigned char)c;
			bn = 1;
			i += 2;
		}
		if (k + bn > klen || memcmp(key + k, buf, bn) != 0)
			return false;
	}
	return k == klen;
}

/* The byte offset of the value at path[0..depth) in s (valid JSON), or, with
 * at_key, of the last step's key; NPOS if not found. */
static size_t locate(const char *s, size_t len, const struct step *path, size_t depth,
		     bool at_key)
{
	size_t i = skip_ws(s, len, 0);

	for (size_t d = 0; d < depth; d++) {
		if (i >= len)
			return NPOS;
		if (path[d].key) {
			if (s[i] != '{')
				return NPOS;
			i = skip_ws(s, len, i + 1);
			for (;;) {
				size_t keypos = i;
				bool match;
				if (i >= len || s[i] != '"')
					return NPOS;
				match = string_equals(s, len, i, path[d].key);
				i = skip_ws(s, len, skip_string(s, len, i));
				if (i >= len || s[i] != ':')
					return NPOS;
				i = skip_ws(s, len, i + 1);
				if (match) {
					if (at_key && d + 1 == depth)
						return keypos;
					break;
				}
				i = skip_ws(s, len, skip_value(s, len, i));
				if (i >= len || s[i] != ',')
					return NPOS;
				i = skip_ws(s, len, i + 1);
			}
		} else {
			if (s[i] != '[')
				return NPOS;
			i = skip_ws(s, len, i + 1);
			for (size_t k = 0; k < path[d].index; k++) {
				i = skip_ws(s, len, skip_value(s, len, i));
				if (i >= len || s[i] != ',')
					return NPOS;
				i = skip_ws(s, len, i + 1);
			}
			if (i >= len || s[i] == ']')
				return NPOS;
		}
	}
	return i < len ? i : NPOS;
}

/* 1-based line and column of offset off; columns count characters (UTF-8
 * lead bytes), as jansson's do. */
static void line_col(const char *s, size_t off, unsigned long *line, unsigned long *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)s[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

/* ---- messages ---- */

/* Writes s (n bytes) quoted into buf (cap bytes), control and non-ASCII
 * bytes as \xNN, cut with "..." after 64 bytes. Returns buf. */
static const char *quote(const char *s, size_t n, char *buf, size_t cap)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < n && o + 8 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i == 64) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

#define QUOTE_LEN 300 /* enough for quote() of anything */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

#define WHERE_LEN 400 /* a path string: two quoted keys and more */

/* The current path as "secrets.NAME.hosts[0]" into buf (WHERE_LEN bytes). */
static const char *path_str(const struct loader *L, char *buf)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t d = 0; d < L->depth && o < WHERE_LEN; d++) {
		if (L->path[d].key) {
			const char *k = L->path[d].key;
			bool plain = *k != '\0';
			char q[QUOTE_LEN];
			for (const char *c = k; *c && plain; c++)
				plain = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
					(*c >= '0' && *c <= '9') || *c == '_';
			o += (size_t)snprintf(buf + o, WHERE_LEN - o, "%s%s", d ? "." : "",
					      plain ? k : quote(k, strlen(k), q, sizeof(q)));
		} else {
			o += (size_t)snprintf(buf + o, WHERE_LEN - o, "[%zu]",
					      L->path[d].index);
		}
	}
	return buf;
}

static bool fail(struct loader *L, bool at_key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes "NAME:LINE:COL: message" for the current path (its key with
 * at_key) into L->err; returns false. */
static bool fail(struct loader *L, bool at_key, const char *fmt, ...)
{
	unsigned long line = 1, col = 1;
	size_t off = locate(L->text, L->len, L->path, L->depth, at_key);
	va_list ap;
	int n;

	if (off != NPOS)
		line_col(L->text, off, &line, &col);
	n = snprintf(L->err, CONFIG_ERRLEN, "%s:%lu:%lu: ", L->name, line, col);
	if (n >= 0 && n < CONFIG_ERRLEN) {
		va_start(ap, fmt);
		vsnprintf(L->err + n, CONFIG_ERRLEN - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return false;
}

static void push_key(struct loader *L, const char *key)
{
	L->path[L->depth].key = key;
	L->path[L->depth].index = 0;
	L->depth++;
}

static void push_index(struct loader *L, size_t index)
{
	L->path[L->depth].key = NULL;
	L->path[L->depth].index = index;
	L->depth++;
}

/* ---- the policy's vocabulary ---- */

/* Checks the array of pattern strings at the current path. With hosts,
 * each valid pattern is appended to it (ownership moves to hosts). With
 * add, in the apply pass, each pattern string is passed to add(). */
static bool check_patterns(struct loader *L, const json_t *arr, struct patlist *hosts,
			   bool (*add)(struct policy *, const char *, char *))
{
	char pbuf[QUOTE_LEN], perr[PATTERN_ERRLEN], where[WHERE_LEN];
	size_t i;
	const json_t *v;

	if (!json_is_array(arr))
		return fail(L, false, "%s must be an array of pattern strings, not %s",
			    path_str(L, where), type_name(arr));
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		struct pattern *pat;
		bool ok = true;

		push_index(L, i);
		if (!s)
			ok = fail(L, false, "%s must be a pattern string, not %s",
				  path_str(L, where), type_name(v));
		else if (memchr(s, ',', n))
			ok = fail(L, false, "%s: %s: one pattern per string (no commas)",
				  path_str(L, where), quote(s, n, pbuf, sizeof(pbuf)));
		else if (!(pat = pattern_parse(s, n, perr)))
			ok = fail(L, false, "%s: invalid pattern %s: %s", path_str(L, where),
				  quote(s, n, pbuf, sizeof(pbuf)), perr);
		else if (hosts)
			patlist_add(hosts, pat);
		else
			pattern_free(pat);
		if (ok && L->apply && add && !add(L->p, s, perr))
			ok = fail(L, false, "%s: %s", path_str(L, where), perr);
		L->depth--;
		if (!ok)
			return false;
	}
	/* an empty allowNet still makes allowNet present (deny all) */
	if (L->apply && add && json_array_size(arr) == 0 && !add(L->p, "", perr))
		return fail(L, false, "%s: %s", path_str(L, where), perr);
	return true;
}

/* [A-Za-z_][A-Za-z0-9_]*, at most SECRET_NAME_MAX bytes (as policy.c checks) */
static bool valid_env_name(const char *s)
{
	if (!*s || strlen(s) > SECRET_NAME_MAX)
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && (i == 0 || c < '0' || c > '9'))
			return false;
	}
	return true;
}

static const char *const source_keys[] = {
	[SECRET_VALUE] = "value",
	[SECRET_FROM_ENV] = "valueFromEnv",
	[SECRET_FROM_FILE] = "valueFromFile",
};

static int source_of(const char *key)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(key, source_keys[i]) == 0)
			return i;
	return -1;
}

/* One entry of "secrets"; the current path is secrets.NAME. */
static bool load_secret(struct loader *L, const char *name, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], perr[PATTERN_ERRLEN];
	struct patlist *hosts = patlist_new();
	const json_t *hosts_v = NULL, *v;
	const char *key, *arg = NULL;
	int src = -1;
	bool ok = false;

	if (!valid_env_name(name)) {
		fail(L, true, "secret name %s is not a valid environment variable name "
			      "([A-Za-z_][A-Za-z0-9_]*, at most 255 characters)",
		     quote(name, strlen(name), q, sizeof(q)));
		goto out;
	}
	if (!L->apply)
		for (size_t i = 0; i < policy_secret_count(L->p); i++)
			if (strcmp(policy_secret_name(L->p, i), name) == 0) {
				fail(L, true, "secret %s is already defined", name);
				goto out;
			}
	if (!json_is_object(obj)) {
		fail(L, false, "%s must be an object {\"hosts\": [...], \"value\": ...}, not %s",
		     path_str(L, where), type_name(obj));
		goto out;
	}
	json_object_foreach((json_t *)obj, key, v) {
		int s = source_of(key);
		push_key(L, key);
		if (strcmp(key, "hosts") == 0) {
			hosts_v = v;
			if (!check_patterns(L, v, hosts, NULL))
				goto out;
			if (patlist_len(hosts) == 0) {
				fail(L, false, "%s is empty (a secret needs at least one host)",
				     path_str(L, where));
				goto out;
			}
		} else if (s < 0) {
			fail(L, true, "secrets.%s: unknown key %s (expected hosts, value, valueFromEnv or "
				      "valueFromFile)", name, quote(key, strlen(key), q, sizeof(q)));
			goto out;
		} else if (src >= 0) {
			fail(L, true, "secrets.%s: both %s and %s given (exactly one of value, "
				      "valueFromEnv, valueFromFile)", name, source_keys[src], key);
			goto out;
		} else if (!json_is_string(v)) {
			/* never echo a value: it may be the secret itself */
			fail(L, false, "%s must be a string, not %s", path_str(L, where),
			     type_name(v));
			goto out;
		} else if (json_string_length(v) == 0) {
			fail(L, false, "%s is empty", path_str(L, where));
			goto out;
		} else {
			src = s;
			arg = json_string_value(v);
		}
		L->depth--;
	}
	if (!hosts_v) {
		fail(L, false, "%s: missing \"hosts\" (a secret needs at least one host)",
		     path_str(L, where));
		goto out;
	}
	if (src < 0) {
		fail(L, false, "%s: needs one of value, valueFromEnv or valueFromFile",
		     path_str(L, where));
		goto out;
	}
	if (L->apply) {
		struct patlist *h = hosts;
		hosts = NULL; /* policy_add_secret_list owns it now, even on error */
		if (!policy_add_secret_list(L->p, name, h, (enum secret_source)src, arg, perr)) {
			fail(L, true, "%s", perr);
			goto out;
		}
	}
	ok = true;
out:
	patlist_free(hosts);
	return ok;
}

static bool load_secrets(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN];
	const char *name;
	const json_t *v;

	if (!json_is_object(obj))
		return fail(L, false, "%s must be an object mapping names to secrets, not %s",
			    path_str(L, where), type_name(obj));
	json_object_foreach((json_t *)obj, name, v) {
		push_key(L, name);
		if (!load_secret(L, name, v))
			return false;
		L->depth--;
	}
	return true;
}

/* ---- request rules ---- */

/* A string or an array of strings at the current path; calls one(L, s, n)
 * for each with the path at that string. Empty arrays are refused. */
static bool each_string(struct loader *L, const json_t *v, const char *what,
			bool (*one)(struct loader *, const char *, size_t, void *), void *arg)
{
	char where[WHERE_LEN];
	const json_t *e;
	size_t i;

	if (json_is_string(v))
		return one(L, json_string_value(v), json_string_length(v), arg);
	if (!json_is_array(v))
		return fail(L, false, "%s must be %s or an array of them, not %s",
			    path_str(L, where), what, type_name(v));
	if (json_array_size(v) == 0)
		return fail(L, false, "%s is an empty array", path_str(L, where));
	json_array_foreach(v, i, e) {
		bool ok;
		push_index(L, i);
		ok = json_is_string(e) ? one(L, json_string_value(e), json_string_length(e), arg)
				       : fail(L, false, "%s must be %s, not %s", path_str(L, where),
					      what, type_name(e));
		L->depth--;
		if (!ok)
			return false;
	}
	return true;
}

static bool rule_host(struct loader *L, const char *s, size_t n, void *arg)
{
	char where[WHERE_LEN], q[QUOTE_LEN], perr[PATTERN_ERRLEN];
	struct pattern *pat;

	if (memchr(s, ',', n))
		return fail(L, false, "%s: %s: one pattern per string (no commas)",
			    path_str(L, where), quote(s, n, q, sizeof(q)));
	if (!(pat = pattern_parse(s, n, perr)))
		return fail(L, false, "%s: invalid pattern %s: %s", path_str(L, where),
			    quote(s, n, q, sizeof(q)), perr);
	patlist_add(arg, pat);
	return true;
}

struct methods {
	const char *v[64];
	size_t n;
};

static bool rule_method(struct loader *L, const char *s, size_t n, void *arg)
{
	char where[WHERE_LEN], q[QUOTE_LEN];
	struct methods *m = arg;

	if (!rules_method_valid(s, n))
		return fail(L, false, "%s: invalid method %s (an HTTP method token, compared "
				      "case-sensitively: write it in upper case, e.g. \"GET\")",
			    path_str(L, where), quote(s, n, q, sizeof(q)));
	if (m->n == sizeof(m->v) / sizeof(m->v[0]))
		return fail(L, false, "%s: more than %zu methods", path_str(L, where),
			    sizeof(m->v) / sizeof(m->v[0]));
	m->v[m->n++] = s;
	return true;
}

/* "allow" or "deny" at the current path into *allow. */
static bool action_value(struct loader *L, const json_t *v, bool *allow)
{
	char where[WHERE_LEN], q[QUOTE_LEN];
	const char *s = json_string_value(v);

	if (s && strcmp(s, "allow") == 0)
		*allow = true;
	else if (s && strcmp(s, "deny") == 0)
		*allow = false;
	else if (s)
		return fail(L, false, "%s: %s is not an action (expected \"allow\" or \"deny\")",
			    path_str(L, where), quote(s, json_string_length(v), q, sizeof(q)));
	else
		return fail(L, false, "%s must be \"allow\" or \"deny\", not %s",
			    path_str(L, where), type_name(v));
	return true;
}

/* One entry of "rules"; the current path is rules[i]. */
static bool load_rule(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], q2[QUOTE_LEN], rerr[RULES_ERRLEN];
	struct patlist *hosts = patlist_new();
	struct methods m = { .n = 0 };
	const json_t *host_v = NULL, *path_v = NULL, *action_v = NULL, *v;
	const char *key;
	bool allow = false, ok = false;

	if (!json_is_object(obj)) {
		fail(L, false, "%s must be an object {\"host\": ..., \"action\": ...}, not %s",
		     path_str(L, where), type_name(obj));
		goto out;
	}
	json_object_foreach((json_t *)obj, key, v) {
		bool good = true;
		push_key(L, key);
		if (strcmp(key, "host") == 0) {
			host_v = v;
			good = each_string(L, v, "a pattern string", rule_host, hosts);
		} else if (strcmp(key, "method") == 0) {
			good = each_string(L, v, "a method string", rule_method, &m);
		} else if (strcmp(key, "path") == 0) {
			path_v = v;
			if (!json_is_string(v))
				good = fail(L, false, "%s must be a regular expression string, not %s",
					    path_str(L, where), type_name(v));
		} else if (strcmp(key, "action") == 0) {
			action_v = v;
			good = action_value(L, v, &allow);
		} else {
			L->depth--; /* name the rule, point at the key */
			path_str(L, where);
			L->depth++;
			good = fail(L, true, "%s: unknown key %s (expected host, method, path or action)",
				    where, quote(key, strlen(key), q, sizeof(q)));
		}
		if (!good)
			goto out;
		L->depth--;
	}
	if (!host_v) {
		fail(L, false, "%s: missing \"host\" (a rule needs at least one host pattern)",
		     path_str(L, where));
		goto out;
	}
	if (!action_v) {
		fail(L, false, "%s: missing \"action\" (\"allow\" or \"deny\")", path_str(L, where));
		goto out;
	}
	ok = ruleset_add(L->rules, hosts, m.v, m.n, path_v ? json_string_value(path_v) : NULL,
			 path_v ? json_string_length(path_v) : 0, allow, rerr);
	hosts = NULL; /* the ruleset owns it now, even on error */
	if (!ok) {
		push_key(L, "path");
		fail(L, false, "%s %s: %s", path_str(L, where),
		     path_v ? quote(json_string_value(path_v), json_string_length(path_v), q2,
				    sizeof(q2)) : "", rerr);
	}
out:
	patlist_free(hosts);
	return ok;
}

/* "rules" or "rulesDefault" (key): checked and built in the validation pass only. */
static bool load_rules_key(struct loader *L, const char *key, const json_t *v)
{
	char where[WHERE_LEN];
	const json_t *e;
	size_t i;
	bool allow;

	if (L->apply)
		return true;
	if (policy_rules(L->p))
		return fail(L, true, "%s: request rules are already defined by an earlier policy file",
			    key);
	if (!L->rules)
		L->rules = ruleset_new();
	if (strcmp(key, "rulesDefault") == 0) {
		if (!action_value(L, v, &allow))
			return false;
		ruleset_set_default(L->rules, allow);
		return true;
	}
	if (!json_is_array(v))
		return fail(L, false, "%s must be an array of rule objects, not %s",
			    path_str(L, where), type_name(v));
	json_array_foreach(v, i, e) {
		push_index(L, i);
		if (!load_rule(L, e))
			return false;
		L->depth--;
	}
	return true;
}

static bool load_root(struct loader *L, const json_t *root);

/* A sandbox selector ("source" or "listen" entry) for each_string. */
struct selector {
	int sb;
	bool (*add)(struct sbtable *, int, const char *, char *);
};

static bool add_selector(struct loader *L, const char *s, size_t n, void *arg)
{
	const struct selector *sel = arg;
	char where[WHERE_LEN], e[SBX_ERRLEN];

	(void)n;
	return sel->add(L->sbt, sel->sb, s, e) || fail(L, false, "%s: %s", path_str(L, where), e);
}

/* A sandbox's policy file, relative to the main file's directory. */
static bool load_policy_file(struct loader *L, int sb, const char *file, struct policy *p)
{
	char path[4096], e[CONFIG_ERRLEN], where[WHERE_LEN];
	const char *slash = strrchr(L->name, '/');
	struct stat st;

	if (file[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", file);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - L->name), L->name, file);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		snprintf(e, sizeof(e), "%.400s: not a regular file", path);
	else if (config_load_file(p, path, e))
		return true;
	if (L->tolerant) {
		sbx_set_error(L->sbt, sb, e);
		return true;
	}
	return fail(L, false, "%s: %s", path_str(L, where), e);
}

/* An inline policy object at the current path, loaded into p (NULL:
 * validated only) by a loader of its own, so its rules are its own. */
static bool load_inline(struct loader *L, const json_t *v, struct policy *p)
{
	struct loader S = *L;
	struct policy *scratch = p ? NULL : policy_new();
	bool ok;

	S.p = p ? p : scratch;
	S.sbt = NULL; /* no sandboxes inside a sandbox */
	S.has_sandboxes = false;
	S.rules = NULL;
	S.apply = false;
	ok = load_root(&S, v);
	if (ok && p) {
		S.apply = true;
		ok = load_root(&S, v);
	}
	if (ok && p && S.rules) {
		struct ruleset *rs = S.rules;
		S.rules = NULL; /* p owns it now */
		ok = policy_set_rules(p, rs, L->err);
	}
	ruleset_free(S.rules);
	policy_unref(scratch);
	return ok;
}

/* "policy": an inline object (the keys of a policy file) or a file name. */
static bool load_sandbox_policy(struct loader *L, int sb, const json_t *v)
{
	char where[WHERE_LEN];
	struct sbtable *sbt = L->sbt;
	struct policy *p;
	bool ok;

	if (!json_is_object(v) && !json_is_string(v))
		return fail(L, false, "%s must be a policy object or a policy file name, not %s",
			    path_str(L, where), type_name(v));
	if (!L->apply) /* a file is read in the apply pass */
		return json_is_string(v) || load_inline(L, v, NULL);
	p = policy_new();
	policy_set_scope(p, sbx_name(sbt, (size_t)sb));
	ok = json_is_string(v) ? load_policy_file(L, sb, json_string_value(v), p)
			       : load_inline(L, v, p);
	if (ok && !sbx_error(sbt, (size_t)sb))
		sbx_set_policy(sbt, sb, p);
	policy_unref(p);
	return ok;
}

/* One entry of "sandboxes"; the current path is sandboxes.NAME. */
static bool load_sandbox(struct loader *L, const char *name, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], e[SBX_ERRLEN];
	const json_t *v, *pol = NULL;
	const char *key;
	int sb;

	if ((sb = sbx_add(L->sbt, name, e)) < 0)
		return fail(L, true, "%s", e);
	if (!json_is_object(obj))
		return fail(L, false, "%s must be an object with source, listen and policy, not %s",
			    path_str(L, where), type_name(obj));
	json_object_foreach((json_t *)obj, key, v) {
		bool ok;
		push_key(L, key);
		if (strcmp(key, "source") == 0)
			ok = each_string(L, v, "an address or CIDR", add_selector,
					 &(struct selector){ sb, sbx_add_source });
		else if (strcmp(key, "listen") == 0)
			ok = each_string(L, v, "an IP:PORT listener", add_selector,
					 &(struct selector){ sb, sbx_add_listen });
		else if (strcmp(key, "policy") == 0)
			ok = load_sandbox_policy(L, sb, pol = v);
		else
			ok = fail(L, true, "unknown key %s in a sandbox (expected source, listen "
					   "or policy)", quote(key, strlen(key), q, sizeof(q)));
		if (!ok)
			return false;
		L->depth--;
	}
	if (!pol)
		return fail(L, false, "%s has no \"policy\"", path_str(L, where));
	return true;
}

static bool load_sandboxes(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN], e[SBX_ERRLEN];
	const char *name;
	const json_t *v;

	if (!L->sbt)
		return fail(L, true, "\"sandboxes\" belongs at the top level of the main policy "
				     "file, not inside a sandbox's policy");
	if (!json_is_object(obj) || json_object_size(obj) == 0)
		return fail(L, false, "%s must be a non-empty object mapping names to sandboxes, "
				      "not %s", path_str(L, where), type_name(obj));
	json_object_foreach((json_t *)obj, name, v) {
		push_key(L, name);
		if (!load_sandbox(L, name, v))
			return false;
		L->depth--;
	}
	if (!sbx_validate(L->sbt, e))
		return fail(L, true, "%s", e);
	return true;
}

static bool load_root(struct loader *L, const json_t *root)
{
	char q[QUOTE_LEN];
	const char *key;
	const json_t *v;
	bool sandboxes = L->sbt && json_object_get(root, "sandboxes");

	if (!json_is_object(root))
		return fail(L, false, "the policy must be a JSON object, not %s", type_name(root));
	L->has_sandboxes |= sandboxes;
	json_object_foreach((json_t *)root, key, v) {
		bool ok;
		push_key(L, key);
		if (strcmp(key, "sandboxes") == 0)
			ok = load_sandboxes(L, v);
		else if (sandboxes)
			ok = fail(L, true, "%s next to \"sandboxes\": with sandboxes, each "
					   "sandbox's policy holds its own keys",
				  quote(key, strlen(key), q, sizeof(q)));
		else if (strcmp(key, "allowNet") == 0)
			ok = check_patterns(L, v, NULL, policy_add_allow);
		else if (strcmp(key, "denyNet") == 0)
			ok = check_patterns(L, v, NULL, policy_add_deny);
		else if (strcmp(key, "intercept") == 0)
			ok = check_patterns(L, v, NULL, policy_add_intercept);
		else if (strcmp(key, "secrets") == 0)
			ok = load_secrets(L, v);
		else if (strcmp(key, "rules") == 0 || strcmp(key, "rulesDefault") == 0)
			ok = load_rules_key(L, key, v);
		else
			ok = fail(L, true, "unknown key %s (expected allowNet, denyNet, intercept, "
					   "secrets, rules, rulesDefault or sandboxes)",
				  quote(key, strlen(key), q, sizeof(q)));
		if (!ok)
			return false;
		L->depth--;
	}
	return true;
}

/* Both passes over the text; with sbt, a "sandboxes" section builds *sbt. */
static bool load_buffer(struct policy *p, const char *name, const char *text, size_t len,
			struct sbtable **sbt, bool tolerant, char *err)
{
	struct loader L = { .name = name ? name : "<policy>", .text = text, .len = len,
			    .p = p, .err = err, .tolerant = tolerant };
	json_error_t jerr;
	json_t *root = NULL;
	bool ok = false;
	size_t i;


	pthread_once(&alloc_once, set_alloc_funcs);
	for (i = 0; i < len && is_ws(text[i]); i++)
		;
	if (i == len) {
		snprintf(err, CONFIG_ERRLEN, "%s:1:1: empty policy (expected a JSON object)",
			 L.name);
		goto out;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson's column is that of the last character read; 0 at a line start */
		snprintf(err, CONFIG_ERRLEN, "%s:%d:%d: %s", L.name, jerr.line,
			 jerr.column > 0 ? jerr.column : 1, jerr.text);
		goto out;
	}
	/* validate everything first, so a bad file leaves p unchanged */
	L.sbt = sbt ? sbx_new() : NULL;
	ok = load_root(&L, root);
	sbx_free(L.sbt);
	if (!ok)
		goto out;
	L.apply = true;
	L.depth = 0;
	L.sbt = sbt ? sbx_new() : NULL;
	ok = load_root(&L, root);
	if (ok && L.has_sandboxes)
		*sbt = L.sbt;
	else
		sbx_free(L.sbt);
	if (ok && L.rules) {
		struct ruleset *rs = L.rules;
		L.rules = NULL; /* p owns it now, even on error */
		/* cannot fail: the validation pass checked p had no rules */
		ok = policy_set_rules(p, rs, err);
	}
out:
	ruleset_free(L.rules);
	json_decref(root);
	return ok;
}

bool config_load_buffer(struct policy *p, const char *name, const char *text, size_t len,
			char *err)
{
	return load_buffer(p, name, text, len, NULL, false, err);
}

bool config_load_buffer_main(struct policy *p, const char *name, const char *text, size_t len,
			     bool tolerant, struct sbtable **sbt, char *err)
{
	*sbt = NULL;
	return load_buffer(p, name, text, len, sbt, tolerant, err);
}

static bool load_path(struct policy *p, const char *path, struct sbtable **sbt, bool tolerant,
		      char *err)
{
	FILE *f = NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	bool ok = false;

	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, CONFIG_ERRLEN, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		size_t got;
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 16384;
			char *nbuf;
			if (ncap > CONFIG_MAX_BYTES + 1)
				ncap = CONFIG_MAX_BYTES + 1;
			/* grow by copying, so no unwiped copy of a secret is left behind */
			nbuf = xmalloc(ncap);
			if (buf) {
				memcpy(nbuf, buf, len);
				xwipe(buf, cap);
				free(buf);
			}
			buf = nbuf;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (len > CONFIG_MAX_BYTES) {
			snprintf(err, CONFIG_ERRLEN, "%s: larger than %zu MiB", path,
				 CONFIG_MAX_BYTES >> 20);
			goto out;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		snprintf(err, CONFIG_ERRLEN, "%s: %s", path, strerror(errno ? errno : EIO));
		goto out;
	}
	ok = load_buffer(p, path, buf ? buf : "", len, sbt, tolerant, err);
out:
	if (buf) {
		xwipe(buf, cap);
		free(buf);
	}
	if (f)
		fclose(f);
	return ok;
}

bool config_load_file(struct policy *p, const char *path, char *err)
{
	return load_path(p, path, NULL, false, err);
}

bool config_load_main(struct policy *p, const char *path, bool tolerant, struct sbtable **sbt,
		      char *err)
{
	*sbt = NULL;
	return load_path(p, path, sbt, tolerant, err);
}
