/* sock_test.c -- the socket/TLS stream (proxy/sock.c) against loopback TCP
 * pairs and a real event_base, no proxy process: plain and TLS echo, a peer
 * that sends one byte at a time, bytes OpenSSL holds (SSL_pending), large
 * transfers with back-pressure, half-close, resets, a free from inside each
 * callback (ASan must stay clean), no buffer held while idle, and a codec
 * between the owner's bytes and the wire's */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "sockpair.h"

/* ---- tests ---- */

static void test_echo(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { .echo = true }, b = { 0 };
	struct end *both[2] = { &a, &b };
	size_t n = 200 * 1000;
	char *big = malloc(n);
	struct want w = { &b, n + 5 };

	pair(tls, &a, &b);
	ok(a.s && b.s, "%s echo: streams made", name);
	if (tls) {
		ok(run_until(both_connected, both) && !a.errors && !b.errors,
		   "tls: handshake done both sides (%s)", a.reason);
		ok(SSL_version(sock_ssl(b.s)) == TLS1_3_VERSION, "tls: TLS 1.3");
	}
	pattern(big, n, 0);
	sock_write(b.s, "hello", 5);
	sock_write(b.s, big, n); /* coalesced with the hello into one write */
	ok(sock_out_len(b.s) == n + 5, "%s: output holds what was written until the loop runs", name);
	run_until(got_len, &w);
	ok(b.got_len == n + 5, "%s: echo of %zu bytes came back (%zu)", name,
	   n + 5, b.got_len);
	ok(b.got_len >= 5 && memcmp(b.got, "hello", 5) == 0 && pattern_ok(b.got + 5, n),
	   "%s: same bytes, same order", name);
	ok(b.drains >= 1 && a.drains >= 1, "%s: on_drained ran on both (%d, %d)", name, b.drains,
	   a.drains);
	/* the other way: the server end writes first */
	a.echo = false;
	b.echo = true;
	w.e = &a;
	w.len = 6;
	sock_write(a.s, "server", 6);
	ok(run_until(got_len, &w) && a.got_len == 6 && memcmp(a.got, "server", 6) == 0,
	   "%s: server-first write echoed by the client", name);
	run_for(0.02);
	ok(sock_bytes_held(a.s) == 0 && sock_bytes_held(b.s) == 0,
	   "%s: idle streams hold no buffer (%zu, %zu bytes)", name, sock_bytes_held(a.s),
	   sock_bytes_held(b.s));
	free(big);
	end_dispose(&a);
	end_dispose(&b);
}

/* Copies between two raw sockets one byte per loop turn each way. */
struct trickle { int x, y; struct event *ex, *ey; };

static void trickle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct trickle *t = arg;
	char c;
	ssize_t n = read(fd, &c, 1);

	if (n == 1 && write(fd == t->x ? t->y : t->x, &c, 1) != 1)
		abort();
	if (n == 0)
		shutdown(fd == t->x ? t->y : t->x, SHUT_WR), event_del(fd == t->x ? t->ex : t->ey);
}

static void test_trickle(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { .echo = true }, b = { 0 };
	struct end *both[2] = { &a, &b };
	struct trickle t;
	int p[2], q[2];
	char msg[3000];
	struct want w = { &b, sizeof(msg) };

	tcp_pair(p);
	tcp_pair(q);
	t.x = p[1];
	t.y = q[1];
	t.ex = event_new(base, t.x, EV_READ | EV_PERSIST, trickle_cb, &t);
	t.ey = event_new(base, t.y, EV_READ | EV_PERSIST, trickle_cb, &t);
	event_add(t.ex, NULL);
	event_add(t.ey, NULL);
	mk(q[0], tls ? SOCK_TLS_SERVER : SOCK_PLAIN, &a);
	mk(p[0], tls ? SOCK_TLS_CLIENT : SOCK_PLAIN, &b);
	if (tls)
		ok(run_until(both_connected, both) && !a.errors && !b.errors,
		   "tls 1 byte at a time: handshake done (%s)", a.reason);
	pattern(msg, sizeof(msg), 0);
	sock_write(b.s, msg, sizeof(msg));
	run_until(got_len, &w);
	ok(b.got_len == sizeof(msg) && pattern_ok(b.got, b.got_len),
	   "%s 1 byte at a time: %zu bytes echoed intact (%zu)", name, sizeof(msg), b.got_len);
	/* plain: each byte is a read; TLS: a record is delivered whole */
	ok(tls ? a.reads == 1 : a.reads >= 1000,
	   "%s 1 byte at a time: the echo end's reads (%d)", name, a.reads);
	event_free(t.ex);
	event_free(t.ey);
	close(t.x);
	close(t.y);
	end_dispose(&a);
	end_dispose(&b);
}

/* Records that OpenSSL reads ahead wait inside the SSL object while the
 * socket is quiet; a capped input must still get them all. */
static void test_ssl_pending(void)
{
	struct end a = { 0 }, b = { .consume_max = 0 };
	struct end *both[2] = { &a, &b };
	size_t n = 64 * 1024;
	char *big = malloc(n);
	struct want w = { &b, n };

	pair(true, &a, &b);
	SSL_set_default_read_buffer_len(sock_ssl(b.s), 80 * 1024); /* one recv: all four records */
	ok(run_until(both_connected, both), "pending: handshake done");
	sock_set_max_input(b.s, 1); /* one record per read */
	sock_read_stop(b.s);
	pattern(big, n, 0);
	sock_write(a.s, big, n);
	run_for(0.05); /* four 16 KiB records now wait in b's socket */
	sock_read_start(b.s);
	run_until(got_len, &w);
	ok(b.got_len == n && pattern_ok(b.got, n),
	   "pending: all %zu bytes arrived with a 1-byte input cap (%zu in %d reads)", n, b.got_len,
	   b.reads);
	ok(b.max_in_seen <= 16384, "pending: the cap held the input to one record (%zu)",
	   b.max_in_seen);
	free(big);
	end_dispose(&a);
	end_dispose(&b);
}

/* source (raw) -> x (plain stream) -> relay -> y (TLS server) -> z (TLS
 * client that reads slowly): the relay stops reading x while y's output is
 * at its high-water mark and resumes in y's on_drained. */
#define HIWAT (64 * 1024)
#define X_MAX_IN (16 * 1024)
#define TOTAL (3 * 1024 * 1024)
#define READ_SLACK 1

struct bp {
	struct end x, y, z;
	int src;
	size_t sent;
	size_t max_y_out, max_y_held, max_z_in;
	int wrong_answers;        /* sock_write's answer vs the high-water mark */
	struct event *src_ev, *z_timer;
};
static struct bp bp;

static void bp_x_read(struct sock *s, void *arg)
{
	size_t n;
	const char *p = sock_data(s, &n);

	int above = sock_write(bp.y.s, p, n);

	sock_consume(s, n);
	if (sock_out_len(bp.y.s) > bp.max_y_out)
		bp.max_y_out = sock_out_len(bp.y.s);
	if (sock_bytes_held(bp.y.s) > bp.max_y_held)
		bp.max_y_held = sock_bytes_held(bp.y.s);
	if (above != (sock_out_len(bp.y.s) >= HIWAT))
		bp.wrong_answers++;
	if (above)
		sock_read_stop(s);
}
static void bp_x_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	if (ev == SOCK_EV_EOF)
		sock_shutdown(bp.y.s);
}
static void bp_y_drained(struct sock *s, void *arg)
{
	sock_read_start(bp.x.s);
}
static void bp_z_read(struct sock *s, void *arg)
{
	size_t n;
	const char *p = sock_data(s, &n);
	struct timeval tv = { 0, 500 };

	if (n > bp.max_z_in)
		bp.max_z_in = n;
	collect(&bp.z, p, n);
	sock_consume(s, n);
	sock_read_stop(s); /* a slow reader: again in 1 ms */
	evtimer_add(bp.z_timer, &tv);
}
static void bp_z_resume(evutil_socket_t fd, short what, void *arg)
{
	sock_read_start(bp.z.s);
}
static void bp_src_write(evutil_socket_t fd, short what, void *arg)
{
	char chunk[32 * 1024];
	size_t n = TOTAL - bp.sent < sizeof(chunk) ? TOTAL - bp.sent : sizeof(chunk);
	ssize_t got;

	pattern(chunk, n, bp.sent);
	got = write(fd, chunk, n);
	if (got > 0)
		bp.sent += (size_t)got;
	if (bp.sent == TOTAL) {
		event_del(bp.src_ev);
		shutdown(fd, SHUT_WR);
	}
}

static const struct sock_cbs x_cbs = { bp_x_read, on_drained, bp_x_event };
static const struct sock_cbs y_cbs = { on_read, bp_y_drained, on_event };
static const struct sock_cbs z_cbs = { bp_z_read, on_drained, on_event };

static void test_backpressure(void)
{
	int sx[2], yz[2];
	struct end *both[2] = { &bp.y, &bp.z };
	SSL *zs = SSL_new(cctx);

	int small = 16 * 1024;

	tcp_pair(sx);
	tcp_pair_sized(yz, small, small); /* the slow reader pushes back soon */
	bp.src = sx[0];
	bp.x.s = sock_new(base, sx[1], NULL, SOCK_PLAIN, &x_cbs, &bp.x);
	sock_set_max_input(bp.x.s, X_MAX_IN);
	bp.y.s = sock_new(base, yz[0], SSL_new(sctx), SOCK_TLS_SERVER, &y_cbs, &bp.y);
	sock_set_max_output(bp.y.s, HIWAT);
	SSL_set_tlsext_host_name(zs, HOST);
	bp.z.s = sock_new(base, yz[1], zs, SOCK_TLS_CLIENT, &z_cbs, &bp.z);
	sock_set_max_input(bp.z.s, 16 * 1024);
	bp.z_timer = evtimer_new(base, bp_z_resume, NULL);
	ok(run_until(both_connected, both), "back-pressure: y/z handshake done");
	evutil_make_socket_nonblocking(bp.src);
	bp.src_ev = event_new(base, bp.src, EV_WRITE | EV_PERSIST, bp_src_write, NULL);
	event_add(bp.src_ev, NULL);
	if (!ok(run_until(has_eof, &bp.z), "back-pressure: the sink saw the end (%s)", bp.z.reason)) {
		size_t xin;
		sock_data(bp.x.s, &xin);
		printf("# sent %zu, x input %zu, y output %zu, z got %zu, z held %zu\n", bp.sent, xin,
		       sock_out_len(bp.y.s), bp.z.got_len, sock_bytes_held(bp.z.s));
	}
	ok(bp.z.got_len == TOTAL && pattern_ok(bp.z.got, bp.z.got_len),
	   "back-pressure: %d bytes through a slow TLS reader, intact (%zu)", TOTAL, bp.z.got_len);
	is_str(bp.z.reason, "close_notify", "back-pressure: x's EOF became close_notify on y");
	ok(bp.max_y_out >= HIWAT && bp.max_y_out < HIWAT + X_MAX_IN + READ_SLACK,
	   "back-pressure: y's output peaked at %zu (high-water %d + one x input of %d)",
	   bp.max_y_out, HIWAT, X_MAX_IN);
	ok(bp.wrong_answers == 0, "back-pressure: sock_write answered 1 exactly at the high-water mark");
	ok(bp.max_y_held > 0 && bp.max_y_held <= 4 * HIWAT,
	   "back-pressure: y's buffer memory peaked at %zu bytes", bp.max_y_held);
	ok(bp.max_z_in <= 16 * 1024 + 16 * 1024,
	   "back-pressure: the slow reader's input stayed near its cap (%zu)", bp.max_z_in);
	event_free(bp.src_ev);
	event_free(bp.z_timer);
	close(bp.src);
	end_dispose(&bp.x);
	end_dispose(&bp.y);
	end_dispose(&bp.z);
}

static void test_half_close(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { .reply_on_eof = true }, b = { 0 };

	pair(tls, &a, &b);
	sock_write(b.s, "req", 3);
	sock_shutdown(b.s);
	ok(sock_write(b.s, "x", 1) < 0, "%s half-close: no write after shutdown", name);
	ok(run_until(has_eof, &a) && a.eofs == 1 && !a.errors, "%s half-close: server saw EOF", name);
	ok(a.got_len == 3 && memcmp(a.got, "req", 3) == 0, "%s half-close: ... after the request",
	   name);
	is_str(a.reason, tls ? "close_notify" : "eof", "%s half-close: EOF reason", name);
	ok(run_until(has_eof, &b) && b.eofs == 1 && !b.errors, "%s half-close: client saw EOF", name);
	ok(b.got_len == 4 && memcmp(b.got, "resp", 4) == 0,
	   "%s half-close: the reply crossed the half-closed connection", name);
	end_dispose(&a);
	end_dispose(&b);
}

static void rst_close(struct end *e)
{
	struct linger l = { 1, 0 };

	setsockopt(sock_fd(e->s), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	end_close(e);
}

static void test_reset(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { .close_at = CLOSE_IN_ERROR }, b = { 0 };
	struct end *both[2] = { &a, &b };

	pair(tls, &a, &b);
	if (tls)
		run_until(both_connected, both);
	sock_write(b.s, "x", 1);
	run_for(0.02);
	rst_close(&b);
	ok(run_until(has_error, &a) && a.errors == 1, "%s reset: error reported", name);
	ok(strstr(a.reason, "reset") != NULL, "%s reset: reason names it: %s", name, a.reason);
	ok(a.closed && a.after_close == 0, "%s reset: freed in on_event, no callback after", name);
	end_dispose(&a);
	end_dispose(&b);
}

/* The owner frees the stream from inside each callback while more work for
 * it is due in the same loop turn; ASan would see a use after free. */
static void test_close_in(bool tls, enum close_at at)
{
	static const char *names[] = { "never", "on_read", "on_drained", "connected", "eof", "error" };
	const char *name = tls ? "tls" : "plain";
	struct end a = { .echo = true }, b = { 0 };
	struct end *closer = at == CLOSE_IN_DRAINED || at == CLOSE_IN_CONNECTED ? &b : &a;
	size_t n = 256 * 1024;
	char *big = malloc(n);

	pattern(big, n, 0);
	closer->close_at = at;
	pair(tls, &a, &b);
	if (at == CLOSE_IN_EOF) {
		sock_write(b.s, big, n);
		sock_shutdown(b.s); /* data, then EOF in the same read */
	} else if (at != CLOSE_IN_CONNECTED) {
		sock_write(b.s, big, n);
	}
	ok(run_until(ev_or_closed, closer) && closer->closed,
	   "%s: freed from inside %s", name, names[at]);
	ok(closer->after_close == 0, "%s: no callback after the free in %s", name, names[at]);
	run_for(0.05); /* the peer's events after the free */
	end_dispose(&a);
	end_dispose(&b);
	free(big);
}

/* One stream frees another from its on_read while the other has a write
 * step due in the same loop turn. */
static void test_close_other(void)
{
	struct end a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };

	pair(false, &a, &b);
	pair(false, &c, &d);
	a.free_other = &c;
	sock_write(b.s, "go", 2);
	ok(run_until(ev_or_closed, &c) && c.closed, "close other: c freed from a's on_read");
	run_for(0.02);
	ok(c.after_close == 0 && c.drains == 0, "close other: c's due write step never ran");
	ok(run_until(has_eof, &d) && d.got_len == 0, "close other: c's peer sees EOF (%s)", d.reason);
	end_dispose(&a);
	end_dispose(&b);
	end_dispose(&c);
	end_dispose(&d);
}

/* Bytes written right after the client's Finished arrive with it: the
 * server's read-ahead takes both in one recv, so its handshake completes in
 * its first step with the request waiting inside OpenSSL. Here the server
 * side is driven by hand up to its Finished, then handed to sock_new with
 * both already in the socket: the request must be read, and the socket
 * watched for the next one (libevent does not register an I/O event that is
 * active when it is added). */
static bool client_sent(void *arg)
{
	struct end *b = arg;
	return (b->connected && sock_out_len(b->s) == 0) || b->errors;
}

static void test_early_data(void)
{
	struct end a = { .echo = true }, b = { 0 };
	struct want w = { &b, 5 };
	int fd[2];
	SSL *ssl = SSL_new(sctx);

	tcp_pair(fd);
	evutil_make_socket_nonblocking(fd[0]);
	SSL_set_fd(ssl, fd[0]);
	SSL_set_accept_state(ssl);
	mk(fd[1], SOCK_TLS_CLIENT, &b);
	sock_write(b.s, "first", 5);
	for (int i = 0; i < 200 && !client_sent(&b); i++) {
		SSL_do_handshake(ssl); /* ClientHello in, the server's flight out */
		ERR_clear_error();
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ok(client_sent(&b) && !SSL_is_init_finished(ssl),
	   "early data: the client finished and sent its request; the server not yet");
	a.s = sock_new(base, fd[0], ssl, SOCK_TLS_SERVER, &cbs, &a);
	ok(run_until(got_len, &w) && b.got_len == 5 && memcmp(b.got, "first", 5) == 0,
	   "early data: the request that came with the Finished is echoed");
	w.len = 11;
	sock_write(b.s, "second", 6);
	ok(run_until(got_len, &w) && b.got_len == 11 && memcmp(b.got + 5, "second", 6) == 0,
	   "early data: the next request is read too (the server still watches its socket)");
	end_dispose(&a);
	end_dispose(&b);
}

/* A TLS 1.3 KeyUpdate the peer must answer (a write inside a read). */
static void test_key_update(void)
{
	struct end a = { .echo = true }, b = { 0 };
	struct end *both[2] = { &a, &b };
	struct want w = { &b, 4 };

	pair(true, &a, &b);
	ok(run_until(both_connected, both), "key update: handshake done");
	ok(SSL_key_update(sock_ssl(b.s), SSL_KEY_UPDATE_REQUESTED) == 1, "key update: requested");
	sock_write(b.s, "ping", 4);
	ok(run_until(got_len, &w) && b.got_len == 4 && memcmp(b.got, "ping", 4) == 0 && !a.errors &&
	   !b.errors, "key update: echo after a requested KeyUpdate both ways");
	w.len = 8;
	sock_write(b.s, "pong", 4);
	ok(run_until(got_len, &w) && b.got_len == 8, "key update: and again with the new keys");
	end_dispose(&a);
	end_dispose(&b);
}

/* a reads while its own writes are blocked (the peer stopped reading, small
 * kernel buffers), and what it reads is a KeyUpdate it must answer. OpenSSL
 * 3.0 sends the answer with a's next SSL_write, so this does not make
 * SSL_read return WANT_WRITE (breaking that path does not fail it); it
 * checks that a blocked writer still reads, and both ways complete. */
static bool b_got_all(void *arg)
{
	struct want *w = arg;
	return (w->e->got_len >= w->len && w[1].e->got_len >= w[1].len) || w->e->errors ||
	       w[1].e->errors;
}

static void test_read_needs_write(void)
{
	struct end a = { 0 }, b = { 0 };
	struct end *both[2] = { &a, &b };
	size_t n = 1024 * 1024;
	char *big = malloc(n);
	int fd[2];
	struct want w[2] = { { &b, n }, { &a, 4 } };

	tcp_pair_sized(fd, 16 * 1024, 16 * 1024);
	mk(fd[0], SOCK_TLS_SERVER, &a);
	mk(fd[1], SOCK_TLS_CLIENT, &b);
	ok(run_until(both_connected, both), "read needs write: handshake done");
	sock_read_stop(b.s);
	pattern(big, n, 0);
	sock_write(a.s, big, n);
	run_for(0.05); /* a's writes now block: b does not read */
	ok(sock_out_len(a.s) > 0, "read needs write: a's output is blocked (%zu bytes wait)",
	   sock_out_len(a.s));
	ok(SSL_key_update(sock_ssl(b.s), SSL_KEY_UPDATE_REQUESTED) == 1, "read needs write: b asks for a KeyUpdate");
	sock_write(b.s, "ping", 4);
	run_for(0.05); /* a reads the KeyUpdate and "ping" while its writes are blocked */
	sock_read_start(b.s);
	run_until(b_got_all, w);
	ok(b.got_len == n && pattern_ok(b.got, n) && a.got_len == 4 && memcmp(a.got, "ping", 4) == 0,
	   "read needs write: both ways complete (%zu of %zu, %zu of 4; %s / %s)", b.got_len, n,
	   a.got_len, a.errors ? a.reason : "-", b.errors ? b.reason : "-");
	free(big);
	end_dispose(&a);
	end_dispose(&b);
}

/* The other crossing: a write that needs a read. A TLS 1.2 client that
 * starts a renegotiation has its next SSL_write send the ClientHello and
 * then wait for the server's reply: WANT_READ, while the owner has paused
 * reading. */

static void test_write_needs_read(void)
{
	struct end a = { .echo = true }, b = { 0 };
	struct end *both[2] = { &a, &b };
	struct want w = { &b, 4 };
	int fd[2];

	tcp_pair(fd);
	a.s = sock_new(base, fd[0], SSL_new(sctx12), SOCK_TLS_SERVER, &cbs, &a);
	b.s = sock_new(base, fd[1], SSL_new(cctx12), SOCK_TLS_CLIENT, &cbs, &b);
	ok(run_until(both_connected, both) && SSL_version(sock_ssl(b.s)) == TLS1_2_VERSION,
	   "write needs read: TLS 1.2 handshake done");
	sock_read_stop(b.s);
	ok(SSL_renegotiate(sock_ssl(b.s)) == 1, "write needs read: the client starts a renegotiation");
	sock_write(b.s, "ping", 4);
	run_for(0.1); /* the write completes only if b reads the server's reply */
	ok(sock_out_len(b.s) == 0 && SSL_renegotiate_pending(sock_ssl(b.s)) == 0,
	   "write needs read: renegotiated and written with reading paused (%zu bytes wait; %s)",
	   sock_out_len(b.s), b.errors ? b.reason : "-");
	sock_read_start(b.s);
	ok(run_until(got_len, &w) && b.got_len == 4 && memcmp(b.got, "ping", 4) == 0 && !a.errors,
	   "write needs read: the echo comes back once reading resumes");
	end_dispose(&a);
	end_dispose(&b);
}

/* Bytes read before the stream took the socket over come first: plain, and
 * TLS with all of a peeked ClientHello or only its first bytes preloaded. */
static void test_preload_plain(void)
{
	struct end a = { 0 }, b = { 0 };
	struct want w = { &a, 3 };

	pair(false, &a, &b);
	ok(sock_preload(a.s, "abc", 3) == 0, "preload plain: accepted");
	ok(run_until(got_len, &w) && a.got_len == 3 && memcmp(a.got, "abc", 3) == 0,
	   "preload plain: on_read gets them with nothing on the socket");
	w.len = 6;
	sock_write(b.s, "def", 3);
	ok(run_until(got_len, &w) && a.got_len == 6 && memcmp(a.got, "abcdef", 6) == 0,
	   "preload plain: then the socket's bytes");
	end_dispose(&a);
	end_dispose(&b);
	/* preloaded while reading is paused: they come when it resumes */
	pair(false, &a, &b);
	sock_read_stop(a.s);
	sock_preload(a.s, "xyz", 3);
	run_for(0.02);
	ok(a.got_len == 0, "preload plain, reading paused: nothing yet");
	sock_read_start(a.s);
	w.len = 3;
	ok(run_until(got_len, &w) && a.got_len == 3 && memcmp(a.got, "xyz", 3) == 0,
	   "preload plain, reading paused: on_read once it resumes");
	end_dispose(&a);
	end_dispose(&b);
}

static void test_preload_tls(size_t take)
{
	struct end a = { .echo = true }, b = { 0 };
	struct end *both[2] = { &a, &b };
	struct want w = { &b, 4 };
	char hello[4096];
	ssize_t n = -1;
	int fd[2];

	tcp_pair(fd);
	mk(fd[1], SOCK_TLS_CLIENT, &b);
	for (int i = 0; i < 500 && n <= 0; i++) { /* the ClientHello, as a peek would get it */
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = recv(fd[0], hello, take ? take : sizeof(hello), MSG_DONTWAIT);
		if (n <= 0)
			usleep(1000);
	}
	ok(n > 0 && hello[0] == 0x16, "preload tls: %zd bytes of the ClientHello read off the socket", n);
	mk(fd[0], SOCK_TLS_SERVER, &a);
	ok(sock_preload(a.s, hello, (size_t)n) == 0, "preload tls: accepted");
	ok(run_until(both_connected, both) && a.connected && b.connected,
	   "preload tls (%s): handshake done (%s)", take ? "first bytes" : "all of it",
	   a.errors ? a.reason : "-");
	sock_write(b.s, "ping", 4);
	ok(run_until(got_len, &w) && b.got_len == 4 && memcmp(b.got, "ping", 4) == 0,
	   "preload tls: echo through the stream");
	end_dispose(&a);
	end_dispose(&b);
}

/* A toy codec: the owner's bytes go out upper-cased, the wire's come in
 * lower-cased, a '!' from the wire ends the input (EOF "bang"), and
 * `held` bytes are said to wait inside it. */
struct toy { struct sock *s; size_t held; int freed; };

static int toy_encode(void *ctx, const char *p, size_t n)
{
	struct toy *t = ctx;
	char c;

	for (size_t i = 0; i < n; i++) {
		c = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
		sock_codec_wire(t->s, &c, 1);
	}
	return 0;
}

static int toy_decode(void *ctx, const char *p, size_t n, const char **why)
{
	struct toy *t = ctx;
	char c;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '!') {
			*why = "bang";
			return 1;
		}
		c = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
		sock_codec_input(t->s, &c, 1);
	}
	return 0;
}

static size_t toy_pending(void *ctx)
{
	return ((struct toy *)ctx)->held;
}

static void toy_free(void *ctx)
{
	((struct toy *)ctx)->freed++;
}

static const struct sock_codec toy_codec = { toy_encode, toy_decode, toy_pending, toy_free };

/* sock_set_codec: the input held is decoded first, writes are encoded,
 * the codec's EOF is the stream's, its backlog counts as output. */
static void test_codec(void)
{
	struct end a = { 0 }, b = { 0 };
	struct want wa = { &a, 3 }, wb = { &b, 6 };
	struct toy t = { 0 };

	pair(false, &a, &b);
	t.s = b.s;
	sock_preload(b.s, "PRE", 3);
	sock_set_codec(b.s, &toy_codec, &t);
	ok(sock_has_codec(b.s) && !sock_has_codec(a.s), "codec: set on one end");
	sock_write(b.s, "abc", 3);
	ok(run_until(got_len, &wa) && !memcmp(a.got, "ABC", 3), "codec: writes encoded on the wire");
	sock_write(a.s, "DEF", 3);
	ok(run_until(got_len, &wb) && !memcmp(b.got, "predef", 6),
	   "codec: the held input decoded first, then the wire's");
	sock_write(a.s, "G!H", 3);
	ok(run_until(has_eof, &b) && b.got_len == 7 && b.got[6] == 'g' && !strcmp(b.reason, "bang"),
	   "codec: its EOF after the bytes before it");
	sock_set_max_output(b.s, 100);
	t.held = 100;
	ok(sock_write(b.s, "x", 1) == 1 && sock_out_len(b.s) >= 100,
	   "codec: its backlog counts towards the output mark (%zu)", sock_out_len(b.s));
	t.held = 0;
	end_dispose(&b);
	ok(t.freed == 1, "codec: freed with the stream");
	end_dispose(&a);
}

int main(void)
{
	char dir[] = "/tmp/sock_test.XXXXXX";

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		abort();
	tls_setup(dir);
	base = event_base_new();
	for (int tls = 0; tls <= 1; tls++) {
		test_echo(tls);
		test_trickle(tls);
		test_half_close(tls);
		test_reset(tls);
		for (int at = CLOSE_IN_READ; at <= CLOSE_IN_EOF; at++)
			if (tls || at != CLOSE_IN_CONNECTED) /* plain streams have no handshake */
				test_close_in(tls, (enum close_at)at);
	}
	test_ssl_pending();
	test_early_data();
	test_backpressure();
	test_close_other();
	test_key_update();
	test_read_needs_write();
	test_write_needs_read();
	test_preload_plain();
	test_preload_tls(0);
	test_preload_tls(10);
	test_codec();
	tls_teardown(dir);
	return done_testing();
}
