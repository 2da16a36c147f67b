/* h2body.h -- HTTP/2 bodies inside the relay, without a session: a capped
 * byte queue wiped as it moves (both directions), and a reply body on its
 * way to the sandbox: bytes as the upstream sent them, content codings
 * undone and secrets redacted into an output queue only while the caller
 * grants room, so what it holds stays bounded whatever the sandbox reads */
#ifndef EGRESSD_H2BODY_H
#define EGRESSD_H2BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contentdec.h"

struct secretset;

/* A byte queue of at most max bytes (caller-allocated: _init/_dispose). */
struct h2queue {
	uint8_t *p;
	size_t off, len, cap, max;
};
void h2queue_init(struct h2queue *q, size_t max);
void h2queue_dispose(struct h2queue *q); /* wipes and frees */
/* Appends n bytes; false (nothing added) if the queue would pass max. */
bool h2queue_add(struct h2queue *q, const uint8_t *p, size_t n);
/* Copies up to n bytes to buf and drops them; returns how many. */
size_t h2queue_take(struct h2queue *q, uint8_t *buf, size_t n);

struct h2body;

/* A reply body whose input holds at most in_max bytes (the stream's
 * flow-control window). Free with h2body_free (wipes; NULL: no-op). */
struct h2body *h2body_new(size_t in_max);
void h2body_free(struct h2body *b);
/* At the final head: the codings to undo (n 0: none) and the secrets of
 * mask in ss to redact (mask 0: none; ss borrowed, must outlive b). */
void h2body_setup(struct h2body *b, const enum contentdec_coding *cs, int n,
		  const struct secretset *ss, uint64_t mask);
/* After h2body_setup, for a gRPC reply (content-type application/grpc*)
 * with secrets to redact: each length-prefixed message is redacted whole
 * and sent with its new length (redaction changes it). A message longer
 * than 64 KiB (or in_max) is redacted as it streams and must keep its
 * length (no secret's value in it), else the body fails; so does a
 * compressed message (it cannot be redacted) or a body cut inside one. */
void h2body_grpc(struct h2body *b);
/* Bytes from the upstream; false if over in_max (a peer past its window). */
bool h2body_in(struct h2body *b, const uint8_t *p, size_t n);
/* The upstream's body ended (END_STREAM or trailers). */
void h2body_in_end(struct h2body *b);
/* Moves input to the output, decoded and redacted, until the output has
 * grown by room bytes (a step may pass it by what redaction adds to one
 * 16 KiB chunk) or nothing more can move; at the end of the input, flushes
 * the redactor and completes the output. Returns the input bytes used (for
 * the caller to credit the upstream's window). *err: NULL, or a static
 * text when the body cannot be redacted (corrupt or truncated coding, data
 * after it); then nothing more moves. */
size_t h2body_pump(struct h2body *b, size_t room, const char **err);
/* Has input (or an end) that h2body_pump has not moved yet? */
bool h2body_pending(const struct h2body *b);
size_t h2body_in_len(const struct h2body *b);
size_t h2body_out_len(const struct h2body *b);
/* Bytes of a gRPC message held until it is whole (at most 64 KiB or in_max;
 * outside the room h2body_pump is granted: a message started always ends,
 * so streams never wait on each other's partial messages). */
size_t h2body_held(const struct h2body *b);
/* Copies up to n output bytes to buf and drops them; returns how many. */
size_t h2body_take(struct h2body *b, uint8_t *buf, size_t n);
/* Is the output complete (all of the body moved; what is left is in out)? */
bool h2body_out_done(const struct h2body *b);
/* egressd answers instead: the input and the coding are dropped (returns
 * the input bytes dropped, for the caller's window), the output becomes
 * p[0..n) and is complete. */
size_t h2body_replace(struct h2body *b, const char *p, size_t n);

#endif
