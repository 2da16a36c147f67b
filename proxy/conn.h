/* conn.h -- one client connection on the explicit proxy listener, from accept
 * to teardown: request head, decision, resolution, upstream connect, then a
 * checked tunnel (CONNECT) or request-by-request forwarding (absolute-form) */
#ifndef EGRESSD_CONN_H
#define EGRESSD_CONN_H

#include <event2/util.h>

struct worker;
struct sockaddr;
struct event_base;
struct closeq;

/* Takes ownership of fd (closed on any failure), accepted on listener li
 * (its index among the server's listeners: it picks the sandbox). */
void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li);

/* Same for a connection redirected to a transparent listener (transparent.c). */
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
