/* config_int.h -- the policy loader's pieces shared by config.c (the file,
 * positions, messages, allowNet/denyNet/intercept/secrets), config_rules.c
 * (the "rules" section) and config_sandboxes.c (the "sandboxes" section).
 * Not for use outside policy/config*.c: the public API is config.h. */
#ifndef EGRESSD_CONFIG_INT_H
#define EGRESSD_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config.h"

struct policy;
struct ruleset;
struct sbtable;

#define PATH_DEPTH 8 /* sandboxes.NAME.policy.rules[i].host[j] and the like */
#define QUOTE_LEN 300 /* enough for config_quote() of anything */
#define WHERE_LEN CONFIG_WHERELEN /* a path string: two quoted keys and more */

/* One step from a JSON value to a child: an object key or an array index. */
struct step {
	const char *key; /* NULL: an index */
	size_t index;
};

/* One pass over one JSON text (a file, or an inline sandbox policy). */
struct loader {
	const char *name;   /* file name for messages */
	const char *text;   /* the whole JSON text, already accepted by jansson */
	size_t len;
	struct policy *p;
	bool apply;         /* false: validate only; true: add to p */
	struct sbtable *sbt; /* "sandboxes" allowed (the main file) when non-NULL */
	bool has_sandboxes; /* the root holds "sandboxes" */
	bool tolerant;      /* a sandbox's policy file may fail (recorded in sbt) */
	char *err;          /* CONFIG_ERRLEN bytes */
	struct step path[PATH_DEPTH];
	size_t depth;       /* steps in path: where the value being checked is */
	struct ruleset *rules; /* "rules"/"rulesDefault", built in the validation
				  pass, handed to p after the apply pass */
	char *errpath;      /* NULL, or WHERE_LEN bytes: the path of the bad value */
};

/* ---- config.c: positions and messages ---- */

/* Writes s (n bytes) quoted into buf (cap bytes), control and non-ASCII
 * bytes as \xNN, cut with "..." after 64 bytes. Returns buf. */
const char *config_quote(const char *s, size_t n, char *buf, size_t cap);
/* "an object", "a string", ...: v's JSON type for messages (static). */
const char *config_type_name(const json_t *v);
/* The current path as "secrets.NAME.hosts[0]" into buf (WHERE_LEN bytes);
 * returns buf. */
const char *config_path_str(const struct loader *L, char *buf);
/* Writes "NAME:LINE:COL: message" for the current path (its key with
 * at_key) into L->err; returns false. */
bool config_fail(struct loader *L, bool at_key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One step down from the current path (L->depth-- steps back up). */
void config_push_key(struct loader *L, const char *key); /* borrowed */
void config_push_index(struct loader *L, size_t index);

/* Parses text as the loader does (duplicate keys refused, jansson's memory
 * wiped on free); NULL with "NAME:LINE:COL: message" in err. Returns a new
 * reference (json_decref). */
json_t *config_parse_json(const char *name, const char *text, size_t len, char *err);

/* ---- config.c: values ---- */

/* A string or an array of strings at the current path; calls one(L, s, n,
 * arg) for each with the path at that string. Empty arrays are refused. */
bool config_each_string(struct loader *L, const json_t *v, const char *what,
			bool (*one)(struct loader *, const char *, size_t, void *), void *arg);
/* The keys of a policy (root: an object) at the current path. */
bool config_load_root(struct loader *L, const json_t *root);

/* ---- config_rules.c ---- */

/* "rules" or "rulesDefault" (key) with value v: checked and built into
 * L->rules in the validation pass only. */
bool config_load_rules(struct loader *L, const char *key, const json_t *v);

/* ---- config_sandboxes.c ---- */

/* "sandboxes" (obj) into L->sbt; an error where L->sbt is NULL (not the
 * main file's top level). */
bool config_load_sandboxes(struct loader *L, const json_t *obj);

#endif
