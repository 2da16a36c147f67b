/* injspec.c -- a secret's opt-in injection places (query parameters, form
 * fields, JSON member paths): building, validating and looking them up */
#include "injspec.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "errmsg.h"

struct injspec {
	char *names[INJ_NWHERE][INJSPEC_NAMES_MAX]; /* owned; JSON paths without "$." */
	size_t nlen[INJ_NWHERE][INJSPEC_NAMES_MAX];
	size_t count[INJ_NWHERE];
};

#define seterr(err, ...) errmsg_set((err), INJSPEC_ERRLEN, __VA_ARGS__)

static const char *const where_names[INJ_NWHERE] = { "header", "query", "form", "json" };

const char *injspec_where_str(enum injwhere w)
{
	return w < INJ_NWHERE ? where_names[w] : "?";
}

struct injspec *injspec_new(void)
{
	return xcalloc(1, sizeof(struct injspec));
}

void injspec_free(struct injspec *s)
{
	if (!s)
		return;
	for (int w = 0; w < INJ_NWHERE; w++)
		for (size_t i = 0; i < s->count[w]; i++)
			free(s->names[w][i]);
	free(s);
}

/* "$.a.b": members non-empty, none of . [ ] * */
static bool json_path_ok(const char *p, size_t n)
{
	if (n < 3 || p[0] != '$' || p[1] != '.')
		return false;
	for (size_t i = 2, seg = 0; i <= n; i++) {
		if (i == n || p[i] == '.') {
			if (seg == 0)
				return false;
			seg = 0;
		} else if (p[i] == '[' || p[i] == ']' || p[i] == '*') {
			return false;
		} else {
			seg++;
		}
	}
	return true;
}

bool injspec_add(struct injspec *s, enum injwhere w, const char *name, size_t n, char *err)
{
	size_t skip = w == INJ_JSON ? 2 : 0;

	if (w != INJ_QUERY && w != INJ_FORM && w != INJ_JSON) {
		seterr(err, "unknown place (expected query, form or json)");
		return false;
	}
	if (n == 0 || n > INJSPEC_NAME_MAX || memchr(name, '\0', n)) {
		seterr(err, "%s name must be 1 to %d bytes", where_names[w], INJSPEC_NAME_MAX);
		return false;
	}
	if (w == INJ_JSON && !json_path_ok(name, n)) {
		seterr(err, "json path \"%.*s\" is not of the form $.member[.member...] "
			    "(objects only; no '[', ']', '*')", (int)n, name);
		return false;
	}
	if (injspec_names(s, w, name + skip, n - skip)) {
		seterr(err, "%s name \"%.*s\" given twice", where_names[w], (int)n, name);
		return false;
	}
	if (s->count[w] == INJSPEC_NAMES_MAX) {
		seterr(err, "more than %d %s names", INJSPEC_NAMES_MAX, where_names[w]);
		return false;
	}
	s->names[w][s->count[w]] = xstrndup(name + skip, n - skip);
	s->nlen[w][s->count[w]++] = n - skip;
	return true;
}

bool injspec_add_csv(struct injspec *s, const char *csv, char *err)
{
	const char *p = csv;

	if (!*p) {
		seterr(err, "empty injection spec (want PLACE:NAME[,PLACE:NAME...])");
		return false;
	}
	for (;;) {
		const char *end = strchr(p, ','), *colon;
		size_t n = end ? (size_t)(end - p) : strlen(p);
		enum injwhere w = INJ_NWHERE;

		colon = memchr(p, ':', n);
		for (int k = INJ_QUERY; colon && k < INJ_NWHERE; k++)
			if (strlen(where_names[k]) == (size_t)(colon - p) &&
			    memcmp(p, where_names[k], (size_t)(colon - p)) == 0)
				w = (enum injwhere)k;
		if (w == INJ_NWHERE) {
			seterr(err, "\"%.*s\": want PLACE:NAME with PLACE query, form or json",
			       (int)(n > 64 ? 64 : n), p);
			return false;
		}
		if (!injspec_add(s, w, colon + 1, n - (size_t)(colon + 1 - p), err))
			return false;
		if (!end)
			return true;
		p = end + 1;
	}
}

bool injspec_wants(const struct injspec *s, enum injwhere w)
{
	return s && w < INJ_NWHERE && s->count[w] > 0;
}

bool injspec_names(const struct injspec *s, enum injwhere w, const char *name, size_t n)
{
	for (size_t i = 0; s && w < INJ_NWHERE && i < s->count[w]; i++)
		if (s->nlen[w][i] == n && memcmp(s->names[w][i], name, n) == 0)
			return true;
	return false;
}
