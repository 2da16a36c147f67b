/* exchange.h -- one request and its response on a connection (an exchange):
 * its parsers, verdicts, injected secrets, redaction and decoding state,
 * counters and its `request` log line. The connection creates one when a
 * request's first byte arrives, begins it when the head is complete, and
 * frees it when the response and the request are done (or the connection
 * goes): a connection between requests holds none. HTTP/1 runs one at a
 * time (conn->ex); nothing here assumes that a connection has only one.
 * The body of struct exchange is the engine's (conn_int.h). */
#ifndef EGRESSD_EXCHANGE_H
#define EGRESSD_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "reason.h"

struct conn;
struct exchange;
struct jsonw;
struct rule_verdict;

#define EXCHANGE_PATH_MAX 2048 /* bytes of a request path the log keeps */

/* A new exchange with its request parser (heads up to CONN_HEAD_CAP) and
 * nothing else; the caller owns it and frees it with exchange_free. */
struct exchange *exchange_new(void);
/* Frees ex: its parsers, decoder and path. NULL: no-op. */
void exchange_free(struct exchange *ex);
/* The request head is complete in ex's request parser: the exchange takes
 * its method, starts its clock and creates the response parser (for HEAD:
 * a response without body). redacting: the response goes through the
 * connection's redactor. Once per exchange. */
void exchange_begin(struct exchange *ex, bool redacting);
/* The request's path for the log (and refusals): path[0..plen) cut to
 * EXCHANGE_PATH_MAX bytes, "/" when empty. Replaces an earlier one. */
void exchange_set_path(struct exchange *ex, const char *path, size_t plen);
/* Has exchange_begin run (the request was taken to be forwarded or
 * blocked, so it is logged when it ends)? */
bool exchange_begun(const struct exchange *ex);
/* Writes ex's `request` event for connection c with the reply's status,
 * meters it (unless it was blocked), and adds its byte counts to c's. A
 * no-op once ex is logged. */
void exchange_log(struct exchange *ex, struct conn *c, int status);
/* c ends (or starts closing) with ex begun and not logged: its `request`
 * event with "incomplete":true and the response's status if one began
 * (else 0; a blocked request's own status). A no-op otherwise. */
void exchange_log_cut(struct exchange *ex, struct conn *c);
bool exchange_logged(const struct exchange *ex);
/* A request line's verdict fields (decision, reason, rule, detail): for
 * HTTP/1 exchanges and HTTP/2 streams alike. */
void exchange_log_verdict(struct jsonw *w, bool ruled, enum reason reason,
			  const struct rule_verdict *rv);
/* Secret injection beyond header values (httpfwd.c), part of the exchange
 * and freed with it. */
struct injbody;
struct exinject {
	unsigned in;          /* bits 1 << enum injwhere: where secrets went */
	struct injbody *body; /* a form/JSON body held for rewriting, or NULL */
	size_t path_off, plen; /* ... and the request's path in its target (an offset:
				  trailers may move the parser's head bytes) */
};
struct exinject *exchange_inject(struct exchange *ex);

/* sizeof(struct exchange), for measurements. */
size_t exchange_size(void);

#endif
