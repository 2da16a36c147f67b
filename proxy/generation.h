/* generation.h -- the sandbox table and each sandbox's current generation (a
 * policy and the secret values resolved for it): which generation a
 * connection gets, and swapping in a reloaded table */
#ifndef EGRESSD_GENERATION_H
#define EGRESSD_GENERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct metrics;
struct policy;
struct sbtable;
struct secretset;

/* One of egressd's listening addresses; a sandbox's "listen" names them. */
struct listen_addr {
	struct ipaddr a;
	uint16_t port;    /* once bound: the port the kernel chose for port 0 */
	bool transparent; /* a --transparent listener */
};

/* A policy and the secret values resolved for it; connections hold one for
 * their whole life, so a reload never changes what a connection sees. */
struct gen;

/* The sandboxes and their current generations. */
struct gentable;

/* A table with no sandboxes yet: every connection gets the generation that
 * refuses everything (unknown-source). mx (borrowed, outlives the table)
 * numbers secret and sandbox names for the metrics. phkey: the placeholder
 * key (PLACEHOLDER_KEYLEN bytes, borrowed for the table's life), or NULL
 * without interception; then no secret values are resolved and a policy
 * that needs interception does not load. */
struct gentable *gentable_new(struct metrics *mx, const unsigned char *phkey);
/* NULL: no-op. Generations connections still hold live on until released. */
void gentable_free(struct gentable *gt);

/* The first table: t (taken, even on failure) with each sandbox's
 * generation, after checking that every listener its sandboxes name is one
 * of la[0..nla). Returns 0, or -1 with err (256 bytes) when a listener is
 * not ours or a sandbox's policy does not load. */
int gentable_install(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
		     int nla, char *err);
/* Swaps in t (taken) as server_reload (server.h) says: returns 0; 1 with
 * err (256 bytes) when some sandboxes kept their old policy; -1 with err
 * when nothing changed. Any thread. */
int gentable_reload(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
		    int nla, char *err);

/* The current generation of the sandbox that claims a connection from
 * client accepted on listener l (NULL: none of ours), with a new reference;
 * release with gen_release. No sandbox claims it: the refusing generation.
 * Any thread. */
struct gen *gentable_acquire(struct gentable *gt, const struct listen_addr *l,
			     const struct ipaddr *client);
/* Once a table is installed: the first sandbox's current policy (the
 * refusing one while it has none), with a new reference (release with
 * policy_unref). Any thread. */
struct policy *gentable_policy(struct gentable *gt);
/* Once a table is installed: the first sandbox's secret values (NULL:
 * none, or no interception); borrowed. */
const struct secretset *gentable_secrets(const struct gentable *gt);

/* A generation's accessors; their results are borrowed, valid while the
 * reference is held. */
void gen_release(struct gen *g); /* NULL: no-op */
struct policy *gen_policy(const struct gen *g);
const struct secretset *gen_secrets(const struct gen *g); /* NULL: no interception */
/* The metrics slot of the generation's secret i (metrics_secret_injected). */
unsigned gen_secret_slot(const struct gen *g, size_t i);
/* The metrics slot of the generation's sandbox name, or GEN_NO_SANDBOX. */
#define GEN_NO_SANDBOX (~0u)
unsigned gen_sandbox_slot(const struct gen *g);

/* ---- sandboxes created at runtime (the control API) ---- */

/* Creates or replaces the one sandbox of t (taken, even on failure) beside
 * the file's: its listeners must be in la[0..nla), its secrets must
 * resolve, and it may conflict with no other sandbox. info: its definition
 * as JSON text without secret values (copied). New connections get it;
 * open ones keep the generation they started with. Returns 0 (*created
 * says whether it is new); -1 with err (256 bytes) when it does not load;
 * -2 with err on a conflict (a name of the file, overlapping selectors).
 * O(1) in the number of API sandboxes when its sources are single
 * addresses (sbxreg.h). Any thread. */
int gentable_put(struct gentable *gt, struct sbtable *t, const struct listen_addr *la, int nla,
		 const char *info, bool *created, char *err);
/* Deletes the API sandbox named name: new connections are no longer its,
 * and its open ones (of every generation it had) are marked so gen_revoked
 * says they are to be closed; *open: how many there are. Returns 0, or -1
 * when there is no such API sandbox. Any thread. */
int gentable_delete(struct gentable *gt, const char *name, long *open);
/* Was the generation's API sandbox deleted? (Its connections are then
 * closed by their workers.) */
bool gen_revoked(const struct gen *g);

/* fn(ctx, name, info, connections) for each API sandbox (api_each) or the
 * one named name (api_get: false if none), under the table's lock: fn must
 * be quick and must not call back into the table. */
typedef void (*gentable_info_fn)(void *ctx, const char *name, const char *info,
				 unsigned long long conns);
void gentable_api_each(struct gentable *gt, gentable_info_fn fn, void *ctx);
bool gentable_api_get(struct gentable *gt, const char *name, gentable_info_fn fn, void *ctx);
/* How many sandboxes come from the file and from the API. */
void gentable_counts(struct gentable *gt, size_t *nfile, size_t *napi);

#endif
