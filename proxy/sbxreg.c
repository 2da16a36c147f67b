/* sbxreg.c -- the sandboxes created at runtime: a hash of names, a hash of
 * single-address sources, and a list of the "wide" sandboxes (a range or no
 * source at all), which every match and every conflict check must visit */
#include "sbxreg.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "sandboxes.h"

struct entry;

/* One single-address source of an entry, in the source hash. */
struct srcnode {
	struct ipaddr a;
	struct entry *e;
	struct srcnode *next; /* same bucket */
};

struct entry {
	struct sbtable *t;        /* one sandbox (index 0) */
	void *val;                /* the caller's */
	struct entry *next;       /* same name bucket */
	bool wide;                /* a range or no source: in the wide list */
	struct entry *wprev, *wnext;
	struct srcnode *nodes;    /* !wide: one per source */
	size_t nnodes;
};

struct sbxreg {
	struct entry **names;     /* name hash, nnames buckets (a power of two) */
	size_t nnames;
	struct srcnode **srcs;    /* source hash, nsrcs buckets (a power of two) */
	size_t nsrcs;
	size_t n;                 /* entries */
	size_t nsrcnodes;
	struct entry *wide;       /* the wide entries */
};

/* FNV-1a */
static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t hash_name(const char *s)
{
	return hash_bytes(s, strlen(s), 0xcbf29ce484222325ULL);
}

static uint64_t hash_addr(const struct ipaddr *a)
{
	return hash_bytes(a->b, a->family == 4 ? 4 : 16, 0xcbf29ce484222325ULL ^ a->family);
}

static const char *entry_name(const struct entry *e)
{
	return sbx_name(e->t, 0);
}

struct sbxreg *sbxreg_new(void)
{
	struct sbxreg *r = xcalloc(1, sizeof(*r));

	r->nnames = 64;
	r->names = xcalloc(r->nnames, sizeof(*r->names));
	r->nsrcs = 64;
	r->srcs = xcalloc(r->nsrcs, sizeof(*r->srcs));
	return r;
}

static void entry_free(struct entry *e)
{
	sbx_free(e->t);
	free(e->nodes);
	free(e);
}

void sbxreg_free(struct sbxreg *r, void (*drop)(void *val))
{
	if (!r)
		return;
	for (size_t b = 0; b < r->nnames; b++) {
		struct entry *e = r->names[b], *next;
		for (; e; e = next) {
			next = e->next;
			if (drop)
				drop(e->val);
			entry_free(e);
		}
	}
	free(r->names);
	free(r->srcs);
	free(r);
}

size_t sbxreg_count(const struct sbxreg *r)
{
	return r->n;
}

static struct entry **name_slot(const struct sbxreg *r, const char *name)
{
	struct entry **pe = &r->names[hash_name(name) & (r->nnames - 1)];

	while (*pe && strcmp(entry_name(*pe), name) != 0)
		pe = &(*pe)->next;
	return pe;
}

void *sbxreg_get(const struct sbxreg *r, const char *name)
{
	struct entry *e = *name_slot(r, name);

	return e ? e->val : NULL;
}

static bool single_address(const struct ipaddr *a, unsigned prefix)
{
	return prefix == (a->family == 4 ? 32u : 128u);
}

/* Is sandbox i of t indexed by its sources (all single addresses)? */
static bool is_wide(const struct sbtable *t, size_t i)
{
	size_t n = sbx_source_count(t, i);

	for (size_t k = 0; k < n; k++) {
		struct ipaddr a;
		unsigned prefix;
		sbx_source(t, i, k, &a, &prefix);
		if (!single_address(&a, prefix))
			return true;
	}
	return n == 0;
}

static bool meets(const struct entry *e, const struct sbtable *t, size_t i, const char *skip)
{
	return !(skip && strcmp(entry_name(e), skip) == 0) && sbx_meet(e->t, 0, t, i);
}

const char *sbxreg_conflict(const struct sbxreg *r, const struct sbtable *t, size_t i,
			    const char *skip)
{
	const struct entry *e;

	if (is_wide(t, i)) {
		for (size_t b = 0; b < r->nnames; b++)
			for (e = r->names[b]; e; e = e->next)
				if (meets(e, t, i, skip))
					return entry_name(e);
		return NULL;
	}
	for (e = r->wide; e; e = e->wnext)
		if (meets(e, t, i, skip))
			return entry_name(e);
	for (size_t k = 0; k < sbx_source_count(t, i); k++) {
		struct ipaddr a;
		unsigned prefix;
		sbx_source(t, i, k, &a, &prefix);
		for (const struct srcnode *s = r->srcs[hash_addr(&a) & (r->nsrcs - 1)]; s;
		     s = s->next)
			if (addr_equal(&s->a, &a) && meets(s->e, t, i, skip))
				return entry_name(s->e);
	}
	return NULL;
}

/* Doubles a hash's buckets when it holds more entries than buckets. */
static void grow_names(struct sbxreg *r)
{
	size_t n = r->nnames * 2;
	struct entry **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < r->nnames; i++) {
		struct entry *e = r->names[i], *next;
		for (; e; e = next) {
			size_t k = hash_name(entry_name(e)) & (n - 1);
			next = e->next;
			e->next = b[k];
			b[k] = e;
		}
	}
	free(r->names);
	r->names = b;
	r->nnames = n;
}

static void grow_srcs(struct sbxreg *r)
{
	size_t n = r->nsrcs * 2;
	struct srcnode **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < r->nsrcs; i++) {
		struct srcnode *s = r->srcs[i], *next;
		for (; s; s = next) {
			size_t k = hash_addr(&s->a) & (n - 1);
			next = s->next;
			s->next = b[k];
			b[k] = s;
		}
	}
	free(r->srcs);
	r->srcs = b;
	r->nsrcs = n;
}

/* Puts e in the source index or the wide list. */
static void index_entry(struct sbxreg *r, struct entry *e)
{
	e->wide = is_wide(e->t, 0);
	if (e->wide) {
		e->wprev = NULL;
		e->wnext = r->wide;
		if (r->wide)
			r->wide->wprev = e;
		r->wide = e;
		return;
	}
	e->nnodes = sbx_source_count(e->t, 0);
	e->nodes = xcalloc(e->nnodes, sizeof(*e->nodes));
	for (size_t k = 0; k < e->nnodes; k++) {
		struct srcnode *s = &e->nodes[k];
		unsigned prefix;
		size_t b;
		if (r->nsrcnodes >= r->nsrcs)
			grow_srcs(r);
		sbx_source(e->t, 0, k, &s->a, &prefix);
		s->e = e;
		b = hash_addr(&s->a) & (r->nsrcs - 1);
		s->next = r->srcs[b];
		r->srcs[b] = s;
		r->nsrcnodes++;
	}
}

static void unindex_entry(struct sbxreg *r, struct entry *e)
{
	if (e->wide) {
		if (e->wprev)
			e->wprev->wnext = e->wnext;
		else
			r->wide = e->wnext;
		if (e->wnext)
			e->wnext->wprev = e->wprev;
		return;
	}
	for (size_t k = 0; k < e->nnodes; k++) {
		struct srcnode **ps = &r->srcs[hash_addr(&e->nodes[k].a) & (r->nsrcs - 1)];
		while (*ps && *ps != &e->nodes[k])
			ps = &(*ps)->next;
		if (*ps) {
			*ps = e->nodes[k].next;
			r->nsrcnodes--;
		}
	}
	free(e->nodes);
	e->nodes = NULL;
	e->nnodes = 0;
}

void *sbxreg_put(struct sbxreg *r, struct sbtable *t, void *val)
{
	struct entry **pe = name_slot(r, sbx_name(t, 0)), *e = *pe;
	void *old = NULL;

	if (e) {
		unindex_entry(r, e);
		sbx_free(e->t);
		old = e->val;
	} else {
		if (r->n >= r->nnames) {
			grow_names(r);
			pe = name_slot(r, sbx_name(t, 0));
		}
		e = xcalloc(1, sizeof(*e));
		*pe = e;
		r->n++;
	}
	e->t = t;
	e->val = val;
	index_entry(r, e);
	return old;
}

void *sbxreg_remove(struct sbxreg *r, const char *name)
{
	struct entry **pe = name_slot(r, name), *e = *pe;
	void *val;

	if (!e)
		return NULL;
	*pe = e->next;
	unindex_entry(r, e);
	val = e->val;
	entry_free(e);
	r->n--;
	return val;
}

void *sbxreg_match(const struct sbxreg *r, const struct ipaddr *la, uint16_t lport,
		   const struct ipaddr *client)
{
	const struct srcnode *s = r->srcs[hash_addr(client) & (r->nsrcs - 1)];
	const struct entry *e;

	for (; s; s = s->next)
		if (addr_equal(&s->a, client) && sbx_claims(s->e->t, 0, la, lport, client))
			return s->e->val;
	for (e = r->wide; e; e = e->wnext)
		if (sbx_claims(e->t, 0, la, lport, client))
			return e->val;
	return NULL;
}

void sbxreg_each(const struct sbxreg *r, void (*fn)(void *ctx, const char *name, void *val),
		 void *ctx)
{
	for (size_t b = 0; b < r->nnames; b++)
		for (const struct entry *e = r->names[b]; e; e = e->next)
			fn(ctx, entry_name(e), e->val);
}
