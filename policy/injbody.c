/* injbody.c -- holding a form or JSON request body under a bound, and
 * rewriting it whole once it is complete (a placeholder split across reads
 * is then one string like any other) */
#include "injbody.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "inject.h"
#include "injjson.h"
#include "injparam.h"

struct injbody {
	enum injwhere kind;
	struct obuf buf; /* the body so far (wiped when freed) */
	bool over;       /* more than buf.max bytes arrived */
};

enum injwhere injbody_kind(const char *ctype, size_t n)
{
	static const char form[] = "application/x-www-form-urlencoded", json[] = "application/json";
	size_t e = 0, s = 0;

	while (s < n && (ctype[s] == ' ' || ctype[s] == '\t'))
		s++;
	e = s;
	while (e < n && ctype[e] != ';' && ctype[e] != ' ' && ctype[e] != '\t')
		e++;
	n = e - s;
	ctype += s;
	if (n == sizeof(form) - 1 && strncasecmp(ctype, form, n) == 0)
		return INJ_FORM;
	if (n == sizeof(json) - 1 && strncasecmp(ctype, json, n) == 0)
		return INJ_JSON;
	if (n > 5 && strncasecmp(ctype + n - 5, "+json", 5) == 0 && memchr(ctype, '/', n))
		return INJ_JSON;
	return INJ_HEADER;
}

struct injbody *injbody_new(enum injwhere kind, size_t max, size_t expect)
{
	struct injbody *b = xcalloc(1, sizeof(*b));

	b->kind = kind;
	obuf_init(&b->buf, max);
	if (expect)
		obuf_reserve(&b->buf, expect);
	return b;
}

void injbody_free(struct injbody *b)
{
	if (!b)
		return;
	obuf_dispose(&b->buf);
	free(b);
}

bool injbody_feed(struct injbody *b, const char *p, size_t n)
{
	if (!b->over && !obuf_add(&b->buf, p, n)) {
		b->over = true;
		obuf_dispose(&b->buf);
	}
	return !b->over;
}

bool injbody_over(const struct injbody *b)
{
	return b->over;
}

enum injwhere injbody_kind_of(const struct injbody *b)
{
	return b->kind;
}

size_t injbody_len(const struct injbody *b)
{
	return b->buf.len;
}

bool injbody_finish(struct injbody *b, const struct policy *p, const struct secretset *s,
		    uint64_t mask, struct obuf *out, uint64_t *used)
{
	const char *t = b->buf.p ? b->buf.p : "";

	obuf_reserve(out, out->len + b->buf.len + 256); /* most bodies grow by little */
	if (b->kind == INJ_FORM)
		return injparam_rewrite(p, s, mask, INJ_FORM, t, b->buf.len, out, used);
	switch (injjson_rewrite(p, s, mask, t, b->buf.len, out, used)) {
	case INJJSON_OK:
		return true;
	case INJJSON_NOT_JSON:
		return obuf_add(out, t, b->buf.len);
	default:
		return false;
	}
}
