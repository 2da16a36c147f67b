/* config.h -- loading a JSON policy file into a policy, with file:line:column errors */
#ifndef EGRESSD_CONFIG_H
#define EGRESSD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct policy;
struct sbtable;

#define CONFIG_ERRLEN 512
#define CONFIG_WHERELEN 400 /* a path such as secrets.NAME.hosts[0] */

/* Reads the JSON policy in path and adds what it says to p (allowNet, denyNet,
 * intercept, secrets). Any unknown key, wrong type, duplicate key, invalid
 * pattern, empty hosts, bad secret name, or a secret with not exactly one of
 * value/valueFromEnv/valueFromFile is an error. On error returns false and
 * writes "FILE:LINE:COL: message (offending value)" into err (CONFIG_ERRLEN). */
bool config_load_file(struct policy *p, const char *path, char *err);

/* Same, from a buffer (name used in messages). */
bool config_load_buffer(struct policy *p, const char *name, const char *text, size_t len,
			char *err);

/* The main policy file (-c): as config_load_file, except that a file with a
 * "sandboxes" section (then its only key) yields a table of sandboxes in
 * *sbt, each with its own new policy, and leaves p alone; otherwise *sbt is
 * NULL. A sandbox's "policy" is an inline object or a file name (relative to
 * path's directory); a sandbox file that fails to load is an error, or, with
 * tolerant (a reload), is recorded in the table (sbx_error) instead. */
bool config_load_main(struct policy *p, const char *path, bool tolerant, struct sbtable **sbt,
		      char *err);
/* Same, from a buffer (name used in messages and to find sandbox files). */
bool config_load_buffer_main(struct policy *p, const char *name, const char *text, size_t len,
			     bool tolerant, struct sbtable **sbt, char *err);

/* One sandbox created at runtime (the control API): text is a JSON object
 * holding "source", "listen" and the keys of a policy (allowNet, denyNet,
 * intercept, secrets, rules, rulesDefault), validated exactly as in a file.
 * Returns a new table with that one sandbox, named name, its policy scoped
 * to it (caller frees with sbx_free); or NULL with err ("body:LINE:COL:
 * message", CONFIG_ERRLEN bytes) and the path of the bad value in where
 * (CONFIG_WHERELEN bytes; "" when it is the whole body). No message ever
 * holds a secret's value. */
struct sbtable *config_load_sandbox(const char *name, const char *text, size_t len, char *err,
				    char *where);

#endif
