/* upstream.c -- reaching the upstream of a connection: resolution of the
 * target to addresses the policy allows (never this proxy itself), then a
 * connect to each in turn until one answers; a failed verified TLS handshake
 * refuses instead of trying on */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "audit.h"
#include "conn_int.h"
#include "metrics.h"
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
static bool connect_event(struct conn *c, struct bufferevent *bev, short what);

/* Waiting for DNS: client bytes wait in its input. */
static const struct conn_phase resolve_phase = {
	.st = ST_RESOLVE,
	.up_resumed = intercept_upstream_pending,
};

/* Waiting for the upstream's TCP connect (and, intercepting, its TLS). */
static const struct conn_phase connect_phase = {
	.st = ST_CONNECT,
	.event = connect_event,
	.up_resumed = intercept_upstream_pending,
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
	bufferevent_disable(c->cl, EV_READ);
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

static void connect_next(struct conn *c)
{
	struct sockaddr_storage ss;
	unsigned len;
	evutil_socket_t fd;
	struct timeval tv = { (time_t)c->w->opts->connect_timeout_s, 0 };

	if (c->up)
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
	c->up_tls = false;
	/* our socket, not libevent's (which lacks close-on-exec): helper commands
	 * and sandboxes egressd starts never inherit a connection */
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->up = fd < 0 ? NULL : bufferevent_socket_new(c->w->base, fd,
				       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!c->up) {
		if (fd >= 0)
			close(fd);
		metrics_upstream_error(c->w->mx, MX_UP_CONNECT);
		conn_refuse(c, REASON_CONNECT_FAILED, "out of sockets");
		return;
	}
	bufferevent_setcb(c->up, conn_on_upstream_read, conn_on_write, conn_on_event, c);
	bufferevent_set_timeouts(c->up, &tv, &tv);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->up, (struct sockaddr *)&ss, (int)len) < 0) {
		metrics_upstream_error(c->w->mx, MX_UP_CONNECT);
		connect_next(c);
	}
}

/* A connect attempt failed (or timed out): TCP (try the next address) or,
 * when intercepting, the verified TLS handshake (refuse: never send anything). */
static void upstream_failed(struct conn *c, bool timed_out, const char *why)
{
	char msg[256];
	SSL *ssl = c->up_tls ? bufferevent_openssl_get_ssl(c->up) : NULL;

	if (ssl) {
		bool verify = tls_upstream_verify_failed(ssl, msg, sizeof(msg));

		log_upstream(c, "upstream-tls-failed", &c->addr, msg);
		if (verify) {
			metrics_upstream_error(c->w->mx, MX_UP_CERT);
			conn_refuse(c, REASON_UPSTREAM_CERT, msg);
			return;
		}
		metrics_upstream_error(c->w->mx, timed_out ? MX_UP_TIMEOUT : MX_UP_TLS);
		conn_refuse(c, REASON_CONNECT_FAILED, msg);
		return;
	}
	metrics_upstream_error(c->w->mx, timed_out ? MX_UP_TIMEOUT : MX_UP_CONNECT);
	log_upstream(c, "upstream-failed", &c->addr, why);
	connect_next(c);
}

/* The upstream's connect (TCP, then the verified TLS handshake when
 * intercepting) ended: go on with c->up_ready, or try the next address. */
static bool connect_event(struct conn *c, struct bufferevent *bev, short what)
{
	if (bev != c->up)
		return false;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->mode == MODE_INTERCEPT && !c->up_tls) {
			intercept_start_upstream(c);
			return true;
		}
		conn_up_connected(c);
		c->up_ready(c);
		return true;
	}
	if (what & BEV_EVENT_TIMEOUT)
		upstream_failed(c, true, "timed out");
	else
		upstream_failed(c, false, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	return true;
}
