/* grpcframe.h -- gRPC's length-prefixed messages (a flag byte, 0 or 1 for
 * compressed, a 4-byte big-endian length, then the message) found in a byte
 * stream: a parser that holds no message bytes and does no I/O; the caller
 * gets each prefix, then the message's bytes as they come, then its end */
#ifndef EGRESSD_GRPCFRAME_H
#define EGRESSD_GRPCFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Caller-allocated; grpcframe_init before use, nothing to dispose. */
struct grpcframe {
	uint8_t head[5];  /* the prefix being read */
	size_t head_len;  /* ... bytes of it so far */
	uint32_t len;     /* the current message's length (after GRPCFRAME_START) */
	uint32_t left;    /* its bytes still to come */
	bool compressed;  /* its flag byte was 1 */
	bool in_msg;      /* a prefix was read and its message is not over */
};

enum grpcframe_ev {
	GRPCFRAME_NEED,  /* the bytes consumed were part of a prefix: more input */
	GRPCFRAME_START, /* a prefix completed: len and compressed are set */
	GRPCFRAME_BYTES, /* the bytes consumed are the current message's */
	GRPCFRAME_BAD,   /* a flag byte other than 0 or 1: nothing consumed */
};

void grpcframe_init(struct grpcframe *g);
/* Reads from p[0..n) (n > 0) one step: returns the bytes consumed (0 only
 * with GRPCFRAME_BAD) and what they were in *ev. After START or BYTES, the
 * message is over when grpcframe_msg_done says so (a 0-length message is
 * over at its START). */
size_t grpcframe_next(struct grpcframe *g, const uint8_t *p, size_t n, enum grpcframe_ev *ev);
/* Is nothing partly read (the last message, if any, is over)? */
bool grpcframe_msg_done(const struct grpcframe *g);
/* Writes a prefix for a message of len bytes (flag compressed) to out[5]. */
void grpcframe_prefix(uint8_t out[5], bool compressed, uint32_t len);

#endif
