/* conn.c -- a client connection on the explicit listener: accept, request
 * head, policy decision, what follows once the upstream is up (upstream.c
 * reaches it), timeouts, refusals, and the single teardown path: conn_close
 * queues, the worker's loop frees (conn_free) */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "audit.h"
#include "conn_int.h"
#include "contentdec.h"
#include "elapsed.h"
#include "exchange.h"
#include "generation.h"
#include "httpmsg.h"
#include "metrics.h"
#include "redact.h"
#include "wsredact.h"
#include "secrets.h"
#include "server.h"
#include "tls.h"

static atomic_long live_conns;

long conn_live_count(void)
{
	return atomic_load(&live_conns);
}

void conn_on_client_read(struct bufferevent *bev, void *arg);
void conn_on_event(struct bufferevent *bev, short what, void *arg);
void conn_on_write(struct bufferevent *bev, void *arg);
void conn_on_upstream_read(struct bufferevent *bev, void *arg);

void conn_touch(struct conn *c)
{
	evutil_gettimeofday(&c->last_activity, NULL);
}

static void set_nodelay(evutil_socket_t fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A client connection closed for a timeout: counted and logged, then closed. */
static void timed_out(struct conn *c, enum metrics_timeout phase)
{
	struct jsonw w;

	metrics_timeout(c->w->mx, phase);
	if (audit_begin(&w, AUDIT_INFO, "timeout", c->id)) {
		jsonw_str(&w, "client", c->client);
		jsonw_str(&w, "phase", metrics_timeout_name(phase));
		audit_emit(&w);
	}
	conn_close(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->closed)
		return;
	if (c->ws_failed) { /* not a timeout: relay_pump asked for the close */
		conn_close_flushed(c);
		return;
	}
	timed_out(c, c->st == ST_TLS ? MX_TO_TLS : c->st == ST_SNI ? MX_TO_CLIENTHELLO :
		  c->st == ST_PEEK ? MX_TO_FIRST_BYTES : MX_TO_HEAD);
}

static void idle_timeouts(struct conn *c)
{
	unsigned idle = server_opts(c->w->srv)->idle_timeout_s;

	if (c->st != ST_PEEK)
		conn_set_timeouts(c->cl, idle);
	if (c->up && c->up_connected)
		conn_set_timeouts(c->up, idle);
}

void conn_head_phase(struct conn *c)
{
	struct timeval tv = { (time_t)server_opts(c->w->srv)->header_timeout_s, 0 };

	evtimer_add(c->deadline, &tv);
	idle_timeouts(c);
}

void conn_head_done(struct conn *c)
{
	evtimer_del(c->deadline);
	idle_timeouts(c);
}

void conn_set_timeouts(struct bufferevent *bev, unsigned secs)
{
	struct timeval tv = { (time_t)secs, 0 };
	bufferevent_set_timeouts(bev, secs ? &tv : NULL, secs ? &tv : NULL);
}

void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li)
{
	struct conn *c;

	c = conn_create(w, fd, peer, li);
	if (c && conn_live_count() > server_opts(w->srv)->max_conns)
		conn_error(c, 503, "too-many-connections",
			   "egressd: too many open connections, try again later");
}

struct conn *conn_create(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li)
{
	struct conn *c;
	struct ipaddr a = { .family = 0 };
	uint16_t port = 0;
	char buf[ADDR_STRLEN];

	c = xcalloc(1, sizeof(*c));
	c->w = w;
	if (addr_from_sockaddr(peer, &a, &port))
		snprintf(c->client, sizeof(c->client), a.family == 6 ? "[%s]:%u" : "%s:%u",
			 addr_format(&a, buf), port);
	c->gen = server_acquire(w->srv, li, &a);
	c->pol = gen_policy(c->gen);
	c->ss = gen_secrets(c->gen);
	c->id = server_next_id(w->srv);
	evutil_gettimeofday(&c->start, NULL);
	c->last_activity = c->start;
	set_nodelay(fd);
	evutil_make_socket_nonblocking(fd);
	c->cl = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!c->cl) {
		evutil_closesocket(fd);
		gen_release(c->gen);
		free(c);
		return NULL;
	}
	atomic_fetch_add(&live_conns, 1);
	metrics_conn_open(w->mx);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	c->pending = evbuffer_new();
	c->deadline = evtimer_new(w->base, on_deadline, c);
	c->hiwat = server_opts(w->srv)->max_buffer;
	bufferevent_setcb(c->cl, conn_on_client_read, conn_on_write, conn_on_event, c);
	bufferevent_setwatermark(c->cl, EV_READ, 0, c->hiwat);
	conn_head_phase(c);
	bufferevent_enable(c->cl, EV_READ | EV_WRITE);
	return c;
}


void conn_drop_upstream(struct conn *c)
{
	SSL *ssl = c->up_tls ? bufferevent_openssl_get_ssl(c->up) : NULL;

	/* without this, OpenSSL marks the session of a connection freed without
	 * close_notify as not resumable; ours are closed on purpose */
	if (ssl)
		SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	bufferevent_free(c->up);
	c->up = NULL;
	c->up_tls = false;
}

void conn_close_idle(struct worker *w)
{
	struct conn *c = w->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->st == ST_HEAD && (!c->ex || !httpmsg_started(c->ex->req)) &&
		    evbuffer_get_length(bufferevent_get_input(c->cl)) == 0)
			conn_close(c);
	}
}

long conn_close_revoked(struct worker *w)
{
	struct conn *c = w->conns, *next;
	long n = 0;

	for (; c; c = next) {
		next = c->next;
		if (c->gen && gen_revoked(c->gen)) {
			conn_close(c);
			n++;
		}
	}
	return n;
}

void conn_close_all(struct worker *w)
{
	while (w->conns)
		conn_close(w->conns);
	/* a connection closed while DNS ran waits for the cancelled lookup's
	 * callback, and libevent finalizes freed bufferevents (a TLS filter,
	 * then its socket) from the loop: run it a few times so nothing is left
	 * half-freed */
	for (int round = 0; round < 4; round++) {
		closeq_run(w->closing);
		event_base_loop(w->base, EVLOOP_NONBLOCK);
	}
}

static void log_close(struct conn *c)
{
	struct jsonw w;

	if (!audit_begin(&w, AUDIT_INFO, "close", c->id))
		return;
	jsonw_int(&w, "bytes_up", (long long)c->bytes_up);
	jsonw_int(&w, "bytes_down", (long long)c->bytes_down);
	jsonw_int(&w, "ms", elapsed_ms(&c->start));
	audit_emit(&w);
}

/* The connection ends (or starts closing) while a request is in flight (an
 * idle timeout, either side gone, a broken body): its request event, with
 * "incomplete":true, so every request that went upstream is logged. */
static void log_cut(struct conn *c)
{
	if (c->st == ST_HTTP && c->ex)
		exchange_log_cut(c->ex, c);
}

void conn_close(struct conn *c)
{
	if (!c->closed) {
		c->closed = true;
		log_cut(c);
		log_close(c);
		if (!c->metered)
			metrics_conn_decided(c->w->mx, MX_MODE_NONE, false);
		metrics_conn_close(c->w->mx);
		/* the slot is free before the client can see the close
		 * (--max-connections), and the worker's list holds live
		 * connections only (a drain ends when it is empty) */
		atomic_fetch_sub(&live_conns, 1);
		if (c->prev)
			c->prev->next = c->next;
		else
			c->w->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->prev = c->next = NULL;
		c->st = ST_CLOSING;
	}
	/* again (a no-op while queued) when the DNS callback saw c closed */
	closeq_add(c->w->closing, &c->cq, c);
}

/* The one place a connection is freed: from its worker's close queue, after
 * the callback that closed it has returned. */
static void conn_free(void *arg)
{
	struct conn *c = arg;

	if (c->dnsreq) {
		/* its callback runs (with CANCEL) from the loop and queues c again */
		evdns_getaddrinfo_cancel(c->dnsreq);
		return;
	}
	if (c->deadline)
		event_free(c->deadline);
	if (c->cl_raw)
		intercept_drop_client(c);
	tunnel_free(c->tun);
	if (c->cl)
		bufferevent_free(c->cl);
	if (c->up)
		conn_drop_upstream(c);
	if (c->pending)
		evbuffer_free(c->pending);
	exchange_free(c->ex);
	redactor_free(c->redactor);
	wsredact_free(c->ws);
	gen_release(c->gen);
	free(c);
}

struct closeq *conn_closeq_new(struct event_base *base)
{
	return closeq_new(base, conn_free);
}

void conn_close_flushed(struct conn *c)
{
	log_cut(c);
	c->st = ST_CLOSING;
	if (c->up)
		conn_drop_upstream(c);
	bufferevent_disable(c->cl, EV_READ);
	conn_set_timeouts(c->cl, 10);
	if (evbuffer_get_length(bufferevent_get_output(c->cl)) > 0)
		return; /* conn_on_write finishes */
	if (c->cl_raw)
		intercept_close_client(c);
	else
		conn_close(c);
}

static void target_text(const struct target *t, char *buf, size_t n)
{
	snprintf(buf, n, t->is_ip && t->ip.family == 6 ? "[%s]:%u" : "%s:%u", t->host,
		 t->port);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 421: return "Misdirected Request";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

void conn_send_error(struct conn *c, int status, const char *reason_hdr, const char *msg)
{
	const char *text = status_text(status);
	struct evbuffer *out = bufferevent_get_output(c->cl);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, text);
	if (reason_hdr)
		evbuffer_add_printf(out, "X-Egressd-Reason: %s\r\n", reason_hdr);
	evbuffer_add_printf(out,
			    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
			    "Connection: close\r\n\r\n%s\n",
			    strlen(msg) + 1, msg);
	conn_close_flushed(c);
}

void conn_error(struct conn *c, int status, const char *reason_hdr, const char *msg)
{
	struct jsonw w;

	metrics_refusal_named(c->w->mx, reason_hdr);
	/* a request refused for what the client sent: a warning, not an
	 * internal error */
	if (audit_begin(&w, AUDIT_WARN, "error", c->id)) {
		jsonw_str(&w, "client", c->client);
		jsonw_int(&w, "status", status);
		jsonw_str(&w, "reason", reason_hdr);
		jsonw_str(&w, "detail", msg);
		audit_emit(&w);
	}
	conn_send_error(c, status, reason_hdr, msg);
}

static const char *reason_detail(enum reason r)
{
	switch (r) {
	case REASON_NOT_ALLOWED: return "no allowNet pattern matches";
	case REASON_DENIED: return "a denyNet pattern matches";
	case REASON_PRIVATE_ADDRESS: return "resolves only to special-purpose addresses";
	case REASON_PROXY_LOOP: return "the target is egressd itself";
	case REASON_DNS_FAILURE: return "the name did not resolve";
	case REASON_CONNECT_FAILED: return "no address accepted the connection";
	default: return reason_str(r);
	}
}

/* The mode label of c's decision (see metrics.h). */
static enum metrics_mode metrics_mode(const struct conn *c)
{
	if (c->intercept)
		return MX_MODE_INTERCEPT;
	if (c->transparent)
		return c->peeked == PEEK_HTTP && !c->t.is_ip ? MX_MODE_ORIGIN : MX_MODE_TRANSPARENT;
	return c->mode == MODE_HTTP ? MX_MODE_HTTP : MX_MODE_CONNECT;
}

void conn_meter(struct conn *c)
{
	if (c->metered)
		return;
	c->metered = true;
	metrics_conn_decided(c->w->mx, metrics_mode(c), c->d.allow);
	if (gen_sandbox_slot(c->gen) != GEN_NO_SANDBOX)
		metrics_sandbox_conn(c->w->mx, gen_sandbox_slot(c->gen), c->d.allow);
}

void conn_log_connect(struct conn *c)
{
	struct jsonw w;
	char buf[ADDR_STRLEN];

	conn_meter(c);
	if (c->logged_connect && c->mode != MODE_HTTP)
		return;
	c->logged_connect = true;
	if (!audit_begin(&w, c->d.allow ? AUDIT_INFO : AUDIT_WARN, "connect", c->id))
		return;
	jsonw_str(&w, "client", c->client);
	if (*policy_scope(c->pol))
		jsonw_str(&w, "sandbox", policy_scope(c->pol));
	jsonw_str(&w, "mode", c->transparent ? "transparent" : c->mode == MODE_HTTP ? "http" : "connect");
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	if (c->up_connected)
		jsonw_str(&w, "addr", addr_format(&c->addr, buf));
	jsonw_str(&w, "decision", c->d.allow ? "allow" : "deny");
	if (c->d.allow)
		jsonw_str(&w, "rule", c->d.rule ? c->d.rule : "*");
	else
		jsonw_str(&w, "reason", reason_str(c->d.reason));
	jsonw_bool(&w, "intercept", c->intercept);
	if (c->intercept && c->up_connected && bufferevent_openssl_get_ssl(c->up))
		jsonw_bool(&w, "upstream_resumed", SSL_session_reused(bufferevent_openssl_get_ssl(c->up)));
	audit_emit(&w);
}

/* Interception for an allowed target: a secret's hosts or --intercept match
 * (and egressd has its CA), so secrets approved for it are injected and
 * replies redacted. */
void conn_decide_intercept(struct conn *c)
{
	if (!server_tls(c->w->srv) || !policy_intercepts(c->pol, &c->t))
		return;
	c->intercept = true;
	c->approved = secretset_approved(c->ss, c->pol, &c->t);
	if (c->approved)
		c->redactor = redactor_new(c->ss, c->approved);
}

void conn_log_refuse(struct conn *c, const struct refusal *r)
{
	struct jsonw w;

	metrics_refusal_named(c->w->mx, r->reason);
	if (!audit_begin(&w, AUDIT_WARN, "refuse", c->id))
		return;
	if (r->target) {
		jsonw_str(&w, "host", c->t.host);
		jsonw_int(&w, "port", c->t.port);
	}
	if (r->method) {
		jsonw_str(&w, "method", r->method);
		jsonw_str(&w, "path", r->path);
		jsonw_int(&w, "status", r->status);
	}
	jsonw_str(&w, "reason", r->reason);
	jsonw_str(&w, "sni", r->sni);
	jsonw_str(&w, "detail", r->detail);
	audit_emit(&w);
}

void conn_refuse(struct conn *c, enum reason r, const char *detail)
{
	char tt[HOST_MAX + 16], msg[HOST_MAX + 256];

	c->d.allow = false;
	c->d.reason = r;
	metrics_refusal(c->w->mx, r);
	conn_log_connect(c);
	target_text(&c->t, tt, sizeof(tt));
	snprintf(msg, sizeof(msg), "egressd refused %s: %s (%s)", tt, reason_str(r),
		 detail ? detail : reason_detail(r));
	conn_send_error(c, reason_status(r), reason_str(r), msg);
}

/* ---- CONNECT and request heads ---- */

static void on_connect_head(struct conn *c, const char *url, size_t ulen)
{
	char err[PATTERN_ERRLEN];

	c->mode = MODE_CONNECT;
	if (!target_parse_authority(url, ulen, 0, &c->t, err)) {
		conn_error(c, 400, "bad-request", err);
		return;
	}
	policy_check_target(c->pol, &c->t, &c->d);
	if (!c->d.allow) {
		conn_refuse(c, c->d.reason, NULL);
		return;
	}
	conn_decide_intercept(c);
	upstream_start(c);
}

static void on_head(struct conn *c)
{
	size_t ulen;
	const char *url = httpmsg_target(c->ex->req, &ulen);

	if (c->mode == MODE_INTERCEPT || c->mode == MODE_ORIGIN) {
		httpfwd_on_head(c, url, ulen);
		return;
	}
	if (strcmp(httpmsg_method(c->ex->req), "CONNECT") == 0) {
		on_connect_head(c, url, ulen);
		return;
	}
	if (ulen >= 7 && strncasecmp(url, "http://", 7) == 0) {
		httpfwd_on_head(c, url, ulen);
		return;
	}
	if (ulen >= 8 && strncasecmp(url, "https://", 8) == 0) {
		conn_error(c, 400, "bad-request",
			   "egressd: https:// URLs must be sent with CONNECT (use the proxy for "
			   "HTTPS, e.g. curl -x http://PROXY https://host/)");
		return;
	}
	conn_error(c, 400, "bad-request",
		   "egressd is an HTTP proxy: send CONNECT host:port or an absolute-form "
		   "request (GET http://host/path), e.g. curl -x http://PROXY URL");
}

/* Feeds buffered client bytes to the request parser until a head completes. */
static void read_head(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cl);

	while (evbuffer_get_length(in) > 0 && c->st == ST_HEAD) {
		struct evbuffer_iovec v;
		size_t used = 0;
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
			on_head(c);
			return;
		}
		conn_error(c, httpmsg_error_status(c->ex->req), "bad-request", httpmsg_error(c->ex->req));
		return;
	}
}

void conn_client_input(struct conn *c)
{
	switch (c->st) {
	case ST_HEAD:
		read_head(c);
		break;
	case ST_SNI:
		relay_check_sni(c);
		break;
	case ST_TUNNEL:
		relay_pump(c, c->cl, c->up);
		break;
	case ST_HTTP:
		httpfwd_client_input(c);
		break;
	case ST_PEEK:
		transparent_peek(c);
		break;
	default:
		break; /* resolving/connecting: bytes wait in the input buffer */
	}
}

void conn_read_client(struct conn *c)
{
	/* a socket's re-enable also restarts its read timeout, as it always did */
	if (!c->cl_raw || !(bufferevent_get_enabled(c->cl) & EV_READ))
		bufferevent_enable(c->cl, EV_READ);
}

void conn_on_client_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (c->closed)
		return;
	conn_touch(c);
	conn_client_input(c);
}

void conn_on_upstream_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (c->closed)
		return;
	conn_touch(c);
	if (c->st == ST_HTTP)
		httpresp_upstream_input(c);
	else if (c->st == ST_TUNNEL || c->st == ST_SNI)
		relay_pump(c, c->up, c->cl);
}


void conn_on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->closed)
		return;
	if (c->st == ST_CLOSING) {
		if (bev != c->cl || evbuffer_get_length(bufferevent_get_output(c->cl)) > 0)
			return;
		if (c->cl_raw)
			intercept_close_client(c);
		else
			conn_close(c);
		return;
	}
	relay_on_drained(c, bev);
}

/* ---- the upstream is up ---- */

static void on_connected(struct conn *c)
{
	c->up_connected = true;
	if (c->up_tls)
		metrics_handshake(c->w->mx, MX_SIDE_UPSTREAM, elapsed_usec(&c->up_hs_start));
	set_nodelay(bufferevent_getfd(c->up));
	idle_timeouts(c);
	bufferevent_setwatermark(c->up, EV_READ, 0, c->hiwat);
	conn_log_connect(c);
	if (c->mode == MODE_INTERCEPT || c->mode == MODE_ORIGIN) {
		/* a new upstream for the next request of an intercepted tunnel */
		httpfwd_on_connected(c);
		return;
	}
	if (c->intercept) {
		intercept_start_client(c);
		return;
	}
	if (c->transparent) {
		transparent_connected(c);
		return;
	}
	if (c->mode == MODE_CONNECT) {
		evbuffer_add_printf(bufferevent_get_output(c->cl),
				    "HTTP/1.1 200 Connection established\r\n\r\n");
		c->st = ST_SNI;
		conn_head_phase(c); /* the ClientHello is due now */
		bufferevent_enable(c->cl, EV_READ);
		bufferevent_enable(c->up, EV_READ | EV_WRITE);
		relay_check_sni(c);
		return;
	}
	httpfwd_on_connected(c);
}

/* ---- events ---- */

bool conn_idle_expired(const struct conn *c)
{
	return elapsed_ms(&c->last_activity) >= 1000L * server_opts(c->w->srv)->idle_timeout_s;
}

static void on_timeout(struct conn *c, struct bufferevent *bev, short what)
{
	if (c->st == ST_CONNECT && bev == c->up) {
		upstream_failed(c, true, "timed out");
		return;
	}
	if (c->st == ST_PEEK) {
		transparent_peek_timeout(c);
		return;
	}
	if (c->st == ST_HEAD || c->st == ST_SNI || c->st == ST_TLS || c->st == ST_CLOSING) {
		timed_out(c, MX_TO_IDLE);
		return;
	}
	/* data phases: a quiet direction is fine while the other one moves */
	if (!conn_idle_expired(c)) {
		/* libevent disabled the direction that timed out: re-arm only that one
		 * (a read paused for back-pressure stays paused) */
		bufferevent_enable(bev, (what & BEV_EVENT_READING) ? EV_READ : EV_WRITE);
		if (bev == c->up)
			intercept_upstream_pending(c);
		return;
	}
	timed_out(c, MX_TO_IDLE);
}

void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (c->closed)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		if (bev == c->cl)
			intercept_client_ready(c);
		else if (c->intercept && !c->up_tls)
			intercept_start_upstream(c);
		else
			on_connected(c);
		return;
	}
	if (c->st == ST_TLS && bev == c->cl) {
		intercept_client_failed(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		on_timeout(c, bev, what);
		return;
	}
	if (c->st == ST_CONNECT && bev == c->up) {
		upstream_failed(c, false, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	if (bev == c->up && (what & BEV_EVENT_ERROR))
		metrics_upstream_error(c->w->mx, MX_UP_RESET);
	if (bev == c->up && c->st == ST_HEAD) {
		/* a kept-alive upstream went away between requests */
		conn_drop_upstream(c);
		c->up_connected = false;
		return;
	}
	if ((what & BEV_EVENT_EOF) && (c->st == ST_TUNNEL || c->st == ST_SNI)) {
		relay_on_eof(c, bev);
		return;
	}
	if ((what & BEV_EVENT_EOF) && c->st == ST_HTTP && bev == c->up) {
		httpresp_upstream_eof(c);
		return;
	}
	if (bev == c->up && c->st == ST_HTTP && (what & BEV_EVENT_ERROR)) {
		httpresp_upstream_eof(c);
		return;
	}
	conn_close(c);
}
