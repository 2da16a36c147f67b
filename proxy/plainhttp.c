/* plainhttp.c -- absolute-form requests (GET http://host/path): per-request
 * decision, head rewritten to origin-form, bodies and responses streamed raw
 * with their framing checked by llhttp, keep-alive across requests */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "alloc.h"
#include "audit.h"
#include "conn_int.h"
#include "httpmsg.h"
#include "server.h"

#define LOG_PATH_MAX 2048

/* Splits "http://AUTHORITY[/path][?query]" into authority and path. */
static bool split_url(const char *url, size_t ulen, const char **auth, size_t *alen,
		      const char **path, size_t *plen)
{
	const char *p = url + 7, *end = url + ulen, *a = p;

	while (p < end && *p != '/' && *p != '?' && *p != '#')
		p++;
	*auth = a;
	*alen = (size_t)(p - a);
	*path = p;
	*plen = (size_t)(end - p);
	if (memchr(a, '@', *alen) || memchr(url, '#', ulen))
		return false; /* userinfo, fragment: never valid in a request */
	return *alen > 0;
}

static bool hop_by_hop(const char *name, size_t n)
{
	static const char *const drop[] = { "host", "proxy-connection", "proxy-authorization",
					    "proxy-authenticate" };
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (strlen(drop[i]) == n && strncasecmp(name, drop[i], n) == 0)
			return true;
	return false;
}

/* Writes the origin-form head for the upstream into c->pending. */
static void build_head(struct conn *c, const char *path, size_t plen)
{
	struct evbuffer *b = c->pending;
	size_t n = httpmsg_header_count(c->req);

	evbuffer_drain(b, evbuffer_get_length(b));
	evbuffer_add_printf(b, "%s ", c->method);
	if (plen == 0 || path[0] == '?')
		evbuffer_add(b, "/", 1);
	evbuffer_add(b, path, plen);
	evbuffer_add_printf(b, " HTTP/1.%d\r\nHost: ", httpmsg_version_minor(c->req));
	evbuffer_add_printf(b, c->t.is_ip && c->t.ip.family == 6 ? "[%s]" : "%s", c->t.host);
	if (c->t.port != 80)
		evbuffer_add_printf(b, ":%u", c->t.port);
	evbuffer_add(b, "\r\n", 2);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_header(c->req, i, &name, &nl, &val, &vl);
		if (hop_by_hop(name, nl))
			continue;
		evbuffer_add(b, name, nl);
		evbuffer_add(b, ": ", 2);
		evbuffer_add(b, val, vl);
		evbuffer_add(b, "\r\n", 2);
	}
	evbuffer_add(b, "\r\n", 2);
}

static bool same_target(const struct target *a, const struct target *b)
{
	return a->port == b->port && a->is_ip == b->is_ip && strcmp(a->host, b->host) == 0;
}

void plainhttp_on_head(struct conn *c, const char *url, size_t ulen)
{
	const char *auth, *path;
	size_t alen, plen;
	char err[PATTERN_ERRLEN];
	struct target t;

	c->mode = MODE_HTTP;
	if (!split_url(url, ulen, &auth, &alen, &path, &plen)) {
		conn_error(c, 400, "bad-request", "egressd: malformed or userinfo-bearing URL");
		return;
	}
	if (!target_parse_authority(auth, alen, 80, &t, err)) {
		conn_error(c, 400, "bad-request", err);
		return;
	}
	snprintf(c->method, sizeof(c->method), "%s", httpmsg_method(c->req));
	free(c->path);
	c->path = xstrndup(plen ? path : "/", plen ? (plen > LOG_PATH_MAX ? LOG_PATH_MAX : plen) : 1);
	c->req_done = c->req_upgrade = c->resp_head_seen = false;
	c->req_up = c->req_down = 0;
	evutil_gettimeofday(&c->req_start, NULL);
	if (!c->resp)
		c->resp = httpmsg_new(HTTPMSG_RESPONSE, CONN_HEAD_CAP);
	if (strcmp(c->method, "HEAD") == 0)
		httpmsg_expect_no_body(c->resp);
	httpmsg_resume(c->req);
	if (c->up && c->up_connected && !c->up_eof && same_target(&t, &c->t)) {
		build_head(c, path, plen);
		plainhttp_on_connected(c);
		return;
	}
	if (c->up) {
		bufferevent_free(c->up);
		c->up = NULL;
		c->up_connected = c->up_eof = false;
	}
	c->t = t;
	policy_check_target(c->pol, &c->t, &c->d);
	if (!c->d.allow) {
		conn_refuse(c, c->d.reason, NULL);
		return;
	}
	build_head(c, path, plen);
	conn_start_upstream(c);
}

void plainhttp_on_connected(struct conn *c)
{
	c->st = ST_HTTP;
	c->req_up += evbuffer_get_length(c->pending);
	evbuffer_add_buffer(bufferevent_get_output(c->up), c->pending);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	bufferevent_enable(c->cl, EV_READ);
	plainhttp_client_input(c);
}

/* Feeds bytes of `from` through parser m, moving the consumed ones to `to`,
 * within the high-water mark. Returns the parser's last status. */
static enum httpmsg_status pump_msg(struct conn *c, struct httpmsg *m, struct bufferevent *from,
				    struct bufferevent *to, uint64_t *count)
{
	struct evbuffer *in = bufferevent_get_input(from), *out = bufferevent_get_output(to);
	enum httpmsg_status s = HTTPMSG_NEED_MORE;

	for (;;) {
		struct evbuffer_iovec v = { (void *)"", 0 };
		size_t have = evbuffer_get_length(in), queued = evbuffer_get_length(out);
		size_t used = 0, n;

		if (queued >= CONN_HIGH_WATER) {
			bufferevent_disable(from, EV_READ);
			bufferevent_setwatermark(to, EV_WRITE, CONN_HIGH_WATER / 2, 0);
			break;
		}
		/* with no input, a zero-byte feed still lets the parser finish a
		 * message that ends right after its head (GET, Content-Length: 0) */
		if (have > 0 && evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = v.iov_len < CONN_HIGH_WATER - queued ? v.iov_len : CONN_HIGH_WATER - queued;
		s = httpmsg_feed(m, v.iov_base, n, &used);
		evbuffer_remove_buffer(in, out, used);
		*count += used;
		if (s != HTTPMSG_NEED_MORE || have == 0)
			break;
	}
	return s;
}

void plainhttp_client_input(struct conn *c)
{
	enum httpmsg_status s;

	if (c->st != ST_HTTP || c->req_done)
		return; /* pipelined bytes wait until the response is complete */
	s = pump_msg(c, c->req, c->cl, c->up, &c->req_up);
	if (s == HTTPMSG_DONE || s == HTTPMSG_UPGRADE) {
		c->req_done = true;
		c->req_upgrade = s == HTTPMSG_UPGRADE;
	} else if (s == HTTPMSG_ERROR || s == HTTPMSG_HEAD) {
		conn_error(c, 400, "bad-request", httpmsg_error(c->req));
	}
}

static void log_request(struct conn *c)
{
	struct jsonw w;

	audit_begin(&w, "request", c->id);
	jsonw_str(&w, "method", c->method);
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "path", c->path);
	jsonw_int(&w, "status", httpmsg_status_code(c->resp));
	jsonw_int(&w, "bytes_up", (long long)c->req_up);
	jsonw_int(&w, "bytes_down", (long long)c->req_down);
	{
		struct timeval now;
		evutil_gettimeofday(&now, NULL);
		jsonw_int(&w, "ms", (now.tv_sec - c->req_start.tv_sec) * 1000L +
					    (now.tv_usec - c->req_start.tv_usec) / 1000L);
	}
	audit_emit(&w);
	c->bytes_up += c->req_up;
	c->bytes_down += c->req_down;
	c->req_up = c->req_down = 0;
}

/* The response is complete: next request on the same connections, or close. */
static void response_done(struct conn *c)
{
	log_request(c);
	if (!c->req_done || !httpmsg_keep_alive(c->req) || !httpmsg_keep_alive(c->resp) ||
	    evbuffer_get_length(bufferevent_get_input(c->up)) > 0) {
		conn_close_flushed(c);
		return;
	}
	httpmsg_next(c->req);
	httpmsg_next(c->resp);
	c->st = ST_HEAD;
	{
		/* the next request head gets the head timeout again */
		struct timeval tv = { (time_t)server_opts(c->w->srv)->header_timeout_s, 0 };
		bufferevent_set_timeouts(c->cl, &tv, &tv);
	}
	bufferevent_enable(c->cl, EV_READ);
	conn_client_input(c);
}

void plainhttp_upstream_input(struct conn *c)
{
	for (;;) {
		enum httpmsg_status s = pump_msg(c, c->resp, c->up, c->cl, &c->req_down);
		int code;

		switch (s) {
		case HTTPMSG_NEED_MORE:
			return;
		case HTTPMSG_HEAD:
			c->resp_head_seen = true;
			httpmsg_resume(c->resp);
			continue;
		case HTTPMSG_DONE:
			code = httpmsg_status_code(c->resp);
			if (code >= 100 && code < 200) {
				httpmsg_next(c->resp); /* interim response: the final one follows */
				if (strcmp(c->method, "HEAD") == 0)
					httpmsg_expect_no_body(c->resp);
				continue;
			}
			response_done(c);
			return;
		case HTTPMSG_UPGRADE:
			if (!c->req_upgrade || httpmsg_status_code(c->resp) != 101) {
				conn_close_flushed(c);
				return;
			}
			log_request(c);
			relay_start_tunnel(c);
			return;
		case HTTPMSG_ERROR:
			if (!c->resp_head_seen && c->req_down == 0)
				conn_error(c, 502, "bad-response", "egressd: malformed response from upstream");
			else
				conn_free(c);
			return;
		}
	}
}

void plainhttp_upstream_eof(struct conn *c)
{
	c->up_eof = true;
	plainhttp_upstream_input(c);
	if (c->st != ST_HTTP)
		return; /* the input completed the response (or failed) */
	if (!httpmsg_started(c->resp) && c->req_down == 0 && c->req_up == 0) {
		/* an idle kept-alive upstream went away: fine */
		bufferevent_free(c->up);
		c->up = NULL;
		c->up_connected = false;
		return;
	}
	if (httpmsg_finish(c->resp) == HTTPMSG_DONE) {
		log_request(c);
		conn_close_flushed(c);
		return;
	}
	if (c->req_down == 0)
		conn_error(c, 502, "connect-failed", "egressd: upstream closed the connection without a response");
	else
		conn_free(c);
}
