/* h1head.c -- the request-head phase of HTTP/1: client bytes are fed to a
 * new exchange's request parser until a head is complete, which goes to the
 * connection's c->on_head (the explicit proxy's, an intercepted or origin
 * connection's); a kept-alive upstream may go away meanwhile */
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "conn_int.h"
#include "exchange.h"
#include "httpmsg.h"

/* Feeds buffered client bytes to the request parser until a head completes. */
static void read_head(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cl);

	while (evbuffer_get_length(in) > 0 && c->st == ST_HEAD) {
		struct evbuffer_iovec v;
		size_t used = 0, ulen;
		const char *url;
		enum httpmsg_status s;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if (!c->ex) /* a request begins */
			c->ex = exchange_new();
		s = httpmsg_feed(c->ex->req, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (s == HTTPMSG_NEED_MORE)
			continue;
		if (s == HTTPMSG_HEAD || s == HTTPMSG_UPGRADE) {
			conn_head_done(c);
			url = httpmsg_target(c->ex->req, &ulen);
			c->on_head(c, url, ulen);
			return;
		}
		conn_error(c, httpmsg_error_status(c->ex->req), "bad-request", httpmsg_error(c->ex->req));
		return;
	}
}

/* Between requests: a kept-alive upstream that goes away is dropped (the
 * next request connects again); the client's timeouts are a head phase's. */
static bool head_event(struct conn *c, struct bufferevent *bev, short what)
{
	if (bev != c->up || (what & BEV_EVENT_TIMEOUT))
		return false;
	conn_count_up_error(c, bev, what);
	conn_drop_upstream(c);
	c->up_connected = false;
	return true;
}

static const struct conn_phase head_phase = {
	.st = ST_HEAD,
	.head = true,
	.client_input = read_head,
	.event = head_event,
};

void h1head_enter(struct conn *c)
{
	conn_enter(c, &head_phase);
}
