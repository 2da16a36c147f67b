/* redact.c -- streaming replacement of secret values (in every form of
 * secform.h) by their placeholders in response bodies: the output for any
 * chunking equals redact_string() of the whole body (leftmost-longest
 * matching, ties to the lowest form index). The match tables (a plan) are
 * shared by every stream with the same secrets; a stream owns only what it
 * holds back. */
#include "redact.h"

#include <stdatomic.h>
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

/* The immutable part, per (secretset, mask): built once, cached on the set
 * (secretset_cache) and shared read-only by the redactors of every thread. */
struct redact_plan {
	atomic_int refs;              /* the set's cache holds one; each redactor one */
	char pad[64 - sizeof(atomic_int)]; /* refs apart from the read-mostly fields */
	size_t npat;
	size_t maxlen;                /* longest text a match can span */
	unsigned short start[256];    /* pat[start[c] .. start[c] + count[c]) begin with c */
	unsigned short count[256];
	unsigned char first[FAST_FIRST]; /* the forms' distinct first bytes ... */
	size_t nfirst;                /* ... how many (memchr for each when <= FAST_FIRST) */
	unsigned char pair[8192];     /* bit pair_index(a, b) set: a match can begin a, b */
	struct rpat pat[];            /* by first byte, then form index */
};

/* Per stream: what is held back between feeds. */
struct redactor {
	struct redact_plan *plan;     /* one reference */
	size_t maxlen;                /* plan->maxlen */
	char *hold;                   /* NULL, or held-back bytes (maxlen) then tmp: hold +
				       * head of the next chunk (2 * maxlen); allocated at
				       * the first hold-back, wiped and freed at flush */
	size_t hold_len;
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
static void add_secret(struct redact_plan *pl, const struct secretset *s, size_t k)
{
	struct secform forms[SECFORM_MAX];
	size_t nf = secform_get(s, k, forms);

	for (size_t j = 0; j < nf; j++) {
		unsigned char first[3];
		size_t nc = secform_first(&forms[j], first);

		for (size_t c = 0; c < nc; c++) {
			struct rpat *t = &pl->pat[pl->npat++];
			t->f = forms[j];
			t->c = first[c];
			t->nsec = (unsigned char)secform_second(&t->f, t->c, t->sec);
			for (size_t b = 0; b < 256; b++)
				if (!t->nsec || second_ok(t, (unsigned char)b))
					pair_set(pl->pair, t->c, (unsigned char)b);
		}
		if (forms[j].maxlen > pl->maxlen)
			pl->maxlen = forms[j].maxlen;
	}
}

/* A new plan for the secrets of s in mask (one reference; borrows s). */
static void *plan_build(const struct secretset *s, uint64_t mask)
{
	/* sized for the approved secrets only */
	size_t cnt = secretset_count(s), room = (size_t)__builtin_popcountll(mask) * SECFORM_MAX * 3;
	struct redact_plan *pl = xcalloc(1, sizeof(*pl) + room * sizeof(pl->pat[0]));

	atomic_init(&pl->refs, 1);
	for (size_t k = 0; k < cnt && k < SECRETS_MAX; k++)
		if (mask >> k & 1)
			add_secret(pl, s, k);
	qsort(pl->pat, pl->npat, sizeof(pl->pat[0]), pat_cmp);
	for (size_t i = 0; i < pl->npat; i++) {
		unsigned char c = pl->pat[i].c;
		if (!pl->count[c]++) {
			pl->start[c] = (unsigned short)i;
			if (pl->nfirst < FAST_FIRST)
				pl->first[pl->nfirst] = c;
			pl->nfirst++;
		}
	}
	return pl;
}

/* Drops a reference (the set's cache calls it with the cache's one). */
static void plan_unref(void *p)
{
	struct redact_plan *pl = p;

	if (pl && atomic_fetch_sub(&pl->refs, 1) == 1)
		free(pl); /* holds no value bytes: the forms are borrowed from the set */
}

struct redactor *redactor_new(const struct secretset *s, uint64_t mask)
{
	struct redactor *r = xcalloc(1, sizeof(*r));

	/* the set's shared plan, or (cache full) one of our own */
	r->plan = secretset_cache(s, mask, plan_unref, plan_build);
	if (r->plan)
		atomic_fetch_add(&r->plan->refs, 1);
	else
		r->plan = plan_build(s, mask);
	r->maxlen = r->plan->maxlen;
	return r;
}

/* Wipes and frees the held-back bytes' buffer. */
static void hold_free(struct redactor *r)
{
	if (!r->hold)
		return;
	OPENSSL_cleanse(r->hold, 3 * r->maxlen);
	free(r->hold);
	r->hold = NULL;
	r->hold_len = 0;
}

void redactor_free(struct redactor *r)
{
	if (!r)
		return;
	hold_free(r);
	plan_unref(r->plan);
	r->plan = NULL;
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
static size_t next_candidate(const struct redact_plan *pl, struct cands *cs, const char *p,
			     size_t i, size_t n)
{
	size_t best = n;

	if (pl->nfirst > FAST_FIRST) {
		const unsigned char *u = (const unsigned char *)p, *pt = pl->pair;
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
		return i < n && pl->count[u[i]] ? i : n;
	}
	for (size_t k = 0; k < pl->nfirst; k++) {
		if (cs->at[k] == SIZE_MAX || cs->at[k] < i) {
			const char *q = i < n && (unsigned char)p[i] == pl->first[k] ? p + i :
					memchr(p + i, pl->first[k], n - i);
			cs->at[k] = q ? (size_t)(q - p) : n;
		}
		if (cs->at[k] < best)
			best = cs->at[k];
	}
	return best;
}

/* Redacts p[0..n) and emits it, up to the first position where the decision
 * needs bytes beyond n (never when final). Returns the bytes consumed. */
static size_t scan(const struct redact_plan *pl, const char *p, size_t n, bool final,
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

		i = next_candidate(pl, &cs, p, i, n);
		if (i == n)
			break;
		c = (unsigned char)p[i];
		for (size_t j = pl->start[c]; j < (size_t)pl->start[c] + pl->count[c]; j++) {
			const struct rpat *t = &pl->pat[j];
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
	const struct redact_plan *pl = r->plan;
	size_t off = 0, c;

	if (!pl->npat) {
		if (n)
			emit(ctx, p, n);
		return;
	}
	if (r->hold_len) {
		/* held bytes plus enough of p to decide every held position */
		size_t take = n < r->maxlen ? n : r->maxlen, tlen = r->hold_len + take;
		char *tmp = r->hold + r->maxlen;

		memcpy(tmp, r->hold, r->hold_len);
		memcpy(tmp + r->hold_len, p, take);
		c = scan(pl, tmp, tlen, false, emit, ctx);
		if (c < r->hold_len) {
			/* only when all of p was taken: keep the undecided tail */
			memmove(r->hold, tmp + c, tlen - c);
			r->hold_len = tlen - c;
			OPENSSL_cleanse(tmp, tlen);
			return;
		}
		OPENSSL_cleanse(tmp, tlen);
		off = c - r->hold_len;
		OPENSSL_cleanse(r->hold, r->hold_len);
		r->hold_len = 0;
	}
	c = scan(pl, p + off, n - off, false, emit, ctx);
	off += c;
	if (off == n)
		return;
	if (!r->hold) /* the first hold-back since the last flush */
		r->hold = xmalloc(3 * r->maxlen);
	memcpy(r->hold, p + off, n - off);
	r->hold_len = n - off;
}

void redactor_flush(struct redactor *r, redact_emit_fn emit, void *ctx)
{
	if (r->hold_len)
		scan(r->plan, r->hold, r->hold_len, true, emit, ctx);
	/* between bodies (an idle keep-alive connection) nothing is held */
	hold_free(r);
}
