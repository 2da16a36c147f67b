/* httpresp.c -- the response side of HTTP forwarding: raw streaming, or, for
 * a secret's hosts, heads and bodies passed through the redactor (real value
 * -> placeholder), content codings undone first, and re-framed as chunked;
 * keep-alive: the end of each exchange (its log line is exchange.c's) */
#include <stdio.h>
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
#include "generation.h"
#include "httpmsg.h"
#include "inject.h"
#include "metrics.h"
#include "redact.h"
#include "wsredact.h"
#include "secrets.h"
#include "sock.h"
#include "worker.h"

#define DEC_CHUNK 16384 /* decoded bytes per decoder call */

/* A re-framed response (head lines, chunk sizes, data, CRLFs) is gathered
 * in the worker's stage and handed to the client's stream in one piece. */
static struct evbuffer *stage(struct conn *c)
{
	return c->w->stage;
}

/* Hands the gathered bytes to the client's output; before anything that may
 * close, free or reuse c. */
static void flush_stage(struct conn *c)
{
	if (evbuffer_get_length(stage(c)) > 0)
		conn_write_buf(c->cl, stage(c));
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

size_t httpresp_held(const struct conn *c)
{
	size_t n = evbuffer_get_length(stage((struct conn *)c));

	if (c->ex->dec_failed || (c->ex->zin && evbuffer_get_length(c->ex->zin) > 0))
		return n + c->hiwat; /* nothing more is parsed until it is decoded */
	return n;
}

/* Room for decoded bytes: --max-buffer less the client's output and the stage. */
static size_t out_room(struct conn *c)
{
	size_t q = sock_out_len(c->cl) + evbuffer_get_length(stage(c));

	return q < c->hiwat ? c->hiwat - q : 0;
}

enum dec_state { DEC_IDLE, DEC_FULL, DEC_DONE, DEC_FAIL };

/* Decodes what c->ex->zin holds into the redactor while the client has room;
 * end: the body is complete (the streams must end with it). */
static enum dec_state decode_some(struct conn *c, bool end)
{
	char buf[DEC_CHUNK];
	enum dec_state st = DEC_FAIL;

	for (;;) {
		struct evbuffer_iovec v = { (void *)"", 0 };
		size_t room = out_room(c), have = evbuffer_get_length(c->ex->zin), used, made;
		enum contentdec_status r;

		if (room == 0) {
			st = DEC_FULL;
			break;
		}
		if (have > 0 && evbuffer_peek(c->ex->zin, -1, NULL, &v, 1) < 1)
			break;
		r = contentdec_feed(c->ex->dec, v.iov_base, v.iov_len, &used, buf,
				    room < sizeof(buf) ? room : sizeof(buf), &made,
				    end && v.iov_len == have);
		evbuffer_drain(c->ex->zin, used);
		if (made > 0)
			redactor_feed(c->redactor, buf, made, c->ex->chunk_out ? emit_chunk : emit_raw, c);
		if (r == CONTENTDEC_ERROR)
			break;
		if (r == CONTENTDEC_DONE) {
			st = DEC_DONE;
			break;
		}
		if (r == CONTENTDEC_NEED_MORE && evbuffer_get_length(c->ex->zin) == 0) {
			st = DEC_IDLE;
			break;
		}
	}
	xwipe(buf, sizeof(buf));
	if (st == DEC_FAIL)
		c->ex->dec_failed = true;
	return st;
}

static void on_body(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;

	if (!c->ex->redacting)
		return;
	if (!c->ex->dec) {
		redactor_feed(c->redactor, p, n, c->ex->chunk_out ? emit_chunk : emit_raw, c);
		return;
	}
	if (c->ex->dec_failed)
		return;
	evbuffer_add(c->ex->zin, p, n);
	decode_some(c, false); /* the rest waits in zin; the pump stops feeding */
}

/* Stops reading the upstream until the client drained (httpresp_resume). */
static void pause_upstream(struct conn *c)
{
	sock_read_stop(c->up);
}

static void drop_decoder(struct conn *c)
{
	contentdec_free(c->ex->dec);
	c->ex->dec = NULL;
	if (c->ex->zin)
		evbuffer_free(c->ex->zin);
	c->ex->zin = NULL;
	c->ex->dec_end = c->ex->dec_failed = false;
}

/* A reply from a secret's host that cannot be redacted: counted, logged,
 * then a 502 if the sandbox has not seen its head yet, else a close. */
static void refuse_encoding(struct conn *c, const char *detail)
{
	struct refusal r = { .reason = reason_str(REASON_UNREDACTABLE_ENCODING), .target = true,
			     .method = c->ex->method, .path = c->ex->path,
			     .status = httpmsg_status_code(c->ex->resp), .detail = detail };
	char msg[HOST_MAX + 256];

	conn_log_refuse(c, &r);
	drop_decoder(c);
	evbuffer_drain(stage(c), evbuffer_get_length(stage(c)));
	if (c->ex->resp_head_seen) {
		conn_close(c);
		return;
	}
	snprintf(msg, sizeof(msg), "egressd refused the reply of %s: %s (%s)", c->t.host,
		 reason_str(REASON_UNREDACTABLE_ENCODING), detail);
	conn_send_error(c, 502, reason_str(REASON_UNREDACTABLE_ENCODING), msg);
}

/* Is every transfer coding "chunked"? (llhttp frames the body; any other
 * transfer coding, e.g. gzip, would reach the sandbox undecoded.) */
static bool only_chunked(const struct obuf *te)
{
	const char *p = te->p, *end = te->p + te->len;

	while (p < end) {
		const char *e = memchr(p, ',', (size_t)(end - p)), *s = p;
		if (!e)
			e = end;
		p = e + 1;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > s && !(e - s == 7 && strncasecmp(s, "chunked", 7) == 0))
			return false;
	}
	return true;
}

/* At a reply head from a secret's host: undo its Content-Encoding (set up
 * c->ex->dec), or refuse what cannot be redacted. Headers-only replies (HEAD,
 * 204, 304) have nothing to decode: a decodable coding is dropped from the
 * head like on the full reply, an unknown one is passed as sent. A 206 of
 * an encoded representation cannot be decoded from its middle: refused
 * (requests with Range are offered only identity). False: refused, c closing. */
static bool decide_coding(struct conn *c)
{
	enum contentdec_coding cs[CONTENTDEC_MAX_STACK];
	int code = httpmsg_status_code(c->ex->resp), n;
	size_t k;
	bool body = httpmsg_has_body(c->ex->resp);
	const char *why = NULL;
	struct obuf b;

	c->ex->dec_head = false;
	if (code < 200)
		return true;
	obuf_init(&b, 2 * CONN_HEAD_CAP);
	httpmsg_header_join(c->ex->resp, "transfer-encoding", &b, &k);
	if (body && !only_chunked(&b))
		why = "a transfer coding other than chunked";
	httpmsg_header_join(c->ex->resp, "content-encoding", &b, &k);
	n = contentdec_parse(b.p, b.len, cs);
	obuf_dispose(&b);
	if (!why && n < 0 && body)
		why = "an unknown content coding, or more than two";
	else if (!why && n > 0 && body && code == 206)
		why = "a range of an encoded representation";
	if (why) {
		refuse_encoding(c, why);
		return false;
	}
	c->ex->dec_head = n > 0;
	if (n > 0 && body) {
		c->ex->dec = contentdec_new(cs, n);
		c->ex->zin = evbuffer_new();
		if (!c->ex->dec || !c->ex->zin) {
			refuse_encoding(c, "no memory for a decoder");
			return false;
		}
	}
	return true;
}

void httpresp_prepare(struct conn *c)
{
	httpmsg_set_body_sink(c->ex->resp, c->redactor ? on_body : NULL, c);
}

static bool skip_header(struct conn *c, bool has_body, const char *name, size_t n)
{
	bool length = n == 14 && strncasecmp(name, "content-length", 14) == 0;

	if (has_body && (length || (n == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)))
		return true;
	/* the decoded reply: no coding; the encoded length (of the body, or of
	 * what a GET would get for HEAD and 304) is not the decoded one */
	if (c->ex->dec_head && n == 16 && strncasecmp(name, "content-encoding", 16) == 0)
		return true;
	if (c->ex->dec_head && length && (has_body || strcmp(c->ex->method, "HEAD") == 0 ||
				      httpmsg_status_code(c->ex->resp) == 304))
		return true;
	return c->ex->force_close && n == 10 && strncasecmp(name, "connection", 10) == 0;
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

/* A field value redacted, then CRLF, to out (after its name). */
static void emit_value(struct conn *c, struct obuf *b, struct evbuffer *out, const char *val,
		       size_t vl)
{
	b->len = 0;
	if (!redact_string(c->ss, c->approved, val, vl, b) || !obuf_add(b, "\r\n", 2))
		return;
	evbuffer_add(out, b->p, b->len);
}

/* The last chunk of a re-framed body and the upstream's trailer fields,
 * redacted like the head. */
static void emit_last_chunk(struct conn *c)
{
	struct evbuffer *out = stage(c);
	size_t n = httpmsg_trailer_count(c->ex->resp);
	struct obuf b;

	evbuffer_add(out, "0\r\n", 3);
	obuf_init(&b, 2 * CONN_HEAD_CAP);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_trailer(c->ex->resp, i, &name, &nl, &val, &vl);
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
	bool has_body = httpmsg_has_body(c->ex->resp);
	struct evbuffer *out = stage(c);
	size_t rl, n = httpmsg_header_count(c->ex->resp);
	const char *reason = httpmsg_reason(c->ex->resp, &rl);
	struct obuf b;

	c->ex->resp_head_seen = true;
	c->ex->chunk_out = has_body && httpmsg_version_minor(c->ex->req) >= 1;
	if (has_body && !c->ex->chunk_out)
		c->ex->force_close = true;
	obuf_init(&b, 2 * CONN_HEAD_CAP);
	/* everything the upstream wrote in the head is scrubbed: reason phrase,
	 * header names and values */
	evbuffer_add_printf(out, "HTTP/1.1 %d ", httpmsg_status_code(c->ex->resp));
	if (redact_string(ss, c->approved, reason, rl, &b))
		evbuffer_add(out, b.p, b.len);
	evbuffer_add(out, "\r\n", 2);
	for (size_t i = 0; i < n; i++) {
		const char *name, *val;
		size_t nl, vl;
		httpmsg_header(c->ex->resp, i, &name, &nl, &val, &vl);
		if (skip_header(c, has_body, name, nl))
			continue;
		if (c->ex->dec_head && nl == 4 && strncasecmp(name, "etag", 4) == 0 && vl > 0 &&
		    val[0] == '"') {
			/* another representation than the tag names: a weak validator */
			evbuffer_add(out, "ETag: W/", 8);
			emit_value(c, &b, out, val, vl);
		} else {
			emit_field(c, &b, out, name, nl, val, vl);
		}
	}
	obuf_dispose(&b);
	if (c->ex->chunk_out)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	if (c->ex->force_close)
		evbuffer_add_printf(out, "Connection: close\r\n");
	evbuffer_add(out, "\r\n", 2);
}

static void next_request(struct conn *c)
{
	h1head_enter(c);
	exchange_free(c->ex); /* a connection between requests holds none */
	c->ex = NULL;
	conn_head_phase(c); /* the next head is due within the head timeout */
	conn_read_client(c);
	conn_client_input(c);
}

void httpresp_blocked_done(struct conn *c)
{
	exchange_log(c->ex, c, c->ex->block_status);
	c->ex->discarding = false;
	if (c->ex->force_close || c->ex->req_upgrade || !httpmsg_keep_alive(c->ex->req)) {
		conn_close_flushed(c);
		return;
	}
	next_request(c);
}

/* The response is complete: next request on the same connections, or close.
 * A decoded body may still have output the client has no room for: then
 * this waits (upstream_input calls it again once the client drained). */
static void response_done(struct conn *c)
{
	if (c->ex->dec) {
		c->ex->dec_end = true;
		switch (decode_some(c, true)) {
		case DEC_FULL:
			pause_upstream(c);
			flush_stage(c);
			return;
		case DEC_DONE:
			drop_decoder(c);
			break;
		default:
			refuse_encoding(c, contentdec_error(c->ex->dec));
			return;
		}
	}
	if (c->ex->redacting && !c->ex->resp_head_seen) {
		/* a response without a paused head (to HEAD requests) */
		if (!decide_coding(c))
			return;
		emit_head(c);
	}
	if (c->ex->redacting && c->ex->chunk_out) {
		redactor_flush(c->redactor, emit_chunk, c);
		emit_last_chunk(c);
	} else if (c->ex->redacting) {
		redactor_flush(c->redactor, emit_raw, c);
	}
	flush_stage(c);
	if (!c->ex->req_done && !c->ex->force_close && httpmsg_keep_alive(c->ex->resp)) {
		/* an early answer (a server that replies before reading the body, as
		 * nginx's `return` does): the rest of the body still goes upstream,
		 * the sandbox is not cut off mid-upload (a reset there can also lose
		 * the response it has not read yet); decided when the body ends
		 * (the request's own keep-alive is known only then) */
		c->ex->resp_done = true;
		return;
	}
	httpresp_request_done(c);
}

void httpresp_request_done(struct conn *c)
{
	exchange_log(c->ex, c, httpmsg_status_code(c->ex->resp));
	if (!c->ex->req_done || c->ex->force_close || !httpmsg_keep_alive(c->ex->req) ||
	    !httpmsg_keep_alive(c->ex->resp) || conn_in_len(c->up) > 0) {
		conn_close_flushed(c);
		return;
	}
	next_request(c);
}

static bool on_resp_done(struct conn *c)
{
	int code = httpmsg_status_code(c->ex->resp);

	if (code >= 100 && code < 200) {
		if (c->ex->redacting && !c->ex->resp_head_seen)
			emit_head(c);
		httpmsg_next(c->ex->resp); /* interim response: the final one follows */
		c->ex->resp_head_seen = false;
		if (strcmp(c->ex->method, "HEAD") == 0)
			httpmsg_expect_no_body(c->ex->resp);
		return true;
	}
	response_done(c);
	return false;
}

/* A decoded body's held bytes first; false: wait (paused, or c closing). */
static bool decode_held(struct conn *c)
{
	if (c->ex->dec_end) {
		response_done(c); /* may wait again */
		return false;
	}
	if (c->ex->dec_failed) {
		refuse_encoding(c, contentdec_error(c->ex->dec));
		return false;
	}
	if (evbuffer_get_length(c->ex->zin) == 0)
		return true;
	switch (decode_some(c, false)) {
	case DEC_FULL:
		pause_upstream(c);
		flush_stage(c);
		return false;
	case DEC_IDLE:
		return true;
	default:
		refuse_encoding(c, contentdec_error(c->ex->dec));
		return false;
	}
}

static void upstream_input(struct conn *c)
{
	if (c->ex->resp_done)
		return; /* bytes after an early answer wait: httpresp_request_done closes */
	if (c->ex->dec && !decode_held(c))
		return;
	for (;;) {
		enum httpmsg_status s = relay_pump_msg(c, c->ex->resp, c->up, c->cl, !c->ex->redacting,
						       &c->ex->req_down, httpresp_held);
		if (c->ex->dec_failed) {
			refuse_encoding(c, contentdec_error(c->ex->dec));
			return;
		}
		switch (s) {
		case HTTPMSG_NEED_MORE:
			flush_stage(c);
			return;
		case HTTPMSG_HEAD:
			if (c->ex->redacting && !decide_coding(c))
				return;
			if (c->ex->redacting)
				emit_head(c);
			c->ex->resp_head_seen = true;
			httpmsg_resume(c->ex->resp);
			continue;
		case HTTPMSG_DONE:
			if (on_resp_done(c))
				continue;
			return;
		case HTTPMSG_UPGRADE:
			if (!c->ex->req_upgrade || httpmsg_status_code(c->ex->resp) != 101) {
				flush_stage(c);
				conn_close_flushed(c);
				return;
			}
			if (c->ex->redacting && !c->ex->resp_head_seen)
				emit_head(c);
			flush_stage(c);
			exchange_log(c->ex, c, 101);
			if (c->ex->redacting) /* a secret's host: its frames are redacted too */
				c->ws = wsredact_new(c->ss, c->approved);
			relay_start_tunnel(c);
			return;
		case HTTPMSG_ERROR:
			metrics_upstream_error(c->w->mx, MX_UP_PROTOCOL);
			flush_stage(c);
			if (!c->ex->resp_head_seen && c->ex->req_down == 0)
				conn_error(c, 502, "bad-response", "egressd: malformed response from upstream");
			else
				conn_close(c);
			return;
		}
	}
}

void httpresp_upstream_input(struct conn *c)
{
	struct evbuffer *st = stage(c);

	upstream_input(c);
	/* nothing gathered may outlive the call (c may be closed) */
	evbuffer_drain(st, evbuffer_get_length(st));
}

void httpresp_upstream_eof(struct conn *c)
{
	c->up_eof = true;
	if (c->ex->resp_done) {
		/* gone after an early answer: the rest of the body has nowhere to go */
		c->ex->force_close = true;
		httpresp_request_done(c);
		return;
	}
	httpresp_upstream_input(c);
	if (c->st != ST_HTTP)
		return; /* the input completed the response (or failed) */
	if (c->ex->dec && (c->ex->dec_end || evbuffer_get_length(c->ex->zin) > 0 ||
		       conn_in_len(c->up) > 0))
		return; /* a decoded body waits for the client: httpresp_resume */
	if (!httpmsg_started(c->ex->resp) && c->ex->req_down == 0 && c->ex->req_up == 0) {
		/* an idle kept-alive upstream went away: fine */
		conn_drop_upstream(c);
		c->up_connected = false;
		return;
	}
	/* (a response not begun is no response: httpmsg_finish calls it done) */
	if (httpmsg_started(c->ex->resp) && httpmsg_finish(c->ex->resp) == HTTPMSG_DONE) {
		c->ex->force_close = true;
		response_done(c);
		return;
	}
	metrics_upstream_error(c->w->mx, MX_UP_PROTOCOL);
	if (c->ex->req_down == 0)
		conn_error(c, 502, "connect-failed",
			   "egressd: upstream closed the connection without a response");
	else
		conn_close(c);
}

void httpresp_resume(struct conn *c)
{
	if (c->up_eof)
		httpresp_upstream_eof(c);
	else
		httpresp_upstream_input(c);
}
