/* contentdec.h -- the HTTP content codings egressd can undo (gzip, deflate,
 * br, zstd): parsing Content-Encoding and Accept-Encoding values, and a
 * streaming decoder chain (up to two stacked codings) with no I/O, so a
 * secret's host's compressed reply can be redacted. Decoders' memory is
 * wiped when freed (it holds decoded plaintext). */
#ifndef EGRESSD_CONTENTDEC_H
#define EGRESSD_CONTENTDEC_H

#include <stdbool.h>
#include <stddef.h>

#define CONTENTDEC_MAX_STACK 2 /* codings decoded in one reply at most */

enum contentdec_coding { CODING_GZIP, CODING_DEFLATE, CODING_BR, CODING_ZSTD };

enum contentdec_status {
	CONTENTDEC_ERROR,     /* corrupt, truncated or trailing data: see contentdec_error */
	CONTENTDEC_MORE,      /* out is full: call again (unconsumed input passed again) */
	CONTENTDEC_NEED_MORE, /* all input consumed, all output produced */
	CONTENTDEC_DONE,      /* end was set and every stream is complete */
};

struct contentdec;

/* Parses a Content-Encoding value (several fields joined with ","): the
 * codings in the order they were applied go to codings[]; "identity" and
 * empty elements are skipped, "x-gzip" is gzip. Returns their number (0:
 * identity), or -1 for an unknown coding, more than CONTENTDEC_MAX_STACK,
 * or a malformed element. */
int contentdec_parse(const char *val, size_t len, enum contentdec_coding codings[CONTENTDEC_MAX_STACK]);

/* The Accept-Encoding to send upstream for a client that sent val (all its
 * Accept-Encoding fields joined with ","; present false: it sent none):
 * the codings egressd decodes that the client accepts (q > 0, named or by
 * "*"), in the order gzip, deflate, br, zstd, comma-separated; "identity"
 * when there are none. Writes a NUL-terminated string to out (cap >= 32). */
void contentdec_accept(const char *val, size_t len, bool present, char *out, size_t cap);

/* A decoder for n (1..CONTENTDEC_MAX_STACK) codings as returned by
 * contentdec_parse; they are undone last first. Free with contentdec_free. */
struct contentdec *contentdec_new(const enum contentdec_coding *codings, int n);
void contentdec_free(struct contentdec *d); /* wipes; NULL: no-op */

/* Decodes in[0..inlen) into out[0..cap): *consumed input bytes used,
 * *produced output bytes written (both set on every return). end: no input
 * follows in (then NEED_MORE becomes DONE or ERROR "truncated"). gzip and
 * zstd accept several members/frames back to back; br and deflate refuse
 * data after their end. After ERROR nothing more may be fed. */
enum contentdec_status contentdec_feed(struct contentdec *d, const char *in, size_t inlen,
				       size_t *consumed, char *out, size_t cap, size_t *produced,
				       bool end);
const char *contentdec_error(const struct contentdec *d); /* static text; "" if none */

/* The bytes all decoders of the process may hold together (the libraries'
 * state and windows: a brotli window is up to 16 MiB, a zstd one 8 MiB):
 * past it, contentdec_new returns NULL or a feed fails with an error that
 * says so. Default: no limit. Set before decoders exist. */
void contentdec_set_budget(size_t bytes);
size_t contentdec_in_use(void); /* bytes held now */

#endif
