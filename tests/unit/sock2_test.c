/* sock2_test.c -- the socket/TLS stream's hand-overs (proxy/sock.c), against
 * loopback TCP pairs and a real event_base: a plain stream that becomes TLS
 * (its plain reply first, a ClientHello already read fed to OpenSSL first),
 * the socket taken back for the splice tunnel (sock_detach), the end of an
 * orderly shutdown reported to the owner, and an output wiped as it goes */
#include <fcntl.h>

#include "sockpair.h"

/* ---- sock_start_tls ---- */

/* The server end: a line "hello\n", answered "ok\n" in plain, then TLS on
 * the same socket with whatever followed the line still unconsumed. */
static int st_rc = 99;

static void st_read(struct sock *s, void *arg)
{
	struct end *e = arg;
	size_t n;
	const char *p = sock_data(s, &n);
	const char *nl;

	if (sock_ssl(s)) { /* TLS now: echo */
		sock_write(s, p, n);
		sock_consume(s, n);
		return;
	}
	nl = memchr(p, '\n', n);
	if (!nl)
		return;
	collect(e, p, (size_t)(nl - p) + 1);
	sock_consume(s, (size_t)(nl - p) + 1);
	sock_write(s, "ok\n", 3);
	st_rc = sock_start_tls(s, SSL_new(sctx), SOCK_TLS_SERVER);
}

static const struct sock_cbs st_cbs = { st_read, on_drained, on_event };

/* A raw client: "hello\n" and its ClientHello sent before anything is read
 * (as curl pipelines a ClientHello behind CONNECT), then "ok\n" read off the
 * socket, then the handshake and an echo. */
static void test_start_tls(bool pipelined)
{
	const char *name = pipelined ? "start_tls, ClientHello pipelined" : "start_tls";
	struct end a = { 0 };
	char buf[16];
	size_t got = 0;
	int fd[2], r = -1;
	SSL *c = SSL_new(cctx);

	st_rc = 99;
	tcp_pair(fd);
	a.s = sock_new(base, fd[0], NULL, SOCK_PLAIN, &st_cbs, &a);
	if (!pipelined)
		sock_write(a.s, "banner\n", 7); /* written before the line: plain too */
	SSL_set_tlsext_host_name(c, HOST);
	SSL_set1_host(c, HOST);
	SSL_set_fd(c, fd[1]);
	fcntl(fd[1], F_SETFL, fcntl(fd[1], F_GETFL) | O_NONBLOCK);
	ok(send(fd[1], "hello\n", 6, 0) == 6, "%s: line sent", name);
	if (pipelined)
		ok(SSL_connect(c) == -1 && SSL_get_error(c, -1) == SSL_ERROR_WANT_READ,
		   "%s: ClientHello sent at once", name);
	/* the plain reply, byte for byte, before any TLS */
	for (int i = 0; i < 2000 && got < (pipelined ? 3u : 10u); i++) {
		ssize_t k = recv(fd[1], buf + got, (pipelined ? 3 : 10) - got, 0);
		if (k > 0)
			got += (size_t)k;
		else
			event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	}
	ok(got == (pipelined ? 3u : 10u) &&
	   memcmp(buf, pipelined ? "ok\n" : "banner\nok\n", got) == 0,
	   "%s: the plain reply first (%zu bytes)", name, got);
	ok(st_rc == 0, "%s: sock_start_tls accepted (%d)", name, st_rc);
	for (int i = 0; i < 5000 && r != 1; i++) {
		r = SSL_connect(c);
		if (r != 1 && SSL_get_error(c, r) != SSL_ERROR_WANT_READ &&
		    SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
			break;
		event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	}
	ok(r == 1, "%s: handshake done on the same socket", name);
	ok(a.connected == 1 && !a.errors, "%s: SOCK_EV_CONNECTED on the server end (%s)", name,
	   a.errors ? a.reason : "-");
	ok(a.got_len == 6 && memcmp(a.got, "hello\n", 6) == 0, "%s: the line read in plain", name);
	r = SSL_write(c, "ping", 4);
	got = 0;
	for (int i = 0; i < 5000 && got < 4; i++) {
		int k = SSL_read(c, buf + got, (int)(4 - got));
		if (k > 0)
			got += (size_t)k;
		else
			event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	}
	ok(r == 4 && got == 4 && memcmp(buf, "ping", 4) == 0, "%s: echo through TLS", name);
	SSL_free(c);
	close(fd[1]);
	end_dispose(&a);
}

static void test_start_tls_refused(void)
{
	struct end a = { 0 }, b = { 0 };
	struct end *both[2] = { &a, &b };

	pair(true, &a, &b);
	run_until(both_connected, both);
	ok(sock_start_tls(a.s, SSL_new(sctx), SOCK_TLS_SERVER) < 0, "start_tls: refused on TLS");
	end_dispose(&a);
	end_dispose(&b);
	pair(false, &a, &b);
	ok(sock_start_tls(a.s, NULL, SOCK_TLS_SERVER) < 0, "start_tls: refused without an SSL");
	ok(sock_start_tls(a.s, SSL_new(sctx), SOCK_PLAIN) < 0, "start_tls: refused for plain");
	sock_shutdown(a.s);
	ok(sock_start_tls(a.s, SSL_new(sctx), SOCK_TLS_SERVER) < 0,
	   "start_tls: refused after shutdown");
	end_dispose(&a);
	end_dispose(&b);
}

/* ---- sock_detach ---- */

static int dt_fd = -2;
static size_t dt_in, dt_out;

/* Detaches from inside on_read, after noting what the stream holds. */
static void dt_read(struct sock *s, void *arg)
{
	struct end *e = arg;

	e->reads++;
	sock_write(s, "queued", 6);
	sock_data(s, &dt_in);
	sock_out_data(s, &dt_out);
	dt_fd = sock_detach(s);
	e->s = NULL;
}

static const struct sock_cbs dt_cbs = { dt_read, on_drained, on_event };

static bool dt_done(void *arg)
{
	return dt_fd != -2;
}

static void test_detach(void)
{
	struct end a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	struct end *both[2] = { &c, &d };
	char buf[16];
	ssize_t k = -1;
	int fd[2];

	tcp_pair(fd);
	a.s = sock_new(base, fd[0], NULL, SOCK_PLAIN, &dt_cbs, &a);
	mk(fd[1], SOCK_PLAIN, &b);
	sock_write(b.s, "abc", 3);
	ok(run_until(dt_done, NULL) && dt_fd == fd[0], "detach: the fd back from inside on_read");
	ok(dt_in == 3 && dt_out == 6, "detach: input (%zu) and output (%zu) readable before", dt_in,
	   dt_out);
	run_for(0.05);
	ok(a.reads == 1 && a.drains == 0 && a.eofs == 0 && a.errors == 0,
	   "detach: no callback after it");
	ok(b.got_len == 0, "detach: the output was dropped, not written");
	ok(write(dt_fd, "raw", 3) == 3, "detach: the fd is open and the caller's");
	for (int i = 0; i < 500 && b.got_len < 3; i++)
		event_base_loop(base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
	ok(b.got_len == 3 && memcmp(b.got, "raw", 3) == 0, "detach: the peer gets the raw write");
	k = recv(dt_fd, buf, sizeof(buf), MSG_DONTWAIT);
	ok(k < 0 && errno == EAGAIN, "detach: nothing more read from it by the stream");
	close(dt_fd);
	end_dispose(&b);
	pair(true, &c, &d);
	run_until(both_connected, both);
	ok(sock_detach(c.s) == -1 && sock_fd(c.s) >= 0, "detach: refused for a TLS stream");
	ok(sock_detach(NULL) == -1, "detach: NULL");
	end_dispose(&c);
	end_dispose(&d);
}

/* ---- the end of a shutdown ---- */

struct sd { int drained_after; bool done_seen; };
static struct sd sd;

static void sd_drained(struct sock *s, void *arg)
{
	if (sock_shut_done(s)) {
		sd.drained_after++;
		sd.done_seen = true;
	}
}

static const struct sock_cbs sd_cbs = { on_read, sd_drained, on_event };

static bool sd_ok(void *arg)
{
	struct end *b = arg;
	return sd.done_seen && b->eofs > 0;
}

static void test_shutdown_done(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { 0 }, b = { 0 };
	int fd[2];

	memset(&sd, 0, sizeof(sd));
	tcp_pair(fd);
	a.s = sock_new(base, fd[0], tls ? SSL_new(sctx) : NULL, tls ? SOCK_TLS_SERVER : SOCK_PLAIN,
		       &sd_cbs, &a);
	mk(fd[1], tls ? SOCK_TLS_CLIENT : SOCK_PLAIN, &b);
	sock_write(a.s, "bye", 3);
	sock_shutdown(a.s);
	ok(!sock_shut_done(a.s), "%s shutdown: not done at once", name);
	ok(run_until(sd_ok, &b) && sd.drained_after == 1,
	   "%s shutdown: on_drained once it is done", name);
	ok(b.got_len == 3 && memcmp(b.got, "bye", 3) == 0, "%s shutdown: bytes before it", name);
	ok(strcmp(b.reason, tls ? "close_notify" : "eof") == 0, "%s shutdown: the peer saw %s", name,
	   b.reason);
	end_dispose(&a);
	end_dispose(&b);
}

/* ---- an output wiped as it goes: the bytes still arrive whole ---- */

static void test_wipe(bool tls)
{
	const char *name = tls ? "tls" : "plain";
	struct end a = { 0 }, b = { 0 };
	struct end *both[2] = { &a, &b };
	size_t n = 300 * 1000, at = 0;
	char *big = malloc(n);
	struct want w = { &b, n };

	pattern(big, n, 0);
	pair(tls, &a, &b);
	if (tls)
		run_until(both_connected, both);
	sock_set_wipe(a.s, true);
	while (at < n) { /* pieces, so the output grows (and moves) several times */
		size_t k = n - at < 7000 ? n - at : 7000;
		sock_write(a.s, big + at, k);
		at += k;
	}
	ok(run_until(got_len, &w) && b.got_len == n && pattern_ok(b.got, n),
	   "%s wipe: %zu bytes arrive whole", name, n);
	ok(sock_bytes_held(a.s) == 0, "%s wipe: nothing held once written", name);
	sock_write(a.s, "tail", 4);
	end_dispose(&a); /* freed with output pending: cleansed, then freed (ASan) */
	end_dispose(&b);
	free(big);
}

int main(void)
{
	char dir[] = "/tmp/sock2_test.XXXXXX";

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		abort();
	tls_setup(dir);
	base = event_base_new();
	test_start_tls(false);
	test_start_tls(true);
	test_start_tls_refused();
	test_detach();
	test_shutdown_done(false);
	test_shutdown_done(true);
	test_wipe(false);
	test_wipe(true);
	tls_teardown(dir);
	return done_testing();
}
