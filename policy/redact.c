/* redact.c -- streaming replacement of secret values (in every form of
 * secform.h) by their placeholders in response bodies: the output for any
 * chunking equals redact_string() of the whole body (leftmost-longest
 * matching, ties to the lowest form index) */
#include "redact.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "secform.h"
#include "secrets.h"

#define FAST_FIRST 4 /* up to this many distinct first bytes: memchr, not a byte loop */

struct rpat {
	struct secform f; /* borrowed from the secretset */
	unsigned char c;  /* a byte a match can begin with (a form has 1..3 entries) */
	unsigned char sec[4]; /* the bytes that can follow c (nsec of them; 0: any) */
	unsigned char nsec;
};

struct redactor {
	struct rpat *pat;             /* by first byte, then form index (owned) */
	size_t npat;
	unsigned short start[256];    /* pat[start[c] .. start[c] + count[c]) begin with c */
	unsigned short count[256];
	unsigned char first[FAST_FIRST]; /* the forms' distinct first bytes ... */
	size_t nfirst;                /* ... how many (memchr for each when <= FAST_FIRST) */
	unsigned char pair[8192];     /* bit pair_index(a, b) set: a match can begin a, b */
	size_t maxlen;                /* longest text a match can span */
	char *hold;                   /* held-back bytes (maxlen), wiped */
	size_t hold_len;
	char *tmp;                    /* hold + head of the next chunk (2 * maxlen), wiped */
};

static int pat_cmp(const void *a, const void *b)
{
	const struct rpat *x = a, *y = b;

	if (x->c != y->c)
		return x->c < y->c ? -1 : 1;
	return x->f.idx < y->f.idx ? -1 : x->f.idx > y->f.idx;
}

/* The pair table's index of bytes a, b: their native 16-bit word, so the
 * scan loads two bytes at once. */
static inline uint16_t pair_index(const unsigned char *ab)
{
	uint16_t w;

	memcpy(&w, ab, 2);
	return w;
}

static void pair_set(unsigned char *pair, unsigned char a, unsigned char b)
{
	unsigned char ab[2] = { a, b };
	uint16_t w = pair_index(ab);

	pair[w >> 3] |= (unsigned char)(1u << (w & 7));
}

static bool second_ok(const struct rpat *t, unsigned char b)
{
	for (size_t k = 0; k < t->nsec; k++)
		if (t->sec[k] == b)
			return true;
	return false;
}

/* Adds secret k's forms, one entry per byte a match can begin with. */
static void add_secret(struct redactor *r, const struct secretset *s, size_t k)
{
	struct secform forms[SECFORM_MAX];
	size_t nf = secform_get(s, k, forms);

	for (size_t j = 0; j < nf; j++) {
		unsigned char first[3];
		size_t nc = secform_first(&forms[j], first);

		for (size_t c = 0; c < nc; c++) {
			struct rpat *t = &r->pat[r->npat++];
			t->f = forms[j];
			t->c = first[c];
			t->nsec = (unsigned char)secform_second(&t->f, t->c, t->sec);
			for (size_t b = 0; b < 256; b++)
				if (!t->nsec || second_ok(t, (unsigned char)b))
					pair_set(r->pair, t->c, (unsigned char)b);
		}
		if (forms[j].maxlen > r->maxlen)
			r->maxlen = forms[j].maxlen;
	}
}

struct redactor *redactor_new(const struct secretset *s, uint64_t mask)
{
	struct redactor *r = xcalloc(1, sizeof(*r));
	size_t cnt = secretset_count(s);

	/* sized for the approved secrets only: one per connection of a secret's host */
	r->pat = xcalloc((size_t)__builtin_popcountll(mask) * SECFORM_MAX * 3 + 1, sizeof(*r->pat));
	for (size_t k = 0; k < cnt && k < SECRETS_MAX; k++)
		if (mask >> k & 1)
			add_secret(r, s, k);
	qsort(r->pat, r->npat, sizeof(r->pat[0]), pat_cmp);
	for (size_t i = 0; i < r->npat; i++) {
		unsigned char c = r->pat[i].c;
		if (!r->count[c]++) {
			r->start[c] = (unsigned short)i;
			if (r->nfirst < FAST_FIRST)
				r->first[r->nfirst] = c;
			r->nfirst++;
		}
	}
	if (r->maxlen) {
		r->hold = xmalloc(r->maxlen);
		r->tmp = xmalloc(2 * r->maxlen);
	}
	return r;
}

void redactor_free(struct redactor *r)
{
	if (!r)
		return;
	if (r->hold) {
		OPENSSL_cleanse(r->hold, r->maxlen);
		OPENSSL_cleanse(r->tmp, 2 * r->maxlen);
	}
	free(r->hold);
	free(r->tmp);
	free(r->pat);
	r->hold = r->tmp = NULL;
	r->pat = NULL;
	free(r);
}

/* Where each first byte next occurs in one scan's bytes: at[k] is valid
 * while >= the position asked for (n: nowhere further). */
struct cands {
	size_t at[FAST_FIRST];
};

static void cands_init(struct cands *cs)
{
	for (size_t k = 0; k < FAST_FIRST; k++)
		cs->at[k] = SIZE_MAX;
}

/* Next position >= i where some value may begin, or n. */
static size_t next_candidate(const struct redactor *r, struct cands *cs, const char *p, size_t i,
			     size_t n)
{
	size_t best = n;

	if (r->nfirst > FAST_FIRST) {
		const unsigned char *u = (const unsigned char *)p, *pt = r->pair;
		uint16_t w;

		for (; i + 4 < n; i += 4) { /* unrolled: i + 4 is read */
			if (w = pair_index(u + i), pt[w >> 3] >> (w & 7) & 1)
				return i;
			if (w = pair_index(u + i + 1), pt[w >> 3] >> (w & 7) & 1)
				return i + 1;
			if (w = pair_index(u + i + 2), pt[w >> 3] >> (w & 7) & 1)
				return i + 2;
			if (w = pair_index(u + i + 3), pt[w >> 3] >> (w & 7) & 1)
				return i + 3;
		}
		for (; i + 1 < n; i++)
			if (w = pair_index(u + i), pt[w >> 3] >> (w & 7) & 1)
				return i;
		return i < n && r->count[u[i]] ? i : n;
	}
	for (size_t k = 0; k < r->nfirst; k++) {
		if (cs->at[k] == SIZE_MAX || cs->at[k] < i) {
			const char *q = i < n && (unsigned char)p[i] == r->first[k] ? p + i :
					memchr(p + i, r->first[k], n - i);
			cs->at[k] = q ? (size_t)(q - p) : n;
		}
		if (cs->at[k] < best)
			best = cs->at[k];
	}
	return best;
}

/* Redacts p[0..n) and emits it, up to the first position where the decision
 * needs bytes beyond n (never when final). Returns the bytes consumed. */
static size_t scan(const struct redactor *r, const char *p, size_t n, bool final,
		   redact_emit_fn emit, void *ctx)
{
	size_t i = 0, lit = 0;
	struct cands cs;

	cands_init(&cs);
	for (;;) {
		const struct rpat *best = NULL;
		size_t blen = 0;
		bool pending = false;
		unsigned char c;

		i = next_candidate(r, &cs, p, i, n);
		if (i == n)
			break;
		c = (unsigned char)p[i];
		for (size_t j = r->start[c]; j < (size_t)r->start[c] + r->count[c]; j++) {
			const struct rpat *t = &r->pat[j];
			size_t m;

			if (t->nsec && n - i > 1 && !second_ok(t, (unsigned char)p[i + 1]))
				continue; /* cheap second-byte filter */
			m = secform_match(&t->f, p + i, n - i, final);
			if (m == SECFORM_MORE) {
				pending = true; /* a match may still end beyond n: wait */
				break;
			}
			if (m > blen || (m && m == blen && t->f.idx < best->f.idx)) {
				best = t;
				blen = m;
			}
		}
		if (pending)
			break;
		if (!best) {
			i++;
			continue;
		}
		if (i > lit)
			emit(ctx, p + lit, i - lit);
		emit(ctx, best->f.rep, best->f.replen);
		i += blen;
		lit = i;
	}
	if (i > lit)
		emit(ctx, p + lit, i - lit);
	return i;
}

void redactor_feed(struct redactor *r, const char *p, size_t n, redact_emit_fn emit, void *ctx)
{
	size_t off = 0, c;

	if (!r->npat) {
		if (n)
			emit(ctx, p, n);
		return;
	}
	if (r->hold_len) {
		/* held bytes plus enough of p to decide every held position */
		size_t take = n < r->maxlen ? n : r->maxlen, tlen = r->hold_len + take;

		memcpy(r->tmp, r->hold, r->hold_len);
		memcpy(r->tmp + r->hold_len, p, take);
		c = scan(r, r->tmp, tlen, false, emit, ctx);
		if (c < r->hold_len) {
			/* only when all of p was taken: keep the undecided tail */
			memmove(r->hold, r->tmp + c, tlen - c);
			r->hold_len = tlen - c;
			OPENSSL_cleanse(r->tmp, tlen);
			return;
		}
		OPENSSL_cleanse(r->tmp, tlen);
		off = c - r->hold_len;
		OPENSSL_cleanse(r->hold, r->hold_len);
		r->hold_len = 0;
	}
	c = scan(r, p + off, n - off, false, emit, ctx);
	off += c;
	memcpy(r->hold, p + off, n - off);
	r->hold_len = n - off;
}

void redactor_flush(struct redactor *r, redact_emit_fn emit, void *ctx)
{
	if (!r->hold_len)
		return;
	scan(r, r->hold, r->hold_len, true, emit, ctx);
	OPENSSL_cleanse(r->hold, r->hold_len);
	r->hold_len = 0;
}
