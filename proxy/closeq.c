/* closeq.c -- deferred close: objects queued from callbacks, freed from the loop */
#include "closeq.h"

#include <stdlib.h>

#include <event2/event.h>

#include "alloc.h"

struct closeq {
	struct event *ev;                 /* active while the queue is not empty */
	struct closeq_node *head, *tail;
	void (*free_fn)(void *owner);
};

void closeq_run(struct closeq *q)
{
	struct closeq_node *n;

	while ((n = q->head)) {
		q->head = n->next;
		if (!q->head)
			q->tail = NULL;
		n->next = NULL;
		n->queued = false; /* free_fn may queue it again (it waits for DNS) */
		q->free_fn(n->owner);
	}
}

static void on_active(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	closeq_run(arg);
}

struct closeq *closeq_new(struct event_base *base, void (*free_fn)(void *owner))
{
	struct closeq *q = xcalloc(1, sizeof(*q));

	q->free_fn = free_fn;
	q->ev = event_new(base, -1, 0, on_active, q);
	if (!q->ev) {
		free(q);
		return NULL;
	}
	return q;
}

void closeq_free(struct closeq *q)
{
	if (!q)
		return;
	closeq_run(q);
	event_free(q->ev);
	free(q);
}

void closeq_add(struct closeq *q, struct closeq_node *n, void *owner)
{
	if (n->queued)
		return;
	n->queued = true;
	n->owner = owner;
	n->next = NULL;
	if (q->tail)
		q->tail->next = n;
	else
		q->head = n;
	q->tail = n;
	/* a no-op while active already; activating does not poll */
	event_active(q->ev, EV_TIMEOUT, 0);
}
