/* h1head.c -- the request-head phase of HTTP/1: client bytes are fed to a
 * new exchange's request parser until a head is complete, which goes to the
 * connection's c->on_head (the explicit proxy's, an intercepted or origin
 * connection's); a kept-alive upstream may go away meanwhile; an HTTP/2
 * preface is refused with its own reason */
#include "conn_int.h"
#include "exchange.h"
#include "httpmsg.h"
#include "sock.h"

/* HTTP/2 with prior knowledge where HTTP/1 is read (the explicit proxy, an
 * intercepted connection without h2): a `refuse` event (h2-prior-knowledge,
 * "PRI *") and a 400 that says HTTP/2 is not served here; the connection
 * closes. The target is named where the connection has one. */
static void refuse_h2_preface(struct conn *c)
{
	const char *why = httpmsg_error(c->ex->req);
	struct refusal r = {
		.reason = reason_str(REASON_H2_PRIOR_KNOWLEDGE),
		.target = c->mode == MODE_INTERCEPT || c->mode == MODE_ORIGIN,
		.method = "PRI",
		.path = "*",
		.status = reason_status(REASON_H2_PRIOR_KNOWLEDGE),
		.detail = why,
	};

	conn_log_refuse(c, &r);
	conn_send_error(c, r.status, r.reason, why);
}

/* Feeds buffered client bytes to the request parser until a head completes. */
static void read_head(struct conn *c)
{
	while (c->st == ST_HEAD) {
		size_t n, used = 0, ulen;
		const char *p = sock_data(c->cl, &n), *url;
		enum httpmsg_status s;

		if (!p)
			break;
		if (!c->ex) /* a request begins */
			c->ex = exchange_new();
		s = httpmsg_feed(c->ex->req, p, n, &used);
		sock_consume(c->cl, used);
		if (s == HTTPMSG_NEED_MORE && used > 0)
			continue;
		if (s == HTTPMSG_NEED_MORE)
			break;
		if (s == HTTPMSG_HEAD || s == HTTPMSG_UPGRADE) {
			conn_head_done(c);
			url = httpmsg_target(c->ex->req, &ulen);
			c->on_head(c, url, ulen);
			return;
		}
		if (httpmsg_error_h2_preface(c->ex->req))
			refuse_h2_preface(c);
		else
			conn_error(c, httpmsg_error_status(c->ex->req), "bad-request",
				   httpmsg_error(c->ex->req));
		return;
	}
}

/* Between requests: a kept-alive upstream that goes away is dropped (the
 * next request connects again); the client's timeouts are a head phase's. */
static bool head_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)reason;
	if (!s || s != c->up)
		return false;
	conn_count_up_error(c, s, ev);
	conn_drop_upstream(c);
	c->up_connected = false;
	return true;
}

static const struct conn_phase head_phase = {
	.st = ST_HEAD,
	.client_input = read_head,
	.event = head_event,
};

void h1head_enter(struct conn *c)
{
	conn_enter(c, &head_phase);
}
