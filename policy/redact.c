/* redact.c -- streaming replacement of secret values by their placeholders in
 * response bodies: the output for any chunking equals redact_string() of the
 * whole body (leftmost-longest matching, ties to the lowest secret index) */
#include "redact.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "secrets.h"

#define FAST_FIRST 4 /* up to this many distinct first bytes: memchr, not a byte loop */

struct rpat {
	const char *v;  /* value (borrowed from the secretset) */
	size_t len;
	const char *ph; /* replacement: the placeholder or its encoding (borrowed) */
	size_t phlen;
	size_t idx;     /* secret index * SECRET_FORMS + form: breaks ties */
};

struct redactor {
	struct rpat *pat;             /* by first byte, longest first, index (owned) */
	size_t npat;
	unsigned short start[256];    /* pat[start[c] .. start[c] + count[c]) begin with c */
	unsigned short count[256];
	unsigned char first[FAST_FIRST]; /* the values' distinct first bytes ... */
	size_t nfirst;                /* ... how many (memchr for each when <= FAST_FIRST) */
	size_t maxlen;                /* longest value */
	char *hold;                   /* held-back bytes (maxlen), wiped */
	size_t hold_len;
	char *tmp;                    /* hold + head of the next chunk (2 * maxlen), wiped */
};

static int pat_cmp(const void *a, const void *b)
{
	const struct rpat *x = a, *y = b;
	unsigned char cx = (unsigned char)x->v[0], cy = (unsigned char)y->v[0];

	if (cx != cy)
		return cx < cy ? -1 : 1;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct redactor *redactor_new(const struct secretset *s, uint64_t mask)
{
	struct redactor *r = xcalloc(1, sizeof(*r));
	size_t cnt = secretset_count(s);

	/* sized for the approved secrets only: one per connection of a secret's host */
	r->pat = xcalloc((size_t)__builtin_popcountll(mask) * SECRET_FORMS + 1, sizeof(*r->pat));

	for (size_t k = 0; k < cnt && k < SECRETS_MAX; k++) {
		if (!(mask >> k & 1))
			continue;
		for (size_t j = 0; j < SECRET_FORMS; j++) {
			struct rpat *t = &r->pat[r->npat];
			t->v = secretset_form(s, k, j, &t->len, &t->ph, &t->phlen);
			if (!t->v || !t->len)
				continue;
			t->idx = k * SECRET_FORMS + j;
			r->npat++;
			if (t->len > r->maxlen)
				r->maxlen = t->len;
		}
	}
	qsort(r->pat, r->npat, sizeof(r->pat[0]), pat_cmp);
	for (size_t i = 0; i < r->npat; i++) {
		unsigned char c = (unsigned char)r->pat[i].v[0];
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
		while (i < n && !r->count[(unsigned char)p[i]])
			i++;
		return i;
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
		bool pending = false;
		unsigned char c;

		i = next_candidate(r, &cs, p, i, n);
		if (i == n)
			break;
		c = (unsigned char)p[i];
		for (size_t j = r->start[c]; j < (size_t)r->start[c] + r->count[c]; j++) {
			const struct rpat *t = &r->pat[j];
			size_t avail = n - i;

			if (avail > 1 && t->len > 1 && p[i + 1] != t->v[1])
				continue; /* cheap second-byte filter */
			if (t->len > avail) {
				/* a longer value could still match: wait for more */
				if (!final && memcmp(p + i, t->v, avail) == 0) {
					pending = true;
					break;
				}
			} else if (memcmp(p + i, t->v, t->len) == 0) {
				best = t; /* longest full match: the rest are shorter */
				break;
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
		emit(ctx, best->ph, best->phlen);
		i += best->len;
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
