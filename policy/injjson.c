/* injjson.c -- a strict, recursive-descent walk over one JSON document
 * that copies it to the output and rewrites placeholders only inside the
 * string values at member paths a secret opted in to */
#include "injjson.h"

#include <string.h>

#include <openssl/crypto.h>

#include "errmsg.h"
#include "inject.h"
#include "injparam.h"
#include "injspec.h"
#include "policy.h"
#include "secform.h"
#include "secrets.h"

struct walk {
	const struct policy *p;
	const struct secretset *s;
	uint64_t cand;             /* secrets with some JSON path */
	const unsigned char *t;
	size_t n, i;               /* text and position */
	char path[INJSPEC_NAME_MAX + 1]; /* "a.b": member names, unescaped */
	size_t plen;
	bool nopath;               /* no spec can name this place (array, long, odd key) */
	struct obuf *out;
	size_t lit;                /* t[lit..i) not yet copied to out */
	uint64_t used;
	bool cap;                  /* out's cap was hit */
};

static void ws(struct walk *w)
{
	while (w->i < w->n && (w->t[w->i] == ' ' || w->t[w->i] == '\t' || w->t[w->i] == '\n' ||
			       w->t[w->i] == '\r'))
		w->i++;
}

/* A string at t[i] == '"': *s, *e its content; i past the closing quote. */
static bool string(struct walk *w, size_t *s, size_t *e)
{
	size_t i = w->i + 1;

	while (i < w->n && w->t[i] != '"') {
		if (w->t[i] < 0x20)
			return false;
		if (w->t[i] == '\\') {
			if (i + 1 >= w->n || !strchr("\"\\/bfnrtu", w->t[i + 1]) || !w->t[i + 1])
				return false;
			if (w->t[i + 1] == 'u') {
				for (size_t k = 2; k < 6; k++)
					if (i + k >= w->n || hex_digit(w->t[i + k]) < 0)
						return false;
				i += 4;
			}
			i++;
		}
		i++;
	}
	if (i >= w->n)
		return false;
	*s = w->i + 1;
	*e = i;
	w->i = i + 1;
	return true;
}

static unsigned u4(const unsigned char *t)
{
	unsigned u = 0;

	for (int k = 0; k < 4; k++)
		u = u << 4 | (unsigned)hex_digit(t[k]);
	return u;
}

/* Appends the member name t[s..e) unescaped to the path (after a '.');
 * false: no spec can name it (too long, a '.', a NUL, a lone surrogate). */
static bool push_key(struct walk *w, size_t s, size_t e)
{
	char *o = w->path + w->plen, *end = w->path + INJSPEC_NAME_MAX;

	if (w->plen && o < end)
		*o++ = '.';
	for (size_t i = s; i < e && o < end; i++) {
		unsigned c = w->t[i];
		if (c == '\\' && w->t[i + 1] != 'u') {
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			c = (unsigned char)to[strchr(from, w->t[i + 1]) - from];
			i++;
		} else if (c == '\\') {
			c = u4(w->t + i + 2);
			i += 5;
			if (c >= 0xd800 || c == 0) /* surrogates: never in a spec */
				return false;
			if (c >= 0x80) {
				if (end - o < 3)
					return false;
				if (c >= 0x800) {
					*o++ = (char)(0xe0 | c >> 12);
					*o++ = (char)(0x80 | (c >> 6 & 0x3f));
				} else {
					*o++ = (char)(0xc0 | c >> 6);
				}
				c = 0x80 | (c & 0x3f);
			}
		}
		if (c == '.' || o >= end)
			return false;
		*o++ = (char)c;
	}
	if (o >= end)
		return false;
	w->plen = (size_t)(o - w->path);
	return true;
}

/* Appends v as JSON string content. */
static bool json_escape(const char *v, size_t n, struct obuf *out)
{
	static const char hex[] = "0123456789abcdef";
	char chunk[96];
	size_t k = 0;
	bool ok = true;

	for (size_t i = 0; i < n && ok; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '"' || c == '\\') {
			chunk[k++] = '\\';
			chunk[k++] = (char)c;
		} else if (c < 0x20) {
			memcpy(chunk + k, "\\u00", 4);
			chunk[k + 4] = hex[c >> 4];
			chunk[k + 5] = hex[c & 15];
			k += 6;
		} else {
			chunk[k++] = (char)c;
		}
		if (k > sizeof(chunk) - 6) {
			ok = obuf_add(out, chunk, k);
			k = 0;
		}
	}
	ok = ok && obuf_add(out, chunk, k);
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return ok;
}

/* The string value content t[s..e): placeholders of who replaced. */
static void rewrite_string(struct walk *w, uint64_t who, size_t s, size_t e)
{
	size_t i = s;
	const char *t = (const char *)w->t;

	while (i < e && !w->cap) {
		size_t m = 0, k;
		if (t[i] != 'e' && t[i] != '\\') {
			i++;
			continue;
		}
		for (k = 0; k < SECRETS_MAX && who >> k; k++) {
			struct secform f = { .kind = SECFORM_JSON, .len = PLACEHOLDER_LEN };
			if (!(who >> k & 1))
				continue;
			f.v = secretset_placeholder(w->s, k);
			if ((m = secform_match(&f, t + i, e - i, true)) > 0)
				break;
		}
		if (!m) {
			i++;
			continue;
		}
		size_t vlen;
		const char *val = secretset_value(w->s, k, &vlen);
		if (!obuf_add(w->out, t + w->lit, i - w->lit) || !json_escape(val, vlen, w->out))
			w->cap = true;
		w->used |= (uint64_t)1 << k;
		i = w->lit = i + m;
	}
}

static bool value(struct walk *w, int depth);

static bool member_value(struct walk *w, size_t ks, size_t ke, int depth)
{
	size_t plen = w->plen;
	bool nopath = w->nopath, ok;

	if (!w->nopath && !push_key(w, ks, ke))
		w->nopath = true;
	ok = value(w, depth);
	w->plen = plen;
	w->nopath = nopath;
	return ok;
}

static bool object(struct walk *w, int depth)
{
	size_t ks, ke;

	w->i++;
	ws(w);
	if (w->i < w->n && w->t[w->i] == '}') {
		w->i++;
		return true;
	}
	for (;;) {
		ws(w);
		if (w->i >= w->n || w->t[w->i] != '"' || !string(w, &ks, &ke))
			return false;
		ws(w);
		if (w->i >= w->n || w->t[w->i] != ':')
			return false;
		w->i++;
		if (!member_value(w, ks, ke, depth))
			return false;
		ws(w);
		if (w->i < w->n && w->t[w->i] == ',') {
			w->i++;
			continue;
		}
		if (w->i < w->n && w->t[w->i] == '}') {
			w->i++;
			return true;
		}
		return false;
	}
}

static bool array(struct walk *w, int depth)
{
	bool nopath = w->nopath;

	w->nopath = true; /* paths name object members only */
	w->i++;
	ws(w);
	if (w->i < w->n && w->t[w->i] == ']') {
		w->i++;
		w->nopath = nopath;
		return true;
	}
	for (;;) {
		if (!value(w, depth))
			return false;
		ws(w);
		if (w->i < w->n && w->t[w->i] == ',') {
			w->i++;
			continue;
		}
		if (w->i < w->n && w->t[w->i] == ']') {
			w->i++;
			w->nopath = nopath;
			return true;
		}
		return false;
	}
}

/* true, false, null or a number (its spelling checked loosely: the bytes
 * a number is made of; the upstream judges it) */
static bool scalar(struct walk *w)
{
	static const char *const words[] = { "true", "false", "null" };
	size_t i = w->i;

	for (int k = 0; k < 3; k++) {
		size_t l = strlen(words[k]);
		if (w->n - i >= l && memcmp(w->t + i, words[k], l) == 0) {
			w->i += l;
			return true;
		}
	}
	while (i < w->n && (strchr("0123456789+-.eE", w->t[i]) && w->t[i]))
		i++;
	if (i == w->i || !(w->t[w->i] == '-' || (w->t[w->i] >= '0' && w->t[w->i] <= '9')))
		return false;
	w->i = i;
	return true;
}

static bool value(struct walk *w, int depth)
{
	size_t s, e;
	uint64_t who = 0;

	ws(w);
	if (w->i >= w->n || depth >= INJJSON_DEPTH_MAX)
		return false;
	switch (w->t[w->i]) {
	case '{':
		return object(w, depth + 1);
	case '[':
		return array(w, depth + 1);
	case '"':
		if (!string(w, &s, &e))
			return false;
		for (size_t k = 0; !w->nopath && w->plen && k < SECRETS_MAX && w->cand >> k; k++)
			if ((w->cand >> k & 1) &&
			    injspec_names(policy_secret_inject(w->p, k), INJ_JSON, w->path, w->plen))
				who |= (uint64_t)1 << k;
		if (who)
			rewrite_string(w, who, s, e);
		return true;
	default:
		return scalar(w);
	}
}

enum injjson_result injjson_rewrite(const struct policy *p, const struct secretset *s,
				    uint64_t mask, const char *t, size_t n, struct obuf *out,
				    uint64_t *used)
{
	struct walk w = { .p = p, .s = s, .t = (const unsigned char *)t, .n = n, .out = out };
	size_t start = out->len;
	enum injjson_result r = INJJSON_NOT_JSON;

	w.cand = injparam_mask(p, mask, INJ_JSON);
	if (!value(&w, 0))
		goto out;
	ws(&w);
	if (w.i != n)
		goto out;
	r = INJJSON_CAP;
	if (w.cap || !obuf_add(out, t + w.lit, n - w.lit))
		goto out;
	r = INJJSON_OK;
	if (used)
		*used |= w.used;
out:
	if (r != INJJSON_OK && out->len > start) {
		OPENSSL_cleanse(out->p + start, out->len - start);
		out->len = start;
		out->p[start] = '\0';
	}
	return r;
}
