/* pipepool.c -- a worker's spare empty pipes for splice(2) tunnels */
#include "pipepool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "alloc.h"

struct pipepool {
	unsigned cap, n; /* spare pipes kept at most / now */
	int (*fds)[2];   /* n spare pipes */
};

struct pipepool *pipepool_new(unsigned cap)
{
	struct pipepool *p = xcalloc(1, sizeof(*p));

	p->cap = cap;
	p->fds = cap ? xcalloc(cap, sizeof(*p->fds)) : NULL;
	return p;
}

void pipepool_free(struct pipepool *p)
{
	if (!p)
		return;
	while (p->n > 0)
		pipepool_close(p->fds[--p->n]);
	free(p->fds);
	free(p);
}

bool pipepool_get(struct pipepool *p, int fds[2])
{
	if (p->n > 0) {
		p->n--;
		fds[0] = p->fds[p->n][0];
		fds[1] = p->fds[p->n][1];
		return true;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
		return false;
	/* fewer, longer splices for bulk transfers; best effort (the pipe keeps
	 * its default 64 KiB past fs.pipe-user-pages-soft) */
	(void)fcntl(fds[0], F_SETPIPE_SZ, PIPEPOOL_BYTES);
	return true;
}

void pipepool_put(struct pipepool *p, int fds[2])
{
	if (fds[0] < 0)
		return;
	if (p->n < p->cap) {
		p->fds[p->n][0] = fds[0];
		p->fds[p->n][1] = fds[1];
		p->n++;
		fds[0] = fds[1] = -1;
		return;
	}
	pipepool_close(fds);
}

void pipepool_close(int fds[2])
{
	if (fds[0] < 0)
		return;
	close(fds[0]);
	close(fds[1]);
	fds[0] = fds[1] = -1;
}
