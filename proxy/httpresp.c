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
#include "httpmsg.h"
#include "inject.h"
#include "redact.h"
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
		if (skip_header(c, has_body, name, nl))
			continue;
		b.len = 0;
		if (!redact_string(ss, c->approved, name, nl, &b) || !obuf_add(&b, ": ", 2) ||
		    !redact_string(ss, c->approved, val, vl, &b) || !obuf_add(&b, "\r\n", 2))
			continue; /* cannot happen below the cap; never pass it unredacted */
		evbuffer_add(out, b.p, b.len);
	}
	obuf_dispose(&b);
	if (c->chunk_out)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	if (c->force_close)
		evbuffer_add_printf(out, "Connection: close\r\n");
	evbuffer_add(out, "\r\n", 2);
}

static void log_request(struct conn *c, int status)
{
	struct jsonw w;
	struct timeval now;

	audit_begin(&w, "request", c->id);
	jsonw_str(&w, "method", c->method);
	jsonw_str(&w, "host", c->t.host);
	jsonw_int(&w, "port", c->t.port);
	jsonw_str(&w, "path", c->path);
	jsonw_int(&w, "status", status);
	if (c->mode == MODE_INTERCEPT)
		conn_log_secrets(&w, c->ss, c->injected);
	jsonw_int(&w, "bytes_up", (long long)c->req_up);
	jsonw_int(&w, "bytes_down", (long long)c->req_down);
	evutil_gettimeofday(&now, NULL);
	jsonw_int(&w, "ms", (now.tv_sec - c->req_start.tv_sec) * 1000L +
				    (now.tv_usec - c->req_start.tv_usec) / 1000L);
	audit_emit(&w);
	c->bytes_up += c->req_up;
	c->bytes_down += c->req_down;
	c->req_up = c->req_down = 0;
}

static void next_request(struct conn *c)
{
	httpmsg_next(c->req);
	httpmsg_next(c->resp);
	c->st = ST_HEAD;
	conn_head_phase(c); /* the next head is due within the head timeout */
	bufferevent_enable(c->cl, EV_READ);
	conn_client_input(c);
}

void httpresp_blocked_done(struct conn *c)
{
	log_request(c, c->block_status);
	c->discarding = false;
	if (c->req_upgrade || !httpmsg_keep_alive(c->req)) {
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
		evbuffer_add(stage(c), "0\r\n\r\n", 5);
	} else if (c->redacting) {
		redactor_flush(c->redactor, emit_raw, c);
	}
	flush_stage(c);
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
			relay_start_tunnel(c);
			return;
		case HTTPMSG_ERROR:
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
	if (c->req_down == 0)
		conn_error(c, 502, "connect-failed",
			   "egressd: upstream closed the connection without a response");
	else
		conn_free(c);
}
