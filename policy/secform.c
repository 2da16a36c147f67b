/* secform.c -- a secret's forms in replies and matching them: fixed strings
 * (secrets.c makes them) and the escape-tolerant JSON and percent matchers,
 * where each character of the value may appear raw or in any escaped form,
 * whichever an encoder chose */
#include "secform.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "errmsg.h"

#define NO_CP UINT_MAX /* a byte that is not part of valid UTF-8 */

size_t secform_get(const struct secretset *s, size_t i, struct secform out[SECFORM_MAX])
{
	size_t n = 0, vlen;
	const char *v = secretset_value(s, i, &vlen);

	for (size_t j = 0; v && j < SECRET_FORMS; j++) {
		struct secform *f = &out[n];
		f->v = secretset_form(s, i, j, &f->len, &f->rep, &f->replen);
		if (!f->v || !f->len)
			continue;
		f->kind = SECFORM_FIXED;
		f->maxlen = f->len;
		f->idx = i * SECFORM_MAX + j;
		n++;
	}
	for (size_t k = 0; v && vlen && k < 2; k++) {
		struct secform *f = &out[n++];
		f->kind = k == 0 ? SECFORM_JSON : SECFORM_PCT;
		f->v = v;
		f->len = vlen;
		f->maxlen = (k == 0 ? 6 : 3) * vlen; /* \u00XX per byte; %XX per byte */
		f->rep = secretset_placeholder(s, i);
		f->replen = PLACEHOLDER_LEN;
		f->idx = i * SECFORM_MAX + SECRET_FORMS + k;
	}
	return n;
}

size_t secform_first(const struct secform *f, unsigned char first[3])
{
	unsigned char c = (unsigned char)f->v[0];
	size_t n = 0;

	if (f->kind == SECFORM_FIXED)
		first[n++] = c;
	else if (f->kind == SECFORM_JSON) {
		if (c != '\\')
			first[n++] = c;
		first[n++] = '\\';
	} else {
		if (c != '%')
			first[n++] = c;
		first[n++] = '%';
		if (c == ' ')
			first[n++] = '+';
	}
	return n;
}

/* The short escape letter of c in JSON (\n...), or 0. */
static unsigned char json_letter(unsigned char c)
{
	static const char from[] = "\"\\/\b\f\n\r\t", to[] = "\"\\/bfnrt";
	const char *p = c ? strchr(from, c) : NULL;

	return p ? (unsigned char)to[p - from] : 0;
}


/* One character of v[0..n): its length, *cp its code point (NO_CP: a lone
 * byte that is not valid UTF-8). */
static size_t utf8_multi(const unsigned char *v, size_t n, unsigned *cp);

static inline size_t utf8_char(const unsigned char *v, size_t n, unsigned *cp)
{
	*cp = v[0];
	return v[0] < 0x80 ? 1 : utf8_multi(v, n, cp);
}

static size_t utf8_multi(const unsigned char *v, size_t n, unsigned *cp)
{
	unsigned c = v[0], min;
	size_t l;

	if (c >= 0xc2 && c <= 0xdf)
		l = 2, min = 0x80, c &= 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		l = 3, min = 0x800, c &= 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		l = 4, min = 0x10000, c &= 0x07;
	else
		goto bad;
	if (l > n)
		goto bad;
	for (size_t j = 1; j < l; j++) {
		if ((v[j] & 0xc0) != 0x80)
			goto bad;
		c = c << 6 | (v[j] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		goto bad;
	*cp = c;
	return l;
bad:
	*cp = NO_CP;
	return 1;
}

size_t secform_second(const struct secform *f, unsigned char first, unsigned char second[4])
{
	const unsigned char *v = (const unsigned char *)f->v;
	static const char hex[] = "0123456789abcdef", uhex[] = "0123456789ABCDEF";
	size_t n = 0;
	unsigned cp;

	if (f->kind == SECFORM_FIXED) {
		if (f->len > 1)
			second[n++] = v[1];
	} else if (f->kind == SECFORM_JSON && first == '\\') {
		second[n++] = 'u';
		if (json_letter(v[0]))
			second[n++] = json_letter(v[0]);
	} else if (f->kind == SECFORM_JSON && utf8_char(v, f->len, &cp) > 1) {
		second[n++] = v[1]; /* inside the first character, raw */
	} else if (f->kind == SECFORM_JSON && f->len > 1) {
		if (v[1] != '\\')
			second[n++] = v[1];
		second[n++] = '\\';
	} else if (f->kind == SECFORM_PCT && first == '%') {
		second[n++] = (unsigned char)hex[v[0] >> 4];
		if (uhex[v[0] >> 4] != hex[v[0] >> 4])
			second[n++] = (unsigned char)uhex[v[0] >> 4];
	} else if (f->kind == SECFORM_PCT && f->len > 1) {
		if (v[1] != '%')
			second[n++] = v[1];
		second[n++] = '%';
		if (v[1] == ' ')
			second[n++] = '+';
	}
	return n;
}

/* Reads "\uXXXX" at t[i..): 1 with *u, 0 if not there, -1 if t ends first. */
static int json_u(const unsigned char *t, size_t n, size_t i, unsigned *u)
{
	*u = 0;
	for (size_t k = 0; k < 6; k++) {
		unsigned char c;

		if (i + k >= n)
			return -1;
		c = t[i + k];
		if (k == 0 ? c != '\\' : k == 1 ? c != 'u' : hex_digit(c) < 0)
			return 0;
		if (k >= 2)
			*u = *u << 4 | (unsigned)hex_digit(c);
	}
	return 1;
}

/* The character a JSON short escape \c stands for, or -1. */
static int json_short(unsigned char c)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *p = c ? strchr(from, c) : NULL;

	return p ? (unsigned char)to[p - from] : -1;
}

/* Matches one escaped character (cp, l bytes at v) at t[i..) where t[i] is a
 * backslash: the text length, 0 no match, SECFORM_MORE. */
static size_t json_escape(const unsigned char *v, size_t l, unsigned cp, const unsigned char *t,
			  size_t n, size_t i)
{
	unsigned u, lo;
	int r;

	if (i + 1 >= n)
		return SECFORM_MORE;
	if (t[i + 1] != 'u')
		return l == 1 && json_short(t[i + 1]) == v[0] ? 2 : 0;
	if (cp == NO_CP)
		return 0;
	r = json_u(t, n, i, &u);
	if (r <= 0)
		return r < 0 ? SECFORM_MORE : 0;
	if (cp < 0x10000)
		return u == cp ? 6 : 0;
	if (u != 0xd800 + ((cp - 0x10000) >> 10))
		return 0;
	r = json_u(t, n, i + 6, &lo);
	if (r <= 0)
		return r < 0 ? SECFORM_MORE : 0;
	return lo == 0xdc00 + ((cp - 0x10000) & 0x3ff) ? 12 : 0;
}

static size_t match_json(const struct secform *f, const unsigned char *t, size_t n)
{
	const unsigned char *v = (const unsigned char *)f->v;
	size_t i = 0, k = 0;

	while (k < f->len) {
		unsigned cp;
		size_t l, m;

		while (k < f->len && i < n && t[i] == v[k] && v[k] < 0x80 && v[k] != '\\')
			i++, k++; /* a run of raw ASCII */
		if (k == f->len)
			break;
		if (i >= n)
			return SECFORM_MORE;
		l = utf8_char(v + k, f->len - k, &cp);
		if (t[i] == '\\') {
			m = json_escape(v + k, l, cp, t, n, i);
			if (m == 0 || m == SECFORM_MORE)
				return m;
		} else {
			for (m = 0; m < l; m++) {
				if (i + m >= n)
					return SECFORM_MORE;
				if (t[i + m] != v[k + m])
					return 0;
			}
		}
		i += m;
		k += l;
	}
	return i;
}

static size_t match_pct(const struct secform *f, const unsigned char *t, size_t n)
{
	const unsigned char *v = (const unsigned char *)f->v;
	size_t i = 0;

	for (size_t k = 0; k < f->len; k++) {
		unsigned char b = v[k];

		while (k < f->len && i < n && t[i] == v[k] && v[k] != '%')
			i++, k++; /* a run of raw bytes */
		if (k == f->len)
			break;
		b = v[k];
		if (i >= n)
			return SECFORM_MORE;
		if (t[i] == '%') {
			if (i + 1 >= n)
				return SECFORM_MORE;
			if (hex_digit(t[i + 1]) != b >> 4)
				return 0;
			if (i + 2 >= n)
				return SECFORM_MORE;
			if (hex_digit(t[i + 2]) != (b & 15))
				return 0;
			i += 3;
		} else if (t[i] == b || (t[i] == '+' && b == ' ')) {
			i++;
		} else {
			return 0;
		}
	}
	return i;
}

size_t secform_match(const struct secform *f, const char *t, size_t n, bool final)
{
	size_t m;

	switch (f->kind) {
	case SECFORM_FIXED:
		if (n < f->len)
			return !final && memcmp(t, f->v, n) == 0 ? SECFORM_MORE : 0;
		return memcmp(t, f->v, f->len) == 0 ? f->len : 0;
	case SECFORM_JSON:
		m = match_json(f, (const unsigned char *)t, n);
		break;
	default:
		m = match_pct(f, (const unsigned char *)t, n);
		break;
	}
	return m == SECFORM_MORE && final ? 0 : m;
}
