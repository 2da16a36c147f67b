/* h2mem.c -- what every nghttp2 session egressd makes shares: memory
 * functions that wipe every block when it is freed (HPACK tables and frames
 * carry injected secrets), and the session limits */
#include "h2mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define MEM_HDR 16 /* keeps max_align_t alignment */

static void *wipe_malloc(size_t n, void *ud)
{
	size_t *p = n > SIZE_MAX - MEM_HDR ? NULL : malloc(n + MEM_HDR);

	(void)ud;
	if (!p)
		return NULL;
	p[0] = n;
	return (char *)p + MEM_HDR;
}

static void wipe_free(void *q, void *ud)
{
	size_t *p;

	(void)ud;
	if (!q)
		return;
	p = (size_t *)(void *)((char *)q - MEM_HDR);
	xwipe(q, p[0]);
	free(p);
}

static void *wipe_calloc(size_t nm, size_t sz, void *ud)
{
	void *q = sz && nm > SIZE_MAX / sz ? NULL : wipe_malloc(nm * sz, ud);

	if (q)
		memset(q, 0, nm * sz);
	return q;
}

static void *wipe_realloc(void *q, size_t n, void *ud)
{
	void *np;
	size_t old;

	if (!q)
		return wipe_malloc(n, ud);
	np = wipe_malloc(n, ud);
	if (!np)
		return NULL;
	old = ((size_t *)(void *)((char *)q - MEM_HDR))[0];
	memcpy(np, q, old < n ? old : n);
	wipe_free(q, ud);
	return np;
}

static nghttp2_mem wipe_mem = { NULL, wipe_malloc, wipe_free, wipe_calloc, wipe_realloc };

nghttp2_mem *h2mem_wiping(void)
{
	return &wipe_mem;
}

nghttp2_option *h2mem_option_new(void)
{
	nghttp2_option *o;

	if (nghttp2_option_new(&o) != 0)
		return NULL;
	nghttp2_option_set_no_closed_streams(o, 1);
	nghttp2_option_set_max_continuations(o, 8);
	nghttp2_option_set_max_outbound_ack(o, 1000);
	nghttp2_option_set_max_settings(o, 32);
	return o;
}
