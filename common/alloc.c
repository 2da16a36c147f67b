/* alloc.c -- allocation helpers that abort on out-of-memory, and secure wiping */
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
	fprintf(stderr, "egressd: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom(nmemb * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* explicit_bzero (glibc >= 2.25): a memset the compiler may not drop, at
 * memset's speed (a volatile byte loop ran at ~1 byte a cycle); callers
 * may pass (NULL, 0), which explicit_bzero's nonnull declaration forbids */
void xwipe(void *p, size_t n)
{
	if (n)
		explicit_bzero(p, n);
}
