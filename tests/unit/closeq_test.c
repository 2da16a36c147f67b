/* closeq_test.c -- the deferred close queue against socketpairs and a real
 * event_base, with bufferevents set up as egressd's connections are
 * (BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS); under ASan a free
 * under a callback would show as a use after free */
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "closeq.h"
#include "tap.h"

/* What the test learns of an object, kept after it is freed. */
struct rec {
	int order;       /* 1 + how many were freed before it; 0: not freed */
	int calls;       /* read callbacks run */
	int acted;       /* ... of which while it was open */
	int after_close; /* frees counted right after its callback closed it */
};

/* A stand-in for struct conn (heap: ASan sees a use after free). */
struct obj {
	struct bufferevent *bev;
	bool closed;
	bool wait_once;          /* free_fn declines once (as for a DNS lookup) */
	struct closeq_node cq;
	struct rec *r;
	bool close_self, twice;  /* what its read callback does: close itself (twice) */
	struct obj *also;        /* ... close another one too */
	struct obj *poke;        /* ... make another one's read callback due, first */
};

static struct closeq *q;
static int frees;

static void obj_free(void *arg)
{
	struct obj *o = arg;

	if (o->wait_once) {
		o->wait_once = false;
		return; /* the test queues it again, as the DNS callback does */
	}
	o->r->order = ++frees;
	bufferevent_free(o->bev);
	free(o);
}

static void obj_close(struct obj *o)
{
	o->closed = true;
	closeq_add(q, &o->cq, o);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct obj *o = arg;

	o->r->calls++;
	if (o->closed)
		return; /* the one check at the entry point */
	o->r->acted++;
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
	if (o->poke)
		bufferevent_trigger(o->poke->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	if (o->also)
		obj_close(o->also);
	if (o->close_self) {
		obj_close(o);
		if (o->twice)
			obj_close(o);
		/* still ours: reading it is fine until this callback returns */
		o->r->after_close = frees;
	}
}

/* A new object on one end of a socketpair; *peer gets the other end. */
static struct obj *obj_new(struct event_base *base, struct rec *r, int *peer)
{
	struct obj *o = calloc(1, sizeof(*o));
	int sv[2];

	if (!o || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		abort();
	o->r = r;
	o->bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!o->bev)
		abort();
	bufferevent_setcb(o->bev, on_read, NULL, NULL, o);
	bufferevent_enable(o->bev, EV_READ);
	*peer = sv[1];
	return o;
}

/* The peer sees the socket closed (EOF), i.e. the object was freed. */
static bool peer_sees_eof(int peer)
{
	char b[8];
	return read(peer, b, sizeof(b)) == 0;
}

static void send1(int peer)
{
	if (write(peer, "x", 1) != 1)
		abort();
}

static void test_close_in_callback(struct event_base *base)
{
	struct rec r = { 0 };
	int peer;
	struct obj *o = obj_new(base, &r, &peer);

	o->close_self = true;
	o->twice = true;
	frees = 0;
	send1(peer);
	event_base_loop(base, EVLOOP_ONCE);
	ok(r.acted == 1, "close from its read callback: the callback ran");
	ok(r.after_close == 0, "... nothing was freed before the callback returned");
	ok(r.order == 1 && frees == 1, "... freed once (closed twice) in the same loop turn");
	ok(peer_sees_eof(peer), "... and its socket is closed when the turn ends");
	close(peer);
}

static void test_event_after_close(struct event_base *base)
{
	struct rec ra = { 0 }, rb = { 0 };
	int pa, pb;
	struct obj *a = obj_new(base, &ra, &pa), *b = obj_new(base, &rb, &pb);

	/* a makes b's read callback due, then closes b: that callback runs
	 * before the queue (it was active first) and must do nothing */
	a->poke = b;
	a->also = b;
	frees = 0;
	send1(pa);
	event_base_loop(base, EVLOOP_ONCE);
	ok(ra.acted == 1 && ra.order == 0, "another's callback closes b; a stays open");
	ok(rb.calls == 1 && rb.acted == 0, "b's callback, due after its close, ran and did nothing");
	ok(rb.order == 1, "b freed after that callback, in the same loop turn");
	ok(peer_sees_eof(pb), "... its socket closed");
	obj_close(a);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ok(ra.order == 2, "a closed from outside any callback: freed by the next turn");
	close(pa);
	close(pb);
}

static void test_order_and_requeue(struct event_base *base)
{
	struct rec r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	int p1, p2, p3;
	struct obj *o1 = obj_new(base, &r1, &p1), *o2 = obj_new(base, &r2, &p2),
		   *o3 = obj_new(base, &r3, &p3);

	frees = 0;
	o2->wait_once = true;
	obj_close(o1);
	obj_close(o2);
	obj_close(o3);
	obj_close(o1); /* again while queued: no-op */
	event_base_loop(base, EVLOOP_NONBLOCK);
	ok(r1.order == 1 && r3.order == 2, "freed in the order closed");
	ok(r2.order == 0, "one that waits (a lookup to cancel) stays until queued again");
	closeq_add(q, &o2->cq, o2); /* the lookup's callback: queue it again */
	closeq_run(q); /* at shutdown, without the loop */
	ok(r2.order == 3, "queued again: freed (closeq_run, no loop)");
	close(p1);
	close(p2);
	close(p3);
}

int main(void)
{
	struct event_base *base = event_base_new();
	struct rec r = { 0 };
	int peer;

	q = closeq_new(base, obj_free);
	ok(q != NULL, "closeq_new");
	test_close_in_callback(base);
	test_event_after_close(base);
	test_order_and_requeue(base);
	/* closeq_free frees what is still queued */
	frees = 0;
	obj_close(obj_new(base, &r, &peer));
	closeq_free(q);
	ok(r.order == 1, "closeq_free frees what is still queued");
	close(peer);
	closeq_free(NULL);
	event_base_free(base);
	return done_testing();
}
