/* conn.h -- the client connections of a worker: their close queue, and
 * closing them at shutdown, while draining, or when their sandbox goes */
#ifndef EGRESSD_CONN_H
#define EGRESSD_CONN_H

#include <event2/util.h>

struct worker;
struct sockaddr;
struct event_base;
struct closeq;

/* A connection redirected to a transparent listener (transparent.c); as
 * explicit_accept (explicit.h). */
void transparent_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li);

/* A worker's close queue (w->closing): closed connections are freed from
 * base's loop. Free it with closeq_free after the worker's DNS base (whose
 * cancelled lookups may queue their connection again), before base. */
struct closeq *conn_closeq_new(struct event_base *base);

/* Frees every connection of w (at shutdown, after its loop stopped). */
void conn_close_all(struct worker *w);

/* Closes w's connections that are between requests with nothing pending
 * (used while draining; they leave w->conns at once). */
void conn_close_idle(struct worker *w);

/* Closes w's connections whose sandbox was deleted through the control API
 * (gen_revoked); returns how many. */
long conn_close_revoked(struct worker *w);

/* Number of live connections in this process (for diagnostics and tests). */
long conn_live_count(void);

#endif
