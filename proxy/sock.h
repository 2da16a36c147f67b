/* sock.h -- egressd's own stream over one non-blocking socket, plain or TLS
 * (an SSL given by the caller; the layer drives its handshake): an input
 * buffer the owner consumes, writes coalesced per loop turn with a drained
 * callback, read pause/resume, orderly shutdown (close_notify, then FIN), and
 * no buffer held while idle; a plain stream can turn TLS in place or give its
 * socket back. libevent runs the loop; no bufferevent is used. The model is
 * h2o's h2o_socket_t (lib/common/socket.c). */
#ifndef EGRESSD_SOCK_H
#define EGRESSD_SOCK_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct event_base;
struct sock;

enum sock_event {
	SOCK_EV_CONNECTED, /* TLS handshake done (never sent for a plain stream) */
	SOCK_EV_EOF,       /* the peer will send no more (reason: "close_notify",
			    * "eof" or "eof without close_notify"); writing may go on */
	SOCK_EV_ERROR,     /* the stream failed (reason says where): free it */
};

/* Every callback runs from the event loop, never from inside a sock_* call,
 * and may free the stream (sock_free) or any other stream. */
struct sock_cbs {
	/* New bytes in the input (sock_data); consume what is used with sock_consume. */
	void (*on_read)(struct sock *s, void *arg);
	/* The output was written out completely (to the kernel) after a write. */
	void (*on_drained)(struct sock *s, void *arg);
	/* reason: a static or stream-owned string, valid during the call. */
	void (*on_event)(struct sock *s, enum sock_event ev, const char *reason, void *arg);
};

enum sock_tls_role { SOCK_PLAIN, SOCK_TLS_SERVER, SOCK_TLS_CLIENT };

/* A stream on fd (made non-blocking here) and, unless role is SOCK_PLAIN, on
 * ssl (a plain stream frees an ssl given), whose handshake starts or goes on
 * at once (client: the ClientHello goes out in this loop turn; an SSL whose
 * handshake is under way keeps its state). The stream owns fd and ssl from
 * here on, also on failure (both closed/freed). It sets on ssl its fd,
 * SSL_MODE_RELEASE_BUFFERS, SSL_MODE_ENABLE_PARTIAL_WRITE,
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER and read-ahead. cbs is borrowed (must
 * outlive the stream). Reading starts on; input and output marks are 64 KiB.
 * NULL if a TLS role has no ssl or the loop's events cannot be set up.
 * SIGPIPE: plain writes use MSG_NOSIGNAL; OpenSSL's socket BIO does not, so
 * the process ignores SIGPIPE (egressd does). */
struct sock *sock_new(struct event_base *base, int fd, SSL *ssl, enum sock_tls_role role,
		      const struct sock_cbs *cbs, void *arg);
/* Bytes already read from fd before the stream took it over (a peeked
 * ClientHello, a request pipelined behind a CONNECT): they come first, before
 * the socket's. Call right after sock_new, before the loop runs. Plain: they
 * are the input's first bytes (on_read runs for them in this loop turn); TLS:
 * OpenSSL reads them first (a filter BIO in front of the socket's, kept for
 * the stream's life; the SSL must not have started its handshake). 0, or -1
 * (TLS: the SSL's BIOs are not one socket BIO, or the handshake started). */
int sock_preload(struct sock *s, const void *p, size_t n);
/* Closes at once (no close_notify, no flush: see sock_shutdown) and frees;
 * from inside one of s's callbacks the memory is freed once it returns, and
 * no further callback of s runs. NULL is a no-op. */
void sock_free(struct sock *s);

/* The unconsumed input: *len bytes at the returned pointer (NULL when empty),
 * valid until the next sock_consume or the callback's return. */
const char *sock_data(const struct sock *s, size_t *len);
/* Drops the first n (<= the input length) bytes; reading resumes if the cap
 * had paused it. An emptied input frees its buffer. */
void sock_consume(struct sock *s, size_t n);
/* Reading pauses while the input holds max bytes or more (back-pressure
 * towards the peer: its bytes wait in the kernel or in OpenSSL). */
void sock_set_max_input(struct sock *s, size_t max);
/* Pause / resume on_read (the handshake and a write that needs a read go on). */
void sock_read_stop(struct sock *s);
void sock_read_start(struct sock *s);

/* Appends n bytes to the output, written at the end of this loop turn (one
 * write or SSL_write for everything appended meanwhile). The output is not
 * capped here: 1 says it is at or above the high-water mark (the caller stops
 * producing, e.g. sock_read_stop on the stream it relays from, and resumes in
 * on_drained), 0 that it is below, -1 after sock_shutdown or an error. */
int sock_write(struct sock *s, const void *p, size_t n);
/* Secrets are written to s (e.g. injected into requests): from now on the
 * output's memory is cleansed before it is freed or moved. */
void sock_set_wipe(struct sock *s, bool on);
/* The high-water mark for sock_write's answer (default 64 KiB; 0: none). */
void sock_set_max_output(struct sock *s, size_t max);
/* Bytes appended and not yet handed to the kernel (or to SSL_write). */
size_t sock_out_len(const struct sock *s);
/* The output not yet handed over: *len bytes at the returned pointer (NULL
 * when empty), valid until the next sock_* call on s. */
const char *sock_out_data(const struct sock *s, size_t *len);
/* Half-close: once the output is written, TLS sends close_notify, then the
 * socket's write side is shut (FIN), after which on_drained runs once more
 * (sock_shut_done says so). Reading goes on until EOF. */
void sock_shutdown(struct sock *s);
bool sock_shut_done(const struct sock *s);

/* A plain stream becomes a TLS one (role, on ssl, owned from here on, also on
 * failure) on the same socket: the output written so far goes out in plain
 * first, the unconsumed input is fed to OpenSSL first (a ClientHello read
 * with a request before it), then the handshake runs as for sock_new
 * (SOCK_EV_CONNECTED when done). 0, or -1: s is not a plain stream that can
 * still read and write (ssl freed; a failure after s took ssl leaves s
 * failed: free it). */
int sock_start_tls(struct sock *s, SSL *ssl, enum sock_tls_role role);
/* Takes the socket back from a plain stream, which is freed (its input and
 * output are dropped: copy sock_data and sock_out_data first): the fd, still
 * non-blocking, is the caller's; -1 for a TLS stream (nothing changed). From
 * inside one of s's callbacks, as sock_free. */
int sock_detach(struct sock *s);

/* A codec between the owner's bytes and the wire's (HTTP/1.1 over h2:
 * h1h2.c). Every callback gets ctx; none may call sock_free. */
struct sock_codec {
	/* The owner wrote n bytes: encode them, handing wire bytes to
	 * sock_codec_wire. 0, or -1 (the stream fails, from the loop). */
	int (*encode)(void *ctx, const char *p, size_t n);
	/* n bytes came from the wire: decode them, handing the owner's bytes to
	 * sock_codec_input (and wire bytes to sock_codec_wire). 0; 1: the owner
	 * gets no more (an EOF, reason *why); -1: the stream fails (*why). */
	int (*decode)(void *ctx, const char *p, size_t n, const char **why);
	/* Bytes written by the owner the codec holds and has not encoded yet:
	 * counted as output (sock_write's mark, sock_out_len). */
	size_t (*pending)(void *ctx);
	void (*free)(void *ctx); /* with the stream */
};

/* From now on the stream's bytes go through ops (borrowed, must outlive the
 * stream) on ctx (owned by the stream from here on: ops->free): the input
 * already held is decoded first (the owner sees only decoded bytes). Once
 * per stream, on a stream that is up (plain, or its handshake done). */
void sock_set_codec(struct sock *s, const struct sock_codec *ops, void *ctx);
bool sock_has_codec(const struct sock *s);
/* For the codec's callbacks: wire bytes out; decoded bytes for the owner. */
void sock_codec_wire(struct sock *s, const void *p, size_t n);
void sock_codec_input(struct sock *s, const void *p, size_t n);

/* Bytes of memory the stream holds for buffers (its input and output), for
 * tests and accounting; 0 while idle. OpenSSL's own record buffers are not
 * counted (released when empty: SSL_MODE_RELEASE_BUFFERS). */
size_t sock_bytes_held(const struct sock *s);
SSL *sock_ssl(const struct sock *s); /* borrowed; NULL for a plain stream */
int sock_fd(const struct sock *s);

#endif
