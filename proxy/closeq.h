/* closeq.h -- deferred close: an object closed from inside a callback is
 * queued and freed later from the event loop, once the callback chain that
 * closed it has returned (redis's freeClientAsync / CLIENT_CLOSE_ASAP) */
#ifndef EGRESSD_CLOSEQ_H
#define EGRESSD_CLOSEQ_H

#include <stdbool.h>

struct event_base;
struct closeq;

/* Embedded in each queued object; zero-initialised (calloc) means "not queued". */
struct closeq_node {
	struct closeq_node *next; /* the queue's order (first closed, first freed) */
	void *owner;              /* what the free function gets */
	bool queued;
};

/* A queue on base whose objects are freed by free_fn(owner), from one event
 * of base made active while the queue is not empty: it runs in the loop turn
 * of the close, after the callbacks already active at the time (libevent
 * runs active events of one priority in order; the loop polls again only
 * when none is left). Returns NULL if the event cannot be created. */
struct closeq *closeq_new(struct event_base *base, void (*free_fn)(void *owner));
/* Frees what is still queued (free_fn may queue again: run until empty),
 * then q. Call before freeing base. NULL is a no-op. */
void closeq_free(struct closeq *q);
/* Queues owner (through its node n) to be freed; a no-op while n is queued
 * already. The caller must not act on owner any more, except through
 * callbacks that see it closing and return. */
void closeq_add(struct closeq *q, struct closeq_node *n, void *owner);
/* Frees everything queued now, in order, including what free_fn queues
 * meanwhile (at shutdown, when the loop no longer runs). */
void closeq_run(struct closeq *q);

#endif
