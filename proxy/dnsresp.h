/* dnsresp.h -- the jail's DNS responder: A records (synthetic addresses) for
 * names the policy could allow, empty AAAA, NXDOMAIN for the rest; nothing
 * is ever forwarded */
#ifndef EGRESSD_DNSRESP_H
#define EGRESSD_DNSRESP_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

struct event_base;
struct fakeip;
struct dnsresp;

/* Decides whether a name could be allowed (on some port); ctx is passed back. */
typedef bool (*dnsresp_allow_fn)(void *ctx, const char *name);

/* Binds UDP on addr:port (port 0: any; the chosen one in *bound_port) on
 * base. Borrowed: base, fake, ctx. NULL with err (256 bytes). Every query and
 * answer is logged as an audit "dns" event (name, qtype, answer/rcode). */
struct dnsresp *dnsresp_new(struct event_base *base, const struct ipaddr *addr, uint16_t port,
			    struct fakeip *fake, dnsresp_allow_fn allow, void *ctx,
			    uint16_t *bound_port, char *err);
void dnsresp_free(struct dnsresp *d);

#endif
