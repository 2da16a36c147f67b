/* upstream.c -- reaching the upstream of a connection: resolution of the
 * target to addresses the policy allows (never this proxy itself), then a
 * non-blocking connect to each in turn until one answers (its own socket and
 * event), then its stream (sock.h), TLS with a verified handshake when
 * intercepting; a failed handshake refuses instead of trying on */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "audit.h"
#include "conn_int.h"
#include "injparam.h"
#include "metrics.h"
#include "sock.h"
#include "worker.h"
#include "tls.h"

static void add_addr(struct conn *c, const struct ipaddr *a)
{
	enum reason r;

	for (int i = 0; i < c->naddr; i++)
		if (addr_equal(&c->addrs[i], a))
			return;
	if (c->w->host->is_self(c->w->srv, a, c->t.port))
		r = REASON_PROXY_LOOP;
	else
		r = policy_check_addr(c->pol, a, c->t.port);
	if (r == REASON_NONE) {
		if (c->naddr < CONN_MAX_ADDRS)
			c->addrs[c->naddr++] = *a;
		return;
	}
	/* remember the most telling reason: loop > denied > private */
	if (c->dropped == REASON_NONE || r == REASON_PROXY_LOOP ||
	    (r == REASON_DENIED && c->dropped == REASON_PRIVATE_ADDRESS))
		c->dropped = r;
}

static void connect_next(struct conn *c);
static void upstream_failed(struct conn *c, bool timed_out, const char *why);
static bool connect_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason);

/* Waiting for DNS: client bytes wait in its input. */
static const struct conn_phase resolve_phase = {
	.st = ST_RESOLVE,
};

/* Waiting for the upstream's TCP connect (and, intercepting, its TLS). */
static const struct conn_phase connect_phase = {
	.st = ST_CONNECT,
	.event = connect_event,
};

/* Debug lines about reaching the upstream: an event with the target, the
 * address (when one is chosen) and a detail. Never a secret: details are
 * resolver, socket and TLS library messages. */
static void log_upstream(struct conn *c, const char *event, const struct ipaddr *a,
			 const char *detail)
{
	struct jsonw w;
	char buf[ADDR_STRLEN];

	if (!audit_begin(&w, AUDIT_DEBUG, event, c->id))
		return;
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	if (a)
		jsonw_str(&w, "addr", addr_format(a, buf));
	jsonw_str(&w, "detail", detail);
	audit_emit(&w);
}

static void resolved(struct conn *c, bool dns_failed)
{
	if (audit_wants(AUDIT_DEBUG)) {
		char d[96];
		snprintf(d, sizeof(d), "%u usable address(es)%s%s", (unsigned)c->naddr,
			 c->dropped != REASON_NONE ? ", some dropped: " : "",
			 c->dropped != REASON_NONE ? reason_str(c->dropped) : "");
		log_upstream(c, "resolve", NULL, dns_failed ? "lookup failed" : d);
	}
	if (c->naddr > 0) {
		c->ai = 0;
		connect_next(c);
		return;
	}
	if (c->dropped != REASON_NONE) {
		conn_refuse(c, c->dropped, NULL);
		return;
	}
	metrics_upstream_error(c->w->mx, MX_UP_DNS);
	conn_refuse(c, REASON_DNS_FAILURE, dns_failed ? NULL : "no addresses");
}

static void on_dns(int err, struct evutil_addrinfo *res, void *arg)
{
	struct conn *c = arg;

	c->dnsreq = NULL;
	if (c->closed) {
		/* conn_free cancelled us: now c can go */
		if (res)
			evutil_freeaddrinfo(res);
		conn_close(c);
		return;
	}
	for (struct evutil_addrinfo *ai = res; err == 0 && ai; ai = ai->ai_next) {
		struct ipaddr a;
		if (addr_from_sockaddr(ai->ai_addr, &a, NULL))
			add_addr(c, &a);
	}
	if (res)
		evutil_freeaddrinfo(res);
	resolved(c, err != 0);
}

void upstream_start(struct conn *c, void (*ready)(struct conn *c))
{
	struct ipaddr pin;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	c->naddr = 0;
	c->dropped = REASON_NONE;
	c->up_ready = ready;
	conn_enter(c, &resolve_phase);
	sock_read_stop(c->cl);
	if (c->t.is_ip) {
		add_addr(c, &c->t.ip);
		resolved(c, false);
		return;
	}
	if (policy_pin_lookup(c->pol, c->t.host, c->t.port, &pin)) {
		add_addr(c, &pin);
		resolved(c, false);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	req = evdns_getaddrinfo(c->w->dns, c->t.host, NULL, &hints, on_dns, c);
	/* NULL: the callback already ran */
	if (req)
		c->dnsreq = req;
}

static void on_connect(evutil_socket_t fd, short what, void *arg);
static void on_tls_deadline(evutil_socket_t fd, short what, void *arg);

/* A wait of --connect-timeout: for fd writable (-1: a timer). */
static bool wait_up(struct conn *c, evutil_socket_t fd, event_callback_fn cb)
{
	struct timeval tv = { (time_t)c->w->opts->connect_timeout_s, 0 };

	c->up_wait = event_new(c->w->base, fd, fd < 0 ? 0 : EV_WRITE, cb, c);
	return c->up_wait && event_add(c->up_wait, &tv) == 0;
}

static void connect_next(struct conn *c)
{
	struct sockaddr_storage ss;
	unsigned len;
	evutil_socket_t fd;

	conn_drop_upstream(c);
	if (c->ai >= c->naddr) {
		conn_refuse(c, REASON_CONNECT_FAILED, NULL);
		return;
	}
	conn_enter(c, &connect_phase);
	c->addr = c->addrs[c->ai++];
	c->up_connected = false;
	log_upstream(c, "upstream-connect", &c->addr, c->ai > 1 ? "next address" : "first address");
	len = addr_to_sockaddr(&c->addr, c->t.port, (struct sockaddr *)&ss);
	/* close-on-exec: helper commands and sandboxes egressd starts never
	 * inherit a connection */
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		metrics_upstream_error(c->w->mx, MX_UP_CONNECT);
		conn_refuse(c, REASON_CONNECT_FAILED, "out of sockets");
		return;
	}
	c->up_fd = fd;
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 && errno != EINPROGRESS) {
		metrics_upstream_error(c->w->mx, MX_UP_CONNECT);
		connect_next(c);
		return;
	}
	/* connected or not, the answer comes from the loop */
	if (!wait_up(c, fd, on_connect)) {
		metrics_upstream_error(c->w->mx, MX_UP_CONNECT);
		conn_refuse(c, REASON_CONNECT_FAILED, "out of sockets");
	}
}

/* The ALPN offer to an intercepted upstream (wire form; NULL: http/1.1):
 * with --no-http2, or once a WebSocket asked for http/1.1 (c->up_h1_only),
 * none; transparent, what the sandbox's ClientHello offered of h2 and
 * http/1.1, in its order (so the upstream never picks a protocol the sandbox
 * did not offer); CONNECT: h2 and http/1.1, before the sandbox's offer is
 * known. */
/* Does a secret approved for the target opt in to query, form or JSON
 * injection? Those are done on HTTP/1.1 requests only (httpfwd.c), so such
 * a host is served HTTP/1.1: an h2 stream would carry its placeholder. */
static bool injects_beyond_headers(const struct conn *c)
{
	for (int w = INJ_QUERY; w < INJ_NWHERE; w++)
		if (injparam_mask(c->pol, c->approved, (enum injwhere)w))
			return true;
	return false;
}

static const unsigned char *upstream_alpn(const struct conn *c, size_t *len)
{
	*len = 0;
	if (!c->w->opts->http2 || c->up_h1_only) /* (a WebSocket: no h2 for it) */
		return NULL;
	if (c->approved && injects_beyond_headers(c))
		return NULL;
	if (c->transparent) {
		*len = c->alpn.offer_len;
		return c->alpn.offer_len ? c->alpn.offer : NULL;
	}
	*len = TLS_ALPN_H2_HTTP11_LEN;
	return (const unsigned char *)TLS_ALPN_H2_HTTP11;
}

/* TCP is up on fd: the stream, plain (go on) or TLS (its handshake first). */
static void tcp_connected(struct conn *c, int fd)
{
	char err[256];
	SSL *ssl = NULL;
	size_t alen;
	const unsigned char *alpn = upstream_alpn(c, &alen);

	if (c->mode == MODE_INTERCEPT) {
		ssl = tls_new_upstream(c->w->tls, c->t.host, c->t.port, c->t.is_ip, alpn, alen, err);
		if (!ssl) {
			close(fd);
			conn_refuse(c, REASON_CONNECT_FAILED, "cannot set up TLS to the upstream");
			return;
		}
	}
	if (!conn_attach_upstream(c, fd, ssl)) {
		conn_refuse(c, REASON_CONNECT_FAILED, ssl ? "cannot set up TLS to the upstream" :
			    "out of sockets");
		return;
	}
	if (!ssl) {
		conn_up_connected(c);
		c->up_ready(c);
		return;
	}
	evutil_gettimeofday(&c->up_hs_start, NULL);
	if (!wait_up(c, -1, on_tls_deadline))
		conn_refuse(c, REASON_CONNECT_FAILED, "cannot set up TLS to the upstream");
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->closed)
		return;
	event_free(c->up_wait);
	c->up_wait = NULL;
	c->up_fd = -1; /* ours now */
	if (what & EV_TIMEOUT) {
		close(fd);
		upstream_failed(c, true, "timed out");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		close(fd);
		upstream_failed(c, false, evutil_socket_error_to_string(err));
		return;
	}
	tcp_connected(c, fd);
}

/* The verified TLS handshake took longer than --connect-timeout. */
static void on_tls_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->closed)
		return;
	event_free(c->up_wait);
	c->up_wait = NULL;
	upstream_failed(c, true, "timed out");
}

/* The upstream was offered the sandbox's own ALPN list (upstream_alpn). */
static bool offered_sandbox_alpn(const struct conn *c)
{
	size_t n;

	return c->transparent && c->peeked == PEEK_TLS && upstream_alpn(c, &n) == c->alpn.offer;
}

/* Transparent: the upstream refused the sandbox's own ALPN offer
 * (upstream_alpn) with no_application_protocol. The sandbox gets that
 * alert too, and a `refuse` event (connect-failed) says why. */
static void refuse_alpn(struct conn *c)
{
	char offer[64] = "", detail[256];
	struct refusal rf = { .reason = reason_str(REASON_CONNECT_FAILED), .target = true,
			      .detail = detail };

	for (size_t i = 0, k = 0; i < c->alpn.offer_len && k < sizeof(offer); i += 1 + c->alpn.offer[i])
		k += (size_t)snprintf(offer + k, sizeof(offer) - k, "%s%.*s", i ? ", " : "",
				      (int)c->alpn.offer[i], (const char *)c->alpn.offer + i + 1);
	snprintf(detail, sizeof(detail), "the upstream serves none of the protocols the sandbox "
		 "offered (ALPN \"%s\", offered upstream as is): its no_application_protocol "
		 "alert is passed on", offer);
	c->d.allow = false;
	c->d.reason = REASON_CONNECT_FAILED;
	conn_log_connect(c);
	conn_log_refuse(c, &rf);
	relay_send_tls_alert(c, 120 /* no_application_protocol */);
	conn_close_flushed(c);
}

/* A connect attempt failed (or timed out): TCP (try the next address) or,
 * when intercepting, the verified TLS handshake (refuse: never send anything). */
static void upstream_failed(struct conn *c, bool timed_out, const char *why)
{
	char msg[256];
	SSL *ssl = c->up && c->up_tls ? sock_ssl(c->up) : NULL;

	if (ssl) {
		bool verify = tls_upstream_verify_failed(ssl, msg, sizeof(msg));

		log_upstream(c, "upstream-tls-failed", &c->addr, msg);
		if (verify) {
			metrics_upstream_error(c->w->mx, MX_UP_CERT);
			conn_refuse(c, REASON_UPSTREAM_CERT, msg);
			return;
		}
		metrics_upstream_error(c->w->mx, timed_out ? MX_UP_TIMEOUT : MX_UP_TLS);
		if (offered_sandbox_alpn(c) && tls_upstream_alpn_refused(ssl)) {
			refuse_alpn(c);
			return;
		}
		conn_refuse(c, REASON_CONNECT_FAILED, msg);
		return;
	}
	metrics_upstream_error(c->w->mx, timed_out ? MX_UP_TIMEOUT : MX_UP_CONNECT);
	log_upstream(c, "upstream-failed", &c->addr, why);
	connect_next(c);
}

/* The upstream's verified TLS handshake ended: go on with c->up_ready, or
 * refuse. */
static bool connect_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	if (!s || s != c->up)
		return false;
	if (ev == CONN_EV_CONNECTED) {
		conn_up_connected(c);
		c->up_ready(c);
		return true;
	}
	upstream_failed(c, false, reason);
	return true;
}
