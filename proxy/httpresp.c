/* httpresp.c -- the response side of HTTP forwarding: raw streaming, or, for
 * a secret's hosts, heads and bodies passed through the redactor (real value
 * -> placeholder) and re-framed as chunked; keep-alive; the request log */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "audit.h"
#include "conn_int.h"
#include "generation.h"
#include "httpmsg.h"
#include "inject.h"
#include "metrics.h"
#include "redact.h"
#include "wsredact.h"
#include "secrets.h"
#include "server.h"

/* Every evbuffer_add to a TLS bufferevent's output is an SSL_write, i.e. a
 * TLS record: a re-framed response (head lines, chunk sizes, data, CRLFs) is
 * gathered in the worker's stage and handed over in one piece. */
static struct evbuffer *stage(struct conn *c)
{
	return c->w->stage;
}

/* Hands the gathered bytes to the client's output; before anything that may
 * close, free or reuse c. */
static void flush_stage(struct conn *c)
{
	if (evbuffer_get_length(stage(c)) > 0)
		evbuffer_add_buffer(bufferevent_get_output(c->cl), stage(c));
}

static void emit_chunk(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;
	struct evbuffer *out = stage(c);

	if (n == 0)
		return;
	evbuffer_add_printf(out, "%zx\r\n", n);
	evbuffer_add(out, p, n);
	evbuffer_add(out, "\r\n", 2);
}

static void emit_raw(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;
	evbuffer_add(stage(c), p, n);
}

static void on_body(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;

	if (c->redacting)
		redactor_feed(c->redactor, p, n, c->chunk_out ? emit_chunk : emit_raw, c);
}

void httpresp_prepare(struct conn *c)
{
	httpmsg_set_body_sink(c->resp, c->redactor ? on_body : NULL, c);
}

static bool skip_header(struct conn *c, bool has_body, const char *name, size_t n)
{
	if (has_body && ((n == 14 && strncasecmp(name, "content-length", 14) == 0) ||
			 (n == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)))
		return true;
	return c->force_close && n == 10 && strncasecmp(name, "connection", 10) == 0;
}

/* One "name: value\r\n" line with both redacted, to out. */
static void emit_field(struct conn *c, struct obuf *b, struct evbuffer *out, const char *name,
		       size_t nl, const char *val, size_t vl)
{
	b->len = 0;
	if (!redact_string(c->ss, c->approved, name, nl, b) || !obuf_add(b, ": ", 2) ||
	    !redact_string(c->ss, c->approved, val, vl, b) || !obuf_add(b, "\r\n", 2))
		return; /* cannot happen below the cap; never pass it unredacted */
	evbuffer_add(out, b->p, b->len);
}

/* The last chunk of a re-framed body and the upstream's trailer fields,
 * redacted like the head. */
static void emit_last_chunk(struct conn *c)
{
	struct evbuffer *out = stage(c);
	size_t n = httpmsg_trailer_count(c->resp);
	struct obuf b;

	evbuffer_add(out, "0\r\n", 3);
	obuf_init(&b, 2 * CONN_HEAD_CAP);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_trailer(c->resp, i, &name, &nl, &val, &vl);
		emit_field(c, &b, out, name, nl, val, vl);
	}
	obuf_dispose(&b);
	evbuffer_add(out, "\r\n", 2);
}

/* The response head as the client gets it when redacting: values redacted,
 * body re-framed chunked (HTTP/1.1 clients) or delimited by close. */
static void emit_head(struct conn *c)
{
	const struct secretset *ss = c->ss;
	bool has_body = httpmsg_has_body(c->resp);
	struct evbuffer *out = stage(c);
	size_t rl, n = httpmsg_header_count(c->resp);
	const char *reason = httpmsg_reason(c->resp, &rl);
	struct obuf b;

	c->resp_head_seen = true;
	c->chunk_out = has_body && httpmsg_version_minor(c->req) >= 1;
	if (has_body && !c->chunk_out)
		c->force_close = true;
	obuf_init(&b, 2 * CONN_HEAD_CAP);
	/* everything the upstream wrote in the head is scrubbed: reason phrase,
	 * header names and values */
	evbuffer_add_printf(out, "HTTP/1.1 %d ", httpmsg_status_code(c->resp));
	if (redact_string(ss, c->approved, reason, rl, &b))
		evbuffer_add(out, b.p, b.len);
	evbuffer_add(out, "\r\n", 2);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_header(c->resp, i, &name, &nl, &val, &vl);
		if (!skip_header(c, has_body, name, nl))
			emit_field(c, &b, out, name, nl, val, vl);
	}
	obuf_dispose(&b);
	if (c->chunk_out)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	if (c->force_close)
		evbuffer_add_printf(out, "Connection: close\r\n");
	evbuffer_add(out, "\r\n", 2);
}

/* A request answered by the upstream: its mode, latency and the secrets
 * injected into it (blocked requests are counted as refusals instead). */
static void meter_request(struct conn *c)
{
	struct metrics_worker *mx = c->w->mx;
	enum metrics_mode mode = c->mode == MODE_INTERCEPT ? MX_MODE_INTERCEPT :
				 c->mode == MODE_ORIGIN ? MX_MODE_ORIGIN : MX_MODE_HTTP;

	if (!c->req_cut) /* counts requests answered, duration to the end */
		metrics_request(mx, mode, conn_usec_since(&c->req_start));
	for (uint64_t m = c->injected; m; m &= m - 1)
		metrics_secret_injected(mx, gen_secret_slot(c->gen, (size_t)__builtin_ctzll(m)));
}

static void log_request(struct conn *c, int status)
{
	struct jsonw w;
	struct timeval now;

	if (!c->discarding)
		meter_request(c);
	if (audit_begin(&w, c->block_reason != REASON_NONE ? AUDIT_WARN : AUDIT_INFO, "request", c->id)) {
		if (*policy_scope(c->pol))
			jsonw_str(&w, "sandbox", policy_scope(c->pol));
		jsonw_str(&w, "method", c->method);
		jsonw_str(&w, "host", c->t.host);
		jsonw_int(&w, "port", c->t.port);
		jsonw_str(&w, "path", c->path);
		jsonw_int(&w, "status", status);
		if (c->ruled || c->block_reason != REASON_NONE)
			jsonw_str(&w, "decision", c->block_reason == REASON_NONE ? "allow" : "deny");
		if (c->block_reason != REASON_NONE)
			jsonw_str(&w, "reason", reason_str(c->block_reason));
		if (c->ruled && (c->rv.how == RULE_BY_RULE || c->rv.how == RULE_MATCH_ERROR))
			jsonw_int(&w, "rule", (long long)c->rv.index);
		else if (c->ruled && c->rv.how == RULE_BY_DEFAULT)
			jsonw_str(&w, "rule", "default");
		if (c->ruled && c->rv.how == RULE_AMBIGUOUS)
			jsonw_str(&w, "detail", c->rv.why);
		else if (c->ruled && c->rv.how == RULE_MATCH_ERROR)
			jsonw_str(&w, "detail", "the rule's path pattern hit the match limit");
		if (c->mode == MODE_INTERCEPT)
			conn_log_secrets(&w, c->ss, c->injected);
		if (c->req_cut)
			jsonw_bool(&w, "incomplete", true);
		jsonw_int(&w, "bytes_up", (long long)c->req_up);
		jsonw_int(&w, "bytes_down", (long long)c->req_down);
		evutil_gettimeofday(&now, NULL);
		jsonw_int(&w, "ms", (now.tv_sec - c->req_start.tv_sec) * 1000L +
					    (now.tv_usec - c->req_start.tv_usec) / 1000L);
		audit_emit(&w);
	}
	c->bytes_up += c->req_up;
	c->bytes_down += c->req_down;
	c->req_up = c->req_down = 0;
	c->req_logged = true;
}

static void next_request(struct conn *c)
{
	httpmsg_next(c->req);
	httpmsg_next(c->resp);
	c->st = ST_HEAD;
	conn_head_phase(c); /* the next head is due within the head timeout */
	conn_read_client(c);
	conn_client_input(c);
	if (c->st == ST_HEAD && c->cl_raw)
		intercept_trim(c); /* nothing came yet: perhaps nothing for long */
}

void httpresp_blocked_done(struct conn *c)
{
	log_request(c, c->block_status);
	c->discarding = false;
	if (c->force_close || c->req_upgrade || !httpmsg_keep_alive(c->req)) {
		conn_close_flushed(c);
		return;
	}
	next_request(c);
}

/* The response is complete: next request on the same connections, or close. */
static void response_done(struct conn *c)
{
	if (c->redacting && !c->resp_head_seen)
		emit_head(c); /* a response without a paused head (to HEAD requests) */
	if (c->redacting && c->chunk_out) {
		redactor_flush(c->redactor, emit_chunk, c);
		emit_last_chunk(c);
	} else if (c->redacting) {
		redactor_flush(c->redactor, emit_raw, c);
	}
	flush_stage(c);
	if (!c->req_done && !c->force_close && httpmsg_keep_alive(c->resp)) {
		/* an early answer (a server that replies before reading the body, as
		 * nginx's `return` does): the rest of the body still goes upstream,
		 * the sandbox is not cut off mid-upload (a reset there can also lose
		 * the response it has not read yet); decided when the body ends
		 * (the request's own keep-alive is known only then) */
		c->resp_done = true;
		return;
	}
	httpresp_request_done(c);
}

void httpresp_request_done(struct conn *c)
{
	log_request(c, httpmsg_status_code(c->resp));
	if (!c->req_done || c->force_close || !httpmsg_keep_alive(c->req) ||
	    !httpmsg_keep_alive(c->resp) || evbuffer_get_length(bufferevent_get_input(c->up)) > 0) {
		conn_close_flushed(c);
		return;
	}
	next_request(c);
}

static bool on_resp_done(struct conn *c)
{
	int code = httpmsg_status_code(c->resp);

	if (code >= 100 && code < 200) {
		if (c->redacting && !c->resp_head_seen)
			emit_head(c);
		httpmsg_next(c->resp); /* interim response: the final one follows */
		c->resp_head_seen = false;
		if (strcmp(c->method, "HEAD") == 0)
			httpmsg_expect_no_body(c->resp);
		return true;
	}
	response_done(c);
	return false;
}

static void upstream_input(struct conn *c)
{
	if (c->resp_done)
		return; /* bytes after an early answer wait: httpresp_request_done closes */
	for (;;) {
		enum httpmsg_status s = httpfwd_pump(c, c->resp, c->up, c->cl, !c->redacting,
						     &c->req_down);
		switch (s) {
		case HTTPMSG_NEED_MORE:
			flush_stage(c);
			return;
		case HTTPMSG_HEAD:
			if (c->redacting)
				emit_head(c);
			c->resp_head_seen = true;
			httpmsg_resume(c->resp);
			continue;
		case HTTPMSG_DONE:
			if (on_resp_done(c))
				continue;
			return;
		case HTTPMSG_UPGRADE:
			if (!c->req_upgrade || httpmsg_status_code(c->resp) != 101) {
				flush_stage(c);
				conn_close_flushed(c);
				return;
			}
			if (c->redacting && !c->resp_head_seen)
				emit_head(c);
			flush_stage(c);
			log_request(c, 101);
			if (c->redacting) /* a secret's host: its frames are redacted too */
				c->ws = wsredact_new(c->ss, c->approved);
			relay_start_tunnel(c);
			return;
		case HTTPMSG_ERROR:
			metrics_upstream_error(c->w->mx, MX_UP_PROTOCOL);
			flush_stage(c);
			if (!c->resp_head_seen && c->req_down == 0)
				conn_error(c, 502, "bad-response", "egressd: malformed response from upstream");
			else
				conn_free(c);
			return;
		}
	}
}

void httpfwd_upstream_input(struct conn *c)
{
	struct evbuffer *st = stage(c);

	upstream_input(c);
	/* c may be gone; nothing gathered may outlive the call */
	evbuffer_drain(st, evbuffer_get_length(st));
}

void httpfwd_upstream_eof(struct conn *c)
{
	c->up_eof = true;
	if (c->resp_done) {
		/* gone after an early answer: the rest of the body has nowhere to go */
		c->force_close = true;
		httpresp_request_done(c);
		return;
	}
	httpfwd_upstream_input(c);
	if (c->st != ST_HTTP)
		return; /* the input completed the response (or failed) */
	if (!httpmsg_started(c->resp) && c->req_down == 0 && c->req_up == 0) {
		/* an idle kept-alive upstream went away: fine */
		conn_drop_upstream(c);
		c->up = NULL;
		c->up_connected = false;
		return;
	}
	if (httpmsg_finish(c->resp) == HTTPMSG_DONE) {
		c->force_close = true;
		response_done(c);
		return;
	}
	metrics_upstream_error(c->w->mx, MX_UP_PROTOCOL);
	if (c->req_down == 0)
		conn_error(c, 502, "connect-failed",
			   "egressd: upstream closed the connection without a response");
	else
		conn_free(c);
}

void httpresp_log_cut(struct conn *c)
{
	if (c->st != ST_HTTP || c->req_logged)
		return;
	c->req_cut = true;
	log_request(c, c->discarding ? c->block_status : httpmsg_status_code(c->resp));
}
