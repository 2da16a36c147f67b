/* sbxreg.h -- the sandboxes created at runtime (the control API), indexed so
 * that adding, finding, removing one and matching a connection cost O(1) in
 * their number when each has only single-address sources */
#ifndef EGRESSD_SBXREG_H
#define EGRESSD_SBXREG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct sbtable;
struct sbxreg;

/* An empty registry. The values are the caller's (never freed here). */
struct sbxreg *sbxreg_new(void);
/* Frees the registry and its tables; calls drop(val) for each value first
 * (drop may be NULL). NULL: no-op. */
void sbxreg_free(struct sbxreg *r, void (*drop)(void *val));

size_t sbxreg_count(const struct sbxreg *r);
/* The value of the sandbox named name, or NULL. */
void *sbxreg_get(const struct sbxreg *r, const char *name);

/* A sandbox of r, other than the one named skip (may be NULL), that could
 * claim a connection sandbox i of t claims (sbx_meet); its name (borrowed
 * until r changes), or NULL. O(1) in r's size when sandbox i has only
 * single-address sources (plus the registry's sandboxes that have ranges or
 * no source), else O(n). */
const char *sbxreg_conflict(const struct sbxreg *r, const struct sbtable *t, size_t i,
			    const char *skip);

/* Adds the single sandbox of t (taken) with val, or replaces the sandbox of
 * that name (its old table is freed); returns the old value, or NULL when it
 * was added. The caller has checked sbxreg_conflict. */
void *sbxreg_put(struct sbxreg *r, struct sbtable *t, void *val);
/* Removes the sandbox named name; returns its value, or NULL if none. */
void *sbxreg_remove(struct sbxreg *r, const char *name);

/* The value of the sandbox that claims a connection from client on the
 * listener la:lport, or NULL. */
void *sbxreg_match(const struct sbxreg *r, const struct ipaddr *la, uint16_t lport,
		   const struct ipaddr *client);

/* Calls fn(ctx, name, val) for each sandbox, in no particular order; fn
 * must not change r. */
void sbxreg_each(const struct sbxreg *r, void (*fn)(void *ctx, const char *name, void *val),
		 void *ctx);

#endif
