/* explicit.c -- the explicit proxy listener's connections: the first request
 * head is a CONNECT (checked, then a tunnel or interception once the upstream
 * is up) or an absolute-form request (forwarded by httpfwd.c) */
#include "explicit.h"

#include <string.h>
#include <strings.h>

#include "conn.h"
#include "conn_int.h"
#include "httpmsg.h"
#include "worker.h"

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
	if (c->mode == MODE_INTERCEPT) {
		c->on_head = httpfwd_on_head; /* the requests inside the tunnel */
		upstream_start(c, intercept_start_client);
	} else {
		upstream_start(c, relay_connect_established);
	}
}

static void on_head(struct conn *c, const char *url, size_t ulen)
{
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

void explicit_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li)
{
	struct conn *c = conn_create(w, fd, peer, li);

	if (!c)
		return;
	h1head_enter(c);
	c->on_head = on_head;
	if (conn_live_count() > w->opts->max_conns)
		conn_error(c, 503, "too-many-connections",
			   "egressd: too many open connections, try again later");
}
