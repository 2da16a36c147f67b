/* conn.c -- the connection core: creation, its streams' callbacks (which
 * reach the running phase through its table, conn_int.h's struct
 * conn_phase), the idle timer, refusals, and the single teardown path: conn_close
 * queues, the worker's loop frees (conn_free). The phases (h1head, upstream,
 * relay, tunnel, intercept, httpfwd/httpresp, transparent) enter themselves;
 * this file calls none of them. */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "audit.h"
#include "conn_int.h"
#include "elapsed.h"
#include "exchange.h"
#include "generation.h"
#include "httpmsg.h"
#include "metrics.h"
#include "redact.h"
#include "wsredact.h"
#include "secrets.h"
#include "sock.h"
#include "worker.h"

static atomic_long live_conns;

long conn_live_count(void)
{
	return atomic_load(&live_conns);
}

static void on_client_read(struct sock *s, void *arg);
static void on_upstream_read(struct sock *s, void *arg);
static void on_drained(struct sock *s, void *arg);
static void on_event(struct sock *s, enum sock_event ev, const char *reason, void *arg);

static const struct sock_cbs client_cbs = { on_client_read, on_drained, on_event };
static const struct sock_cbs upstream_cbs = { on_upstream_read, on_drained, on_event };

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

/* Arms the idle timer to fire in ms milliseconds. */
static void arm(struct conn *c, long ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (c->timer && c->idle_s)
		evtimer_add(c->timer, &tv);
}

/* The idle timer: fires at the limit after the last activity it knew of;
 * activity since then (c->last_activity) moves it on. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	long left;

	(void)fd;
	(void)what;
	if (c->closed || !c->idle_s)
		return;
	left = 1000L * c->idle_s - elapsed_ms(&c->last_activity);
	if (left > 0 || c->st == ST_RESOLVE || c->st == ST_CONNECT) {
		/* busy resolving and connecting (those have their own limits) */
		arm(c, left > 0 ? left : 1000L * c->idle_s);
		return;
	}
	if (c->ph->event && c->ph->event(c, NULL, CONN_EV_TIMEOUT, "")) {
		if (!c->closed)
			arm(c, 1000L * c->idle_s);
		return;
	}
	timed_out(c, MX_TO_IDLE);
}

void conn_set_idle(struct conn *c, unsigned secs)
{
	long left;

	c->idle_s = secs;
	if (!c->timer)
		return;
	if (!secs) {
		evtimer_del(c->timer);
		return;
	}
	left = 1000L * secs - elapsed_ms(&c->last_activity);
	arm(c, left > 0 ? left : 0);
}

static void idle_timeouts(struct conn *c)
{
	if (c->st != ST_PEEK)
		conn_set_idle(c, c->w->opts->idle_timeout_s);
}

void conn_head_phase(struct conn *c)
{
	struct timeval tv = { (time_t)c->w->opts->header_timeout_s, 0 };

	evtimer_add(c->deadline, &tv);
	idle_timeouts(c);
}

void conn_head_done(struct conn *c)
{
	evtimer_del(c->deadline);
	idle_timeouts(c);
}

static void closing_drained(struct conn *c, struct sock *s);

/* Flushing a final reply, then closed. */
static const struct conn_phase closing_phase = {
	.st = ST_CLOSING,
	.drained = closing_drained,
};

void conn_enter(struct conn *c, const struct conn_phase *ph)
{
	c->ph = ph;
	c->st = ph->st;
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
	c->gen = w->host->acquire(w->srv, li, &a);
	c->pol = gen_policy(c->gen);
	c->ss = gen_secrets(c->gen);
	c->id = w->host->next_id(w->srv);
	evutil_gettimeofday(&c->start, NULL);
	c->last_activity = c->start;
	set_nodelay(fd);
	c->up_fd = -1;
	c->cl = sock_new(w->base, fd, NULL, SOCK_PLAIN, &client_cbs, c); /* closes fd on failure */
	c->timer = c->cl ? evtimer_new(w->base, on_timer, c) : NULL;
	if (!c->timer) {
		sock_free(c->cl);
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
	c->hiwat = w->opts->max_buffer;
	sock_set_max_input(c->cl, c->hiwat);
	sock_set_max_output(c->cl, c->hiwat);
	conn_head_phase(c);
	return c;
}

bool conn_attach_upstream(struct conn *c, int fd, SSL *ssl)
{
	c->up = sock_new(c->w->base, fd, ssl, ssl ? SOCK_TLS_CLIENT : SOCK_PLAIN, &upstream_cbs, c);
	if (!c->up)
		return false;
	c->up_tls = ssl != NULL;
	/* requests carry injected secrets: no copy of them is left in freed memory */
	sock_set_wipe(c->up, c->approved != 0);
	sock_set_max_input(c->up, c->hiwat);
	sock_set_max_output(c->up, c->hiwat);
	return true;
}

int conn_write_buf(struct sock *s, struct evbuffer *b)
{
	struct evbuffer_iovec v[8];
	int rc = 0;

	while (evbuffer_get_length(b) > 0) {
		int n = evbuffer_peek(b, -1, NULL, v, 8);
		size_t got = 0;
		for (int i = 0; i < n && i < 8; i++) {
			rc = sock_write(s, v[i].iov_base, v[i].iov_len);
			got += v[i].iov_len;
		}
		evbuffer_drain(b, got);
	}
	return rc;
}

size_t conn_in_len(const struct sock *s)
{
	size_t n = 0;

	if (s)
		sock_data(s, &n);
	return n;
}


void conn_drop_upstream(struct conn *c)
{
	SSL *ssl = c->up ? sock_ssl(c->up) : NULL;

	/* without this, OpenSSL marks the session of a connection freed without
	 * close_notify as not resumable; ours are closed on purpose */
	if (ssl)
		SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	sock_free(c->up);
	c->up = NULL;
	c->up_tls = false;
	if (c->up_wait)
		event_free(c->up_wait);
	c->up_wait = NULL;
	if (c->up_fd >= 0)
		close(c->up_fd); /* a connect in progress */
	c->up_fd = -1;
}

void conn_close_idle(struct worker *w)
{
	struct conn *c = w->conns, *next;

	for (; c; c = next) {
		next = c->next;
		/* (a reply still being written is not idle: its last bytes
		 * go out before the close) */
		if (c->st == ST_HEAD && (!c->ex || !httpmsg_started(c->ex->req)) &&
		    conn_in_len(c->cl) == 0 && sock_out_len(c->cl) == 0)
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
	 * callback: run the loop a few times so nothing is left half-freed */
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
			metrics_conn_decided(c->w->mx, MODE_NONE, false);
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
		conn_enter(c, &closing_phase);
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
	if (c->timer)
		event_free(c->timer);
	if (c->dispose)
		c->dispose(c);
	sock_free(c->cl);
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

/* Closing: once the client's output is out (and, TLS, its close_notify). */
static void closing_check(struct conn *c)
{
	if (!c->cl || c->closed) {
		conn_close(c);
		return;
	}
	if (sock_out_len(c->cl) > 0)
		return; /* closing_drained comes back */
	if (sock_ssl(c->cl) && !sock_shut_done(c->cl)) {
		sock_shutdown(c->cl); /* close_notify, then closing_drained */
		return;
	}
	conn_close(c);
}

void conn_close_flushed(struct conn *c)
{
	log_cut(c);
	conn_enter(c, &closing_phase);
	if (c->up)
		conn_drop_upstream(c);
	if (c->cl)
		sock_read_stop(c->cl);
	conn_touch(c);
	conn_set_idle(c, 10);
	closing_check(c);
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
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		conn_close(c);
		return;
	}
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n", status, text);
	if (reason_hdr)
		evbuffer_add_printf(out, "X-Egressd-Reason: %s\r\n", reason_hdr);
	evbuffer_add_printf(out,
			    "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
			    "Connection: close\r\n\r\n%s\n",
			    strlen(msg) + 1, msg);
	if (out && c->cl)
		conn_write_buf(c->cl, out);
	if (out)
		evbuffer_free(out);
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

void conn_meter(struct conn *c)
{
	if (c->metered)
		return;
	c->metered = true;
	metrics_conn_decided(c->w->mx, c->mode, c->d.allow);
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
	/* the log names how the connection arrived (SPEC): transparent, or
	 * the explicit proxy's request kind; interception is a flag */
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
	jsonw_bool(&w, "intercept", c->mode == MODE_INTERCEPT);
	if (c->mode == MODE_INTERCEPT && c->up_connected && c->up && sock_ssl(c->up))
		jsonw_bool(&w, "upstream_resumed", SSL_session_reused(sock_ssl(c->up)));
	audit_emit(&w);
}

/* Interception for an allowed target: a secret's hosts or --intercept match
 * (and egressd has its CA), so secrets approved for it are injected and
 * replies redacted. */
void conn_decide_intercept(struct conn *c)
{
	if (!c->w->tls || !policy_intercepts(c->pol, &c->t))
		return;
	c->mode = MODE_INTERCEPT;
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

/* conn_refuse for a transparent TLS client: the decision logged and counted,
 * the alert desc written, closed after flush. */
static void refuse_tls(struct conn *c, enum reason r, unsigned char desc)
{
	c->d.allow = false;
	c->d.reason = r;
	metrics_refusal(c->w->mx, r);
	conn_log_connect(c);
	relay_send_tls_alert(c, desc);
	conn_close_flushed(c);
}

void conn_refuse(struct conn *c, enum reason r, const char *detail)
{
	char tt[HOST_MAX + 16], msg[HOST_MAX + 256];

	if (c->transparent && c->peeked == PEEK_TLS && c->cl && !sock_ssl(c->cl)) {
		/* its ClientHello waits in c->cl: an HTTP reply would be garbage to it */
		refuse_tls(c, r, reason_status(r) == 403 ? 49 /* access_denied */
							 : 40 /* handshake_failure */);
		return;
	}
	c->d.allow = false;
	c->d.reason = r;
	metrics_refusal(c->w->mx, r);
	conn_log_connect(c);
	target_text(&c->t, tt, sizeof(tt));
	snprintf(msg, sizeof(msg), "egressd refused %s: %s (%s)", tt, reason_str(r),
		 detail ? detail : reason_detail(r));
	conn_send_error(c, reason_status(r), reason_str(r), msg);
}

void conn_client_input(struct conn *c)
{
	if (c->ph->client_input)
		c->ph->client_input(c);
	/* else (resolving, connecting, handshaking): bytes wait in the input */
}

void conn_read_client(struct conn *c)
{
	sock_read_start(c->cl);
}

static void on_client_read(struct sock *s, void *arg)
{
	struct conn *c = arg;

	(void)s;
	if (c->closed)
		return;
	conn_touch(c);
	conn_client_input(c);
}

static void on_upstream_read(struct sock *s, void *arg)
{
	struct conn *c = arg;

	(void)s;
	if (c->closed)
		return;
	conn_touch(c);
	if (c->ph->upstream_input)
		c->ph->upstream_input(c);
}

static void closing_drained(struct conn *c, struct sock *s)
{
	if (s == c->cl)
		closing_check(c);
}

static void on_drained(struct sock *s, void *arg)
{
	struct conn *c = arg;

	if (c->closed)
		return;
	conn_touch(c); /* bytes moved */
	if (c->ph->drained)
		c->ph->drained(c, s);
}

/* ---- the upstream is up ---- */

void conn_up_connected(struct conn *c)
{
	c->up_connected = true;
	if (c->up_wait)
		event_free(c->up_wait); /* the TLS handshake's deadline */
	c->up_wait = NULL;
	if (c->up_tls)
		metrics_handshake(c->w->mx, MX_SIDE_UPSTREAM, elapsed_usec(&c->up_hs_start));
	set_nodelay(sock_fd(c->up));
	idle_timeouts(c);
	conn_log_connect(c);
}

/* ---- events ---- */

bool conn_idle_expired(const struct conn *c)
{
	return elapsed_ms(&c->last_activity) >= 1000L * c->w->opts->idle_timeout_s;
}

void conn_count_up_error(struct conn *c, struct sock *s, enum conn_ev ev)
{
	if (s && s == c->up && ev == CONN_EV_ERROR)
		metrics_upstream_error(c->w->mx, MX_UP_RESET);
}

/* The phase first (connected, its own failures and ends), then the default:
 * close. */
static void on_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	struct conn *c = arg;
	enum conn_ev e = ev == SOCK_EV_CONNECTED ? CONN_EV_CONNECTED :
			 ev == SOCK_EV_EOF ? CONN_EV_EOF : CONN_EV_ERROR;

	if (c->closed)
		return;
	if (c->ph->event && c->ph->event(c, s, e, reason))
		return;
	conn_count_up_error(c, s, e);
	conn_close(c);
}
