/* sbxclient.h -- `egressd sandbox put|rm|ls|env`: a client of a running
 * egressd's control API (--control unix:PATH) */
#ifndef EGRESSD_SBXCLIENT_H
#define EGRESSD_SBXCLIENT_H

#include <stdbool.h>

#define SBXCLIENT_ERRLEN 512

/* A sandbox given as options (--source, --listen, --allow-net, ...). */
struct sbxflags;

struct sbxflags *sbxflags_new(void);
void sbxflags_free(struct sbxflags *f); /* NULL: no-op; wipes secret values */
/* Adds one option: key is "source", "listen", "allowNet", "denyNet",
 * "intercept" (arg: comma-separated values) or "secret" (arg NAME=HOST[,HOST],
 * the value read from this process's environment variable NAME). false
 * with err (SBXCLIENT_ERRLEN bytes). */
bool sbxflags_add(struct sbxflags *f, const char *key, const char *arg, char *err);

/* Runs sub ("put", "rm", "ls", "env") against the control API at control
 * ("unix:PATH" or "IP:PORT"), with the bearer token in token_file's first
 * line when not NULL; put's sandbox is the JSON file file ("-": stdin) or the
 * flags. Prints NAME=VALUE lines (put, env), a line per sandbox (ls), or
 * what was deleted (rm). Returns the exit status: 0, 1 when egressd
 * refused (its error on stderr) or cannot be reached, 2 on a usage error. */
int sbxclient_main(const char *control, const char *token_file, const char *sub,
		   const char *name, const char *file, const struct sbxflags *flags);

#endif
