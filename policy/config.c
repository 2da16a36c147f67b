/* config.c -- loading a JSON policy file (jansson) into a policy, with
 * FILE:LINE:COL errors that point at the offending key or value */
#include "config_int.h"
#include "errmsg.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "injspec.h"
#include "pattern.h"
#include "policy.h"
#include "rules.h"
#include "sandboxes.h"

#define CONFIG_MAX_BYTES ((size_t)4 << 20) /* a policy file larger than this is refused */
#define NPOS ((size_t)-1)
#define SECRET_NAME_MAX 255 /* as policy.c: longest secret name */

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

const char *config_quote(const char *s, size_t n, char *buf, size_t cap)
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

const char *config_type_name(const json_t *v)
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

const char *config_path_str(const struct loader *L, char *buf)
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
					      plain ? k : config_quote(k, strlen(k), q, sizeof(q)));
		} else {
			o += (size_t)snprintf(buf + o, WHERE_LEN - o, "[%zu]",
					      L->path[d].index);
		}
	}
	return buf;
}

bool config_fail(struct loader *L, bool at_key, const char *fmt, ...)
{
	unsigned long line = 1, col = 1;
	size_t off = locate(L->text, L->len, L->path, L->depth, at_key);
	va_list ap;
	int n;

	if (off != NPOS)
		line_col(L->text, off, &line, &col);
	if (L->errpath)
		config_path_str(L, L->errpath);
	n = snprintf(L->err, CONFIG_ERRLEN, "%s:%lu:%lu: ", L->name, line, col);
	if (n >= 0 && n < CONFIG_ERRLEN) {
		va_start(ap, fmt);
		vsnprintf(L->err + n, CONFIG_ERRLEN - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return false;
}

void config_push_key(struct loader *L, const char *key)
{
	L->path[L->depth].key = key;
	L->path[L->depth].index = 0;
	L->depth++;
}

void config_push_index(struct loader *L, size_t index)
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
		return config_fail(L, false, "%s must be an array of pattern strings, not %s",
				   config_path_str(L, where), config_type_name(arr));
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		struct pattern *pat;
		bool ok = true;

		config_push_index(L, i);
		if (!s)
			ok = config_fail(L, false, "%s must be a pattern string, not %s",
					 config_path_str(L, where), config_type_name(v));
		else if (memchr(s, ',', n))
			ok = config_fail(L, false, "%s: %s: one pattern per string (no commas)",
					 config_path_str(L, where),
					 config_quote(s, n, pbuf, sizeof(pbuf)));
		else if (!(pat = pattern_parse(s, n, perr)))
			ok = config_fail(L, false, "%s: invalid pattern %s: %s",
					 config_path_str(L, where),
					 config_quote(s, n, pbuf, sizeof(pbuf)), perr);
		else if (hosts)
			patlist_add(hosts, pat);
		else
			pattern_free(pat);
		if (ok && L->apply && add && !add(L->p, s, perr))
			ok = config_fail(L, false, "%s: %s", config_path_str(L, where), perr);
		L->depth--;
		if (!ok)
			return false;
	}
	/* an empty allowNet still makes allowNet present (deny all) */
	if (L->apply && add && json_array_size(arr) == 0 && !add(L->p, "", perr))
		return config_fail(L, false, "%s: %s", config_path_str(L, where), perr);
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

struct inject_place {
	struct injspec *spec;
	enum injwhere w;
};

/* One name of "inject".PLACE (config_each_string's callback). */
static bool inject_name(struct loader *L, const char *s, size_t n, void *arg)
{
	struct inject_place *ip = arg;
	char where[WHERE_LEN], ierr[INJSPEC_ERRLEN];

	if (!injspec_add(ip->spec, ip->w, s, n, ierr))
		return config_fail(L, false, "%s: %s", config_path_str(L, where), ierr);
	return true;
}

/* "inject": {"query": [...], "form": [...], "json": ["$.a.b", ...]}; the
 * current path is secrets.NAME.inject. */
static bool load_inject(struct loader *L, const json_t *obj, struct injspec *spec)
{
	char where[WHERE_LEN], q[QUOTE_LEN];
	const char *key;
	const json_t *v;

	if (!json_is_object(obj))
		return config_fail(L, false, "%s must be an object {\"query\": [...], \"form\": "
					     "[...], \"json\": [...]}, not %s",
				   config_path_str(L, where), config_type_name(obj));
	json_object_foreach((json_t *)obj, key, v) {
		struct inject_place ip = { spec, INJ_NWHERE };
		bool ok;

		for (int k = INJ_QUERY; k < INJ_NWHERE; k++)
			if (strcmp(key, injspec_where_str((enum injwhere)k)) == 0)
				ip.w = (enum injwhere)k;
		config_path_str(L, where); /* the parent's, for the message */
		config_push_key(L, key);
		if (ip.w == INJ_NWHERE)
			ok = config_fail(L, true, "%s: unknown key %s (expected query, form or "
						  "json)", where,
					 config_quote(key, strlen(key), q, sizeof(q)));
		else
			ok = config_each_string(L, v, "a string", inject_name, &ip);
		L->depth--;
		if (!ok)
			return false;
	}
	return true;
}

/* One entry of "secrets"; the current path is secrets.NAME. */
static bool load_secret(struct loader *L, const char *name, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], perr[PATTERN_ERRLEN];
	struct patlist *hosts = patlist_new();
	struct injspec *spec = NULL;
	const json_t *hosts_v = NULL, *v;
	const char *key, *arg = NULL;
	int src = -1;
	bool ok = false;

	if (!valid_env_name(name)) {
		config_fail(L, true, "secret name %s is not a valid environment variable name "
				     "([A-Za-z_][A-Za-z0-9_]*, at most 255 characters)",
			    config_quote(name, strlen(name), q, sizeof(q)));
		goto out;
	}
	if (!L->apply)
		for (size_t i = 0; i < policy_secret_count(L->p); i++)
			if (strcmp(policy_secret_name(L->p, i), name) == 0) {
				config_fail(L, true, "secret %s is already defined", name);
				goto out;
			}
	if (!json_is_object(obj)) {
		config_fail(L, false, "%s must be an object {\"hosts\": [...], \"value\": ...}, "
				      "not %s", config_path_str(L, where), config_type_name(obj));
		goto out;
	}
	json_object_foreach((json_t *)obj, key, v) {
		int s = source_of(key);
		config_push_key(L, key);
		if (strcmp(key, "hosts") == 0) {
			hosts_v = v;
			if (!check_patterns(L, v, hosts, NULL))
				goto out;
			if (patlist_len(hosts) == 0) {
				config_fail(L, false, "%s is empty (a secret needs at least one "
						      "host)", config_path_str(L, where));
				goto out;
			}
		} else if (strcmp(key, "inject") == 0) {
			injspec_free(spec);
			spec = injspec_new();
			if (!load_inject(L, v, spec))
				goto out;
		} else if (s < 0) {
			config_fail(L, true, "secrets.%s: unknown key %s (expected hosts, value, "
					     "valueFromEnv, valueFromFile or inject)", name,
				    config_quote(key, strlen(key), q, sizeof(q)));
			goto out;
		} else if (src >= 0) {
			config_fail(L, true, "secrets.%s: both %s and %s given (exactly one of "
					     "value, valueFromEnv, valueFromFile)", name,
				    source_keys[src], key);
			goto out;
		} else if (!json_is_string(v)) {
			/* never echo a value: it may be the secret itself */
			config_fail(L, false, "%s must be a string, not %s",
				    config_path_str(L, where), config_type_name(v));
			goto out;
		} else if (json_string_length(v) == 0) {
			config_fail(L, false, "%s is empty", config_path_str(L, where));
			goto out;
		} else {
			src = s;
			arg = json_string_value(v);
		}
		L->depth--;
	}
	if (!hosts_v) {
		config_fail(L, false, "%s: missing \"hosts\" (a secret needs at least one host)",
			    config_path_str(L, where));
		goto out;
	}
	if (src < 0) {
		config_fail(L, false, "%s: needs one of value, valueFromEnv or valueFromFile",
			    config_path_str(L, where));
		goto out;
	}
	if (L->apply) {
		struct patlist *h = hosts;
		hosts = NULL; /* policy_add_secret_list owns it now, even on error */
		if (!policy_add_secret_list(L->p, name, h, (enum secret_source)src, arg, perr)) {
			config_fail(L, true, "%s", perr);
			goto out;
		}
		if (spec && !policy_set_secret_inject(L->p, name, spec, perr)) {
			spec = NULL;
			config_fail(L, true, "%s", perr);
			goto out;
		}
		spec = NULL; /* the policy's now */
	}
	ok = true;
out:
	injspec_free(spec);
	patlist_free(hosts);
	return ok;
}

static bool load_secrets(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN];
	const char *name;
	const json_t *v;

	if (!json_is_object(obj))
		return config_fail(L, false, "%s must be an object mapping names to secrets, "
					     "not %s", config_path_str(L, where),
				   config_type_name(obj));
	json_object_foreach((json_t *)obj, name, v) {
		config_push_key(L, name);
		if (!load_secret(L, name, v))
			return false;
		L->depth--;
	}
	return true;
}

/* ---- values shared with config_rules.c and config_sandboxes.c ---- */

bool config_each_string(struct loader *L, const json_t *v, const char *what,
			bool (*one)(struct loader *, const char *, size_t, void *), void *arg)
{
	char where[WHERE_LEN];
	const json_t *e;
	size_t i;

	if (json_is_string(v))
		return one(L, json_string_value(v), json_string_length(v), arg);
	if (!json_is_array(v))
		return config_fail(L, false, "%s must be %s or an array of them, not %s",
				   config_path_str(L, where), what, config_type_name(v));
	if (json_array_size(v) == 0)
		return config_fail(L, false, "%s is an empty array", config_path_str(L, where));
	json_array_foreach(v, i, e) {
		bool ok;
		config_push_index(L, i);
		ok = json_is_string(e) ? one(L, json_string_value(e), json_string_length(e), arg)
				       : config_fail(L, false, "%s must be %s, not %s",
						     config_path_str(L, where), what,
						     config_type_name(e));
		L->depth--;
		if (!ok)
			return false;
	}
	return true;
}

bool config_load_root(struct loader *L, const json_t *root)
{
	char q[QUOTE_LEN];
	const char *key;
	const json_t *v;
	bool sandboxes = L->sbt && json_object_get(root, "sandboxes");

	if (!json_is_object(root))
		return config_fail(L, false, "the policy must be a JSON object, not %s",
				   config_type_name(root));
	L->has_sandboxes |= sandboxes;
	json_object_foreach((json_t *)root, key, v) {
		bool ok;
		config_push_key(L, key);
		if (strcmp(key, "sandboxes") == 0)
			ok = config_load_sandboxes(L, v);
		else if (sandboxes)
			ok = config_fail(L, true, "%s next to \"sandboxes\": with sandboxes, each "
						  "sandbox's policy holds its own keys",
					 config_quote(key, strlen(key), q, sizeof(q)));
		else if (strcmp(key, "allowNet") == 0)
			ok = check_patterns(L, v, NULL, policy_add_allow);
		else if (strcmp(key, "denyNet") == 0)
			ok = check_patterns(L, v, NULL, policy_add_deny);
		else if (strcmp(key, "intercept") == 0)
			ok = check_patterns(L, v, NULL, policy_add_intercept);
		else if (strcmp(key, "secrets") == 0)
			ok = load_secrets(L, v);
		else if (strcmp(key, "rules") == 0 || strcmp(key, "rulesDefault") == 0)
			ok = config_load_rules(L, key, v);
		else
			ok = config_fail(L, true, "unknown key %s (expected allowNet, denyNet, "
						  "intercept, secrets, rules, rulesDefault or "
						  "sandboxes)",
					 config_quote(key, strlen(key), q, sizeof(q)));
		if (!ok)
			return false;
		L->depth--;
	}
	return true;
}

json_t *config_parse_json(const char *name, const char *text, size_t len, char *err)
{
	json_error_t jerr;
	json_t *root;
	size_t i;

	pthread_once(&alloc_once, set_alloc_funcs);
	for (i = 0; i < len && is_ws(text[i]); i++)
		;
	if (i == len) {
		snprintf(err, CONFIG_ERRLEN, "%s:1:1: empty policy (expected a JSON object)", name);
		return NULL;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		/* jansson's column is that of the last character read; 0 at a line start */
		snprintf(err, CONFIG_ERRLEN, "%s:%d:%d: %s", name, jerr.line,
			 jerr.column > 0 ? jerr.column : 1, jerr.text);
	return root;
}

/* Both passes over the text; with sbt, a "sandboxes" section builds *sbt. */
static bool load_buffer(struct policy *p, const char *name, const char *text, size_t len,
			struct sbtable **sbt, bool tolerant, char *err)
{
	struct loader L = { .name = name ? name : "<policy>", .text = text, .len = len,
			    .p = p, .err = err, .tolerant = tolerant };
	json_t *root = NULL;
	bool ok = false;

	root = config_parse_json(L.name, text, len, err);
	if (!root)
		goto out;
	/* validate everything first, so a bad file leaves p unchanged */
	L.sbt = sbt ? sbx_new() : NULL;
	ok = config_load_root(&L, root);
	sbx_free(L.sbt);
	if (!ok)
		goto out;
	L.apply = true;
	L.depth = 0;
	L.sbt = sbt ? sbx_new() : NULL;
	ok = config_load_root(&L, root);
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
