/* phase_test.c -- the connection core's seams without a proxy process: a
 * connection made by conn_create on a socketpair, in a real event_base, with
 * a worker whose server answers come from a test table. Its stream
 * callbacks reach only the phase it entered (client input, drained output,
 * events; an unhandled EOF closes it through the close queue), and
 * upstream_start runs its continuation once a loopback upstream accepted (a
 * refused one is answered 502 and the continuation never runs) */
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "closeq.h"
#include "conn.h"
#include "conn_int.h"
#include "generation.h"
#include "metrics.h"
#include "policy.h"
#include "sock.h"
#include "tap.h"
#include "worker.h"

static struct gentable *gt;

static struct gen *acquire(struct server *s, int li, const struct ipaddr *client)
{
	(void)s;
	(void)li;
	return gentable_acquire(gt, NULL, client);
}

static unsigned long long next_id(struct server *s)
{
	static unsigned long long id;
	(void)s;
	return ++id;
}

static bool is_self(const struct server *s, const struct ipaddr *a, uint16_t port)
{
	(void)s;
	(void)a;
	(void)port;
	return false;
}

static const struct worker_host host = { acquire, next_id, is_self };

/* What each phase saw. */
static struct {
	int a_input, b_input, drained, answered, events, ready;
	size_t b_bytes;
	enum conn_ev last_ev;
	enum conn_state ready_st;
} seen;

static void a_input(struct conn *c)
{
	seen.a_input++;
	sock_consume(c->cl, conn_in_len(c->cl));
	/* an answer: its drained callback belongs to the phase too */
	sock_write(c->cl, "ok", 2);
}

static void b_input(struct conn *c)
{
	seen.b_input++;
	seen.b_bytes += conn_in_len(c->cl);
	sock_consume(c->cl, conn_in_len(c->cl));
}

static void drained(struct conn *c, struct sock *s)
{
	seen.drained++;
	if (s == c->cl && seen.a_input && sock_out_len(s) == 0)
		seen.answered++;
}

static bool event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)c;
	(void)s;
	(void)reason;
	seen.events++;
	seen.last_ev = ev;
	return false; /* conn.c's default: close */
}

static const struct conn_phase phase_a = { .st = ST_HTTP, .client_input = a_input,
					   .drained = drained };
static const struct conn_phase phase_b = { .st = ST_TUNNEL, .client_input = b_input,
					   .event = event };

static void ready(struct conn *c)
{
	seen.ready++;
	seen.ready_st = c->st;
}

static void loop_until(struct event_base *base, const int *what, int want)
{
	for (int i = 0; i < 2000 && *what < want; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void loop_until_closed(struct event_base *base)
{
	for (int i = 0; i < 2000 && conn_live_count() > 0; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop (blocking: timers fire) until no connection is live, or 5 s. */
static void wait_closed(struct event_base *base)
{
	double end = now() + 5;

	while (conn_live_count() > 0 && now() < end)
		event_base_loop(base, EVLOOP_ONCE);
}

/* A listening loopback socket; its port in *port. */
static int listener(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

static struct conn *new_conn(struct worker *w, int *peer)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return NULL;
	*peer = sv[1];
	return conn_create(w, sv[0], (struct sockaddr *)&sa, 0);
}

/* A new connection in phase_b, allowed to 127.0.0.1:port, whose
 * upstream_start has begun (ready runs once connected). */
static struct conn *connecting_conn(struct worker *w, int *peer, struct policy *pol,
				    uint16_t port)
{
	struct conn *c = new_conn(w, peer);

	c->pol = pol; /* borrowed, as from the generation */
	conn_enter(c, &phase_b);
	c->t.is_ip = true;
	addr_parse_ipv4("127.0.0.1", 9, &c->t.ip);
	snprintf(c->t.host, sizeof(c->t.host), "127.0.0.1");
	c->t.port = port;
	c->d.allow = true;
	upstream_start(c, ready);
	return c;
}

int main(void)
{
	struct server_opts o = { .connect_timeout_s = 5, .header_timeout_s = 5,
				 .idle_timeout_s = 5, .max_buffer = 65536, .max_conns = 100 };
	struct metrics *m = metrics_new(1, "test");
	struct event_base *base = event_base_new();
	struct worker w = { .host = &host, .opts = &o, .base = base, .mx = metrics_worker(m, 0) };
	struct policy *pol = policy_new();
	char err[256], buf[64];
	struct conn *c;
	uint16_t port = 0;
	int peer, lfd, afd;
	ssize_t n;

	gt = gentable_new(m, NULL);
	w.closing = conn_closeq_new(base);
	ok(policy_add_allow(pol, "127.0.0.1", err) && policy_add_allow_private(pol, "127.0.0.0/8", err),
	   "a policy that allows the loopback upstream");

	/* ---- dispatch: only the phase entered is called ---- */
	c = new_conn(&w, &peer);
	ok(c != NULL && conn_live_count() == 1, "conn_create: one live connection");
	conn_enter(c, &phase_a);
	ok(c->st == ST_HTTP, "conn_enter names the state after the phase");
	ok(write(peer, "hello", 5) == 5, "client bytes sent");
	loop_until(base, &seen.answered, 1);
	ok(seen.a_input == 1 && seen.b_input == 0, "phase a's client_input ran (%d, %d)",
	   seen.a_input, seen.b_input);
	ok(seen.answered == 1, "its answer drained: phase a's drained ran (%d)", seen.answered);
	n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
	ok(n == 2 && memcmp(buf, "ok", 2) == 0, "the answer reached the client");

	conn_enter(c, &phase_b);
	ok(write(peer, "more bytes", 10) == 10, "more client bytes sent");
	loop_until(base, &seen.b_input, 1);
	ok(seen.b_input == 1 && seen.b_bytes == 10 && seen.a_input == 1,
	   "after conn_enter, phase b's client_input has them (%d, %zu) and a's nothing more",
	   seen.b_input, seen.b_bytes);

	shutdown(peer, SHUT_WR);
	loop_until_closed(base);
	ok(seen.events == 1 && seen.last_ev == CONN_EV_EOF, "the EOF went to phase b's event");
	ok(conn_live_count() == 0, "unhandled there: conn.c's default closed it");
	closeq_run(w.closing);
	close(peer);

	/* ---- the idle timer: one per connection, moved on by activity ---- */
	{
		double t0, t1;

		memset(&seen, 0, sizeof(seen));
		c = new_conn(&w, &peer);
		conn_enter(c, &phase_b);
		conn_set_idle(c, 1);
		t0 = now();
		loop_until(base, &seen.b_input, 0);
		while (now() < t0 + 0.6)
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ok(conn_live_count() == 1 && write(peer, "x", 1) == 1, "idle: still open after 0.6 s");
		while (seen.b_input < 1 && now() < t0 + 5)
			event_base_loop(base, EVLOOP_ONCE);
		t1 = now();
		ok(seen.b_input == 1, "idle: a byte moved at %.2f s", t1 - t0);
		wait_closed(base);
		ok(conn_live_count() == 0, "idle: closed once quiet for the limit");
		ok(now() - t1 >= 0.9 && now() - t1 < 2.5,
		   "idle: %.2f s after the last byte (limit 1 s, counted from it)", now() - t1);
		ok(seen.events == 1 && seen.last_ev == CONN_EV_TIMEOUT,
		   "idle: the phase saw CONN_EV_TIMEOUT first, then conn.c closed it");
		closeq_run(w.closing);
		close(peer);
	}

	/* ---- the connect continuation ---- */
	lfd = listener(&port);
	ok(lfd >= 0, "a loopback upstream listens");
	c = connecting_conn(&w, &peer, pol, port);
	ok(c->st == ST_CONNECT, "upstream_start: connecting (state %d)", c->st);
	loop_until(base, &seen.ready, 1);
	ok(seen.ready == 1 && seen.ready_st == ST_CONNECT, "the continuation ran once connected");
	ok(c->up && c->up_connected, "with the upstream up");
	afd = accept(lfd, NULL, NULL);
	ok(afd >= 0, "the upstream saw the connection");
	conn_close(c);
	loop_until_closed(base);
	closeq_run(w.closing);
	close(afd);
	close(peer);

	/* a refused connect: 502 to the client, no continuation */
	close(lfd);
	c = connecting_conn(&w, &peer, pol, port);
	loop_until_closed(base);
	ok(seen.ready == 1, "a refused upstream: the continuation did not run");
	n = recv(peer, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
	ok(n > 12 && strncmp(buf, "HTTP/1.1 502", 12) == 0, "the client got a 502 (%.12s)", buf);
	close(peer);

	conn_close_all(&w);
	closeq_free(w.closing);
	policy_unref(pol);
	gentable_free(gt);
	event_base_free(base);
	metrics_free(m);
	return done_testing();
}
