/* wsredact.h -- secret values scrubbed from the WebSocket frames a secret's
 * host sends after an upgrade: server-to-client frames parsed as a stream,
 * data payloads passed through the streaming redactor (correct across frame
 * and read boundaries) and re-framed as fragments, control payloads redacted
 * whole. Anything that cannot be redacted is a protocol error (fail closed). */
#ifndef EGRESSD_WSREDACT_H
#define EGRESSD_WSREDACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redact.h"

struct secretset;
struct wsredact;

/* For the secrets in mask of ss (borrowed; must outlive it). */
struct wsredact *wsredact_new(const struct secretset *ss, uint64_t mask);
void wsredact_free(struct wsredact *w); /* wipes what it holds; NULL: no-op */

/* Feeds n server-to-client bytes; the rewritten frames go to emit. Returns
 * false (and from then on always false) on what cannot be redacted safely:
 * a masked or compressed (RSV bit) frame, a reserved opcode, a fragmented
 * or oversized control frame, a continuation without a message, a new
 * message inside one, a 64-bit length with its top bit set. The message is
 * then in wsredact_error. */
bool wsredact_feed(struct wsredact *w, const char *p, size_t n, redact_emit_fn emit, void *ctx);
const char *wsredact_error(const struct wsredact *w);

#endif
