/* relay.c -- moving bytes between client and upstream with back-pressure
 * (raw, or through an HTTP parser for httpfwd/httpresp): the CONNECT
 * tunnel's phases (its ClientHello/SNI check, then bytes both ways),
 * half-close, and draining */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clienthello.h"
#include "exchange.h"
#include "conn_int.h"
#include "audit.h"
#include "httpmsg.h"
#include "metrics.h"
#include "worker.h"
#include "jsonw.h"
#include "wsredact.h"

static void ws_emit(void *ctx, const char *p, size_t n)
{
	evbuffer_add(ctx, p, n);
}

/* n bytes of a secret's host's WebSocket frames, redacted, from in to out.
 * false (nothing more may be relayed) when they cannot be redacted. */
static bool pump_ws(struct conn *c, struct evbuffer *in, struct evbuffer *out, size_t n)
{
	struct evbuffer_iovec v[16];
	struct refusal r = { .reason = "websocket-not-redactable" };

	while (n > 0) {
		int k = evbuffer_peek(in, (ev_ssize_t)n, NULL, v, 16);
		size_t got = 0;
		for (int i = 0; i < k && i < 16 && got < n; i++) {
			size_t l = v[i].iov_len < n - got ? v[i].iov_len : n - got;
			if (!wsredact_feed(c->ws, v[i].iov_base, l, ws_emit, out))
				goto fail;
			got += l;
		}
		evbuffer_drain(in, got);
		n -= got;
	}
	return true;
fail:
	r.detail = wsredact_error(c->ws);
	conn_log_refuse(c, &r);
	return false;
}

size_t relay_pump(struct conn *c, struct bufferevent *from, struct bufferevent *to)
{
	struct evbuffer *in = bufferevent_get_input(from);
	struct evbuffer *out = bufferevent_get_output(to);
	size_t have = evbuffer_get_length(in), queued = evbuffer_get_length(out);
	size_t room = queued < c->hiwat ? c->hiwat - queued : 0;
	size_t n = have < room ? have : room;

	if (c->st == ST_CLOSING || (c->ws_failed && from == c->up))
		return 0;
	if (n > 0 && c->ws && from == c->up && !pump_ws(c, in, out, n)) {
		/* nothing more from upstream; closed from the loop, not from
		 * under our callers (they still use c) */
		c->ws_failed = true;
		evbuffer_drain(in, evbuffer_get_length(in));
		bufferevent_disable(from, EV_READ);
		event_active(c->deadline, EV_TIMEOUT, 0);
		return 0;
	}
	if (n > 0) {
		if (!(c->ws && from == c->up))
			evbuffer_remove_buffer(in, out, n);
		if (from == c->cl)
			c->bytes_up += n;
		else
			c->bytes_down += n;
		metrics_bytes(c->w->mx, from == c->cl, n);
	}
	if (evbuffer_get_length(out) >= c->hiwat) {
		/* wait for `to` to drain; relay_on_drained resumes us */
		bufferevent_disable(from, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, c->hiwat / 2, 0);
	}
	return n;
}

enum httpmsg_status relay_pump_msg(struct conn *c, struct httpmsg *m, struct bufferevent *from,
				   struct bufferevent *to, bool raw, uint64_t *count,
				   size_t (*held)(const struct conn *c))
{
	struct evbuffer *in = bufferevent_get_input(from);
	struct evbuffer *out = to ? bufferevent_get_output(to) : NULL;
	enum httpmsg_status s = HTTPMSG_NEED_MORE;

	for (;;) {
		struct evbuffer_iovec v = { (void *)"", 0 };
		size_t have = evbuffer_get_length(in), queued = out ? evbuffer_get_length(out) : 0;
		size_t used = 0, n;

		if (held && out)
			queued += held(c);
		if (queued >= c->hiwat) {
			bufferevent_disable(from, EV_READ);
			bufferevent_setwatermark(to, EV_WRITE, c->hiwat / 2, 0);
			break;
		}
		/* with no input, a zero-byte feed still lets the parser finish a
		 * message that ends right after its head (GET, Content-Length: 0) */
		if (have > 0 && evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = v.iov_len < c->hiwat - queued ? v.iov_len : c->hiwat - queued;
		s = httpmsg_feed(m, v.iov_base, n, &used);
		if (raw && out)
			evbuffer_remove_buffer(in, out, used);
		else
			evbuffer_drain(in, used);
		*count += used;
		if (out && used)
			metrics_bytes(c->w->mx, from == c->cl, used);
		if (s != HTTPMSG_NEED_MORE || have == 0)
			break;
	}
	return s;
}

/* After EOF on one side, once everything it sent has gone out, pass the
 * half-close on; close the connection when both directions are finished. */
static void finish_half_close(struct conn *c)
{
	struct evbuffer *cl_in = bufferevent_get_input(c->cl);
	struct evbuffer *up_in = bufferevent_get_input(c->up);

	if (c->cl_eof && !c->up_shut && evbuffer_get_length(cl_in) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(c->up)) == 0) {
		shutdown(bufferevent_getfd(c->up), SHUT_WR);
		c->up_shut = true;
	}
	if (c->up_eof && !c->cl_shut && evbuffer_get_length(up_in) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(c->cl)) == 0) {
		shutdown(bufferevent_getfd(c->cl), SHUT_WR);
		c->cl_shut = true;
	}
	if (c->up_shut && c->cl_shut)
		conn_close(c);
}

static void relay_on_eof(struct conn *c, struct bufferevent *bev)
{
	if (c->mode == MODE_INTERCEPT) {
		/* TLS on both sides: no half-close; pass what is left, then close */
		if (bev == c->cl) {
			conn_close(c);
			return;
		}
		c->up_eof = true;
		relay_pump(c, c->up, c->cl);
		conn_close_flushed(c);
		return;
	}
	if (bev == c->cl) {
		c->cl_eof = true;
		if (c->st == ST_SNI) {
			/* the client hung up before a complete hello: nothing to pass */
			conn_close(c);
			return;
		}
		relay_pump(c, c->cl, c->up);
	} else {
		c->up_eof = true;
		relay_pump(c, c->up, c->cl);
	}
	finish_half_close(c);
}

bool relay_drained_eof(struct conn *c, struct bufferevent *from, struct bufferevent *bev)
{
	if ((from == c->cl && c->cl_eof) || (from == c->up && c->up_eof)) {
		relay_pump(c, from, bev);
		finish_half_close(c);
		return true;
	}
	return false;
}

static void relay_on_drained(struct conn *c, struct bufferevent *bev)
{
	struct bufferevent *from;

	if (!c->up)
		return;
	from = bev == c->up ? c->cl : c->up;
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	if (relay_drained_eof(c, from, bev))
		return;
	if (c->st == ST_SNI && from == c->cl)
		return;
	bufferevent_enable(from, EV_READ);
	if (from == c->up)
		intercept_upstream_pending(c);
	relay_pump(c, from, bev);
}

static void client_input(struct conn *c)
{
	relay_pump(c, c->cl, c->up);
}

static void upstream_input(struct conn *c)
{
	relay_pump(c, c->up, c->cl);
}

/* EOF on either side: half-close (conn.c's default for the rest). */
static bool tunnel_event(struct conn *c, struct bufferevent *bev, short what)
{
	if ((what & BEV_EVENT_TIMEOUT) || !(what & BEV_EVENT_EOF))
		return false;
	conn_count_up_error(c, bev, what);
	relay_on_eof(c, bev);
	return true;
}

static void check_sni(struct conn *c);

/* CONNECT: client bytes wait until the ClientHello is read and its SNI checked. */
static const struct conn_phase sni_phase = {
	.st = ST_SNI,
	.head = true,
	.client_input = check_sni,
	.upstream_input = upstream_input,
	.drained = relay_on_drained,
	.event = tunnel_event,
};

/* Raw bytes both ways (before or instead of splice: tunnel.c). */
static const struct conn_phase tunnel_phase = {
	.st = ST_TUNNEL,
	.client_input = client_input,
	.upstream_input = upstream_input,
	.drained = relay_on_drained,
	.event = tunnel_event,
	.up_resumed = intercept_upstream_pending,
};

void relay_connect_established(struct conn *c)
{
	evbuffer_add_printf(bufferevent_get_output(c->cl),
			    "HTTP/1.1 200 Connection established\r\n\r\n");
	conn_enter(c, &sni_phase);
	conn_head_phase(c); /* the ClientHello is due now */
	bufferevent_enable(c->cl, EV_READ);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	check_sni(c);
}

void relay_start_tunnel(struct conn *c)
{
	/* no more HTTP on this connection: drop the parsers' memory */
	exchange_free(c->ex);
	c->ex = NULL;
	conn_enter(c, &tunnel_phase);
	conn_head_done(c); /* from now on only the idle timeout applies */
	if (tunnel_start(c))
		return; /* spliced from now on (or closed already) */
	bufferevent_enable(c->cl, EV_READ);
	bufferevent_enable(c->up, EV_READ);
	relay_pump(c, c->cl, c->up);
	relay_pump(c, c->up, c->cl);
}

/* Compares an SNI with the CONNECT host: case-insensitive, one trailing dot
 * ignored. An IP target never matches a name. */
static bool sni_matches(const struct target *t, const char *sni)
{
	size_t n = strlen(sni);

	if (n > 0 && sni[n - 1] == '.')
		n--;
	if (t->is_ip || n != strlen(t->host))
		return false;
	return strncasecmp(sni, t->host, n) == 0;
}

static void log_refusal(struct conn *c, enum reason r, const char *sni)
{
	struct refusal rf = { .reason = reason_str(r), .target = true, .sni = sni };

	conn_log_refuse(c, &rf);
}

/* A fatal handshake_failure alert (TLS 1.0 record version, as servers send
 * before a version is agreed). */
void relay_send_tls_alert(struct conn *c, unsigned char desc)
{
	unsigned char alert[7] = { 0x15, 0x03, 0x01, 0x00, 0x02, 0x02, desc };
	bufferevent_write(c->cl, alert, sizeof(alert));
}

static void check_sni(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cl);
	size_t n = evbuffer_get_length(in);
	char sni[256];
	enum ch_result r;
	unsigned char *data;

	if (n == 0)
		return;
	if (n > CLIENTHELLO_MAX)
		n = CLIENTHELLO_MAX;
	data = evbuffer_pullup(in, (ev_ssize_t)n);
	r = clienthello_parse(data, n, sni, sizeof(sni));
	if (r == CH_NEED_MORE && n < CLIENTHELLO_MAX)
		return;
	if (r == CH_SNI && !sni_matches(&c->t, sni)) {
		log_refusal(c, REASON_SNI_MISMATCH, sni);
		relay_send_tls_alert(c, 112 /* unrecognized_name */);
		conn_close_flushed(c);
		return;
	}
	if (r == CH_ERROR || r == CH_NEED_MORE) {
		log_refusal(c, REASON_BAD_REQUEST, NULL);
		relay_send_tls_alert(c, 50 /* decode_error */);
		conn_close_flushed(c);
		return;
	}
	relay_start_tunnel(c);
}
