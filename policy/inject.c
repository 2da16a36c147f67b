/* inject.c -- placeholder substitution in request header values (raw and
 * inside Authorization: Basic), placeholder leak scanning, and one-shot
 * redaction of secret values in response header values */
#include "inject.h"
#include "errmsg.h"

#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "secform.h"
#include "secrets.h"

#define PFX_LEN (sizeof(PLACEHOLDER_PREFIX) - 1)
#define HEX_LEN (PLACEHOLDER_LEN - PFX_LEN)
#define PCT_ROUNDS 3 /* percent-decoding rounds in the leak scan */

/* ---- obuf ---- */

void obuf_init(struct obuf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void obuf_dispose(struct obuf *b)
{
	if (b->p) {
		OPENSSL_cleanse(b->p, b->cap + 1);
		free(b->p);
	}
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Keeps p[len] == '\0' (cap + 1 bytes allocated) for the callers' convenience.
 * Grows by copy + wipe, never realloc, so no stale copy of a secret is left
 * in freed memory. */
bool obuf_add(struct obuf *b, const char *s, size_t n)
{
	if (n == 0)
		return true;
	if (b->len > b->max || n > b->max - b->len)
		return false;
	if (n > b->cap - b->len) {
		size_t ncap = b->cap < 32 ? 64 : b->cap * 2;
		char *np;

		if (ncap < b->len + n)
			ncap = b->len + n;
		if (ncap > b->max)
			ncap = b->max;
		np = xmalloc(ncap + 1);
		if (b->len)
			memcpy(np, b->p, b->len);
		if (b->p) {
			OPENSSL_cleanse(b->p, b->cap + 1);
			free(b->p);
		}
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

void obuf_reserve(struct obuf *b, size_t n)
{
	char *np;

	if (n > b->max)
		n = b->max;
	if (n <= b->cap)
		return;
	np = xmalloc(n + 1);
	if (b->len)
		memcpy(np, b->p, b->len);
	np[b->len] = '\0';
	if (b->p) {
		OPENSSL_cleanse(b->p, b->cap + 1);
		free(b->p);
	}
	b->p = np;
	b->cap = n;
}

/* Drops everything after len (wiped): undoes a failed append. */
static void obuf_truncate(struct obuf *b, size_t len)
{
	if (!b->p || len >= b->len)
		return;
	OPENSSL_cleanse(b->p + len, b->len - len);
	b->len = len;
	b->p[len] = '\0';
}

/* ---- helpers ---- */

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static bool ci_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

static bool is_auth_header(const char *name, size_t n)
{
	return (n == 13 && ci_eq(name, "authorization", 13)) ||
	       (n == 19 && ci_eq(name, "proxy-authorization", 19));
}

/* "Basic" (any case), one or more spaces, a non-empty payload: *off gets the
 * payload's offset. */
static bool basic_split(const char *v, size_t n, size_t *off)
{
	size_t i = 5;

	if (n < 7 || !ci_eq(v, "basic", 5) || v[5] != ' ')
		return false;
	while (i < n && v[i] == ' ')
		i++;
	if (i == n)
		return false;
	*off = i;
	return true;
}

static int b64_val(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || (url && c == '-'))
		return 62;
	if (c == '/' || (url && c == '_'))
		return 63;
	return -1;
}

/* Decodes base64 into out. strict: standard alphabet, length a multiple of 4,
 * '=' padding only at the end, unused bits zero (so re-encoding gives back the
 * same text). Lenient (leak scan): also the URL alphabet, padding optional,
 * unused bits ignored -- what a lenient server would accept. */
static bool b64_decode(const char *in, size_t n, bool strict, struct obuf *out)
{
	unsigned char chunk[96];
	size_t pad = 0, m, k = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	bool ok = false;

	while (pad < 2 && n > pad && in[n - 1 - pad] == '=')
		pad++;
	m = n - pad;
	if (m == 0 || m % 4 == 1 || (strict && n % 4 != 0) || (pad && (m + pad) % 4 != 0))
		goto out;
	for (size_t i = 0; i < m; i++) {
		int v = b64_val((unsigned char)in[i], !strict);
		if (v < 0)
			goto out;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			chunk[k++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
			if (k == sizeof(chunk)) {
				if (!obuf_add(out, (const char *)chunk, k))
					goto out;
				k = 0;
			}
		}
	}
	if (strict && acc != 0)
		goto out;
	ok = obuf_add(out, (const char *)chunk, k);
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return ok;
}

static bool b64_encode(const unsigned char *in, size_t n, struct obuf *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char chunk[128];
	size_t k = 0;
	bool ok = false;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			w |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			w |= in[i + 2];
		chunk[k++] = tab[(w >> 18) & 63];
		chunk[k++] = tab[(w >> 12) & 63];
		chunk[k++] = i + 1 < n ? tab[(w >> 6) & 63] : '=';
		chunk[k++] = i + 2 < n ? tab[w & 63] : '=';
		if (k == sizeof(chunk)) {
			if (!obuf_add(out, chunk, k))
				goto out;
			k = 0;
		}
	}
	ok = obuf_add(out, chunk, k);
out:
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return ok;
}

/* Appends v with every exact placeholder of a secret in approved replaced by
 * its value; ORs the injected bits into *used. */
static bool subst_raw(const struct secretset *s, uint64_t approved, const char *v, size_t n,
		      struct obuf *out, uint64_t *used)
{
	size_t i = 0, lit = 0, cnt = secretset_count(s);

	while (n - i >= PLACEHOLDER_LEN) {
		const char *q = memmem(v + i, n - i, PLACEHOLDER_PREFIX, PFX_LEN);
		size_t at, k;

		if (!q || (size_t)(q - v) + PLACEHOLDER_LEN > n)
			break;
		at = (size_t)(q - v);
		for (k = 0; k < cnt && k < SECRETS_MAX; k++)
			if ((approved >> k & 1) &&
			    memcmp(q, secretset_placeholder(s, k), PLACEHOLDER_LEN) == 0)
				break;
		if (k == cnt || k == SECRETS_MAX) {
			i = at + 1;
			continue;
		}
		size_t vlen;
		const char *val = secretset_value(s, k, &vlen);
		if (!obuf_add(out, v + lit, at - lit) || !obuf_add(out, val, vlen))
			return false;
		*used |= (uint64_t)1 << k;
		i = lit = at + PLACEHOLDER_LEN;
	}
	return obuf_add(out, v + lit, n - lit);
}

bool inject_header(const struct secretset *s, uint64_t approved, const char *name, size_t nlen,
		   const char *val, size_t vlen, struct obuf *out, uint64_t *used)
{
	struct obuf dec, sub;
	size_t start = out->len, off = 0;
	uint64_t u = 0;
	bool ok = false;

	obuf_init(&dec, out->max);
	obuf_init(&sub, out->max);
	/* A valid base64 payload cannot hold a raw placeholder ('-' is not in
	 * its alphabet), so a Basic value is substituted only inside. */
	if (is_auth_header(name, nlen) && basic_split(val, vlen, &off) &&
	    b64_decode(val + off, vlen - off, true, &dec)) {
		if (!subst_raw(s, approved, dec.p, dec.len, &sub, &u) || !obuf_add(out, val, off) ||
		    !b64_encode((const unsigned char *)sub.p, sub.len, out))
			goto out;
	} else if (!subst_raw(s, approved, val, vlen, out, &u)) {
		goto out;
	}
	ok = true;
	if (used)
		*used = u;
out:
	if (!ok)
		obuf_truncate(out, start);
	obuf_dispose(&dec);
	obuf_dispose(&sub);
	return ok;
}

/* ---- leak scan ---- */

/* Bits of cand whose placeholder appears in t, in any letter case. */
static uint64_t scan_ci(const struct secretset *s, uint64_t cand, const char *t, size_t n)
{
	uint64_t found = 0;
	char hex[HEX_LEN];

	for (size_t i = 0; n >= PLACEHOLDER_LEN && i <= n - PLACEHOLDER_LEN; i++) {
		if (lower((unsigned char)t[i]) != 'e' || !ci_eq(t + i, PLACEHOLDER_PREFIX, PFX_LEN))
			continue;
		for (size_t j = 0; j < HEX_LEN; j++)
			hex[j] = (char)lower((unsigned char)t[i + PFX_LEN + j]);
		for (size_t k = 0; k < secretset_count(s) && k < SECRETS_MAX; k++)
			if ((cand >> k & 1) &&
			    memcmp(hex, secretset_placeholder(s, k) + PFX_LEN, HEX_LEN) == 0)
				found |= (uint64_t)1 << k;
		if (found == cand)
			break;
	}
	return found;
}


/* One round of %XX decoding ('+' kept); out has room for n bytes. Returns
 * whether anything was decoded. */
static bool pct_decode(const char *in, size_t n, char *out, size_t *outlen)
{
	size_t o = 0;
	bool changed = false;

	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (in[i] == '%' && i + 2 < n && (hi = hex_digit((unsigned char)in[i + 1])) >= 0 &&
		    (lo = hex_digit((unsigned char)in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
			changed = true;
		} else {
			out[o++] = in[i];
		}
	}
	*outlen = o;
	return changed;
}

/* The raw text and up to PCT_ROUNDS percent-decodings of it. */
static uint64_t scan_layers(const struct secretset *s, uint64_t cand, const char *t, size_t n)
{
	uint64_t found = scan_ci(s, cand, t, n);
	char *buf[2] = { NULL, NULL };
	const char *cur = t;
	size_t len = n;

	if (found == cand || n < PLACEHOLDER_LEN || !memchr(t, '%', n))
		return found;
	buf[0] = xmalloc(n);
	buf[1] = xmalloc(n);
	for (int r = 0; r < PCT_ROUNDS && found != cand; r++) {
		char *dst = buf[r & 1];
		if (!pct_decode(cur, len, dst, &len))
			break;
		found |= scan_ci(s, cand, dst, len);
		cur = dst;
	}
	OPENSSL_cleanse(buf[0], n);
	OPENSSL_cleanse(buf[1], n);
	free(buf[0]);
	free(buf[1]);
	return found;
}

uint64_t inject_scan_leaks(const struct secretset *s, uint64_t approved, const char *text,
			   size_t n, bool basic)
{
	size_t cnt = secretset_count(s), off = 0;
	uint64_t all = cnt >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << cnt) - 1;
	uint64_t cand = all & ~approved, found;
	struct obuf dec;

	if (!cand)
		return 0;
	found = scan_layers(s, cand, text, n);
	if (!basic || found == cand)
		return found;
	if (!basic_split(text, n, &off))
		off = 0;
	while (off < n && text[off] == ' ')
		off++;
	obuf_init(&dec, n);
	if (b64_decode(text + off, n - off, false, &dec))
		found |= scan_layers(s, cand, dec.p, dec.len);
	obuf_dispose(&dec);
	return found;
}

/* ---- one-shot redaction ---- */

/* Leftmost-longest: at each position the longest match of a form of a
 * secret in mask (secform.h; ties: lowest form index) is replaced, then
 * scanning resumes after it. This is the reference the streaming redactor
 * (redact.c) must agree with. */
bool redact_string(const struct secretset *s, uint64_t mask, const char *text, size_t n,
		   struct obuf *out)
{
	size_t start = out->len, i = 0, lit = 0, nf = 0, cnt = secretset_count(s);
	unsigned char first[32] = { 0 }; /* bitmap of the bytes a match can begin with */
	struct secform *f;
	bool ok = false;

	if (cnt > SECRETS_MAX)
		cnt = SECRETS_MAX;
	f = xcalloc((size_t)__builtin_popcountll(mask) * SECFORM_MAX + 1, sizeof(*f));
	for (size_t k = 0; k < cnt; k++)
		if (mask >> k & 1)
			nf += secform_get(s, k, f + nf);
	for (size_t j = 0; j < nf; j++) {
		unsigned char c[3];
		for (size_t m = secform_first(&f[j], c); m > 0; m--)
			first[c[m - 1] >> 3] |= (unsigned char)(1u << (c[m - 1] & 7));
	}
	while (i < n) {
		size_t blen = 0, best = 0;
		unsigned char ch = (unsigned char)text[i];

		if (!(first[ch >> 3] >> (ch & 7) & 1)) {
			i++; /* no match begins with this byte */
			continue;
		}
		for (size_t j = 0; j < nf; j++) {
			size_t m = secform_match(&f[j], text + i, n - i, true);
			if (m > blen || (m && m == blen && f[j].idx < f[best].idx)) {
				blen = m;
				best = j;
			}
		}
		if (!blen) {
			i++;
			continue;
		}
		if (!obuf_add(out, text + lit, i - lit) ||
		    !obuf_add(out, f[best].rep, f[best].replen))
			goto out;
		i += blen;
		lit = i;
	}
	ok = obuf_add(out, text + lit, n - lit);
out:
	if (!ok)
		obuf_truncate(out, start);
	free(f);
	return ok;
}
