/* relay.c -- moving bytes between client and upstream with back-pressure
 * (raw, or through an HTTP parser for httpfwd/httpresp): the CONNECT
 * tunnel's phases (its ClientHello/SNI check, then bytes both ways),
 * half-close, and draining */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "clienthello.h"
#include "exchange.h"
#include "conn_int.h"
#include "audit.h"
#include "httpmsg.h"
#include "metrics.h"
#include "sock.h"
#include "worker.h"
#include "jsonw.h"
#include "wsredact.h"

static void ws_emit(void *ctx, const char *p, size_t n)
{
	sock_write(ctx, p, n);
}

/* n bytes of a secret's host's WebSocket frames at p, redacted, to out.
 * false (nothing more may be relayed) when they cannot be redacted. */
static bool pump_ws(struct conn *c, const char *p, struct sock *out, size_t n)
{
	struct refusal r = { .reason = "websocket-not-redactable" };

	if (wsredact_feed(c->ws, p, n, ws_emit, out))
		return true;
	r.detail = wsredact_error(c->ws);
	conn_log_refuse(c, &r);
	return false;
}

size_t relay_pump(struct conn *c, struct sock *from, struct sock *to)
{
	size_t have, queued = sock_out_len(to);
	const char *p = sock_data(from, &have);
	size_t room = queued < c->hiwat ? c->hiwat - queued : 0;
	size_t n = have < room ? have : room;

	if (c->st == ST_CLOSING || (c->ws_failed && from == c->up))
		return 0;
	if (n > 0 && c->ws && from == c->up && !pump_ws(c, p, to, n)) {
		/* nothing more from upstream; closed from the loop, not from
		 * under our callers (they still use c) */
		c->ws_failed = true;
		sock_consume(from, have);
		sock_read_stop(from);
		event_active(c->deadline, EV_TIMEOUT, 0);
		return 0;
	}
	if (n > 0) {
		if (!(c->ws && from == c->up))
			sock_write(to, p, n);
		sock_consume(from, n);
		if (from == c->cl)
			c->bytes_up += n;
		else
			c->bytes_down += n;
		metrics_bytes(c->w->mx, from == c->cl, n);
	}
	if (sock_out_len(to) >= c->hiwat)
		sock_read_stop(from); /* wait for `to` to drain; relay_on_drained resumes us */
	return n;
}

enum httpmsg_status relay_pump_msg(struct conn *c, struct httpmsg *m, struct sock *from,
				   struct sock *to, bool raw, uint64_t *count,
				   size_t (*held)(const struct conn *c))
{
	enum httpmsg_status s = HTTPMSG_NEED_MORE;

	for (;;) {
		size_t have, queued = to ? sock_out_len(to) : 0;
		const char *p = sock_data(from, &have);
		size_t used = 0, n;

		if (held && to)
			queued += held(c);
		if (queued >= c->hiwat) {
			sock_read_stop(from);
			break;
		}
		/* with no input, a zero-byte feed still lets the parser finish a
		 * message that ends right after its head (GET, Content-Length: 0) */
		if (!p)
			p = "";
		n = have < c->hiwat - queued ? have : c->hiwat - queued;
		s = httpmsg_feed(m, p, n, &used);
		if (raw && to && used)
			sock_write(to, p, used);
		sock_consume(from, used);
		*count += used;
		if (to && used)
			metrics_bytes(c->w->mx, from == c->cl, used);
		if (s != HTTPMSG_NEED_MORE || have == 0 || used == 0)
			break;
	}
	return s;
}

/* After EOF on one side, once everything it sent has gone out, pass the
 * half-close on; close the connection when both directions are finished. */
static void finish_half_close(struct conn *c)
{
	if (c->cl_eof && !c->up_shut && conn_in_len(c->cl) == 0 && sock_out_len(c->up) == 0) {
		sock_shutdown(c->up);
		c->up_shut = true;
	}
	if (c->up_eof && !c->cl_shut && conn_in_len(c->up) == 0 && sock_out_len(c->cl) == 0) {
		sock_shutdown(c->cl);
		c->cl_shut = true;
	}
	if (c->up_shut && c->cl_shut)
		conn_close(c);
}

static void relay_on_eof(struct conn *c, struct sock *s)
{
	if (c->mode == MODE_INTERCEPT) {
		/* TLS on both sides: no half-close; pass what is left, then close */
		if (s == c->cl) {
			conn_close(c);
			return;
		}
		c->up_eof = true;
		relay_pump(c, c->up, c->cl);
		conn_close_flushed(c);
		return;
	}
	if (s == c->cl) {
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

bool relay_drained_eof(struct conn *c, struct sock *from, struct sock *s)
{
	if ((from == c->cl && c->cl_eof) || (from == c->up && c->up_eof)) {
		relay_pump(c, from, s);
		finish_half_close(c);
		return true;
	}
	return false;
}

static void relay_on_drained(struct conn *c, struct sock *s)
{
	struct sock *from;

	if (!c->up || !c->cl)
		return;
	from = s == c->up ? c->cl : c->up;
	if (relay_drained_eof(c, from, s))
		return;
	if (c->st == ST_SNI && from == c->cl)
		return;
	sock_read_start(from);
	relay_pump(c, from, s);
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
static bool tunnel_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)reason;
	if (ev != CONN_EV_EOF)
		return false;
	relay_on_eof(c, s);
	return true;
}

static void check_sni(struct conn *c);

/* CONNECT: client bytes wait until the ClientHello is read and its SNI checked. */
static const struct conn_phase sni_phase = {
	.st = ST_SNI,
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
};

void relay_connect_established(struct conn *c)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	sock_write(c->cl, ok, sizeof(ok) - 1);
	conn_enter(c, &sni_phase);
	conn_head_phase(c); /* the ClientHello is due now */
	conn_read_client(c);
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
	sock_read_start(c->cl);
	sock_read_start(c->up);
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
	sock_write(c->cl, alert, sizeof(alert));
}

static void check_sni(struct conn *c)
{
	size_t n;
	const unsigned char *data = (const unsigned char *)sock_data(c->cl, &n);
	char sni[256];
	enum ch_result r;

	if (n == 0)
		return;
	if (n > CLIENTHELLO_MAX)
		n = CLIENTHELLO_MAX;
	r = clienthello_parse(data, n, sni, sizeof(sni), NULL);
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
