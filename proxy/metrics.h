/* metrics.h -- Prometheus counters, gauges and histograms of the running proxy:
 * one counters block per worker written only by its own thread (no lock, no
 * shared cache line on the request path), summed by the scrape; and the
 * `--metrics ADDR:PORT` listener, served by a small thread of its own */
#ifndef EGRESSD_METRICS_H
#define EGRESSD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "connmode.h"
#include "reason.h"

struct metrics;        /* process-wide: the blocks, the secret-name table, the listener */
struct metrics_worker; /* one worker's block; every hook below runs on its thread only */


/* egressd_upstream_errors_total{kind} */
enum metrics_upstream {
	MX_UP_DNS,      /* the name did not resolve (or no usable address) */
	MX_UP_CONNECT,  /* a TCP connect attempt failed */
	MX_UP_TIMEOUT,  /* a TCP connect or upstream TLS handshake timed out */
	MX_UP_TLS,      /* the upstream TLS handshake failed (not the certificate) */
	MX_UP_CERT,     /* the upstream certificate failed verification */
	MX_UP_RESET,    /* the upstream connection failed after it was up */
	MX_UP_PROTOCOL, /* a malformed response, or a close without one */
	MX_UP_KINDS,
};

/* egressd_client_timeouts_total{phase}: client connections closed for a timeout */
enum metrics_timeout {
	MX_TO_CLIENTHELLO, /* --header-timeout waiting for a CONNECT tunnel's ClientHello */
	MX_TO_TLS,         /* --header-timeout in the sandbox's TLS handshake */
	MX_TO_FIRST_BYTES, /* --header-timeout on a transparent connection's first bytes */
	MX_TO_HEAD,        /* --header-timeout waiting for a complete request head */
	MX_TO_IDLE,        /* --idle-timeout: nothing moved either way */
	MX_TO_KINDS,
};

/* egressd_tls_handshake_seconds{side} */
enum metrics_side { MX_SIDE_CLIENT, MX_SIDE_UPSTREAM, MX_SIDES };

/* egressd_requests_total{proto}: the protocol the sandbox sent the request in */
enum metrics_proto { MX_PROTO_HTTP1, MX_PROTO_H2, MX_PROTOS };

#define METRICS_SECRET_NAMES 256 /* distinct secret names; more count as "_other" */
#define METRICS_SANDBOX_NAMES 256 /* distinct sandbox names; more count as "_other" */
#define METRICS_ERRLEN 256

/* A registry for nworkers workers (1..64); version goes into
 * egressd_build_info. Aborts on OOM. */
struct metrics *metrics_new(int nworkers, const char *version);
/* Stops the listener thread if running; NULL: no-op. */
void metrics_free(struct metrics *m);
/* Worker i's block (borrowed, valid until metrics_free). */
struct metrics_worker *metrics_worker(struct metrics *m, int i);

/* Binds the scrape listener on a:port (port 0: any; the port chosen is in
 * *bound). Returns 0, or -1 with err (METRICS_ERRLEN). Before metrics_start. */
int metrics_listen(struct metrics *m, const struct ipaddr *a, uint16_t port, uint16_t *bound,
		   char *err);
/* Serves scrapes on a thread of its own until metrics_stop (no-op without
 * a listener). */
void metrics_start(struct metrics *m);
void metrics_stop(struct metrics *m);

/* ---- reload time (any thread; takes a lock) ---- */

/* The counter slot of a secret name: the same name always gets the same slot;
 * past METRICS_SECRET_NAMES names, the shared "_other" slot. */
unsigned metrics_secret_slot(struct metrics *m, const char *name);
/* The same for a sandbox name (egressd_sandbox_connections_total). */
unsigned metrics_sandbox_slot(struct metrics *m, const char *name);
/* A SIGHUP reload was applied (ok) or refused. */
void metrics_reload(struct metrics *m, bool ok);

/* ---- the request path: worker's own thread, no lock, no RMW atomics ---- */

void metrics_conn_open(struct metrics_worker *w);
void metrics_conn_close(struct metrics_worker *w);
/* Once per connection: the mode it ended up in and the decision (MX_MODE_NONE:
 * no decision). */
void metrics_conn_decided(struct metrics_worker *w, enum conn_mode mode, bool allow);
/* A request completed (response received) in mode, over proto, usec after its head. */
void metrics_request(struct metrics_worker *w, enum conn_mode mode, enum metrics_proto proto,
		     uint64_t usec);
void metrics_secret_injected(struct metrics_worker *w, unsigned slot);
/* Once per connection a named sandbox claimed: its slot and the decision. */
void metrics_sandbox_conn(struct metrics_worker *w, unsigned slot, bool allow);
void metrics_refusal(struct metrics_worker *w, enum reason r);
/* The same by name ("bad-request", "too-many-connections", ...); names that
 * are neither a reason nor one of the extra refusals are counted as "internal". */
void metrics_refusal_named(struct metrics_worker *w, const char *reason);
void metrics_upstream_error(struct metrics_worker *w, enum metrics_upstream kind);
void metrics_timeout(struct metrics_worker *w, enum metrics_timeout phase);
/* The phase's label ("request-head"), as the audit log's timeout event says it. */
const char *metrics_timeout_name(enum metrics_timeout phase);
/* Bytes relayed client -> upstream (up) or upstream -> client. */
void metrics_bytes(struct metrics_worker *w, bool up, uint64_t n);
void metrics_handshake(struct metrics_worker *w, enum metrics_side side, uint64_t usec);
void metrics_placeholder_leak(struct metrics_worker *w);
/* The worker's leaf cache statistics after a lookup (absolute values). */
void metrics_certcache(struct metrics_worker *w, size_t hits, size_t misses, size_t entries,
		       size_t minted);

/* ---- exposition ---- */

/* The whole Prometheus text exposition (format 0.0.4), summed over the
 * workers. Returns a new string (caller frees) and its length, or NULL. */
char *metrics_render(struct metrics *m, size_t *len);

/* ---- the control API (control.c) ---- */
#define MX_CONTROL_CODES 11
/* One control API answer with this HTTP status. Any thread. */
void metrics_control_request(struct metrics *m, int code);
/* With fn set (before metrics_start), a scrape also reports
 * egressd_sandboxes{origin} and egressd_control_requests_total{code}:
 * fn(ctx, ...) gives the numbers of sandboxes from the file and the API. */
void metrics_count_sandboxes(struct metrics *m, void (*fn)(void *ctx, size_t *nfile,
							   size_t *napi), void *ctx);

#endif
