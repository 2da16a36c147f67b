/* pipepool.h -- a worker's spare empty pipes for splice(2) tunnels, so a
 * tunnel holds a pipe only while bytes are in flight and does not create one
 * per read */
#ifndef EGRESSD_PIPEPOOL_H
#define EGRESSD_PIPEPOOL_H

#include <stdbool.h>

struct pipepool;

/* The capacity asked for new pipes (F_SETPIPE_SZ; a pipe may get less). */
#define PIPEPOOL_BYTES (256 * 1024)

/* A pool keeping at most cap spare pipes (cap 0: none kept). */
struct pipepool *pipepool_new(unsigned cap);
/* Closes the spare pipes; NULL is a no-op. */
void pipepool_free(struct pipepool *p);
/* An empty non-blocking pipe (fds[0] read end, fds[1] write end), from the
 * pool or new; false (errno set) if none can be made (EMFILE...). The caller
 * owns it until pipepool_put. */
bool pipepool_get(struct pipepool *p, int fds[2]);
/* Returns an EMPTY pipe to the pool (closed if the pool is full); fds are set
 * to -1. A pipe still holding bytes must be closed instead (pipepool_close). */
void pipepool_put(struct pipepool *p, int fds[2]);
/* Closes a pipe (fds set to -1); no-op when fds[0] < 0. */
void pipepool_close(int fds[2]);

#endif
