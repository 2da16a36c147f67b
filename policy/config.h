/* config.h -- loading a JSON policy file into a policy, with file:line:column errors */
#ifndef EGRESSD_CONFIG_H
#define EGRESSD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct policy;
struct sbtable;

#define CONFIG_ERRLEN 512

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

#endif
