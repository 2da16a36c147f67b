/* h1h2.h -- HTTP/1.1 requests carried on the streams of one HTTP/2 client
 * connection, and their replies turned back into HTTP/1.1: the bridge for a
 * sandbox that speaks HTTP/1.1 to an upstream that chose h2. Bytes in, bytes
 * out: no socket, no event loop (sock.c runs it as the upstream stream's
 * codec, see sock_set_codec). */
#ifndef EGRESSD_H1H2_H
#define EGRESSD_H1H2_H

#include <stdbool.h>
#include <stddef.h>

struct h1h2;

struct h1h2_cbs {
	/* Wire bytes (h2 frames) for the upstream. */
	void (*wire)(void *arg, const char *p, size_t n);
	/* HTTP/1.1 reply bytes for the owner (heads, bodies, chunked framing). */
	void (*reply)(void *arg, const char *p, size_t n);
};

/* A client session; its preface and SETTINGS are handed to cbs->wire at
 * once. cbs is borrowed (must outlive the bridge). NULL if nghttp2 fails. */
struct h1h2 *h1h2_new(const struct h1h2_cbs *cbs, void *arg);
/* Frees and wipes everything (request heads carry injected secrets). NULL: no-op. */
void h1h2_free(struct h1h2 *b);

/* HTTP/1.1 request bytes (heads and bodies, Content-Length or chunked, any
 * split): one h2 stream per request, in order. 0, or -1 (not a request llhttp
 * accepts, or nghttp2 failed: the bridge is unusable). */
int h1h2_request(struct h1h2 *b, const char *p, size_t n);
/* Wire bytes from the upstream. 0; 1: no more reply bytes will come (a
 * stream reset or a GOAWAY killed a reply in flight, or the session ended
 * between requests: *why says which); -1: a protocol error (*why). */
int h1h2_recv(struct h1h2 *b, const char *p, size_t n, const char **why);
/* Request body bytes taken and not yet sent as DATA (waiting for window). */
size_t h1h2_pending(const struct h1h2 *b);

#endif
