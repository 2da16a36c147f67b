/* srvopts.h -- the running proxy's options (server_new takes them; each
 * worker's connections read them through struct worker) */
#ifndef EGRESSD_SRVOPTS_H
#define EGRESSD_SRVOPTS_H

#include <stdbool.h>
#include <stddef.h>

struct sbtable;

#define SERVER_MAX_LISTENERS 8

struct server_opts {
	const char *listen[SERVER_MAX_LISTENERS]; /* "ADDR:PORT" explicit listeners */
	int nlisten;
	const char *transparent[SERVER_MAX_LISTENERS]; /* "ADDR:PORT" transparent listeners */
	int ntransparent;
	const char *dns_listen;  /* "ADDR:PORT": the jail's DNS responder, or NULL */
	const char *metrics;     /* "ADDR:PORT": Prometheus scrape listener, or NULL */
	const char *dns;        /* "ADDR[:PORT]" or NULL: resolv.conf */
	int threads;            /* 0: number of cores */
	unsigned connect_timeout_s, header_timeout_s, idle_timeout_s;
	const char *state_dir;   /* CA, placeholder key, CA bundle */
	const char *upstream_ca; /* extra upstream trust anchors, or NULL */
	bool leak_block;         /* --on-placeholder-leak block */
	bool http2;              /* intercepted upstreams are offered h2 (default; --no-http2: not) */
	unsigned drain_timeout_s; /* SIGTERM: how long connections may finish */
	long max_conns;           /* open connections at most; then new ones get 503 */
	size_t max_buffer;        /* bytes buffered per direction per connection */
	/* SIGHUP: builds the new sandbox table (NULL with err on a bad policy) */
	struct sbtable *(*reload)(void *ctx, char *err);
	void *reload_ctx;
};

#endif
