/* sock.c -- egressd's own stream over one non-blocking socket, plain or TLS:
 * read/SSL_read into an input buffer the owner consumes, writes coalesced per
 * loop turn, the handshake and the WANT_READ/WANT_WRITE crossings driven on
 * two libevent events, deferred free, no buffer held while idle */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "alloc.h"
#include "prefixbio.h"

/* One read's buffer: a 16 KiB record fits with room to spare; the buffer
 * grows (doubling) only while the owner leaves bytes unconsumed. */
#define READ_CHUNK (16 * 1024)
#define READ_MIN_TAIL 2048      /* below this much free room, compact or grow */
#define MAX_INPUT_DEFAULT (64 * 1024)
#define MAX_OUTPUT_DEFAULT (64 * 1024)

/* A contiguous buffer: bytes at p + off, len of them, cap allocated;
 * wipe: its memory is cleansed before it is freed or moved (sock_set_wipe). */
struct buf {
	char *p;
	size_t off, len, cap;
	bool wipe;
};

struct sock {
	struct event *rev, *wev;  /* EV_READ / EV_WRITE | EV_PERSIST, in this allocation */
	struct event *kick;       /* no fd: a step run in this loop turn (see kick()) */
	int fd;
	SSL *ssl;                 /* NULL: plain */
	const struct sock_cbs *cbs;
	void *arg;
	struct buf in, out;
	struct buf raw;           /* sock_start_tls: plain bytes sent before the handshake */
	size_t max_in;            /* reading pauses at this much unconsumed input */
	size_t max_out;           /* sock_write answers 1 from this much output on */
	int depth;                /* callbacks of this stream on the stack */
	bool dead;                /* sock_free'd: freed when depth drops to 0 */
	bool ready;               /* plain, or handshake done */
	bool failed;              /* an error was reported: no more I/O */
	bool reading;             /* owner wants on_read */
	bool rd_eof;              /* EOF seen (and reported) */
	bool hs_rd, hs_wr;        /* the handshake waits for readable / writable */
	bool wr_blocked;          /* write got EAGAIN / WANT_WRITE */
	bool wr_wants_rd;         /* SSL_write got WANT_READ */
	bool rd_wants_wr;         /* SSL_read got WANT_WRITE */
	bool shut_req, shut_done, notify_sent;
	bool rev_on, wev_on;      /* events added (saves epoll_ctl) */
	bool preloaded;           /* input from sock_preload not yet shown to on_read */
	const struct sock_codec *codec; /* NULL: the owner's bytes are the wire's */
	void *codec_ctx;
	bool codec_failed;        /* encode failed: fail from the loop */
	bool codec_eof;           /* the codec said EOF: reported by do_read */
	const char *codec_why;
	char reason[128];
};

/* ---- buffers -------------------------------------------------------- */

static void buf_release(struct buf *b)
{
	if (b->wipe && b->p)
		OPENSSL_cleanse(b->p, b->cap);
	free(b->p);
	b->p = NULL;
	b->off = b->len = b->cap = 0;
}

/* Room for at least READ_MIN_TAIL bytes after the data; returns the room. */
static size_t buf_tail(struct buf *b)
{
	if (!b->p) {
		b->p = xmalloc(READ_CHUNK);
		b->cap = READ_CHUNK;
	}
	if (b->cap - b->off - b->len < READ_MIN_TAIL && b->off > 0) {
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
	}
	if (b->cap - b->len < READ_MIN_TAIL) {
		b->cap *= 2;
		b->p = xrealloc(b->p, b->cap);
	}
	return b->cap - b->off - b->len;
}

static void buf_append(struct buf *b, const void *p, size_t n)
{
	if (!b->p) {
		b->cap = n;
		b->p = xmalloc(b->cap);
	} else if (b->cap - b->off - b->len < n) {
		if (b->off > 0) {
			memmove(b->p, b->p + b->off, b->len);
			b->off = 0;
		}
		if (b->cap - b->len < n) {
			size_t cap = b->len + n > 2 * b->cap ? b->len + n : 2 * b->cap;
			if (b->wipe) { /* not realloc: the old block is cleansed first */
				char *np = xmalloc(cap);
				memcpy(np, b->p, b->len);
				OPENSSL_cleanse(b->p, b->cap);
				free(b->p);
				b->p = np;
			} else {
				b->p = xrealloc(b->p, cap);
			}
			b->cap = cap;
		}
	}
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
}

static void buf_drop(struct buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		buf_release(b); /* nothing held while idle */
}

static size_t codec_pending(const struct sock *s)
{
	return s->codec ? s->codec->pending(s->codec_ctx) : 0;
}

/* sock_write's answer: 1 at or above the high-water mark. */
static int out_mark(const struct sock *s)
{
	return s->max_out && s->out.len + codec_pending(s) >= s->max_out ? 1 : 0;
}

/* ---- events --------------------------------------------------------- */

static void set_event(struct event *ev, bool want, bool *on)
{
	if (want == *on)
		return;
	if (want ? event_add(ev, NULL) == 0 : event_del(ev) == 0)
		*on = want;
}

/* Adds or removes the two events to match what the stream waits for. */
static void update_events(struct sock *s)
{
	bool r = false, w = false;

	if (s->dead || s->failed) {
		/* nothing */
	} else if (!s->ready) {
		r = s->hs_rd;
		w = s->hs_wr;
	} else {
		r = (s->reading && !s->rd_eof && s->in.len < s->max_in) || s->wr_wants_rd;
		w = s->wr_blocked || s->rd_wants_wr;
	}
	set_event(s->rev, r, &s->rev_on);
	set_event(s->wev, w, &s->wev_on);
}

/* Runs a read (EV_READ) and/or write (EV_WRITE) step in this loop turn:
 * activated, not polled, so no syscall. Not through rev/wev: libevent does
 * not register an I/O event that is active when it is added (event_add
 * returns 0 and the fd stays out of epoll), so an I/O event activated by
 * hand and added before it ran would never fire again. */
static void kick(struct sock *s, short what)
{
	event_active(s->kick, what, 1); /* ORed into a kick already due */
}

static void kick_write(struct sock *s)
{
	if (!s->wr_blocked && !s->wr_wants_rd)
		kick(s, EV_WRITE);
}

/* OpenSSL holds decrypted or undecrypted bytes the socket will not signal. */
static void kick_read_if_pending(struct sock *s)
{
	if (s->ssl && s->ready && s->reading && !s->rd_eof && !s->failed &&
	    s->in.len < s->max_in && SSL_has_pending(s->ssl))
		kick(s, EV_READ);
}

/* SSL_get_error reads the thread's error queue, so it must hold nothing from
 * before the call; peeking is cheaper than clearing an empty queue. */
static void ssl_clear(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}

/* ---- callbacks ------------------------------------------------------ */

static void fail(struct sock *s, const char *what, int ssl_err)
{
	unsigned long e = ERR_peek_error();
	char detail[96];

	if (s->failed || s->dead)
		return;
	if (ssl_err == SSL_ERROR_SSL && e) {
		ERR_error_string_n(e, detail, sizeof(detail));
	} else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_NONE) {
		snprintf(detail, sizeof(detail), "%s", errno ? strerror(errno) : "unexpected eof");
	} else {
		snprintf(detail, sizeof(detail), "SSL error %d", ssl_err);
	}
	ERR_clear_error(); /* drained where it occurs */
	snprintf(s->reason, sizeof(s->reason), "%s: %s", what, detail);
	s->failed = true;
	s->cbs->on_event(s, SOCK_EV_ERROR, s->reason, s->arg);
}

static void do_shutdown(struct sock *s)
{
	if (s->ssl && !s->notify_sent) {
		int r;
		ssl_clear();
		r = SSL_shutdown(s->ssl);
		if (r < 0 && SSL_get_error(s->ssl, r) == SSL_ERROR_WANT_WRITE) {
			s->wr_blocked = true;
			return;
		}
		ERR_clear_error(); /* a peer already gone: the FIN below is all there is */
		s->notify_sent = true;
	}
	shutdown(s->fd, SHUT_WR);
	s->shut_done = true;
	s->cbs->on_drained(s, s->arg); /* the owner may close now */
}

/* Writes the output out; on_drained when it empties. */
static void do_flush(struct sock *s)
{
	bool had = s->out.len > 0;

	if (!s->ready || s->failed)
		return;
	s->wr_blocked = s->wr_wants_rd = false;
	while (s->out.len > 0) {
		const char *p = s->out.p + s->out.off;
		size_t n = s->out.len;
		ssize_t got;
		if (!s->ssl) {
			got = send(s->fd, p, n, MSG_NOSIGNAL);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				s->wr_blocked = true;
				return;
			}
			if (got < 0) {
				fail(s, "write", SSL_ERROR_SYSCALL);
				return;
			}
		} else {
			int r, e;
			ssl_clear();
			r = SSL_write(s->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
			if (r <= 0) {
				e = SSL_get_error(s->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE)
					s->wr_blocked = true;
				else if (e == SSL_ERROR_WANT_READ)
					s->wr_wants_rd = true;
				else
					fail(s, "tls write", e);
				return;
			}
			got = r;
		}
		buf_drop(&s->out, (size_t)got);
	}
	if (had && !(s->max_out && codec_pending(s) >= s->max_out)) {
		s->cbs->on_drained(s, s->arg); /* (a codec's backlog: when it moves) */
		if (s->dead || s->failed)
			return;
	}
	if (s->shut_req && !s->shut_done && s->out.len == 0 && codec_pending(s) == 0)
		do_shutdown(s);
}

/* One read attempt into the input; >0 bytes, 0 EOF (reason set), -1 would
 * block or the stream failed (s->failed). */
static ssize_t read_once(struct sock *s, char *p, size_t n)
{
	int r, e;

	if (!s->ssl) {
		ssize_t got;
		do
			got = read(s->fd, p, n);
		while (got < 0 && errno == EINTR);
		if (got == 0)
			snprintf(s->reason, sizeof(s->reason), "eof");
		if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			fail(s, "read", SSL_ERROR_SYSCALL);
		return got;
	}
	ssl_clear();
	errno = 0;
	r = SSL_read(s->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0)
		return r;
	e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return -1;
	if (e == SSL_ERROR_WANT_WRITE) {
		s->rd_wants_wr = true; /* e.g. a KeyUpdate to answer */
		return -1;
	}
	if (e == SSL_ERROR_ZERO_RETURN) {
		snprintf(s->reason, sizeof(s->reason), "close_notify");
		return 0;
	}
	if ((e == SSL_ERROR_SSL &&
	     ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
	    (e == SSL_ERROR_SYSCALL && errno == 0)) {
		ERR_clear_error();
		snprintf(s->reason, sizeof(s->reason), "eof without close_notify");
		return 0;
	}
	fail(s, "tls read", e);
	return -1;
}

/* A codec's stream failed: reported from the loop. */
static void fail_codec(struct sock *s, const char *why)
{
	if (s->failed || s->dead)
		return;
	snprintf(s->reason, sizeof(s->reason), "%s", why ? why : "codec failed");
	s->failed = true;
	s->cbs->on_event(s, SOCK_EV_ERROR, s->reason, s->arg);
}

/* One read attempt through the codec: wire bytes read (>0), 0 EOF (the
 * socket's or the codec's; reason set), -1 would block or failed. */
static ssize_t read_decoded(struct sock *s)
{
	char wire[READ_CHUNK];
	const char *why = NULL;
	ssize_t got = read_once(s, wire, sizeof(wire));
	int r;

	if (got <= 0)
		return got;
	r = s->codec->decode(s->codec_ctx, wire, (size_t)got, &why);
	if (r > 0)
		snprintf(s->reason, sizeof(s->reason), "%s", why ? why : "eof");
	else if (r < 0)
		fail_codec(s, why);
	return r == 0 ? got : r > 0 ? 0 : -1;
}

/* Reads until the socket (and OpenSSL) would block or the input is at its
 * cap; on_read if bytes came, then the EOF event if the peer closed. */
static void do_read(struct sock *s)
{
	size_t before = s->preloaded ? 0 : s->in.len;
	bool eof = false;

	if (!s->reading || s->rd_eof || s->failed)
		return;
	s->preloaded = false;
	s->rd_wants_wr = false;
	while (!s->codec_eof && s->in.len < s->max_in) {
		size_t room = s->codec ? READ_CHUNK : buf_tail(&s->in);
		ssize_t got = s->codec ? read_decoded(s) :
			      read_once(s, s->in.p + s->in.off + s->in.len, room);
		if (got <= 0) {
			eof = got == 0;
			break;
		}
		if (!s->codec)
			s->in.len += (size_t)got;
		if (s->ssl ? !SSL_has_pending(s->ssl) : (size_t)got < room)
			break; /* drained: the next byte comes with the next event */
	}
	if (s->in.len == 0)
		buf_release(&s->in);
	if (s->failed)
		return; /* fail() reported it */
	eof = eof || s->codec_eof;
	if (s->in.len > before) {
		s->cbs->on_read(s, s->arg);
		if (s->dead || s->failed)
			return;
	}
	if (eof) {
		s->rd_eof = true;
		s->cbs->on_event(s, SOCK_EV_EOF, s->reason, s->arg);
	}
}

/* sock_start_tls: the plain bytes written before it go out first; false
 * while they wait for the socket (or it failed). */
static bool flush_raw(struct sock *s)
{
	while (s->raw.len > 0) {
		ssize_t got = send(s->fd, s->raw.p + s->raw.off, s->raw.len, MSG_NOSIGNAL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			s->hs_rd = false;
			s->hs_wr = true;
			return false;
		}
		if (got < 0) {
			fail(s, "write", SSL_ERROR_SYSCALL);
			return false;
		}
		buf_drop(&s->raw, (size_t)got);
	}
	return true;
}

static void do_handshake(struct sock *s)
{
	int r, e;

	if (s->raw.len > 0 && !flush_raw(s))
		return;
	ssl_clear();
	r = SSL_do_handshake(s->ssl);
	if (r != 1) {
		e = SSL_get_error(s->ssl, r);
		s->hs_rd = e == SSL_ERROR_WANT_READ;
		s->hs_wr = e == SSL_ERROR_WANT_WRITE;
		if (!s->hs_rd && !s->hs_wr)
			fail(s, "tls handshake", e);
		return;
	}
	s->ready = true;
	s->hs_rd = s->hs_wr = false;
	s->cbs->on_event(s, SOCK_EV_CONNECTED, "handshake done", s->arg);
	if (s->dead || s->failed)
		return;
	do_flush(s); /* what was written during the handshake */
	if (!s->dead)
		kick_read_if_pending(s); /* data sent right after the Finished */
}

static void destroy(struct sock *s)
{
	event_del(s->rev); /* also takes them off the active queue */
	event_del(s->wev);
	event_del(s->kick);
	SSL_free(s->ssl);
	if (s->fd >= 0)
		close(s->fd);
	buf_release(&s->in);
	buf_release(&s->out);
	buf_release(&s->raw);
	if (s->codec)
		s->codec->free(s->codec_ctx);
	free(s);
}

/* The end of every callback of the stream: free it if the owner did. */
static void leave(struct sock *s)
{
	if (--s->depth > 0)
		return;
	if (s->dead)
		destroy(s);
	else
		update_events(s);
}

/* rev, wev and kick: what says which steps to run. */
static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct sock *s = arg;

	s->depth++;
	if (!s->ready) {
		do_handshake(s);
	} else if (s->codec_failed) {
		fail_codec(s, s->codec_why);
	} else {
		if ((what & EV_READ) && s->wr_wants_rd)
			do_flush(s);
		if (!s->dead && !s->failed &&
		    ((what & EV_READ) || ((what & EV_WRITE) && s->rd_wants_wr)))
			do_read(s);
		if ((what & EV_WRITE) && !s->dead && !s->failed)
			do_flush(s);
	}
	leave(s);
}

/* ---- bytes read before the stream took the socket over ------------- */

int sock_preload(struct sock *s, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (s->ssl)
		return prefixbio_push(s->ssl, p, n);
	buf_append(&s->in, p, n);
	s->preloaded = true;
	kick(s, EV_READ);
	return 0;
}

/* ---- API ------------------------------------------------------------ */

/* The stream's settings on ssl, on socket fd; false if it cannot take fd. */
static bool setup_ssl(SSL *ssl, int fd, enum sock_tls_role role)
{
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
			  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_read_ahead(ssl, 1); /* one recv takes a record, header and all */
	if (SSL_get_fd(ssl) != fd && SSL_set_fd(ssl, fd) != 1)
		return false;
	if (SSL_in_before(ssl) && role == SOCK_TLS_SERVER)
		SSL_set_accept_state(ssl); /* (it would reset a handshake under way) */
	else if (SSL_in_before(ssl))
		SSL_set_connect_state(ssl);
	return true;
}

/* The struct, then its three events (libevent's size, known at run time),
 * in one allocation. */
static size_t events_at(void)
{
	return (sizeof(struct sock) + 15) & ~(size_t)15;
}

struct sock *sock_new(struct event_base *base, int fd, SSL *ssl, enum sock_tls_role role,
		      const struct sock_cbs *cbs, void *arg)
{
	size_t evsz = (event_get_struct_event_size() + 15) & ~(size_t)15;
	struct sock *s = xcalloc(1, events_at() + 3 * evsz);
	int fl = fcntl(fd, F_GETFL);

	s->fd = fd;
	s->ssl = role == SOCK_PLAIN ? NULL : ssl;
	s->cbs = cbs;
	s->arg = arg;
	s->max_in = MAX_INPUT_DEFAULT;
	s->max_out = MAX_OUTPUT_DEFAULT;
	s->reading = true;
	s->ready = role == SOCK_PLAIN;
	s->rev = (struct event *)((char *)s + events_at());
	s->wev = (struct event *)((char *)s + events_at() + evsz);
	s->kick = (struct event *)((char *)s + events_at() + 2 * evsz);
	if (role == SOCK_PLAIN)
		SSL_free(ssl);
	if ((role != SOCK_PLAIN && !ssl) || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    event_assign(s->rev, base, fd, EV_READ | EV_PERSIST, on_io, s) < 0 ||
	    event_assign(s->wev, base, fd, EV_WRITE | EV_PERSIST, on_io, s) < 0 ||
	    event_assign(s->kick, base, -1, 0, on_io, s) < 0)
		goto fail;
	if (!s->ssl) {
		update_events(s);
		goto out;
	}
	if (!setup_ssl(s->ssl, fd, role))
		goto fail;
	kick(s, EV_WRITE); /* the first handshake step */
	goto out;
fail:
	ERR_clear_error();
	SSL_free(s->ssl);
	close(fd);
	free(s);
	s = NULL;
out:
	return s;
}

void sock_free(struct sock *s)
{
	if (!s || s->dead)
		return;
	s->dead = true;
	if (s->depth == 0)
		destroy(s);
	else
		update_events(s); /* no more I/O; freed by leave() */
}

const char *sock_data(const struct sock *s, size_t *len)
{
	*len = s->in.len;
	return s->in.len ? s->in.p + s->in.off : NULL;
}

void sock_consume(struct sock *s, size_t n)
{
	if (n > s->in.len)
		n = s->in.len;
	if (n == 0)
		return;
	buf_drop(&s->in, n);
	if (s->dead)
		return;
	update_events(s);
	kick_read_if_pending(s);
}

void sock_set_max_input(struct sock *s, size_t max)
{
	s->max_in = max > 0 ? max : 1;
	if (s->dead)
		return;
	update_events(s);
	kick_read_if_pending(s);
}

void sock_read_stop(struct sock *s)
{
	s->reading = false;
	if (!s->dead)
		update_events(s);
}

void sock_read_start(struct sock *s)
{
	if (s->reading || s->dead)
		return;
	s->reading = true;
	update_events(s);
	if (s->preloaded)
		kick(s, EV_READ); /* preloaded input on_read has not seen */
	else
		kick_read_if_pending(s);
}

int sock_write(struct sock *s, const void *p, size_t n)
{
	if (s->dead || s->failed || s->shut_req)
		return -1;
	if (n > 0 && s->codec) {
		if (!s->codec_failed && s->codec->encode(s->codec_ctx, p, n) < 0) {
			s->codec_failed = true;
			s->codec_why = "the request could not be encoded";
			kick(s, EV_WRITE);
		}
	} else if (n > 0) {
		buf_append(&s->out, p, n);
		if (s->ready)
			kick_write(s);
	}
	return out_mark(s);
}

void sock_set_codec(struct sock *s, const struct sock_codec *ops, void *ctx)
{
	struct buf held = s->in;

	s->codec = ops;
	s->codec_ctx = ctx;
	memset(&s->in, 0, sizeof(s->in));
	if (held.len > 0) {
		const char *why = NULL;
		int r = ops->decode(ctx, held.p + held.off, held.len, &why);
		if (r != 0) {
			s->codec_failed = r < 0;
			s->codec_why = why;
			if (r > 0) { /* the EOF comes from the loop, after the input */
				snprintf(s->reason, sizeof(s->reason), "%s", why ? why : "eof");
				s->codec_eof = true;
			}
		}
		s->preloaded = true;
		kick(s, EV_READ);
	}
	buf_release(&held);
}

bool sock_has_codec(const struct sock *s)
{
	return s->codec != NULL;
}

void sock_codec_wire(struct sock *s, const void *p, size_t n)
{
	buf_append(&s->out, p, n);
	if (s->ready && !s->dead)
		kick_write(s);
}

void sock_codec_input(struct sock *s, const void *p, size_t n)
{
	if (!s->in.p && n < READ_CHUNK) { /* a reply comes in pieces: room for them */
		s->in.p = xmalloc(READ_CHUNK);
		s->in.cap = READ_CHUNK;
	}
	buf_append(&s->in, p, n);
}

void sock_set_wipe(struct sock *s, bool on)
{
	s->out.wipe = s->raw.wipe = on;
}

void sock_set_max_output(struct sock *s, size_t max)
{
	s->max_out = max;
}

size_t sock_out_len(const struct sock *s)
{
	return s->raw.len + s->out.len + codec_pending(s);
}

const char *sock_out_data(const struct sock *s, size_t *len)
{
	*len = s->out.len;
	return s->out.len ? s->out.p + s->out.off : NULL;
}

int sock_start_tls(struct sock *s, SSL *ssl, enum sock_tls_role role)
{
	int rc = -1;

	if (s->ssl || s->dead || s->failed || s->shut_req || s->rd_eof || role == SOCK_PLAIN ||
	    !ssl || !setup_ssl(ssl, s->fd, role))
		goto out;
	s->ssl = ssl;
	ssl = NULL;
	s->ready = false;
	s->raw = s->out; /* written in plain first */
	memset(&s->out, 0, sizeof(s->out));
	s->out.wipe = s->raw.wipe;
	s->wr_blocked = s->wr_wants_rd = s->rd_wants_wr = false;
	if (s->in.len > 0 && prefixbio_push(s->ssl, s->in.p + s->in.off, s->in.len) < 0)
		goto out; /* (the stream stays TLS: it failed, its owner frees it) */
	buf_release(&s->in);
	s->preloaded = false;
	rc = 0;
out:
	SSL_free(ssl);
	if (s->ssl && !s->dead) {
		if (rc < 0)
			s->failed = true;
		update_events(s);
		if (rc == 0)
			kick(s, EV_WRITE); /* the plain bytes, then the first handshake step */
	}
	return rc;
}

int sock_detach(struct sock *s)
{
	int fd;

	if (!s || s->dead || s->ssl)
		return -1;
	fd = s->fd;
	s->fd = -1;
	sock_free(s);
	return fd;
}

bool sock_shut_done(const struct sock *s)
{
	return s->shut_done;
}

void sock_shutdown(struct sock *s)
{
	if (s->dead || s->failed || s->shut_req)
		return;
	s->shut_req = true;
	if (s->ready)
		kick_write(s);
}

size_t sock_bytes_held(const struct sock *s)
{
	return s->in.cap + s->out.cap + s->raw.cap;
}

SSL *sock_ssl(const struct sock *s)
{
	return s->ssl;
}

int sock_fd(const struct sock *s)
{
	return s->fd;
}
