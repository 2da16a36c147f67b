/* tunnel.c -- un-inspected tunnels on the raw sockets: once a CONNECT or
 * transparent tunnel has passed its checks, its streams give their sockets
 * back (sock_detach) and
 * bytes move with read/write through a stack buffer while messages are small,
 * and with splice(2) once a read fills that buffer (bulk), through a pipe per
 * direction (taken from the worker's pool only while bytes are in flight, so
 * an idle tunnel holds two sockets and two events, no buffers), with
 * back-pressure, half-close, the idle timeout and the byte counts of the
 * close log */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc.h"
#include "conn_int.h"
#include "metrics.h"
#include "pipepool.h"
#include "sock.h"
#include "worker.h"

#define PIPE_BYTES PIPEPOOL_BYTES   /* a pool pipe's capacity, if it got it */
#define PUMP_BUDGET (1024 * 1024)  /* bytes per direction per wakeup, then others run */
#define COPY_BYTES (16 * 1024)     /* reads up to this size go through a stack buffer */
#define WRITE_FAILED (-2)          /* copy(): the write failed, already counted */

/* One direction: bytes read from fd[src] are written to fd[dst]. */
struct dir {
	int src, dst;           /* 0 client, 1 upstream */
	int pipe[2];            /* held while bytes are in it; -1 otherwise */
	size_t inpipe;          /* bytes in the pipe */
	struct evbuffer *pend;  /* bytes from the streams' phase, or read without a
				 * pipe (no descriptors left); NULL when empty */
	bool eof;               /* fd[src] reached EOF */
	bool shut;              /* fd[dst] was shut down for writing */
	bool blocked;           /* fd[dst] would block with bytes held */
	bool bulk;              /* the last read filled COPY_BYTES: splice the next */
	bool full;              /* the last read filled what it asked for */
};

struct tunnel {
	struct conn *c;
	int fd[2];              /* client, upstream sockets (owned) */
	struct event *ev[2];    /* one per socket; interest follows the directions */
	short want[2];          /* what ev[i] waits for now (EV_READ|EV_WRITE) */
	struct dir d[2];        /* 0: client -> upstream, 1: upstream -> client */
	size_t cap;             /* bytes per read: min(--max-buffer, pipe capacity) */
};

static void on_io(evutil_socket_t fd, short what, void *arg);

static struct timeval *idle_tv(struct conn *c, struct timeval *tv)
{
	unsigned s = c->w->opts->idle_timeout_s;

	tv->tv_sec = (time_t)s;
	tv->tv_usec = 0;
	return s ? tv : NULL;
}

/* Socket i waits for reads while its outgoing direction may read, and for
 * writes while its incoming direction is blocked on it. */
static int set_interest(struct tunnel *t, int i)
{
	const struct dir *out = &t->d[i], *in = &t->d[1 - i];
	short want = (short)((!out->eof && !out->blocked ? EV_READ : 0) | (in->blocked ? EV_WRITE : 0));
	struct timeval tv;

	if (want == t->want[i])
		return 0;
	event_del(t->ev[i]);
	t->want[i] = want;
	if (!want)
		return 0; /* the other socket's event carries the idle timeout */
	if (event_assign(t->ev[i], t->c->w->base, t->fd[i], want | EV_PERSIST, on_io, t) != 0)
		return -1;
	return event_add(t->ev[i], idle_tv(t->c, &tv));
}

static void count(struct tunnel *t, struct dir *d, size_t n)
{
	if (d == &t->d[0])
		t->c->bytes_up += n;
	else
		t->c->bytes_down += n;
	metrics_bytes(t->c->w->mx, d == &t->d[0], n);
}

/* A read or write on socket i failed: an upstream one counts as a reset in
 * the metrics, as the streams' path counts it. Returns -1. */
static int failed(struct tunnel *t, int i)
{
	if (i == 1)
		metrics_upstream_error(t->c->w->mx, MX_UP_RESET);
	return -1;
}

/* Writes what d holds to its destination. Returns -1 on a fatal error, else
 * 0; d->blocked says whether bytes are still held. */
static int flush(struct tunnel *t, struct dir *d)
{
	int dst = t->fd[d->dst];

	if (d->pend) {
		if (evbuffer_write(d->pend, dst) < 0 && errno != EAGAIN && errno != EINTR)
			return failed(t, d->dst);
		if (evbuffer_get_length(d->pend) > 0) {
			d->blocked = true;
			return 0;
		}
		evbuffer_free(d->pend);
		d->pend = NULL;
	}
	while (d->inpipe > 0) {
		ssize_t n = splice(d->pipe[0], NULL, dst, NULL, d->inpipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			d->blocked = true;
			return 0;
		}
		if (n <= 0)
			return failed(t, d->dst);
		d->inpipe -= (size_t)n;
	}
	d->blocked = false;
	return 0;
}

/* Reads once from d's source into a stack buffer and writes it straight on
 * (small messages: a read and a write are cheaper than two splices); what the
 * destination does not take goes to d->pend, which the next flush writes.
 * Returns bytes read, 0 at EOF, -1 with errno. */
static ssize_t copy(struct tunnel *t, struct dir *d, size_t cap)
{
	char buf[COPY_BYTES];
	ssize_t n, w;

	do
		n = read(t->fd[d->src], buf, cap);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	d->full = d->bulk = (size_t)n == cap;
	do
		w = write(t->fd[d->dst], buf, (size_t)n);
	while (w < 0 && errno == EINTR);
	if (w < 0 && errno != EAGAIN) {
		failed(t, d->dst);
		return WRITE_FAILED;
	}
	if (w < 0)
		w = 0;
	if (w < n) {
		if (!d->pend)
			d->pend = evbuffer_new();
		if (!d->pend || evbuffer_add(d->pend, buf + w, (size_t)(n - w)) < 0)
			return WRITE_FAILED;
	}
	return n;
}

/* Reads once from d's source: small reads through copy(), bulk into its pipe
 * (or, with no pipe to be had, into d->pend). Returns bytes read, 0 at EOF,
 * -1 with errno, or WRITE_FAILED. */
static ssize_t fill(struct tunnel *t, struct dir *d)
{
	int src = t->fd[d->src];
	ssize_t n;

	if (!d->bulk)
		return copy(t, d, t->cap < COPY_BYTES ? t->cap : COPY_BYTES);
	if (d->pipe[0] < 0 && !pipepool_get(t->c->w->pipes, d->pipe)) {
		if (!d->pend)
			d->pend = evbuffer_new();
		if (!d->pend)
			return -1;
		n = evbuffer_read(d->pend, src, (int)t->cap);
		d->full = n == (ssize_t)t->cap;
		d->bulk = n >= COPY_BYTES || (n < 0 && errno == EAGAIN);
		return n;
	}
	do
		n = splice(src, NULL, d->pipe[1], NULL, t->cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		d->inpipe = (size_t)n;
	d->full = n == (ssize_t)t->cap;
	d->bulk = n >= COPY_BYTES || (n < 0 && errno == EAGAIN);
	return n;
}

/* Moves bytes along d until its source has nothing more (or the budget is
 * spent) or its destination would block. Returns -1 on a fatal error. */
static int pump(struct tunnel *t, struct dir *d)
{
	size_t budget = PUMP_BUDGET;
	int rc = 0;

	for (;;) {
		ssize_t n;

		if (flush(t, d) < 0) {
			rc = -1;
			break;
		}
		if (d->blocked)
			break;
		if (d->eof) {
			if (!d->shut) {
				shutdown(t->fd[d->dst], SHUT_WR);
				d->shut = true;
			}
			break;
		}
		if (budget == 0)
			break; /* the socket stays readable: epoll brings us back */
		n = fill(t, d);
		if (n == 0) {
			d->eof = true;
			continue;
		}
		if (n == WRITE_FAILED) {
			rc = -1;
			break;
		}
		if (n < 0) {
			if (errno != EAGAIN)
				rc = failed(t, d->src);
			break;
		}
		count(t, d, (size_t)n);
		conn_touch(t->c);
		/* a short read emptied the socket: write it out, then wait */
		budget = !d->full || (size_t)n >= budget ? 0 : budget - (size_t)n;
	}
	if (d->inpipe == 0)
		pipepool_put(t->c->w->pipes, d->pipe);
	return rc;
}

/* After a pump: close c when both directions are finished or on error, else
 * update what each socket waits for. */
static void settle(struct tunnel *t, int rc)
{
	if (rc == 0 && !(t->d[0].shut && t->d[1].shut) && set_interest(t, 0) == 0 &&
	    set_interest(t, 1) == 0)
		return;
	conn_close(t->c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	int i = fd == t->fd[1];
	int rc = 0;

	if (t->c->closed)
		return;
	if ((what & EV_TIMEOUT) && conn_idle_expired(t->c)) {
		metrics_timeout(t->c->w->mx, MX_TO_IDLE);
		conn_close(t->c);
		return;
	}
	if (what & EV_WRITE)
		rc = pump(t, &t->d[1 - i]);
	if (rc == 0 && (what & EV_READ))
		rc = pump(t, &t->d[i]);
	settle(t, rc);
}

/* Appends n bytes a stream held (p) to the end of *pend. */
static void take(struct evbuffer **pend, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (!*pend)
		*pend = evbuffer_new();
	if (*pend)
		evbuffer_add(*pend, p, n);
}

static void tunnel_free(struct tunnel *t);

/* Closes the sockets and frees the pipes and events (when c is freed). */
static void tunnel_dispose(struct conn *c)
{
	tunnel_free(c->tun);
	c->tun = NULL;
}

bool tunnel_start(struct conn *c)
{
	struct tunnel *t;
	size_t upfront, n;
	const char *p;

	if ((c->mode != MODE_CONNECT && c->mode != MODE_TRANSPARENT) || !c->cl || !c->up ||
	    sock_ssl(c->cl) || sock_ssl(c->up) ||
	    !c->w->pipes)
		return false;
	t = xcalloc(1, sizeof(*t));
	t->c = c;
	t->ev[0] = event_new(c->w->base, -1, 0, on_io, t);
	t->ev[1] = event_new(c->w->base, -1, 0, on_io, t);
	if (!t->ev[0] || !t->ev[1]) {
		if (t->ev[0])
			event_free(t->ev[0]);
		free(t);
		return false;
	}
	t->cap = c->hiwat < PIPE_BYTES ? (c->hiwat ? c->hiwat : 1) : PIPE_BYTES;
	for (int i = 0; i < 2; i++) {
		t->d[i].src = i;
		t->d[i].dst = 1 - i;
		t->d[i].pipe[0] = t->d[i].pipe[1] = -1;
	}
	/* what the streams hold goes first, in order: bytes queued for a
	 * side, then bytes read from the other side and not yet relayed */
	p = sock_out_data(c->up, &n);
	take(&t->d[0].pend, p, n);
	p = sock_data(c->cl, &upfront);
	take(&t->d[0].pend, p, upfront);
	c->bytes_up += upfront;
	metrics_bytes(c->w->mx, true, upfront);
	p = sock_out_data(c->cl, &n);
	take(&t->d[1].pend, p, n);
	p = sock_data(c->up, &upfront);
	take(&t->d[1].pend, p, upfront);
	c->bytes_down += upfront;
	metrics_bytes(c->w->mx, false, upfront);
	t->d[0].eof = c->cl_eof;
	t->d[0].shut = c->up_shut;
	t->d[1].eof = c->up_eof;
	t->d[1].shut = c->cl_shut;
	t->fd[0] = sock_detach(c->cl);
	t->fd[1] = sock_detach(c->up);
	c->cl = c->up = NULL;
	conn_set_idle(c, 0); /* the sockets' events carry the idle timeout */
	/* nothing of the HTTP or head phases is needed any more */
	if (c->deadline) {
		event_free(c->deadline);
		c->deadline = NULL;
	}
	if (c->pending) {
		evbuffer_free(c->pending);
		c->pending = NULL;
	}
	c->tun = t;
	c->dispose = tunnel_dispose;
	/* relay what is held and whatever the sockets already have */
	settle(t, pump(t, &t->d[0]) < 0 || pump(t, &t->d[1]) < 0 ? -1 : 0);
	return true;
}

static void tunnel_free(struct tunnel *t)
{
	if (!t)
		return;
	for (int i = 0; i < 2; i++) {
		event_free(t->ev[i]);
		if (t->d[i].pend)
			evbuffer_free(t->d[i].pend);
		if (t->d[i].inpipe == 0)
			pipepool_put(t->c->w->pipes, t->d[i].pipe);
		else
			pipepool_close(t->d[i].pipe);
		if (t->fd[i] >= 0)
			evutil_closesocket(t->fd[i]);
	}
	free(t);
}
