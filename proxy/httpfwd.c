/* httpfwd.c -- the request side of HTTP forwarding, for absolute-form plain
 * HTTP on the proxy and for every request inside an intercepted tunnel:
 * per-request checks (policy, Host, request rules, placeholder leaks), head rewriting
 * (origin-form, secret injection), request bodies streamed raw or, when a
 * secret is injected into them, held and rewritten */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "alloc.h"
#include "audit.h"
#include "conn_int.h"
#include "contentdec.h"
#include "exchange.h"
#include "httpmsg.h"
#include "inject.h"
#include "injbody.h"
#include "injparam.h"
#include "metrics.h"
#include "secrets.h"
#include "sock.h"
#include "tls.h"
#include "worker.h"

#define LOG_PATH_MAX EXCHANGE_PATH_MAX

static const struct conn_phase http_phase;
static void httpfwd_client_input(struct conn *c);

/* Splits "SCHEME://AUTHORITY[/path][?query]" (skip = length of "SCHEME://")
 * into authority and path. Userinfo and fragments are refused. */
static bool split_url(const char *url, size_t ulen, size_t skip, const char **auth,
		      size_t *alen, const char **path, size_t *plen)
{
	const char *p = url + skip, *end = url + ulen, *a = p;

	while (p < end && *p != '/' && *p != '?' && *p != '#')
		p++;
	*auth = a;
	*alen = (size_t)(p - a);
	*path = p;
	*plen = (size_t)(end - p);
	if (memchr(a, '@', *alen) || memchr(url, '#', ulen))
		return false;
	return *alen > 0;
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Headers never forwarded: the client's view of the proxy. */
static bool proxy_header(const char *name, size_t n)
{
	return name_is(name, n, "proxy-connection") || name_is(name, n, "proxy-authorization") ||
	       name_is(name, n, "proxy-authenticate");
}

static void wipe_ref(const void *data, size_t len, void *extra)
{
	(void)data;
	(void)len;
	obuf_dispose(extra);
	free(extra);
}

/* The connection's checked authority ("host", "[v6]", then ":port" unless
 * it is the scheme's default: 443 for TLS, 80 for plain HTTP) into buf. */
static const char *conn_authority(const struct conn *c, char *buf, size_t n)
{
	unsigned dflt = c->mode == MODE_INTERCEPT ? 443 : 80;
	int o = snprintf(buf, n, c->t.is_ip && c->t.ip.family == 6 ? "[%s]" : "%s", c->t.host);

	if (c->t.port != dflt && o >= 0 && (size_t)o < n)
		snprintf(buf + o, n - (size_t)o, ":%u", c->t.port);
	return buf;
}

/* "Host: " and the connection's checked authority. */
static bool add_conn_host(struct obuf *b, const struct conn *c)
{
	char auth[HOST_MAX + 16];

	conn_authority(c, auth, sizeof(auth));
	return obuf_add(b, "Host: ", 6) && obuf_add(b, auth, strlen(auth)) &&
	       obuf_add(b, "\r\n", 2);
}

/* A secret's host is offered only the content codings egressd decodes that
 * the client accepts (contentdec_accept), and only identity for a request
 * with Range (a part of an encoded representation cannot be decoded). */
static bool add_accept_encoding(struct conn *c, struct obuf *b)
{
	size_t k;
	const char *rv;
	size_t rl;
	char offer[64];
	struct obuf all;
	bool okay;

	obuf_init(&all, 2 * CONN_HEAD_CAP);
	okay = httpmsg_header_join(c->ex->req, "accept-encoding", &all, &k);
	if (httpmsg_header_find(c->ex->req, "range", &rv, &rl) > 0)
		k = 0;
	contentdec_accept(all.p, all.len, k > 0, offer, sizeof(offer));
	obuf_dispose(&all);
	return okay && obuf_add(b, "Accept-Encoding: ", 17) && obuf_add(b, offer, strlen(offer)) &&
	       obuf_add(b, "\r\n", 2);
}

/* The request target: the path, then the query with placeholders replaced
 * in the parameters approved secrets name (injparam.h). */
static bool add_target(struct conn *c, struct obuf *b, const char *path, size_t plen)
{
	const char *q = memchr(path, '?', plen);
	size_t at = q ? (size_t)(q - path) + 1 : plen;
	uint64_t used = 0;
	bool okay;

	if (!q || c->mode != MODE_INTERCEPT || !c->ss ||
	    !injparam_mask(c->pol, c->approved, INJ_QUERY))
		return obuf_add(b, path, plen);
	okay = obuf_add(b, path, at) && injparam_rewrite(c->pol, c->ss, c->approved, INJ_QUERY,
							 path + at, plen - at, b, &used);
	c->ex->injected |= used;
	exchange_inject(c->ex)->in |= used ? 1u << INJ_QUERY : 0;
	return okay;
}

/* Headers of the request that a rewritten body replaces: its framing, and
 * Expect (egressd answered 100 Continue itself). */
static bool body_header(const char *name, size_t n)
{
	return name_is(name, n, "content-length") || name_is(name, n, "transfer-encoding") ||
	       name_is(name, n, "expect");
}

/* Writes the head for the upstream into c->pending: request line with an
 * origin-form target (placeholders replaced in named query parameters),
 * Host (plain: the checked authority; intercepted or
 * transparent: the client's, already checked, or the connection's when an
 * HTTP/1.0 client sent none, so nothing injected can reach the upstream's
 * default virtual host), other headers with approved placeholders
 * replaced; with body (a rewritten request body), Content-Length and the
 * body after the head. The bytes are referenced, not copied, and wiped
 * once sent. */
static bool build_head(struct conn *c, const char *path, size_t plen, const struct obuf *body)
{
	const struct secretset *ss = c->ss;
	struct obuf *b = xcalloc(1, sizeof(*b));
	char line[64];
	const char *hv;
	size_t hl, n = httpmsg_header_count(c->ex->req);
	bool okay = true;

	obuf_init(b, 2 * CONN_HEAD_CAP + (body ? body->len : 0));
	okay &= obuf_add(b, c->ex->method, strlen(c->ex->method)) && obuf_add(b, " ", 1);
	if (plen == 0 || path[0] == '?')
		okay &= obuf_add(b, "/", 1);
	okay &= add_target(c, b, path, plen);
	snprintf(line, sizeof(line), " HTTP/1.%d\r\n", httpmsg_version_minor(c->ex->req));
	okay &= obuf_add(b, line, strlen(line));
	if (c->mode == MODE_HTTP || httpmsg_header_find(c->ex->req, "host", &hv, &hl) == 0)
		okay &= add_conn_host(b, c);
	for (size_t i = 0; i < n && okay; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_header(c->ex->req, i, &name, &nl, &val, &vl);
		if (proxy_header(name, nl) || (c->mode == MODE_HTTP && name_is(name, nl, "host")) ||
		    (body && body_header(name, nl)))
			continue;
		/* compressed WebSocket frames could not be redacted: offer none;
		 * content codings: see add_accept_encoding; transfer codings
		 * other than chunked are refused in replies: ask for none */
		if (c->redactor && (name_is(name, nl, "sec-websocket-extensions") ||
				    name_is(name, nl, "accept-encoding") || name_is(name, nl, "te")))
			continue;
		okay &= obuf_add(b, name, nl) && obuf_add(b, ": ", 2);
		if (c->mode == MODE_INTERCEPT && ss && c->approved) {
			uint64_t used = 0;
			okay &= inject_header(ss, c->approved, name, nl, val, vl, b, &used);
			c->ex->injected |= used;
			exchange_inject(c->ex)->in |= used ? 1u << INJ_HEADER : 0;
		}
		else
			okay &= obuf_add(b, val, vl);
		okay &= obuf_add(b, "\r\n", 2);
	}
	if (c->redactor && okay)
		okay &= add_accept_encoding(c, b);
	if (body) {
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body->len);
		okay &= obuf_add(b, line, strlen(line));
	}
	okay &= obuf_add(b, "\r\n", 2);
	if (body)
		okay &= obuf_add(b, body->p, body->len);
	evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
	if (!okay || evbuffer_add_reference(c->pending, b->p, b->len, wipe_ref, b) != 0) {
		wipe_ref(NULL, 0, b);
		return false;
	}
	return true;
}

static void log_leak(struct conn *c, uint64_t leaks, bool blocked)
{
	struct jsonw w;

	metrics_placeholder_leak(c->w->mx);
	if (!audit_begin(&w, AUDIT_WARN, "placeholder-leak", c->id))
		return;
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "method", c->ex->method);
	jsonw_str(&w, "path", c->ex->path);
	audit_secrets(&w, c->ss, leaks);
	jsonw_str(&w, "action", blocked ? "block" : "log");
	audit_emit(&w);
}

/* Placeholders of secrets not approved for this host, anywhere in the
 * request target or a header value (raw, %-encoded, Basic). */
static uint64_t scan_leaks(struct conn *c)
{
	const struct secretset *ss = c->ss;
	size_t ulen, n = httpmsg_header_count(c->ex->req);
	const char *url = httpmsg_target(c->ex->req, &ulen);
	uint64_t leaks;

	if (!ss || secretset_count(ss) == 0)
		return 0;
	leaks = inject_scan_leaks(ss, c->approved, url, ulen, false);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_header(c->ex->req, i, &name, &nl, &val, &vl);
		leaks |= inject_scan_leaks(ss, c->approved, val, vl,
					   name_is(name, nl, "authorization") ||
						   name_is(name, nl, "proxy-authorization"));
	}
	return leaks;
}

/* A request refused on its own (the connection stays usable): reply now
 * with the one-line msg (headers only for HEAD), drop its body, then read
 * the next request. A client
 * that sent "Expect: 100-continue" will not send the body it announced after
 * a final status, so then the connection closes after the reply instead. */
static void block_request(struct conn *c, enum reason r, const char *msg)
{
	size_t cap = strlen(msg) + 512;
	char *out = xmalloc(cap);
	const char *ev;
	size_t el;
	bool waits = httpmsg_has_body(c->ex->req) && httpmsg_header_find(c->ex->req, "expect", &ev, &el);
	int n = snprintf(out, cap,
			 "HTTP/1.1 %d %s\r\nX-Egressd-Reason: %s\r\n"
			 "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
			 "%s\r\n%s%s",
			 reason_status(r), reason_status(r) == 413 ? "Content Too Large" : "Forbidden",
			 reason_str(r), strlen(msg) + 1, waits ? "Connection: close\r\n" : "",
			 /* a reply to HEAD has no body */
			 strcmp(c->ex->method, "HEAD") != 0 ? msg : "",
			 strcmp(c->ex->method, "HEAD") != 0 ? "\n" : "");

	if (n > 0)
		sock_write(c->cl, out, (size_t)n < cap ? (size_t)n : cap - 1);
	free(out);
	metrics_refusal(c->w->mx, r);
	conn_meter(c); /* a connection whose only request was blocked was still allowed */
	c->ex->block_status = reason_status(r);
	c->ex->block_reason = r;
	conn_enter(c, &http_phase);
	if (waits) {
		c->ex->force_close = true;
		httpresp_blocked_done(c);
		return;
	}
	c->ex->discarding = true;
	if (c->ex->req_done) { /* refused once complete (a held body): nothing to drop */
		httpresp_blocked_done(c);
		return;
	}
	conn_read_client(c);
	httpfwd_client_input(c);
}

/* Leak check; returns false if the request was blocked (already handled). */
static bool leak_check(struct conn *c)
{
	uint64_t leaks = scan_leaks(c);
	bool block = c->w->opts->leak_block;
	char msg[HOST_MAX + LOG_PATH_MAX + 256];

	if (!leaks)
		return true;
	log_leak(c, leaks, block);
	if (!block)
		return true;
	snprintf(msg, sizeof(msg), "egressd refused %s %s on %s: %s (%s)", c->ex->method, c->ex->path,
		 c->t.host, reason_str(REASON_PLACEHOLDER_LEAK),
		 "a placeholder is bound for another host");
	block_request(c, REASON_PLACEHOLDER_LEAK, msg);
	return false;
}

/* Request rules, for a host some rule names; returns false if the request
 * was refused (already handled). The verdict stays in c for the log. */
static bool rules_check(struct conn *c)
{
	size_t ulen, o;
	const char *url = httpmsg_target(c->ex->req, &ulen);
	const struct rule_verdict *v = &c->ex->rv;
	bool tls = c->mode == MODE_INTERCEPT;
	char msg[HOST_MAX + LOG_PATH_MAX + 256], auth[HOST_MAX + 16];

	c->ex->ruled = policy_check_request(c->pol, &c->t, httpmsg_method(c->ex->req), url, ulen, &c->ex->rv);
	if (!c->ex->ruled || v->allow)
		return true;
	o = (size_t)snprintf(msg, sizeof(msg), "egressd: %s %s://%s%s", c->ex->method,
			     tls ? "https" : "http", conn_authority(c, auth, sizeof(auth)),
			     c->ex->path);
	if (o >= sizeof(msg))
		o = sizeof(msg) - 1;
	rules_verdict_text(v, msg + o, sizeof(msg) - o);
	block_request(c, REASON_RULE_DENIED, msg);
	return false;
}

/* The rewritten head (and body, when held), then out on the open upstream
 * or a new one (none yet, or it closed between requests). */
static void send_head(struct conn *c, const char *path, size_t plen, const struct obuf *body)
{
	const char *v;
	size_t vl;

	if (!build_head(c, path, plen, body)) {
		conn_error(c, 431, "bad-request", "egressd: request head too large");
		return;
	}
	if (c->mode == MODE_INTERCEPT && httpmsg_header_find(c->ex->req, "upgrade", &v, &vl) > 0) {
		/* no WebSocket on an h2 stream (RFC 8441 is not served): this
		 * connection's upstreams are offered http/1.1 only from now on,
		 * and one carried on h2 streams is dropped */
		c->up_h1_only = true;
		if (c->up && !c->up_eof && sock_has_codec(c->up)) {
			conn_drop_upstream(c);
			c->up_connected = false;
		}
	}
	if (c->up && !c->up_eof)
		httpfwd_on_connected(c);
	else
		upstream_start(c, httpfwd_on_connected);
}

static void refuse_body(struct conn *c, const char *why)
{
	char msg[HOST_MAX + LOG_PATH_MAX + 256];

	snprintf(msg, sizeof(msg), "egressd refused %s %s on %s: %s (%s)", c->ex->method,
		 c->ex->path, c->t.host, reason_str(REASON_BODY_TOO_LARGE), why);
	block_request(c, REASON_BODY_TOO_LARGE, msg);
}

static void body_sink(void *ctx, const char *p, size_t n)
{
	injbody_feed(ctx, p, n);
}

/* Is the Content-Length value v[0..n) (digits: llhttp checked them; n 0:
 * none) over INJBODY_MAX? If not, *len gets it. */
static bool over_bound(const char *v, size_t n, size_t *len)
{
	uint64_t l = 0;

	for (size_t i = 0; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
		l = l * 10 + (uint64_t)(v[i] - '0');
		if (l > INJBODY_MAX)
			return true;
	}
	*len = (size_t)l;
	return false;
}

/* A form or JSON body of an intercepted request, to a host some approved
 * secret of which names a form field or JSON member, without a content
 * coding: held (up to INJBODY_MAX bytes) so its placeholders are replaced
 * before the head goes out with the new Content-Length. Returns false if
 * the body is not held (forwarded as it comes); true if held or refused. */
static bool hold_body(struct conn *c, const char *path, size_t plen)
{
	struct exinject *inj = exchange_inject(c->ex);
	const char *v;
	size_t vl;
	enum injwhere kind;
	size_t expect;

	if (c->mode != MODE_INTERCEPT || !c->ss || !c->approved || !httpmsg_has_body(c->ex->req) ||
	    httpmsg_header_find(c->ex->req, "content-type", &v, &vl) != 1)
		return false;
	kind = injbody_kind(v, vl);
	if (kind == INJ_HEADER || !injparam_mask(c->pol, c->approved, kind) ||
	    (httpmsg_header_find(c->ex->req, "content-encoding", &v, &vl) &&
	     !(vl == 8 && strncasecmp(v, "identity", 8) == 0)))
		return false;
	if (httpmsg_header_find(c->ex->req, "content-length", &v, &vl) != 1)
		vl = 0;
	if (over_bound(v, vl, &expect)) {
		refuse_body(c, "a body to inject into is over 1 MiB");
		return true;
	}
	/* room for the announced length at once (at most 1 MiB; pages become
	 * resident only as bytes arrive) */
	inj->body = injbody_new(kind, INJBODY_MAX, expect);
	inj->path_off = (size_t)(path - httpmsg_target(c->ex->req, &vl));
	inj->plen = plen;
	httpmsg_set_body_sink(c->ex->req, body_sink, inj->body);
	if (httpmsg_header_find(c->ex->req, "expect", &v, &vl) == 1 && vl == 12 &&
	    strncasecmp(v, "100-continue", 12) == 0)
		sock_write(c->cl, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	conn_enter(c, &http_phase);
	conn_read_client(c);
	httpfwd_client_input(c);
	return true;
}

/* The held body is complete: rewritten, then sent after its head. */
static void release_body(struct conn *c)
{
	struct exinject *inj = exchange_inject(c->ex);
	struct obuf body;
	uint64_t used = 0;
	size_t ulen;
	const char *url = httpmsg_target(c->ex->req, &ulen);

	httpmsg_set_body_sink(c->ex->req, NULL, NULL);
	obuf_init(&body, 4 * (size_t)INJBODY_MAX);
	if (!injbody_finish(inj->body, c->pol, c->ss, c->approved, &body, &used)) {
		obuf_dispose(&body);
		conn_error(c, 413, reason_str(REASON_BODY_TOO_LARGE),
			   "egressd: the rewritten body is over 4 MiB");
		return;
	}
	c->ex->injected |= used;
	inj->in |= used ? 1u << (injbody_kind_of(inj->body)) : 0;
	injbody_free(inj->body);
	inj->body = NULL;
	send_head(c, url + inj->path_off, inj->plen, &body);
	obuf_dispose(&body);
}

/* The request is for its checked host: request rules, leak check, then
 * its head (and body, when held) rewritten and sent. */
static void forward_head(struct conn *c, const char *path, size_t plen)
{
	if (!rules_check(c) || !leak_check(c) || hold_body(c, path, plen))
		return;
	send_head(c, path, plen, NULL);
}

static bool same_target(const struct target *a, const struct target *b)
{
	return a->port == b->port && a->is_ip == b->is_ip && strcmp(a->host, b->host) == 0;
}

static void plain_head(struct conn *c, const char *url, size_t ulen)
{
	const char *auth, *path;
	size_t alen, plen;
	char err[PATTERN_ERRLEN];
	struct target t;

	if (!split_url(url, ulen, 7, &auth, &alen, &path, &plen)) {
		conn_error(c, 400, "bad-request", "egressd: malformed or userinfo-bearing URL");
		return;
	}
	if (!target_parse_authority(auth, alen, 80, &t, err)) {
		conn_error(c, 400, "bad-request", err);
		return;
	}
	exchange_set_path(c->ex, path, plen);
	if (!(c->up && c->up_connected && !c->up_eof && same_target(&t, &c->t))) {
		if (c->up) {
			conn_drop_upstream(c);
			c->up_connected = c->up_eof = false;
		}
		c->t = t;
		policy_check_target(c->pol, &c->t, &c->d);
		if (!c->d.allow) {
			conn_refuse(c, c->d.reason, NULL);
			return;
		}
	}
	forward_head(c, path, plen);
}

/* Does authority (a Host value or absolute-form authority) name c->t? */
static bool names_conn_host(struct conn *c, const char *a, size_t n)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	return target_parse_authority(a, n, c->t.port, &t, err) && same_target(&t, &c->t);
}

/* Inside an intercepted tunnel: the request must be for the CONNECT host. */
static void intercepted_head(struct conn *c, const char *url, size_t ulen)
{
	const char *path = url, *auth, *hv;
	size_t plen = ulen, alen, hl, skip = 0, hosts;

	if (ulen >= 8 && strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else if (ulen >= 7 && strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	if (skip && (!split_url(url, ulen, skip, &auth, &alen, &path, &plen) ||
		     !names_conn_host(c, auth, alen))) {
		exchange_set_path(c->ex, url, ulen);
		conn_error(c, 421, "host-mismatch",
			   "egressd: the request URL names another host than this connection's");
		return;
	}
	exchange_set_path(c->ex, path, plen);
	hosts = httpmsg_header_find(c->ex->req, "host", &hv, &hl);
	if (strcmp(c->ex->method, "CONNECT") == 0 || hosts > 1 ||
	    (hosts == 0 && httpmsg_version_minor(c->ex->req) >= 1)) {
		conn_error(c, 400, "bad-request", "egressd: CONNECT inside a tunnel, or a missing or repeated Host");
		return;
	}
	if (hosts == 1 && !names_conn_host(c, hv, hl)) {
		conn_error(c, 421, "host-mismatch",
			   "egressd: the Host header names another host than this connection's");
		return;
	}
	forward_head(c, path, plen);
}

void httpfwd_on_head(struct conn *c, const char *url, size_t ulen)
{
	if (c->mode != MODE_INTERCEPT && c->mode != MODE_ORIGIN)
		c->mode = MODE_HTTP;
	exchange_begin(c->ex, c->redactor != NULL);
	httpresp_prepare(c);
	httpmsg_resume(c->ex->req);
	if (c->mode == MODE_INTERCEPT || c->mode == MODE_ORIGIN)
		intercepted_head(c, url, ulen);
	else
		plain_head(c, url, ulen);
}

void httpfwd_on_connected(struct conn *c)
{
	if (c->mode == MODE_INTERCEPT && c->up_tls && tls_alpn_h2(sock_ssl(c->up)) &&
	    !intercept_bridge(c)) {
		conn_error(c, 502, "internal", "egressd: cannot set up the HTTP/2 bridge");
		return;
	}
	c->ex->up_h2 = sock_has_codec(c->up);
	conn_enter(c, &http_phase);
	c->ex->req_up += evbuffer_get_length(c->pending);
	metrics_bytes(c->w->mx, true, evbuffer_get_length(c->pending));
	conn_write_buf(c->up, c->pending); /* the head's bytes are wiped as drained */
	sock_read_start(c->up);
	conn_read_client(c);
	httpfwd_client_input(c);
}

/* More client bytes (request body or the next request). */
static void httpfwd_client_input(struct conn *c)
{
	struct injbody *held;
	enum httpmsg_status s;
	uint64_t counted = 0;

	if (c->st != ST_HTTP || c->ex->req_done)
		return; /* pipelined bytes wait until the response is complete */
	held = c->ex->discarding ? NULL : exchange_inject(c->ex)->body;
	/* a held body is counted when it goes out (httpfwd_on_connected) */
	s = relay_pump_msg(c, c->ex->req, c->cl, c->ex->discarding || held ? NULL : c->up,
			   !c->ex->discarding && !held, held ? &counted : &c->ex->req_up, NULL);
	if (held && injbody_over(held) && s != HTTPMSG_ERROR && s != HTTPMSG_HEAD) {
		httpmsg_set_body_sink(c->ex->req, NULL, NULL);
		if (s == HTTPMSG_DONE || s == HTTPMSG_UPGRADE)
			c->ex->req_done = true;
		refuse_body(c, "a body to inject into is over 1 MiB");
		return;
	}
	if (s == HTTPMSG_DONE || s == HTTPMSG_UPGRADE) {
		c->ex->req_done = true;
		c->ex->req_upgrade = s == HTTPMSG_UPGRADE;
		if (held)
			release_body(c);
		else if (c->ex->discarding)
			httpresp_blocked_done(c);
		else if (c->ex->resp_done)
			httpresp_request_done(c);
	} else if (s == HTTPMSG_ERROR || s == HTTPMSG_HEAD) {
		conn_error(c, 400, "bad-request", httpmsg_error(c->ex->req));
	}
}

/* ---- the exchange phase: a request and its response in flight ---- */

/* s's output drained: go on reading the side that waits for it. */
static void http_drained(struct conn *c, struct sock *s)
{
	struct sock *from;

	if (!c->up)
		return;
	from = s == c->up ? c->cl : c->up;
	if (from == c->up && c->up_eof) {
		httpresp_resume(c); /* a decoded reply waited for the client */
		return;
	}
	if (relay_drained_eof(c, from, s))
		return;
	sock_read_start(from);
	if (from == c->up) {
		httpresp_upstream_input(c);
	} else {
		httpfwd_client_input(c);
	}
}

/* The upstream ended or broke: the response ends there (httpresp.c). */
static bool http_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	(void)reason;
	if (!s || s != c->up || (ev != CONN_EV_EOF && ev != CONN_EV_ERROR))
		return false;
	conn_count_up_error(c, s, ev);
	httpresp_upstream_eof(c);
	return true;
}

static const struct conn_phase http_phase = {
	.st = ST_HTTP,
	.client_input = httpfwd_client_input,
	.upstream_input = httpresp_upstream_input,
	.drained = http_drained,
	.event = http_event,
};
