/* jsonw.c -- a tiny append-only JSON object writer for log lines */
#include "jsonw.h"

#include <stdio.h>
#include <string.h>

/* room kept for the closing "}\n", a possible truncated marker and NUL */
#define RESERVE 24

void jsonw_begin(struct jsonw *w)
{
	w->buf[0] = '{';
	w->len = 1;
	w->fields = 0;
	w->truncated = 0;
	w->skip = 0;
}

long jsonw_escape(char *dst, size_t cap, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		char tmp[6];
		size_t k = 0;

		if (c == '"' || c == '\\') {
			tmp[k++] = '\\';
			tmp[k++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			tmp[k++] = '\\';
			tmp[k++] = 'u';
			tmp[k++] = '0';
			tmp[k++] = '0';
			tmp[k++] = hex[c >> 4];
			tmp[k++] = hex[c & 15];
		} else {
			tmp[k++] = (char)c;
		}
		if (o + k + 1 > cap)
			return -1;
		memcpy(dst + o, tmp, k);
		o += k;
	}
	if (cap == 0)
		return -1;
	dst[o] = '\0';
	return (long)o;
}

/* Appends ,"key": and returns 0, or -1 (marking truncation) if no room. */
static int key(struct jsonw *w, const char *k, size_t need)
{
	size_t klen = strlen(k);
	if (w->len + klen + need + 4 + RESERVE > sizeof(w->buf)) {
		w->truncated = 1;
		return -1;
	}
	if (w->fields++)
		w->buf[w->len++] = ',';
	w->buf[w->len++] = '"';
	memcpy(w->buf + w->len, k, klen);
	w->len += klen;
	w->buf[w->len++] = '"';
	w->buf[w->len++] = ':';
	return 0;
}

void jsonw_strn(struct jsonw *w, const char *k, const char *val, size_t n)
{
	size_t save = w->len;
	int savef = w->fields;
	long e;

	if (!val || key(w, k, 2) < 0)
		return;
	w->buf[w->len++] = '"';
	e = jsonw_escape(w->buf + w->len, sizeof(w->buf) - w->len - RESERVE, val, n);
	if (e < 0) {
		w->len = save;
		w->fields = savef;
		w->truncated = 1;
		return;
	}
	w->len += (size_t)e;
	w->buf[w->len++] = '"';
}

void jsonw_str(struct jsonw *w, const char *k, const char *val)
{
	if (val)
		jsonw_strn(w, k, val, strlen(val));
}

void jsonw_raw(struct jsonw *w, const char *k, const char *val)
{
	size_t n = strlen(val);
	if (key(w, k, n) < 0)
		return;
	memcpy(w->buf + w->len, val, n);
	w->len += n;
}

void jsonw_int(struct jsonw *w, const char *k, long long val)
{
	char tmp[32];
	snprintf(tmp, sizeof(tmp), "%lld", val);
	jsonw_raw(w, k, tmp);
}

void jsonw_bool(struct jsonw *w, const char *k, int val)
{
	jsonw_raw(w, k, val ? "true" : "false");
}

const char *jsonw_end(struct jsonw *w, size_t *len)
{
	if (w->truncated) {
		const char *t = w->fields ? ",\"truncated\":true" : "\"truncated\":true";
		memcpy(w->buf + w->len, t, strlen(t));
		w->len += strlen(t);
	}
	w->buf[w->len++] = '}';
	w->buf[w->len++] = '\n';
	w->buf[w->len] = '\0';
	if (len)
		*len = w->len;
	return w->buf;
}
