/* fakeip.c -- the synthetic-address map of the jail's resolver: names <->
 * 198.18.0.0/15, allocated in order, least recently used recycled at the cap,
 * hashed both ways, one mutex */
#include "fakeip.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "alloc.h"

#define NAME_MAX_LEN 253
#define HOSTS_PER_256 254 /* host parts .1 .. .254 of each /24 */
#define RANGE_SLOTS (512u * HOSTS_PER_256) /* usable addresses in the /15 */
#define NIL UINT32_MAX

struct entry {
	char *name;         /* owned, lower-case */
	uint32_t slot;      /* index of the address (see slot_to_addr) */
	uint32_t hash;      /* hash of name */
	uint32_t next_name; /* chain in by_name */
	uint32_t next_slot; /* chain in by_slot */
	uint32_t prev, next; /* LRU list: head most recent, tail least */
};

struct fakeip {
	pthread_mutex_t lock;
	struct entry *e;   /* entries [0, count) */
	uint32_t count, alloc, cap;
	uint32_t *by_name; /* nbuckets heads, NIL-terminated chains */
	uint32_t *by_slot;
	uint32_t mask;     /* nbuckets - 1 */
	uint32_t head, tail;
	uint64_t seed;     /* keys the name hash (names come from the sandbox) */
};

static void slot_to_addr(uint32_t slot, struct ipaddr *a)
{
	uint32_t host = (slot / HOSTS_PER_256) * 256 + slot % HOSTS_PER_256 + 1;

	memset(a, 0, sizeof(*a));
	a->family = 4;
	a->b[0] = 198;
	a->b[1] = (uint8_t)(18 + (host >> 16));
	a->b[2] = (uint8_t)(host >> 8);
	a->b[3] = (uint8_t)host;
}

/* The slot of a, or NIL (outside the range, or a .0 / .255 host part). */
static uint32_t addr_to_slot(const struct ipaddr *a)
{
	uint32_t host;

	if (!fakeip_in_range(a) || a->b[3] == 0 || a->b[3] == 255)
		return NIL;
	host = (uint32_t)(a->b[1] - 18) << 16 | (uint32_t)a->b[2] << 8 | a->b[3];
	return (host / 256) * HOSTS_PER_256 + (host % 256) - 1;
}

static uint32_t hash_name(uint64_t seed, const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed; /* FNV-1a, keyed */

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	h ^= h >> 33; /* fold the high bits in: the mask keeps only low ones */
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)h;
}

static uint32_t hash_slot(uint32_t slot)
{
	return slot * 0x9e3779b1u >> 7;
}

static bool name_ok(const char *name)
{
	size_t n = 0;

	if (!name)
		return false;
	for (; name[n]; n++) {
		char c = name[n];

		if (n >= NAME_MAX_LEN || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
					   c == '-' || c == '_' || c == '.'))
			return false;
	}
	return n > 0 && name[n - 1] != '.' && name[0] != '.';
}

struct fakeip *fakeip_new(size_t cap)
{
	struct fakeip *f = xcalloc(1, sizeof(*f));
	uint32_t nb = 16;

	if (cap < 1)
		cap = 1;
	if (cap > RANGE_SLOTS)
		cap = RANGE_SLOTS;
	while (nb < cap)
		nb <<= 1;
	f->cap = (uint32_t)cap;
	f->mask = nb - 1;
	f->by_name = xmalloc(nb * sizeof(uint32_t));
	f->by_slot = xmalloc(nb * sizeof(uint32_t));
	memset(f->by_name, 0xff, nb * sizeof(uint32_t));
	memset(f->by_slot, 0xff, nb * sizeof(uint32_t));
	f->head = f->tail = NIL;
#ifndef EGRESSD_FUZZ
	if (getrandom(&f->seed, sizeof(f->seed), GRND_NONBLOCK) != sizeof(f->seed))
		f->seed = (uint64_t)(uintptr_t)f; /* some variation without the pool */
#endif
	pthread_mutex_init(&f->lock, NULL);
	return f;
}

void fakeip_free(struct fakeip *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->count; i++)
		free(f->e[i].name);
	free(f->e);
	free(f->by_name);
	free(f->by_slot);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static void lru_unlink(struct fakeip *f, uint32_t i)
{
	struct entry *e = &f->e[i];

	if (e->prev != NIL)
		f->e[e->prev].next = e->next;
	else
		f->head = e->next;
	if (e->next != NIL)
		f->e[e->next].prev = e->prev;
	else
		f->tail = e->prev;
	e->prev = e->next = NIL;
}

static void lru_push_front(struct fakeip *f, uint32_t i)
{
	struct entry *e = &f->e[i];

	e->prev = NIL;
	e->next = f->head;
	if (f->head != NIL)
		f->e[f->head].prev = i;
	f->head = i;
	if (f->tail == NIL)
		f->tail = i;
}

static void touch(struct fakeip *f, uint32_t i)
{
	if (f->head == i)
		return;
	lru_unlink(f, i);
	lru_push_front(f, i);
}

static uint32_t find_name(const struct fakeip *f, const char *name, uint32_t h)
{
	uint32_t i = f->by_name[h & f->mask];

	while (i != NIL && (f->e[i].hash != h || strcmp(f->e[i].name, name) != 0))
		i = f->e[i].next_name;
	return i;
}

static uint32_t find_slot(const struct fakeip *f, uint32_t slot)
{
	uint32_t i = f->by_slot[hash_slot(slot) & f->mask];

	while (i != NIL && f->e[i].slot != slot)
		i = f->e[i].next_slot;
	return i;
}

/* Removes entry i from the by_name chain it is on (its slot stays). */
static void unhash_name(struct fakeip *f, uint32_t i)
{
	uint32_t *p = &f->by_name[f->e[i].hash & f->mask];

	while (*p != i)
		p = &f->e[*p].next_name;
	*p = f->e[i].next_name;
}

bool fakeip_addr_for(struct fakeip *f, const char *name, struct ipaddr *out)
{
	uint32_t h, i;

	if (!f || !out || !name_ok(name))
		return false;
	h = hash_name(f->seed, name);
	pthread_mutex_lock(&f->lock);
	i = find_name(f, name, h);
	if (i != NIL) {
		touch(f, i);
		goto out;
	}
	if (f->count < f->cap) { /* a fresh address, the next in order */
		uint32_t b;

		if (f->count == f->alloc) {
			f->alloc = f->alloc ? (f->alloc > f->cap / 2 ? f->cap : f->alloc * 2) : 64;
			if (f->alloc > f->cap)
				f->alloc = f->cap;
			f->e = xrealloc(f->e, f->alloc * sizeof(*f->e));
		}
		i = f->count++;
		f->e[i].slot = i;
		b = hash_slot(i) & f->mask;
		f->e[i].next_slot = f->by_slot[b];
		f->by_slot[b] = i;
		f->e[i].prev = f->e[i].next = NIL;
	} else { /* recycle the least recently used name's address */
		i = f->tail;
		unhash_name(f, i);
		lru_unlink(f, i);
		free(f->e[i].name);
	}
	f->e[i].name = xstrdup(name);
	f->e[i].hash = h;
	f->e[i].next_name = f->by_name[h & f->mask];
	f->by_name[h & f->mask] = i;
	lru_push_front(f, i);
out:
	slot_to_addr(f->e[i].slot, out);
	pthread_mutex_unlock(&f->lock);
	return true;
}

bool fakeip_name_for(struct fakeip *f, const struct ipaddr *a, char *name, size_t cap)
{
	uint32_t slot, i;
	bool found = false;

	if (!f || !a || !name || cap == 0)
		return false;
	slot = addr_to_slot(a);
	if (slot == NIL)
		return false;
	pthread_mutex_lock(&f->lock);
	i = find_slot(f, slot);
	if (i != NIL && strlen(f->e[i].name) < cap) {
		memcpy(name, f->e[i].name, strlen(f->e[i].name) + 1);
		touch(f, i); /* a connection to it counts as use */
		found = true;
	}
	pthread_mutex_unlock(&f->lock);
	return found;
}

bool fakeip_in_range(const struct ipaddr *a)
{
	return a && a->family == 4 && a->b[0] == 198 && (a->b[1] & 0xfe) == 18;
}
