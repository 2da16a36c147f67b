/* transparent.c -- connections redirected to the transparent listener: the
 * original destination (SO_ORIGINAL_DST), the name from the TLS SNI, the HTTP
 * Host or the jail's synthetic address, the decision, then the same
 * interception, tunnelling or per-request HTTP as the explicit proxy */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "audit.h"
#include "clienthello.h"
#include "conn.h"
#include "conn_int.h"
#include "fakeip.h"
#include "httpmsg.h"
#include "metrics.h"
#include "sock.h"
#include "worker.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 /* linux/netfilter_ipv4.h, which clashes with netinet/in.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

#define PEEK_WAIT_S 2 /* a client that says nothing first (ssh, smtp): decide by IP */

/* The destination the client dialled before the redirect; false if the
 * socket was not redirected (then it was dialled at us directly). */
static const struct conn_phase peek_phase;
static void transparent_connected(struct conn *c);

static bool original_dst(evutil_socket_t fd, struct ipaddr *a, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) != 0) {
		len = sizeof(ss);
		if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len) != 0)
			return false;
	}
	return addr_from_sockaddr((struct sockaddr *)&ss, a, port);
}

void transparent_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li)
{
	struct ipaddr a;
	uint16_t port;
	bool redirected = original_dst(fd, &a, &port);
	struct conn *c = conn_create(w, fd, peer, li);

	if (!c)
		return;
	c->transparent = true;
	c->mode = MODE_TRANSPARENT;
	if (conn_live_count() > w->opts->max_conns) {
		conn_error(c, 503, "too-many-connections", "egressd: too many open connections");
		return;
	}
	conn_enter(c, &peek_phase);
	conn_set_idle(c, PEEK_WAIT_S);
	if (!redirected || w->host->is_self(w->srv, &a, port)) {
		/* dialled at the listener itself: there is no destination to check */
		c->t.is_ip = true;
		c->t.ip = a;
		c->t.port = port;
		addr_format(&a, c->t.host);
		conn_refuse(c, REASON_PROXY_LOOP, "not a redirected connection");
		return;
	}
	c->orig = a;
	c->orig_port = port;
}

/* The name the jail's resolver gave out for the original address, if any. */
static bool bound_name(struct conn *c, char *name, size_t cap)
{
	struct fakeip *f = c->w->fakeip;
	return f && fakeip_in_range(&c->orig) && fakeip_name_for(f, &c->orig, name, cap);
}

static void log_deny(struct conn *c, enum reason r, const char *detail)
{
	struct jsonw w;
	char buf[ADDR_STRLEN];

	c->logged_connect = true;
	c->d.allow = false;
	conn_meter(c);
	metrics_refusal(c->w->mx, r);
	if (!audit_begin(&w, AUDIT_WARN, "connect", c->id))
		return;
	jsonw_str(&w, "client", c->client);
	jsonw_str(&w, "mode", "transparent");
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "orig", addr_format(&c->orig, buf));
	jsonw_str(&w, "decision", "deny");
	jsonw_str(&w, "reason", reason_str(r));
	jsonw_str(&w, "detail", detail);
	audit_emit(&w);
}

/* Refuses in the client's own protocol: an HTTP 403/502, a TLS alert, or a
 * close for anything else. */
static void refuse(struct conn *c, enum reason r, const char *detail)
{
	if (c->peeked == PEEK_HTTP) {
		conn_refuse(c, r, detail);
		return;
	}
	log_deny(c, r, detail);
	if (c->peeked == PEEK_TLS)
		relay_send_tls_alert(c, 49 /* access_denied */);
	conn_close_flushed(c);
}

/* c->t is the original destination address. */
static void set_target_ip(struct conn *c)
{
	memset(&c->t, 0, sizeof(c->t));
	c->t.is_ip = true;
	c->t.ip = c->orig;
	c->t.port = c->orig_port;
	addr_format(&c->orig, c->t.host);
}

/* Sets c->t from name (or the original address when name is NULL), and the
 * mode that follows unless interception is decided: plain HTTP to a name is
 * checked request by request, anything else tunnelled. */
static bool set_target(struct conn *c, const char *name)
{
	char err[PATTERN_ERRLEN];
	bool ok = true;

	if (name)
		ok = target_from_host(name, strlen(name), c->orig_port, &c->t, err);
	else
		set_target_ip(c);
	c->mode = ok && c->peeked == PEEK_HTTP && !c->t.is_ip ? MODE_ORIGIN : MODE_TRANSPARENT;
	return ok;
}

static bool same_name(const char *a, const char *b)
{
	size_t n = strlen(a);

	if (n > 0 && a[n - 1] == '.')
		n--;
	return n == strlen(b) && strncasecmp(a, b, n) == 0;
}

/* name: from SNI or Host (NULL: none). Decides, then connects upstream. */
static void decide(struct conn *c, const char *name)
{
	char bound[HOST_MAX + 1];
	bool have_bound = bound_name(c, bound, sizeof(bound));

	if (have_bound && name && !same_name(name, bound)) {
		set_target(c, bound);
		refuse(c, c->peeked == PEEK_HTTP ? REASON_HOST_MISMATCH : REASON_SNI_MISMATCH,
		       "the name differs from the one this address was resolved for");
		return;
	}
	if (!name && have_bound)
		name = bound;
	if (!set_target(c, name)) {
		set_target(c, NULL);
		refuse(c, REASON_BAD_REQUEST, "invalid server name");
		return;
	}
	policy_check_target(c->pol, &c->t, &c->d);
	if (!c->d.allow) {
		refuse(c, c->d.reason, NULL);
		return;
	}
	if (c->peeked == PEEK_TLS && !c->t.is_ip)
		conn_decide_intercept(c);
	conn_head_done(c);
	if (c->mode == MODE_INTERCEPT) {
		c->on_head = httpfwd_on_head; /* the requests inside the TLS */
		upstream_start(c, intercept_start_client);
	} else {
		upstream_start(c, transparent_connected);
	}
}

/* The Host of a complete request head at the start of data, or NULL. */
static enum httpmsg_status peek_http(const char *data, size_t n, char *host, size_t cap)
{
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, CONN_HEAD_CAP);
	size_t used, hl;
	const char *hv;
	enum httpmsg_status s = httpmsg_feed(m, data, n, &used);

	host[0] = '\0';
	if (s == HTTPMSG_HEAD && httpmsg_header_find(m, "host", &hv, &hl) == 1 && hl < cap) {
		/* the name without a port: the port is the original destination's */
		const char *colon = hl && hv[0] != '[' ? memchr(hv, ':', hl) : NULL;
		size_t nl = colon ? (size_t)(colon - hv) : hl;
		memcpy(host, hv, nl);
		host[nl] = '\0';
	}
	httpmsg_free(m);
	return s;
}

static void transparent_peek(struct conn *c)
{
	size_t n;
	const unsigned char *data = (const unsigned char *)sock_data(c->cl, &n);
	char name[HOST_MAX + 2];
	enum ch_result r;
	enum httpmsg_status hs;

	if (n == 0)
		return;
	if (n > CLIENTHELLO_MAX)
		n = CLIENTHELLO_MAX;
	r = clienthello_parse(data, n, name, sizeof(name), &c->alpn);
	if (r == CH_NEED_MORE && n < CLIENTHELLO_MAX)
		return;
	if (r != CH_NOT_TLS) {
		c->peeked = PEEK_TLS;
		if (r == CH_SNI)
			decide(c, name);
		else if (r == CH_NO_SNI)
			decide(c, NULL);
		else
			refuse(c, REASON_BAD_REQUEST, "malformed TLS ClientHello");
		return;
	}
	hs = peek_http((const char *)data, n, name, sizeof(name));
	if (hs == HTTPMSG_NEED_MORE && n < CONN_HEAD_CAP)
		return;
	if (hs == HTTPMSG_HEAD) {
		c->peeked = PEEK_HTTP;
		decide(c, name[0] ? name : NULL);
		return;
	}
	decide(c, NULL); /* neither TLS nor HTTP: only IP patterns can allow */
}

/* The wait for first bytes ended: nothing (conclusive) from the client, a
 * server-speaks-first protocol. */
static bool peek_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)s;
	(void)reason;
	if (ev != CONN_EV_TIMEOUT)
		return false;
	decide(c, NULL);
	return true;
}

static const struct conn_phase peek_phase = {
	.st = ST_PEEK,
	.client_input = transparent_peek,
	.event = peek_event,
};

/* The upstream is connected (not intercepted): tunnel or per-request HTTP. */
static void transparent_connected(struct conn *c)
{
	conn_log_connect(c);
	if (c->mode == MODE_ORIGIN) {
		/* requests are parsed one by one, each Host checked, leaks seen */
		c->on_head = httpfwd_on_head;
		h1head_enter(c);
		conn_head_phase(c);
		conn_read_client(c);
		conn_client_input(c);
		return;
	}
	relay_start_tunnel(c);
}
