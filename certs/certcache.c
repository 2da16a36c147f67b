/* certcache.c -- a bounded LRU cache of minted leaf certificates, keyed by (is_ip, host) */
#include "mint.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "alloc.h"

#define REMINT_BEFORE (24 * 60 * 60) /* re-mint leaves expiring within a day */
#define CAP_MAX ((size_t)1 << 24)       /* keeps the bucket arithmetic far from overflow */

struct entry {
	char *host;          /* owned, lower-cased */
	bool is_ip;
	uint64_t hash;       /* of (is_ip, host) */
	X509 *cert;          /* the cache's reference */
	struct entry *hnext; /* next in the hash bucket */
	struct entry *prev;  /* towards the most recently used */
	struct entry *next;  /* towards the least recently used */
};

struct certcache {
	struct minter *m;       /* borrowed */
	size_t cap;             /* at most this many entries */
	size_t nbuckets;        /* a power of two, >= 2 * cap */
	struct entry **buckets; /* owned, chains of entries */
	struct entry *head;     /* most recently used */
	struct entry *tail;     /* least recently used: evicted first */
	uint64_t seed;          /* per-cache hash seed */
	size_t hits, misses, size;
	size_t minted;          /* leaves minted (misses whose mint succeeded) */
};

/* FNV-1a over a random seed, is_ip and the lower-cased host. */
static uint64_t hash_key(uint64_t seed, const char *host, bool is_ip)
{
	uint64_t h = 14695981039346656037ULL ^ seed;

	h = (h ^ (is_ip ? 1u : 0u)) * 1099511628211ULL;
	for (const unsigned char *p = (const unsigned char *)host; *p; p++) {
		unsigned char c = *p;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

struct certcache *certcache_new(struct minter *m, size_t cap)
{
	struct certcache *c = xcalloc(1, sizeof(*c));

	c->m = m;
	c->cap = cap == 0 ? 1 : cap > CAP_MAX ? CAP_MAX : cap;
	c->nbuckets = 16;
	while (c->nbuckets < 2 * c->cap)
		c->nbuckets *= 2;
	c->buckets = xcalloc(c->nbuckets, sizeof(*c->buckets));
	if (RAND_bytes((unsigned char *)&c->seed, sizeof(c->seed)) != 1)
		c->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
	return c;
}

static void entry_free(struct entry *e)
{
	if (!e)
		return;
	X509_free(e->cert);
	free(e->host);
	free(e);
}

void certcache_free(struct certcache *c)
{
	if (!c)
		return;
	for (struct entry *e = c->head, *next; e; e = next) {
		next = e->next;
		entry_free(e);
	}
	free(c->buckets);
	free(c);
}

static void lru_unlink(struct certcache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct certcache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static struct entry *lookup(struct certcache *c, uint64_t h, const char *host, bool is_ip)
{
	for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->is_ip == is_ip && strcasecmp(e->host, host) == 0)
			return e;
	return NULL;
}

/* Removes the least recently used entry from the list and its bucket, frees it. */
static void evict_lru(struct certcache *c)
{
	struct entry *e = c->tail;
	struct entry **pp;

	if (!e)
		return;
	for (pp = &c->buckets[e->hash & (c->nbuckets - 1)]; *pp != e; pp = &(*pp)->hnext)
		;
	*pp = e->hnext;
	lru_unlink(c, e);
	entry_free(e);
	c->size--;
}

/* Is cert valid for at least another REMINT_BEFORE seconds? */
static bool fresh(X509 *cert)
{
	time_t limit = time(NULL) + REMINT_BEFORE;

	return X509_cmp_time(X509_get0_notAfter(cert), &limit) > 0;
}

X509 *certcache_get(struct certcache *c, const char *host, bool is_ip, char *err)
{
	uint64_t h;
	struct entry *e;
	X509 *x;

	if (!host) {
		snprintf(err, 256, "certcache: NULL host");
		return NULL;
	}
	h = hash_key(c->seed, host, is_ip);
	e = lookup(c, h, host, is_ip);
	if (e && fresh(e->cert)) {
		c->hits++;
		if (c->head != e) {
			lru_unlink(c, e);
			lru_push_front(c, e);
		}
		X509_up_ref(e->cert);
		return e->cert;
	}
	c->misses++;
	x = minter_mint(c->m, host, is_ip, err);
	if (!x)
		return NULL;
	c->minted++;
	if (e) { /* close to expiry: replace; callers' references stay valid */
		X509_free(e->cert);
		e->cert = x;
		lru_unlink(c, e);
	} else {
		if (c->size >= c->cap)
			evict_lru(c);
		e = xcalloc(1, sizeof(*e));
		e->host = xstrdup(host);
		for (char *p = e->host; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		e->is_ip = is_ip;
		e->hash = h;
		e->cert = x;
		e->hnext = c->buckets[h & (c->nbuckets - 1)];
		c->buckets[h & (c->nbuckets - 1)] = e;
		c->size++;
	}
	lru_push_front(c, e);
	X509_up_ref(x);
	return x;
}

void certcache_stats(const struct certcache *c, size_t *hits, size_t *misses, size_t *size)
{
	if (hits)
		*hits = c->hits;
	if (misses)
		*misses = c->misses;
	if (size)
		*size = c->size;
}

size_t certcache_minted(const struct certcache *c)
{
	return c->minted;
}
