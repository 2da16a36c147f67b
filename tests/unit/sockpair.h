/* sockpair.h -- the plumbing of the socket/TLS stream's unit tests
 * (sock_test.c, sock2_test.c): loopback TCP pairs, a test end that records
 * what its stream reported, a loop run until a condition holds, and TLS
 * contexts on a leaf minted by a throwaway CA. Included by one test file each. */
#ifndef EGRESSD_SOCKPAIR_H
#define EGRESSD_SOCKPAIR_H

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

#include "ca.h"
#include "mint.h"
#include "sock.h"
#include "tap.h"

/* not every test file uses every helper */
#pragma GCC diagnostic ignored "-Wunused-function"

#define HOST "sock.test"

static SSL_CTX *sctx12, *cctx12;
static struct event_base *base;
static SSL_CTX *sctx, *cctx;

/* What a test end does and what it saw. */
enum close_at { CLOSE_NEVER, CLOSE_IN_READ, CLOSE_IN_DRAINED, CLOSE_IN_CONNECTED, CLOSE_IN_EOF,
		CLOSE_IN_ERROR };

struct end {
	struct sock *s;
	bool echo;                /* write back what comes in */
	enum close_at close_at;   /* sock_free from inside this callback */
	struct end *free_other;   /* ... or write to, then free, this other end from on_read */
	bool reply_on_eof;        /* on EOF: write "resp", then shut down */
	size_t consume_max;       /* 0: consume all; else at most this per on_read */
	char *got;                /* collected input (not echo) */
	size_t got_len, got_cap;
	int reads, drains, connected, eofs, errors, after_close;
	size_t max_in_seen;       /* the most input seen in on_read */
	char reason[128];
	bool closed;
};

static void end_close(struct end *e)
{
	sock_free(e->s);
	e->s = NULL;
	e->closed = true;
}

static void collect(struct end *e, const char *p, size_t n)
{
	if (e->got_len + n > e->got_cap) {
		e->got_cap = (e->got_len + n) * 2;
		e->got = realloc(e->got, e->got_cap);
	}
	memcpy(e->got + e->got_len, p, n);
	e->got_len += n;
}

static void on_read(struct sock *s, void *arg)
{
	struct end *e = arg;
	size_t n;
	const char *p = sock_data(s, &n);

	if (e->closed) {
		e->after_close++;
		return;
	}
	e->reads++;
	if (n > e->max_in_seen)
		e->max_in_seen = n;
	if (e->consume_max && n > e->consume_max)
		n = e->consume_max;
	if (e->echo)
		sock_write(s, p, n);
	else
		collect(e, p, n);
	sock_consume(s, n);
	if (e->free_other) {
		sock_write(e->free_other->s, "pending", 7); /* its write step is due */
		end_close(e->free_other);
		e->free_other = NULL;
	}
	if (e->close_at == CLOSE_IN_READ)
		end_close(e);
}

static void on_drained(struct sock *s, void *arg)
{
	struct end *e = arg;

	if (e->closed) {
		e->after_close++;
		return;
	}
	e->drains++;
	if (e->close_at == CLOSE_IN_DRAINED)
		end_close(e);
}

static void on_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	struct end *e = arg;

	if (e->closed) {
		e->after_close++;
		return;
	}
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	if (ev == SOCK_EV_CONNECTED) {
		e->connected++;
		if (e->close_at == CLOSE_IN_CONNECTED)
			end_close(e);
	} else if (ev == SOCK_EV_EOF) {
		e->eofs++;
		if (e->reply_on_eof) {
			sock_write(s, "resp", 4);
			sock_shutdown(s);
		}
		if (e->close_at == CLOSE_IN_EOF)
			end_close(e);
	} else {
		e->errors++;
		if (e->close_at == CLOSE_IN_ERROR)
			end_close(e);
	}
}

static const struct sock_cbs cbs = { on_read, on_drained, on_event };

/* ---- plumbing ---- */

/* A connected loopback TCP pair: fd[0] connected to fd[1]; kernel buffer
 * sizes (0: the default) are set before the connection is made (a buffer
 * shrunk afterwards can stall the window). */
static void tcp_pair_sized(int fd[2], int sndbuf0, int rcvbuf1)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (rcvbuf1)
		setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf1, sizeof(rcvbuf1));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		abort();
	fd[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (sndbuf0)
		setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf0, sizeof(sndbuf0));
	if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&a, sizeof(a)) < 0)
		abort();
	fd[1] = accept(l, NULL, NULL);
	if (fd[1] < 0)
		abort();
	close(l);
	/* as egressd's sockets: no Nagle delay behind an unacknowledged segment */
	setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void tcp_pair(int fd[2])
{
	tcp_pair_sized(fd, 0, 0);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until cond(arg) holds or 10 s pass; returns cond(arg). */
static bool run_until(bool (*cond)(void *), void *arg)
{
	double end = now() + 10;
	struct timeval tv = { 0, 20000 };
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);

	event_add(t, &tv); /* the loop never blocks for long */
	while (!cond(arg) && now() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return cond(arg);
}

static void run_for(double secs)
{
	double end = now() + secs;
	struct timeval tv = { 0, 5000 };
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);

	event_add(t, &tv);
	while (now() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static struct sock *mk(int fd, enum sock_tls_role role, struct end *e)
{
	SSL *ssl = NULL;

	if (role == SOCK_TLS_SERVER)
		ssl = SSL_new(sctx);
	if (role == SOCK_TLS_CLIENT) {
		ssl = SSL_new(cctx);
		SSL_set_tlsext_host_name(ssl, HOST);
		SSL_set1_host(ssl, HOST);
	}
	e->s = sock_new(base, fd, ssl, role, &cbs, e);
	return e->s;
}

/* A connected pair of streams: a (server side if tls) and b (client side). */
static void pair(bool tls, struct end *a, struct end *b)
{
	int fd[2];

	tcp_pair(fd);
	mk(fd[0], tls ? SOCK_TLS_SERVER : SOCK_PLAIN, a);
	mk(fd[1], tls ? SOCK_TLS_CLIENT : SOCK_PLAIN, b);
}

static void end_dispose(struct end *e)
{
	if (e->s)
		sock_free(e->s);
	free(e->got);
	memset(e, 0, sizeof(*e));
}

static void pattern(char *p, size_t n, size_t at)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)((at + i) * 7 % 251);
}

static bool pattern_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (char)(i * 7 % 251))
			return false;
	return true;
}

struct want { struct end *e; size_t len; };
static bool got_len(void *arg)
{
	struct want *w = arg;
	return w->e->got_len >= w->len || w->e->errors > 0;
}
static bool both_connected(void *arg)
{
	struct end **e = arg;
	return (e[0]->connected && e[1]->connected) || e[0]->errors || e[1]->errors;
}
static bool has_eof(void *arg)
{
	struct end *e = arg;
	return e->eofs > 0 || e->errors > 0;
}
static bool has_error(void *arg)
{
	struct end *e = arg;
	return e->errors > 0 || e->eofs > 0;
}
static bool ev_or_closed(void *arg)
{
	struct end *e = arg;
	return e->closed || e->errors > 0 || e->eofs > 0;
}

static void tls_setup(const char *dir)
{
	char err[256] = "";
	struct ca *ca = ca_load_or_create(dir, CA_KEY_EC_P256, NULL, err);
	struct minter *m = ca ? minter_new(ca, err) : NULL;
	X509 *leaf = m ? minter_mint(m, HOST, false, err) : NULL;

	if (!leaf) {
		fprintf(stderr, "tls setup: %s\n", err);
		abort();
	}
	sctx = SSL_CTX_new(TLS_server_method());
	cctx = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_use_certificate(sctx, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(sctx, minter_leaf_key(m)) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca_cert(ca)) != 1)
		abort();
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_num_tickets(sctx, 0);
	/* TLS 1.2 with client renegotiation (off by default since OpenSSL 3.0) */
	sctx12 = SSL_CTX_new(TLS_server_method());
	cctx12 = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_use_certificate(sctx12, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(sctx12, minter_leaf_key(m)) != 1)
		abort();
	SSL_CTX_set_max_proto_version(sctx12, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(cctx12, TLS1_2_VERSION);
	SSL_CTX_set_options(sctx12, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	X509_free(leaf);
	minter_free(m);
	ca_free(ca); /* the contexts hold their own references */
}

/* After the tests: the loop, the contexts and tls_setup's directory. */
static void tls_teardown(const char *dir)
{
	char cmd[64];

	event_base_free(base);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx12);
	SSL_CTX_free(cctx12);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		ok(0, "cleanup of %s", dir);
}

#endif
