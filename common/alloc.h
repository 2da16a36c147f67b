/* alloc.h -- allocation helpers that abort on out-of-memory, and secure wiping */
#ifndef EGRESSD_ALLOC_H
#define EGRESSD_ALLOC_H

#include <stddef.h>

/* Each returns memory the caller frees with free(); on OOM the process aborts
 * with a message (a proxy that limps on after a failed malloc is worse). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Overwrite n bytes at p with zeros in a way the compiler may not elide. */
void xwipe(void *p, size_t n);

#endif
