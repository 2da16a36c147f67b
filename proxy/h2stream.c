/* h2stream.c -- one stream of the HTTP/2 relay: the sandbox's request
 * checked (Host/:authority, rules, leaks), answered by egressd or opened
 * upstream with its fields rewritten (h2head.c); the reply's head and
 * trailers redacted, its body decoded and redacted as room is granted
 * (h2body.c); the data providers both sessions read bodies through */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "elapsed.h"
#include "exchange.h"
#include "h2relay_int.h"
#include "policy.h"
#include "secrets.h"

static size_t window_of(uint32_t v)
{
	return v < MIN_WINDOW ? MIN_WINDOW : v;
}

struct h2stream *h2stream_new(struct h2relay *r, int32_t sid)
{
	struct h2stream *st = xcalloc(1, sizeof(*st));

	st->r = r;
	st->sid = sid;
	st->s_open = true;
	st->req = h2hdrs_new(r->conf.lim.header_list);
	h2queue_init(&st->up, window_of(r->conf.lim.stream_buf));
	st->body = h2body_new(window_of(r->conf.lim.stream_buf));
	st->next = r->streams;
	if (r->streams)
		r->streams->prev = st;
	r->streams = st;
	return st;
}

static void emit(struct h2relay *r, const struct h2relay_event *ev)
{
	if (r->cbs.event)
		r->cbs.event(r->cbs.ctx, ev);
}

static void base_event(const struct h2stream *st, enum h2relay_event_kind kind,
		       struct h2relay_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->stream_id = st->sid;
	ev->method = st->method;
	ev->path = st->path ? st->path : "";
	ev->status = st->status;
	ev->bytes_up = st->bytes_up;
	ev->bytes_down = st->bytes_down;
	ev->reason = st->reason;
	ev->detail = st->detail;
	ev->ruled = st->ruled;
	ev->rv = st->rv;
}

void h2stream_log(struct h2stream *st, bool incomplete)
{
	struct h2relay_event ev;

	if (!st->head_done)
		return;
	base_event(st, H2EV_REQUEST, &ev);
	ev.secrets = st->injected;
	ev.incomplete = incomplete;
	ev.usec = elapsed_usec(&st->start);
	emit(st->r, &ev);
	st->head_done = false; /* logged once */
}

void h2stream_free(struct h2stream *st)
{
	struct h2relay *r = st->r;

	if (st->prev)
		st->prev->next = st->next;
	else
		r->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	/* bytes received and never passed on still count in the connections'
	 * windows: credited (the streams are closed) */
	nghttp2_session_consume(r->s[H2_SANDBOX], st->sid, st->up.len);
	if (st->uid > 0)
		nghttp2_session_consume(r->s[H2_UPSTREAM], st->uid, h2body_in_len(st->body));
	r->down_total -= h2body_out_len(st->body);
	h2queue_dispose(&st->up);
	h2body_free(st->body);
	h2hdrs_free(st->req);
	h2hdrs_free(st->req_tr);
	h2hdrs_free(st->resp);
	h2hdrs_free(st->resp_tr);
	free(st->path);
	free(st);
}

/* Frees st once neither session knows it. */
void h2stream_maybe_free(struct h2stream *st)
{
	if (!st->s_open && !st->u_open)
		h2stream_free(st);
}

/* ---- reply bodies: decoded and redacted as room is granted ---- */

static void reply_failed(struct h2stream *st, const char *why);

/* Moves reply bytes on while the stream's and the connection's output are
 * under their bounds; what it used of the input is credited upstream. */
void h2stream_pump(struct h2stream *st)
{
	struct h2relay *r = st->r;
	const struct h2relay_limits *l = &r->conf.lim;
	size_t out = h2body_out_len(st->body), room, used;
	const char *err;

	if (st->refused || !h2body_pending(st->body) || out >= l->stream_buf ||
	    r->down_total >= l->conn_buf)
		return;
	room = l->stream_buf - out;
	if (room > l->conn_buf - r->down_total)
		room = l->conn_buf - r->down_total;
	used = h2body_pump(st->body, room, &err);
	r->down_total += h2body_out_len(st->body) - out;
	if (used)
		nghttp2_session_consume(r->s[H2_UPSTREAM], st->uid, used);
	if (err)
		reply_failed(st, err);
}

/* ---- answers egressd gives itself ---- */

static ssize_t down_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud);

/* The stream's request is not forwarded (or its reply cannot be): status,
 * X-Egressd-Reason and a one-line body (none for HEAD) to the sandbox;
 * request DATA still coming is dropped. */
static void answer(struct h2stream *st, int status, const char *reason_hdr, const char *msg)
{
	struct h2relay *r = st->r;
	struct h2nv nv;
	char st_s[8], len_s[24];
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = down_read };
	size_t ml = strlen(msg), out = h2body_out_len(st->body), dropped;
	char *text = xmalloc(ml + 1);

	if (st->uid > 0 && st->u_open)
		nghttp2_submit_rst_stream(r->s[H2_UPSTREAM], NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
	nghttp2_session_consume(r->s[H2_SANDBOX], st->sid, st->up.len);
	h2queue_dispose(&st->up);
	memcpy(text, msg, ml);
	text[ml] = '\n';
	dropped = h2body_replace(st->body, text, st->head_req ? 0 : ml + 1);
	free(text);
	if (st->uid > 0)
		nghttp2_session_consume(r->s[H2_UPSTREAM], st->uid, dropped);
	r->down_total = r->down_total - out + h2body_out_len(st->body);
	st->refused = true;
	st->resp_sent = true;
	st->status = status;
	snprintf(st_s, sizeof(st_s), "%d", status);
	snprintf(len_s, sizeof(len_s), "%zu", ml + 1);
	h2nv_init(&nv);
	h2nv_add(&nv, ":status", 7, st_s, strlen(st_s), NGHTTP2_NV_FLAG_NONE);
	h2nv_add(&nv, "x-egressd-reason", 16, reason_hdr, strlen(reason_hdr), NGHTTP2_NV_FLAG_NONE);
	h2nv_add(&nv, "content-type", 12, "text/plain; charset=utf-8", 25, NGHTTP2_NV_FLAG_NONE);
	h2nv_add(&nv, "content-length", 14, len_s, strlen(len_s), NGHTTP2_NV_FLAG_NONE);
	h2nv_seal(&nv);
	nghttp2_submit_response(r->s[H2_SANDBOX], st->sid, nv.nv, nv.n, st->head_req ? NULL : &prd);
	h2nv_dispose(&nv);
}

/* A reply that cannot be redacted (a decoder error, a refused coding):
 * counted as a refusal; a 502 if the sandbox has no head yet, else the
 * stream is reset. The upstream's stream is cancelled. */
static void reply_failed(struct h2stream *st, const char *why)
{
	struct h2relay *r = st->r;
	struct h2relay_event ev;
	char msg[HOST_MAX + 256];

	st->reason = REASON_UNREDACTABLE_ENCODING;
	st->detail = why;
	base_event(st, H2EV_REFUSE, &ev);
	emit(r, &ev);
	if (!st->resp_sent) {
		snprintf(msg, sizeof(msg), "egressd refused the reply of %s: %s (%s)",
			 r->conf.t->host, reason_str(REASON_UNREDACTABLE_ENCODING), why);
		answer(st, 502, reason_str(REASON_UNREDACTABLE_ENCODING), msg);
		return;
	}
	if (st->uid > 0 && st->u_open)
		nghttp2_submit_rst_stream(r->s[H2_UPSTREAM], NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
	nghttp2_submit_rst_stream(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
	st->refused = st->reset = true;
}

/* ---- data providers ---- */

static void submit_trailers(struct h2relay *r, enum h2relay_side to, int32_t id,
			    const struct h2stream *st, struct h2hdrs *tr);

/* The reply body for the sandbox, from down; refills down from rin (which
 * credits the upstream) as it drains. */
static ssize_t down_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2stream *st = src->ptr;
	struct h2relay *r = ud;
	size_t n = h2body_take(st->body, buf, len);

	(void)s;
	r->down_total -= n;
	st->bytes_down += n;
	h2stream_pump(st);
	if (st->reset)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (h2body_out_len(st->body) == 0 && h2body_out_done(st->body)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->resp_tr && !st->refused) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(r, H2_SANDBOX, sid, st, st->resp_tr);
		}
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* The request body for the upstream, from up; credits the sandbox. */
static ssize_t up_read(nghttp2_session *s, int32_t uid, uint8_t *buf, size_t len,
		       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2stream *st = src->ptr;
	struct h2relay *r = ud;
	size_t n = h2queue_take(&st->up, buf, len);

	(void)s;
	st->bytes_up += n;
	if (n)
		nghttp2_session_consume(r->s[H2_SANDBOX], st->sid, n);
	if (st->up.len == 0 && st->up_end) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->req_tr) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(r, H2_UPSTREAM, uid, st, st->req_tr);
		}
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* Trailers: towards the upstream with placeholders injected, towards the
 * sandbox redacted (grpc-message may echo the request). */
static void submit_trailers(struct h2relay *r, enum h2relay_side to, int32_t id,
			    const struct h2stream *st, struct h2hdrs *tr)
{
	struct h2nv nv;
	struct h2head_req rq = { r->conf.ss, r->conf.approved, false, r->authority };
	uint64_t used = 0;
	bool okay;

	h2nv_init(&nv);
	if (to == H2_UPSTREAM)
		okay = h2head_request_nv(tr, &rq, true, &nv, &used);
	else
		okay = h2head_reply_nv(tr, r->conf.ss, st->redacting ? r->conf.approved : 0, NULL,
				       st->status, false, false, true, &nv);
	if (okay)
		nghttp2_submit_trailer(r->s[to], id, nv.nv, nv.n);
	else
		nghttp2_submit_rst_stream(r->s[to], NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
	h2nv_dispose(&nv);
}

/* ---- requests from the sandbox ---- */

static void set_path(struct h2stream *st)
{
	const char *v = "", *m = "";
	size_t l = 0, ml = 0;

	h2hdrs_find(st->req, ":path", &v, &l);
	h2hdrs_find(st->req, ":method", &m, &ml);
	if (l > EXCHANGE_PATH_MAX)
		l = EXCHANGE_PATH_MAX;
	st->path = xmalloc(l + 1);
	memcpy(st->path, v, l);
	st->path[l] = '\0';
	if (ml >= sizeof(st->method))
		ml = sizeof(st->method) - 1;
	memcpy(st->method, m, ml);
	st->method[ml] = '\0';
	st->head_req = strcmp(st->method, "HEAD") == 0;
}

void h2stream_refuse(struct h2stream *st, enum reason rs, int status, const char *hdr,
		   const char *msg)
{
	st->reason = rs;
	answer(st, status, hdr, msg);
}

/* Request rules; false: refused (answered). */
static bool rules_ok(struct h2stream *st)
{
	struct h2relay *r = st->r;
	const char *p = "";
	size_t pl = 0, o;
	char msg[HOST_MAX + EXCHANGE_PATH_MAX + 256];

	h2hdrs_find(st->req, ":path", &p, &pl);
	st->ruled = r->conf.pol &&
		    policy_check_request(r->conf.pol, r->conf.t, st->method, p, pl, &st->rv);
	if (!st->ruled || st->rv.allow)
		return true;
	o = (size_t)snprintf(msg, sizeof(msg), "egressd: %s https://%s%s", st->method,
			     r->authority, st->path);
	if (o >= sizeof(msg))
		o = sizeof(msg) - 1;
	rules_verdict_text(&st->rv, msg + o, sizeof(msg) - o);
	h2stream_refuse(st, REASON_RULE_DENIED, 403, reason_str(REASON_RULE_DENIED), msg);
	return false;
}

/* Placeholder leaks: an event; refused with --on-placeholder-leak block. */
static bool leaks_ok(struct h2stream *st)
{
	struct h2relay *r = st->r;
	uint64_t leaks = h2head_scan_leaks(st->req, r->conf.ss, r->conf.approved);
	struct h2relay_event ev;
	char msg[HOST_MAX + EXCHANGE_PATH_MAX + 256];

	if (!leaks)
		return true;
	base_event(st, H2EV_LEAK, &ev);
	ev.secrets = leaks;
	ev.blocked = r->conf.leak_block;
	emit(r, &ev);
	if (!r->conf.leak_block)
		return true;
	snprintf(msg, sizeof(msg), "egressd refused %s %s on %s: %s (%s)", st->method, st->path,
		 r->conf.t->host, reason_str(REASON_PLACEHOLDER_LEAK),
		 "a placeholder is bound for another host");
	h2stream_refuse(st, REASON_PLACEHOLDER_LEAK, 403, reason_str(REASON_PLACEHOLDER_LEAK), msg);
	return false;
}

/* A complete request head: checked, then opened upstream with its fields
 * rewritten (end: the request has no body). */
void h2stream_start(struct h2stream *st, bool end)
{
	struct h2relay *r = st->r;
	struct h2head_req rq = { r->conf.ss, r->conf.approved, r->conf.approved != 0,
				 r->authority };
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = up_read };
	const char *why;
	struct h2nv nv;
	int code;
	int32_t uid;

	set_path(st);
	st->head_done = true;
	gettimeofday(&st->start, NULL);
	st->up_end = end;
	r->idle_tat[H2_SANDBOX] = 0; /* a new stream: the idle-frame bucket is full */
	if (h2hdrs_too_big(st->req)) {
		h2stream_refuse(st, REASON_BAD_REQUEST, 431, "bad-request", "egressd: request head too large");
		return;
	}
	code = h2head_check_request(st->req, r->conf.t, &why);
	if (code) {
		h2stream_refuse(st, code == 421 ? REASON_HOST_MISMATCH : REASON_BAD_REQUEST, code,
		       code == 421 ? "host-mismatch" : "bad-request", why);
		return;
	}
	if (!rules_ok(st) || !leaks_ok(st))
		return;
	h2nv_init(&nv);
	if (!h2head_request_nv(st->req, &rq, false, &nv, &st->injected)) {
		h2nv_dispose(&nv);
		h2stream_refuse(st, REASON_BAD_REQUEST, 431, "bad-request", "egressd: request head too large");
		return;
	}
	uid = nghttp2_submit_request(r->s[H2_UPSTREAM], NULL, nv.nv, nv.n, end ? NULL : &prd, st);
	h2nv_dispose(&nv);
	h2hdrs_free(st->req); /* the rewritten copy went to nghttp2 (wiped memory) */
	st->req = NULL;
	if (uid < 0) {
		h2stream_refuse(st, REASON_CONNECT_FAILED, 502, "connect-failed",
		       "egressd: the upstream connection takes no new streams");
		return;
	}
	st->uid = uid;
	st->u_open = true;
}

/* ---- replies from the upstream ---- */

/* A gRPC reply (content-type application/grpc, +proto, ;params)? Not
 * grpc-web, whose framing differs (trailer frames, base64 in -text). */
static bool is_grpc(const struct h2hdrs *resp)
{
	const char *v;
	size_t l;

	return h2hdrs_find(resp, "content-type", &v, &l) == 1 && l >= 16 &&
	       strncasecmp(v, "application/grpc", 16) == 0 &&
	       (l == 16 || v[16] == '+' || v[16] == ';');
}

static bool has_body(const struct h2stream *st, int status)
{
	return !st->head_req && status != 204 && status != 304;
}

/* A reply head: 1xx passed on (redacted), a final one decided (coding),
 * redacted and sent with the body to follow (end: none follows). */
void h2stream_reply_head(struct h2stream *st, bool end)
{
	struct h2relay *r = st->r;
	int status = h2head_status(st->resp);
	bool body = has_body(st, status), redacting = r->conf.approved != 0 && r->conf.ss;
	struct h2head_coding c = { 0 };
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = down_read };
	const char *why = NULL;
	struct h2nv nv;

	if (st->refused)
		return;
	h2nv_init(&nv);
	if (status >= 100 && status < 200) {
		if (h2head_reply_nv(st->resp, r->conf.ss, redacting ? r->conf.approved : 0, NULL,
				    status, false, st->head_req, false, &nv))
			nghttp2_submit_headers(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid, NULL,
					       nv.nv, nv.n, NULL);
		h2nv_dispose(&nv);
		return;
	}
	st->resp_final = true;
	if (redacting)
		why = h2head_decide_coding(st->resp, status, body, &c);
	if (why) {
		reply_failed(st, why);
		h2nv_dispose(&nv);
		return;
	}
	st->redacting = redacting;
	h2body_setup(st->body, c.cs, c.n, r->conf.ss, redacting ? r->conf.approved : 0);
	if (redacting && is_grpc(st->resp))
		h2body_grpc(st->body); /* each message keeps a true length prefix */
	if (!h2head_reply_nv(st->resp, r->conf.ss, redacting ? r->conf.approved : 0, &c, status,
			     body, st->head_req, false, &nv)) {
		h2nv_dispose(&nv);
		reply_failed(st, "a reply field over 1 MiB");
		return;
	}
	st->status = status;
	st->resp_sent = true;
	st->rin_end = end;
	if (end)
		h2body_in_end(st->body);
	nghttp2_submit_response(r->s[H2_SANDBOX], st->sid, nv.nv, nv.n, end ? NULL : &prd);
	h2nv_dispose(&nv);
}
