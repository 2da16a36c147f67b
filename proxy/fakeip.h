/* fakeip.h -- names the jail's resolver answered, mapped to synthetic IPv4
 * addresses (198.18.0.0/15), so a redirected connection's original
 * destination tells which name the program asked for */
#ifndef EGRESSD_FAKEIP_H
#define EGRESSD_FAKEIP_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

struct fakeip;

/* A table of at most cap names (thread-safe). */
struct fakeip *fakeip_new(size_t cap);
void fakeip_free(struct fakeip *f);
/* The address for name (lower-case, no trailing dot), allocated on first
 * use; the same name always gets the same address. When the table is full
 * the least recently used name is recycled. Returns false only on bad input. */
bool fakeip_addr_for(struct fakeip *f, const char *name, struct ipaddr *out);
/* The name an address was allocated to, copied into name (cap bytes). */
bool fakeip_name_for(struct fakeip *f, const struct ipaddr *a, char *name, size_t cap);
/* Is a inside 198.18.0.0/15? */
bool fakeip_in_range(const struct ipaddr *a);

#endif
