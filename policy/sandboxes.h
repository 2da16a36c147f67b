/* sandboxes.h -- many sandboxes, one daemon: the table of sandboxes, each
 * with its own policy, and which sandbox a connection belongs to (by the
 * listener it arrived on and/or its source address) */
#ifndef EGRESSD_SANDBOXES_H
#define EGRESSD_SANDBOXES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct policy;
struct sbtable;

#define SBX_NAME_MAX 64
#define SBX_MAX 4096     /* sandboxes per daemon */
#define SBX_ERRLEN 512

/* An empty table; sandboxes are added with sbx_add. */
struct sbtable *sbx_new(void);
void sbx_free(struct sbtable *t); /* NULL: no-op */

/* The single-tenant table: one unnamed sandbox ("") that every connection
 * belongs to, with policy p (a reference is taken). */
struct sbtable *sbx_single(struct policy *p);

/* Is this a table of named sandboxes (the "sandboxes" policy section)? */
bool sbx_named(const struct sbtable *t);
/* Does the daemon need the CA and TLS contexts? Named sandboxes always do
 * (a reload may give any of them its first secret); one policy if it
 * intercepts some host. */
bool sbx_needs_interception(const struct sbtable *t);

/* Adds a sandbox named name ([A-Za-z0-9_.-], 1..SBX_NAME_MAX, unique).
 * Returns its index, or -1 with err (SBX_ERRLEN bytes). */
int sbx_add(struct sbtable *t, const char *name, char *err);
/* Selectors: a client source range (as --allow-private: "10.200.1.2",
 * "10.200.0.0/16", "[fd00::]/8") and a listener "IP:PORT" (one of egressd's
 * --listen / --transparent addresses). */
bool sbx_add_source(struct sbtable *t, int i, const char *cidr, char *err);
bool sbx_add_listen(struct sbtable *t, int i, const char *ipport, char *err);
/* The sandbox's policy (a reference is taken), or, when its policy file did
 * not load, the reason (the sandbox then has no policy). */
void sbx_set_policy(struct sbtable *t, int i, struct policy *p);
void sbx_set_error(struct sbtable *t, int i, const char *msg);

/* Once all are added: every named sandbox has a selector, and no two
 * sandboxes can claim the same connection. false with err otherwise. */
bool sbx_validate(const struct sbtable *t, char *err);

size_t sbx_count(const struct sbtable *t);
const char *sbx_name(const struct sbtable *t, size_t i);       /* "" when unnamed */
struct policy *sbx_policy(const struct sbtable *t, size_t i);  /* borrowed; NULL on error */
const char *sbx_error(const struct sbtable *t, size_t i);      /* NULL if loaded */
int sbx_find(const struct sbtable *t, const char *name);       /* index or -1 */

/* Listeners the sandboxes name (for the server to check they exist). */
size_t sbx_listen_count(const struct sbtable *t, size_t i);
void sbx_listen(const struct sbtable *t, size_t i, size_t k, struct ipaddr *a, uint16_t *port);

/* The sandbox of a connection from client accepted on the listener bound to
 * la:lport, or -1 when none claims it. */
int sbx_match(const struct sbtable *t, const struct ipaddr *la, uint16_t lport,
	      const struct ipaddr *client);

/* ---- one sandbox against another (the control API's registry) ---- */

/* Could sandbox i of a and sandbox k of b claim one connection? (Their
 * listeners and their sources overlap, as sbx_validate checks.) */
bool sbx_meet(const struct sbtable *a, size_t i, const struct sbtable *b, size_t k);
/* Does sandbox i claim a connection from client on listener la:lport? */
bool sbx_claims(const struct sbtable *t, size_t i, const struct ipaddr *la, uint16_t lport,
		const struct ipaddr *client);
/* Sandbox i's source ranges. */
size_t sbx_source_count(const struct sbtable *t, size_t i);
void sbx_source(const struct sbtable *t, size_t i, size_t k, struct ipaddr *net,
		unsigned *prefix);

#endif
