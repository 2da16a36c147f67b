/* worker.h -- what a connection sees of the worker thread that runs it: its
 * loop, resolver, counters and caches, the server's options, and the few
 * server answers it needs, through struct worker_host (server.c fills it in;
 * so the server is above the connection engine, never below) */
#ifndef EGRESSD_WORKER_H
#define EGRESSD_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "srvopts.h"

struct server;
struct gen;
struct event_base;
struct evdns_base;
struct fakeip;
struct certcache;
struct closeq;
struct metrics_worker;
struct pipepool;
struct evbuffer;
struct tls;
struct conn;

/* The server's answers a connection needs (server.c's functions: the
 * engine calls no server_* function; server.h has their contracts). */
struct worker_host {
	struct gen *(*acquire)(struct server *s, int li, const struct ipaddr *client);
	unsigned long long (*next_id)(struct server *s);
	bool (*is_self)(const struct server *s, const struct ipaddr *a, uint16_t port);
};

/* A worker's view, handed to each connection (borrowed, outlives its conns). */
struct worker {
	struct server *srv;      /* the argument of host's functions */
	const struct worker_host *host;
	const struct server_opts *opts; /* the server's options */
	struct tls *tls;         /* interception state, or NULL (server_tls) */
	struct fakeip *fakeip;   /* the jail resolver's synthetic addresses, or NULL */
	struct event_base *base;
	struct evdns_base *dns;
	unsigned index;
	struct conn *conns; /* live connections of this worker (conn.c's list) */
	struct closeq *closing; /* closed connections, freed from the loop (conn.c) */
	struct certcache *certs; /* this worker's minted leaves (NULL: no interception) */
	struct metrics_worker *mx; /* this worker's counters (metrics.h; always set) */
	struct pipepool *pipes;  /* spare pipes for spliced tunnels */
	struct evbuffer *stage;  /* httpresp.c: what one upstream read makes for the
				  * client, handed to its TLS layer at once; always
				  * empty between callbacks */
};

#endif
