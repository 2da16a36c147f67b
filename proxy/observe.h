/* observe.h -- what a sandbox tried to reach: bounded counters per
 * destination and per DNS name, fed by the audit log's events (an audit
 * sink), read by the report and the learned policy (obsreport.h) */
#ifndef EGRESSD_OBSERVE_H
#define EGRESSD_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct observe;

enum obs_proto {
	OBS_TUNNEL,      /* CONNECT or transparent, bytes relayed as they are */
	OBS_INTERCEPTED, /* TLS terminated by egressd, requests seen */
	OBS_HTTP,        /* plain HTTP, requests seen */
	OBS_DNS_ONLY,    /* a name looked up, never connected to */
};

enum obs_decision {
	OBS_DENY,    /* refused (why: the reason) */
	OBS_LEARNED, /* allowNet would have refused it; --learn let it through */
	OBS_ALLOW,   /* allowed (why: the allowNet rule, "*" when unrestricted) */
	OBS_OTHER,   /* the _other row: destinations past the limit */
};

#define OBS_SECRETS_LEN 256
#define OBS_OTHER_HOST "_other"

/* One destination (sandbox, host, port, protocol, decision, why) and its counts. */
struct obs_row {
	char sandbox[65];        /* the sandbox of a daemon with several, else "" */
	char host[256];          /* a name, an address, or OBS_OTHER_HOST */
	uint16_t port;           /* 0 for DNS-only rows and _other */
	enum obs_proto proto;
	enum obs_decision decision;
	char why[128];           /* reason, rule; DNS-only: "answered", "NXDOMAIN"... */
	uint64_t conns;
	uint64_t requests;
	uint64_t requests_refused; /* by request rules and similar */
	uint64_t queries;        /* DNS-only rows: queries seen */
	uint64_t bytes_up, bytes_down;
	char secrets[OBS_SECRETS_LEN]; /* names injected, comma-separated; never a value */
};

/* A table of at most max_rows destinations and as many DNS names (more:
 * counted in one _other row, and one warning). Free with observe_free. */
struct observe *observe_new(size_t max_rows);
void observe_free(struct observe *o); /* NULL: no-op */

/* Takes one audit event line (an audit_sink_fn; any thread): connect,
 * request, refuse, close and dns events are counted, others ignored. */
void observe_event(void *o, const char *line, size_t len);
/* Makes o the audit sink (observe_event), or none for NULL. Before any
 * thread starts or after they all stopped. */
void observe_attach(struct observe *o);

/* A snapshot (any thread): the destinations, refusals first (then
 * learned, then allowed, then _other; by sandbox, host and port within each), then
 * the names only looked up. Returns a new array (caller frees) of *n rows. */
struct obs_row *observe_rows(struct observe *o, size_t *n);
/* Connections and DNS queries counted in _other so far (their
 * destinations or names came past the limit). */
uint64_t observe_overflow(struct observe *o);
size_t observe_limit(const struct observe *o);

const char *observe_proto_name(enum obs_proto p);       /* "tunnel", ... */
const char *observe_decision_name(enum obs_decision d); /* "deny", ... */

#endif
