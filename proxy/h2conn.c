/* h2conn.c -- the ST_H2 phase: an intercepted connection whose two TLS
 * handshakes both chose h2 is carried by the HTTP/2 relay (h2relay.h): what
 * each side's stream reads is fed to it, what it hands over is written to
 * the other stream within --max-buffer, reading follows its want_read, and
 * its per-stream events become `request`, `placeholder-leak` and `refuse`
 * log lines. The connection ends when the relay is done or failed (after
 * its last frames are out), or when either side goes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "conn_int.h"
#include "exchange.h"
#include "generation.h"
#include "h2relay.h"
#include "jsonw.h"
#include "metrics.h"
#include "sock.h"
#include "worker.h"

#define H2_STREAM_BUF (256 * 1024) /* per stream and direction at most */

static struct sock *side_sock(struct conn *c, enum h2relay_side side)
{
	return side == H2_SANDBOX ? c->cl : c->up;
}

/* The relay's bytes for side: as many as the stream's output has room for
 * below --max-buffer (the relay keeps the rest until h2relay_flush). */
static ssize_t on_write(void *ctx, enum h2relay_side side, const uint8_t *p, size_t n)
{
	struct conn *c = ctx;
	struct sock *s = side_sock(c, side);
	size_t out, take;

	if (!s || c->closed)
		return -1;
	out = sock_out_len(s);
	if (out >= c->hiwat)
		return 0;
	take = n < c->hiwat - out ? n : c->hiwat - out;
	if (sock_write(s, p, take) < 0)
		return -1;
	metrics_bytes(c->w->mx, side == H2_UPSTREAM, take);
	return (ssize_t)take;
}

/* A stream ended: its `request` line, with "proto":"h2". */
static void log_request(struct conn *c, const struct h2relay_event *ev)
{
	struct jsonw w;

	/* as exchange.c meters HTTP/1 requests; an unredactable reply was
	 * counted by its refuse event already */
	if (ev->reason != REASON_NONE && ev->reason != REASON_UNREDACTABLE_ENCODING)
		metrics_refusal(c->w->mx, ev->reason);
	else if (ev->reason == REASON_NONE && !ev->incomplete)
		metrics_request(c->w->mx, c->mode, MX_PROTO_H2, ev->usec);
	for (uint64_t m = ev->secrets; m; m &= m - 1)
		metrics_secret_injected(c->w->mx, gen_secret_slot(c->gen, (size_t)__builtin_ctzll(m)));
	c->bytes_up += ev->bytes_up;
	c->bytes_down += ev->bytes_down;
	if (!audit_begin(&w, ev->reason != REASON_NONE ? AUDIT_WARN : AUDIT_INFO, "request", c->id))
		return;
	if (*policy_scope(c->pol))
		jsonw_str(&w, "sandbox", policy_scope(c->pol));
	jsonw_str(&w, "method", ev->method);
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "path", ev->path);
	jsonw_int(&w, "status", ev->status);
	exchange_log_verdict(&w, ev->ruled, ev->reason, &ev->rv);
	audit_secrets(&w, c->ss, ev->secrets);
	jsonw_str(&w, "proto", "h2");
	if (ev->incomplete)
		jsonw_bool(&w, "incomplete", true);
	jsonw_int(&w, "bytes_up", (long long)ev->bytes_up);
	jsonw_int(&w, "bytes_down", (long long)ev->bytes_down);
	jsonw_int(&w, "ms", (long long)(ev->usec / 1000));
	audit_emit(&w);
}

static void log_leak(struct conn *c, const struct h2relay_event *ev)
{
	struct jsonw w;

	metrics_placeholder_leak(c->w->mx);
	if (!audit_begin(&w, AUDIT_WARN, "placeholder-leak", c->id))
		return;
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "method", ev->method);
	jsonw_str(&w, "path", ev->path);
	audit_secrets(&w, c->ss, ev->secrets);
	jsonw_str(&w, "action", ev->blocked ? "block" : "log");
	jsonw_str(&w, "proto", "h2");
	audit_emit(&w);
}

static void on_event(void *ctx, const struct h2relay_event *ev)
{
	struct conn *c = ctx;
	struct refusal r = { .target = true };

	switch (ev->kind) {
	case H2EV_REQUEST:
		log_request(c, ev);
		break;
	case H2EV_LEAK:
		log_leak(c, ev);
		break;
	case H2EV_REFUSE:
		r.reason = reason_str(ev->reason);
		r.method = ev->method;
		r.path = ev->path;
		r.status = ev->status;
		r.detail = ev->detail;
		conn_log_refuse(c, &r);
		break;
	}
}

/* Frees the relay (streams still open are logged as incomplete). */
static void h2conn_dispose(struct conn *c)
{
	struct h2relay *r = c->h2;

	c->h2 = NULL;
	h2relay_free(r);
}

/* The relay is over: close once what it wrote is out. */
static void finish(struct conn *c)
{
	c->h2_ending = true;
	if (c->cl)
		sock_read_stop(c->cl);
	if (c->up)
		sock_read_stop(c->up);
	if (sock_out_len(c->cl) == 0 && (!c->up || sock_out_len(c->up) == 0) &&
	    !h2relay_want_write(c->h2, H2_SANDBOX)) {
		h2conn_dispose(c);
		conn_close(c);
	}
}

/* After a feed or flush (rc its answer): the end, or more to feed. Reading
 * is never paused here: a side the relay does not want to read keeps its
 * bytes in its stream's input, whose cap (--max-buffer) pauses the socket;
 * so its EOF is still seen once its session wants nothing more. */
static bool settle(struct conn *c, int rc)
{
	if (rc < 0 || h2relay_done(c->h2)) {
		finish(c);
		return false;
	}
	return true;
}

/* Feeds side's input to the relay while it wants it. */
static void feed(struct conn *c, enum h2relay_side side)
{
	struct sock *s = side_sock(c, side);
	size_t n;
	const char *p;
	int rc;

	if (c->h2_ending || !c->h2 || !s || !h2relay_want_read(c->h2, side))
		return;
	if (side == H2_UPSTREAM && c->up_eof)
		return;
	p = sock_data(s, &n);
	if (n == 0)
		return;
	rc = h2relay_feed(c->h2, side, (const uint8_t *)p, n);
	sock_consume(s, n);
	conn_touch(c);
	if (settle(c, rc)) /* what the other side's input holds may be wanted now */
		feed(c, side == H2_SANDBOX ? H2_UPSTREAM : H2_SANDBOX);
}

static void client_input(struct conn *c)
{
	feed(c, H2_SANDBOX);
}

static void upstream_input(struct conn *c)
{
	feed(c, H2_UPSTREAM);
}

/* The upstream ended: once the relay has handed the sandbox all it holds
 * for it, the relay goes (streams still open logged as incomplete) and the
 * sandbox's output is flushed, then closed. */
static void upstream_gone(struct conn *c)
{
	if (h2relay_flush(c->h2) == 0 && h2relay_want_write(c->h2, H2_SANDBOX))
		return; /* more once the sandbox's output drains */
	h2conn_dispose(c);
	conn_close_flushed(c);
}

static void drained(struct conn *c, struct sock *s)
{
	(void)s;
	if (!c->h2)
		return;
	if (c->up_eof) {
		upstream_gone(c);
		return;
	}
	if (c->h2_ending) {
		h2relay_flush(c->h2); /* a GOAWAY that did not fit before */
		finish(c);
		return;
	}
	if (!settle(c, h2relay_flush(c->h2)))
		return;
	feed(c, H2_SANDBOX);
	if (!c->closed)
		feed(c, H2_UPSTREAM);
}

/* Either side's EOF or error, or the idle timeout: the relay goes first
 * (its open streams logged as incomplete), then the connection: what is
 * queued for the sandbox still goes out after an upstream EOF; an error or
 * timeout is conn.c's default close. */
static bool h2_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)reason;
	if (ev == CONN_EV_CONNECTED)
		return true;
	if (ev == CONN_EV_EOF && s == c->up && c->h2) {
		c->up_eof = true;
		sock_read_stop(c->up);
		upstream_gone(c);
		return true;
	}
	h2conn_dispose(c);
	if (ev != CONN_EV_EOF)
		return false;
	conn_close(c);
	return true;
}

static const struct conn_phase h2_phase = {
	.st = ST_H2,
	.client_input = client_input,
	.upstream_input = upstream_input,
	.drained = drained,
	.event = h2_event,
};

void h2conn_enter(struct conn *c)
{
	struct h2relay_conf conf = {
		.t = &c->t,
		.pol = c->pol,
		.ss = c->ss,
		.approved = c->approved,
		.leak_block = c->w->opts->leak_block,
	};
	struct h2relay_cbs cbs = { .ctx = c, .write = on_write, .event = on_event };

	h2relay_limits_default(&conf.lim);
	conf.lim.stream_buf = c->hiwat < H2_STREAM_BUF ? (uint32_t)c->hiwat : H2_STREAM_BUF;
	conf.lim.conn_buf = (uint32_t)(c->hiwat * 4);
	conf.lim.header_list = CONN_HEAD_CAP;
	c->h2 = h2relay_new(&conf, &cbs);
	if (!c->h2) {
		conn_close(c);
		return;
	}
	c->dispose = h2conn_dispose;
	sock_set_wipe(c->up, true); /* injected values go upstream */
	conn_enter(c, &h2_phase);
	conn_head_done(c);
	conn_touch(c);
	if (!settle(c, h2relay_flush(c->h2)))
		return;
	feed(c, H2_SANDBOX);
	if (!c->closed)
		feed(c, H2_UPSTREAM);
}
