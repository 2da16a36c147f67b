/* server.h -- the running proxy: options, listeners, worker threads each with
 * its own event loop and resolver, the current policy, and shutdown */
#ifndef EGRESSD_SERVER_H
#define EGRESSD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "srvopts.h"
#include "worker.h"

struct policy;
struct sbtable;
struct fakeip;
struct secretset;
struct tls;

struct server;

/* Creates the server for the sandboxes in t (taken, even on failure; one
 * policy is sbx_single(p)), binds the listeners (so errors surface before
 * fork/daemon), but does not run. Returns NULL with a message in err (256
 * bytes). */
struct server *server_new(const struct server_opts *o, struct sbtable *t, char *err);
/* Runs the workers until SIGTERM/SIGINT; returns 0, or 1 on a runtime error. */
int server_run(struct server *s);
void server_free(struct server *s);
/* For embedding (egressd run): start the worker threads, and later stop
 * them at once (no drain) and wait for them. Signals are the caller's. */
void server_start(struct server *s);
void server_stop(struct server *s);

/* The current generation (policy + resolved secrets) of the sandbox that
 * claims a connection from client accepted on listener li (the index
 * server_listen_port counts), with a new reference; release with
 * gen_release. A connection no sandbox claims gets a generation that
 * refuses everything (unknown-source). The gen_* accessors are in
 * generation.h. */
struct gen;
struct gen *server_acquire(struct server *s, int li, const struct ipaddr *client);

/* Swaps in the sandboxes of t (taken) and their secrets, atomically:
 * connections keep the generation they started with. One policy: all or
 * nothing. Named sandboxes: each one whose policy fails to load keeps the
 * generation it had, and the others change. Returns 0; 1 with err (256
 * bytes) when some sandboxes kept their old policy; -1 with err when
 * nothing changed. Any thread. */
int server_reload(struct server *s, struct sbtable *t, char *err);

/* The (first sandbox's) current policy with a new reference (release
 * with policy_unref). */
struct policy *server_policy(struct server *s);
const struct server_opts *server_opts(const struct server *s);
/* Would connecting to a:port reach one of egressd's own listeners (proxy,
 * transparent or metrics)? */
bool server_is_self(const struct server *s, const struct ipaddr *a, uint16_t port);
/* Interception state, or NULL when the policy has no secret or intercept
 * pattern (then nothing is intercepted). Borrowed for the server's life. */
struct tls *server_tls(struct server *s);
const struct secretset *server_secrets(struct server *s);

/* The synthetic-address map of the jail's resolver, or NULL. */
struct fakeip *server_fakeip(struct server *s);
/* The port the i-th listener (explicit ones first, then transparent) and
 * the DNS responder are bound to (after port 0 was chosen). */
uint16_t server_listen_port(const struct server *s, int i);
uint16_t server_dns_port(const struct server *s);
uint16_t server_metrics_port(const struct server *s); /* 0: no --metrics */

/* Sandboxes created at runtime (control.c): gentable_put and
 * gentable_delete (generation.h) against this server's listeners; a
 * delete also wakes every worker to close the sandbox's connections. */
int server_sandbox_put(struct server *s, struct sbtable *t, const char *info, bool *created,
		       char *err);
int server_sandbox_delete(struct server *s, const char *name, long *open);
struct gentable *server_gentable(struct server *s); /* borrowed */
/* The control API's TCP address (before the workers start): it counts as
 * egressd's own for the proxy-loop check, as the metrics listener does. */
void server_set_control_addr(struct server *s, const struct ipaddr *a, uint16_t port);
/* The address listener i (as server_listen_port counts) is bound to. */
bool server_listen_addr(const struct server *s, int i, struct ipaddr *a, uint16_t *port);
struct metrics *server_metrics(struct server *s);   /* borrowed */

/* A process-wide unique connection id. */
unsigned long long server_next_id(struct server *s);

#endif
