/* h2relay.c -- one intercepted HTTP/2 connection: an nghttp2 server session
 * towards the sandbox, a client session towards the upstream, each sandbox
 * stream mapped to an upstream stream, the checks and rewrites of h2head.c
 * applied per stream, reply bodies decoded and redacted as they stream,
 * flow-control credit returned only as bytes move on */
#include "h2relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "contentdec.h"
#include "exchange.h"
#include "h2head.h"
#include "pattern.h"
#include "policy.h"
#include "redact.h"
#include "secrets.h"

#define DEC_CHUNK 16384 /* reply bytes decoded / redacted per step */
#define MIN_WINDOW 65535 /* RFC 9113's initial window: a peer may fill it before our SETTINGS */

/* A byte queue with a cap, wiped when it moves or is freed. */
struct bq {
	uint8_t *p;
	size_t off, len, cap, max;
};

struct h2stream {
	struct h2relay *r;
	struct h2stream *prev, *next;
	int32_t sid, uid;        /* the sandbox's stream, the upstream's (0: none yet) */
	bool s_open, u_open;     /* each session still has it */
	struct h2hdrs *req, *req_tr;   /* request head and trailers from the sandbox */
	struct h2hdrs *resp, *resp_tr; /* reply head and trailers from the upstream */
	bool head_done;          /* the request head was taken (logged at the end) */
	char method[33];
	char *path;
	bool head_req;           /* HEAD: the reply has no body */
	struct bq up;            /* request DATA waiting for the upstream */
	bool up_end;             /* the sandbox ended its request */
	struct bq rin;           /* reply DATA as received, not yet decoded / redacted */
	struct bq down;          /* reply DATA ready for the sandbox */
	bool rin_end, down_end;  /* the upstream ended its reply; all of it is in down */
	bool resp_final;         /* a final reply head came */
	bool resp_sent;          /* the sandbox got a final head (or egressd's answer) */
	bool resp_too_big;       /* the upstream's head or trailers passed the bound */
	bool refused;            /* egressd answered: request DATA is dropped */
	bool reset;              /* the reply failed after its head: the stream is reset */
	struct redactor *red;
	struct contentdec *dec;
	bool dec_done;
	int status;
	enum reason reason;
	const char *detail;
	uint64_t injected, bytes_up, bytes_down;
	bool ruled;
	struct rule_verdict rv;
};

struct h2relay {
	struct h2relay_conf conf;
	struct h2relay_cbs cbs;
	nghttp2_session *s[2];   /* [H2_SANDBOX] server, [H2_UPSTREAM] client */
	bool blocked[2];         /* the write callback took less than offered */
	uint64_t written[2];
	uint32_t idle[2];        /* PING / SETTINGS / empty DATA since a useful frame */
	bool calm[2];            /* ... too many: that side gets ENHANCE_YOUR_CALM */
	bool failed;             /* a side is gone or misbehaved: end the connection */
	struct h2stream *streams;
	size_t held;             /* bytes in every stream's queues */
	size_t down_total;       /* bytes in the down queues (the per-connection bound) */
	char authority[HOST_MAX + 16];
};

/* ---- byte queues ---- */

static bool bq_add(struct bq *q, const uint8_t *p, size_t n)
{
	if (n > q->max - q->len)
		return false;
	if (n > q->cap - q->off - q->len) {
		size_t ncap = q->cap ? q->cap : 4096;
		uint8_t *np;
		while (ncap < q->len + n)
			ncap *= 2;
		if (ncap > q->max)
			ncap = q->max;
		np = xmalloc(ncap);
		if (q->len)
			memcpy(np, q->p + q->off, q->len);
		if (q->p)
			xwipe(q->p, q->cap);
		free(q->p);
		q->p = np;
		q->cap = ncap;
		q->off = 0;
	}
	memcpy(q->p + q->off + q->len, p, n);
	q->len += n;
	return true;
}

static void bq_drain(struct bq *q, size_t n)
{
	q->off += n;
	q->len -= n;
	if (q->len == 0)
		q->off = 0;
}

static void bq_dispose(struct bq *q)
{
	if (q->p)
		xwipe(q->p, q->cap);
	free(q->p);
	q->p = NULL;
	q->off = q->len = q->cap = 0;
}

/* ---- nghttp2's memory: wiped when freed (header blocks hold secrets) ---- */

#define MEM_HDR 16 /* keeps max_align_t alignment */

static void *wipe_malloc(size_t n, void *ud)
{
	size_t *p = n > SIZE_MAX - MEM_HDR ? NULL : malloc(n + MEM_HDR);

	(void)ud;
	if (!p)
		return NULL;
	p[0] = n;
	return (char *)p + MEM_HDR;
}

static void wipe_free(void *q, void *ud)
{
	size_t *p;

	(void)ud;
	if (!q)
		return;
	p = (size_t *)(void *)((char *)q - MEM_HDR);
	xwipe(q, p[0]);
	free(p);
}

static void *wipe_calloc(size_t nm, size_t sz, void *ud)
{
	void *q = sz && nm > SIZE_MAX / sz ? NULL : wipe_malloc(nm * sz, ud);

	if (q)
		memset(q, 0, nm * sz);
	return q;
}

static void *wipe_realloc(void *q, size_t n, void *ud)
{
	void *np;
	size_t old;

	if (!q)
		return wipe_malloc(n, ud);
	np = wipe_malloc(n, ud);
	if (!np)
		return NULL;
	old = ((size_t *)(void *)((char *)q - MEM_HDR))[0];
	memcpy(np, q, old < n ? old : n);
	wipe_free(q, ud);
	return np;
}

static nghttp2_mem wipe_mem = { NULL, wipe_malloc, wipe_free, wipe_calloc, wipe_realloc };

/* ---- streams ---- */

void h2relay_limits_default(struct h2relay_limits *l)
{
	l->stream_buf = 256 * 1024;
	l->conn_buf = 1024 * 1024;
	l->max_streams = 100;
	l->header_list = 64 * 1024;
	l->idle_frames = 1000;
	l->reset_burst = 1000;
	l->reset_rate = 33;
}

static size_t window_of(uint32_t v)
{
	return v < MIN_WINDOW ? MIN_WINDOW : v;
}

static struct h2stream *stream_new(struct h2relay *r, int32_t sid)
{
	struct h2stream *st = xcalloc(1, sizeof(*st));

	st->r = r;
	st->sid = sid;
	st->s_open = true;
	st->req = h2hdrs_new(r->conf.lim.header_list);
	st->up.max = st->rin.max = window_of(r->conf.lim.stream_buf);
	st->down.max = SIZE_MAX;
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

static void log_request(struct h2stream *st, bool incomplete)
{
	struct h2relay_event ev;

	if (!st->head_done)
		return;
	base_event(st, H2EV_REQUEST, &ev);
	ev.secrets = st->injected;
	ev.incomplete = incomplete;
	emit(st->r, &ev);
	st->head_done = false; /* logged once */
}

static void stream_free(struct h2stream *st)
{
	struct h2relay *r = st->r;

	if (st->prev)
		st->prev->next = st->next;
	else
		r->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	r->held -= st->up.len + st->rin.len + st->down.len;
	r->down_total -= st->down.len;
	bq_dispose(&st->up);
	bq_dispose(&st->rin);
	bq_dispose(&st->down);
	h2hdrs_free(st->req);
	h2hdrs_free(st->req_tr);
	h2hdrs_free(st->resp);
	h2hdrs_free(st->resp_tr);
	redactor_free(st->red);
	contentdec_free(st->dec);
	free(st->path);
	free(st);
}

/* Frees st once neither session knows it. */
static void stream_maybe_free(struct h2stream *st)
{
	if (!st->s_open && !st->u_open)
		stream_free(st);
}

static struct h2stream *by_uid(struct h2relay *r, int32_t uid)
{
	for (struct h2stream *st = r->streams; st; st = st->next)
		if (st->uid == uid)
			return st;
	return NULL;
}

/* ---- writing ---- */

static ssize_t write_side(struct h2relay *r, enum h2relay_side side, const uint8_t *p, size_t n)
{
	ssize_t w = r->cbs.write(r->cbs.ctx, side, p, n);

	if (w < 0) {
		r->failed = true;
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (w == 0) {
		r->blocked[side] = true;
		return NGHTTP2_ERR_WOULDBLOCK;
	}
	r->written[side] += (uint64_t)w;
	return w;
}

static ssize_t sandbox_send(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *ud)
{
	(void)s;
	(void)flags;
	return write_side(ud, H2_SANDBOX, p, n);
}

static ssize_t upstream_send(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *ud)
{
	(void)s;
	(void)flags;
	return write_side(ud, H2_UPSTREAM, p, n);
}

/* A side sent one more frame that carries nothing; too many in a row: the
 * callback fails, so nghttp2_session_mem_recv stops at once, and
 * h2relay_feed ends the session with GOAWAY ENHANCE_YOUR_CALM. (Terminating
 * from inside a callback lets nghttp2 1.52 go on parsing the same input in a
 * state it asserts against: a frame size error after it aborts.) */
static int idle_frame(struct h2relay *r, enum h2relay_side side)
{
	if (++r->idle[side] <= r->conf.lim.idle_frames)
		return 0;
	r->calm[side] = true;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* ---- reply bodies: rin -> (decoder) -> redactor -> down ---- */

static void emit_down(void *ctx, const char *p, size_t n)
{
	struct h2stream *st = ctx;

	if (n && bq_add(&st->down, (const uint8_t *)p, n)) {
		st->r->held += n;
		st->r->down_total += n;
	}
}

/* Decoded or raw bytes on their way to the sandbox. */
static void to_down(struct h2stream *st, const char *p, size_t n)
{
	if (st->red)
		redactor_feed(st->red, p, n, emit_down, st);
	else
		emit_down(st, p, n);
}

static void credit_upstream(struct h2stream *st, size_t n)
{
	struct h2relay *r = st->r;

	r->held -= n;
	bq_drain(&st->rin, n);
	nghttp2_session_consume(r->s[H2_UPSTREAM], st->uid, n);
}

/* Room in the down queue: the per-stream and per-connection bounds. */
static size_t down_room(const struct h2stream *st)
{
	const struct h2relay_limits *l = &st->r->conf.lim;
	size_t room;

	if (st->down.len >= l->stream_buf || st->r->down_total >= l->conn_buf)
		return 0;
	room = l->stream_buf - st->down.len;
	if (room > l->conn_buf - st->r->down_total)
		room = l->conn_buf - st->r->down_total;
	return room < DEC_CHUNK ? room : DEC_CHUNK;
}

static void reply_failed(struct h2stream *st, const char *why);

/* One step through the decoder; false: it failed (st answered). */
static bool decode_step(struct h2stream *st, size_t room, bool *progress)
{
	char buf[DEC_CHUNK];
	size_t used = 0, made = 0;
	bool end = st->rin_end;
	enum contentdec_status rs;

	rs = contentdec_feed(st->dec, (const char *)st->rin.p + st->rin.off, st->rin.len, &used,
			     buf, room, &made, end);
	if (made)
		to_down(st, buf, made);
	xwipe(buf, made);
	if (used)
		credit_upstream(st, used);
	*progress = used > 0 || made > 0;
	if (rs == CONTENTDEC_ERROR) {
		reply_failed(st, contentdec_error(st->dec));
		return false;
	}
	if (rs == CONTENTDEC_DONE)
		st->dec_done = true;
	return true;
}

/* Moves reply bytes from rin to down while there is room; at the end of
 * the reply, flushes the redactor and marks down complete. */
static void pump_down(struct h2stream *st)
{
	bool progress = true;

	while (progress && !st->down_end && !st->refused) {
		size_t room = down_room(st), take;

		progress = false;
		if (room == 0)
			return;
		if (st->dec && !st->dec_done) {
			if (st->rin.len == 0 && !st->rin_end)
				return;
			if (!decode_step(st, room, &progress))
				return;
			if (!st->dec_done)
				continue;
		} else if (st->rin.len > 0) {
			if (st->dec_done) { /* bytes after the coded stream: junk */
				reply_failed(st, "data after the end of the encoded body");
				return;
			}
			take = st->rin.len < room ? st->rin.len : room;
			to_down(st, (const char *)st->rin.p + st->rin.off, take);
			credit_upstream(st, take);
			progress = true;
			continue;
		}
		if (st->rin_end && st->rin.len == 0) {
			if (st->red)
				redactor_flush(st->red, emit_down, st);
			st->down_end = true;
		}
	}
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
	size_t ml = strlen(msg);

	if (st->uid > 0 && st->u_open)
		nghttp2_submit_rst_stream(r->s[H2_UPSTREAM], NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
	r->held -= st->up.len + st->rin.len;
	bq_dispose(&st->up);
	bq_dispose(&st->rin);
	redactor_free(st->red);
	st->red = NULL;
	contentdec_free(st->dec);
	st->dec = NULL;
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
	if (!st->head_req) {
		emit_down(st, msg, ml);
		emit_down(st, "\n", 1);
	}
	st->down_end = true;
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
	size_t n = st->down.len < len ? st->down.len : len;

	(void)s;
	if (n) {
		memcpy(buf, st->down.p + st->down.off, n);
		bq_drain(&st->down, n);
		r->held -= n;
		r->down_total -= n;
		st->bytes_down += n;
		pump_down(st);
	}
	if (st->reset)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (st->down.len == 0 && st->down_end) {
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
	size_t n = st->up.len < len ? st->up.len : len;

	(void)s;
	if (n) {
		memcpy(buf, st->up.p + st->up.off, n);
		bq_drain(&st->up, n);
		r->held -= n;
		st->bytes_up += n;
		nghttp2_session_consume(r->s[H2_SANDBOX], st->sid, n);
	}
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
		okay = h2head_reply_nv(tr, r->conf.ss, st->red ? r->conf.approved : 0, NULL,
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

static void refuse(struct h2stream *st, enum reason rs, int status, const char *hdr,
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
	refuse(st, REASON_RULE_DENIED, 403, reason_str(REASON_RULE_DENIED), msg);
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
	refuse(st, REASON_PLACEHOLDER_LEAK, 403, reason_str(REASON_PLACEHOLDER_LEAK), msg);
	return false;
}

/* A complete request head: checked, then opened upstream with its fields
 * rewritten (end: the request has no body). */
static void start_request(struct h2stream *st, bool end)
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
	st->up_end = end;
	r->idle[H2_SANDBOX] = 0;
	if (h2hdrs_too_big(st->req)) {
		refuse(st, REASON_BAD_REQUEST, 431, "bad-request", "egressd: request head too large");
		return;
	}
	code = h2head_check_request(st->req, r->conf.t, &why);
	if (code) {
		refuse(st, code == 421 ? REASON_HOST_MISMATCH : REASON_BAD_REQUEST, code,
		       code == 421 ? "host-mismatch" : "bad-request", why);
		return;
	}
	if (!rules_ok(st) || !leaks_ok(st))
		return;
	h2nv_init(&nv);
	if (!h2head_request_nv(st->req, &rq, false, &nv, &st->injected)) {
		h2nv_dispose(&nv);
		refuse(st, REASON_BAD_REQUEST, 431, "bad-request", "egressd: request head too large");
		return;
	}
	uid = nghttp2_submit_request(r->s[H2_UPSTREAM], NULL, nv.nv, nv.n, end ? NULL : &prd, st);
	h2nv_dispose(&nv);
	h2hdrs_free(st->req); /* the rewritten copy went to nghttp2 (wiped memory) */
	st->req = NULL;
	if (uid < 0) {
		refuse(st, REASON_CONNECT_FAILED, 502, "connect-failed",
		       "egressd: the upstream connection takes no new streams");
		return;
	}
	st->uid = uid;
	st->u_open = true;
}

/* ---- replies from the upstream ---- */

static bool has_body(const struct h2stream *st, int status)
{
	return !st->head_req && status != 204 && status != 304;
}

/* A reply head: 1xx passed on (redacted), a final one decided (coding),
 * redacted and sent with the body to follow (end: none follows). */
static void reply_head(struct h2stream *st, bool end)
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
	if (c.n > 0)
		st->dec = contentdec_new(c.cs, c.n);
	if (redacting)
		st->red = redactor_new(r->conf.ss, r->conf.approved);
	if (!h2head_reply_nv(st->resp, r->conf.ss, redacting ? r->conf.approved : 0, &c, status,
			     body, st->head_req, false, &nv)) {
		h2nv_dispose(&nv);
		reply_failed(st, "a reply field over 1 MiB");
		return;
	}
	st->status = status;
	st->resp_sent = true;
	st->rin_end = end;
	st->down_end = end;
	nghttp2_submit_response(r->s[H2_SANDBOX], st->sid, nv.nv, nv.n, end ? NULL : &prd);
	h2nv_dispose(&nv);
}

/* ---- session callbacks ---- */

static struct h2stream *stream_of(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2relay *r = ud;
	struct h2stream *st;

	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (s == r->s[H2_SANDBOX]) {
		if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
			st = stream_new(r, f->hd.stream_id);
			nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
		} else if ((st = stream_of(s, f->hd.stream_id)) && !st->req_tr) {
			st->req_tr = h2hdrs_new(r->conf.lim.header_list);
		}
		return 0;
	}
	st = stream_of(s, f->hd.stream_id);
	if (!st)
		return 0;
	if (st->resp_final) {
		h2hdrs_free(st->resp_tr);
		st->resp_tr = h2hdrs_new(r->conf.lim.header_list);
	} else {
		h2hdrs_free(st->resp);
		st->resp = h2hdrs_new(r->conf.lim.header_list);
	}
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *val, size_t vl, uint8_t flags, void *ud)
{
	struct h2relay *r = ud;
	struct h2stream *st = f->hd.type == NGHTTP2_HEADERS ? stream_of(s, f->hd.stream_id) : NULL;
	struct h2hdrs *h;

	(void)flags;
	if (!st)
		return 0;
	if (s == r->s[H2_SANDBOX])
		h = st->head_done ? st->req_tr : st->req;
	else
		h = st->resp_final ? st->resp_tr : st->resp;
	if (!h || h2hdrs_add(h, name, nl, val, vl))
		return 0;
	if (s == r->s[H2_SANDBOX] && !st->head_done)
		return 0; /* answered with 431 once the head is complete */
	if (s == r->s[H2_UPSTREAM])
		st->resp_too_big = true;
	return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets that stream */
}

static void resume(struct h2relay *r, enum h2relay_side side, int32_t id)
{
	if (id > 0)
		nghttp2_session_resume_data(r->s[side], id);
}

static int sandbox_frame(struct h2relay *r, const nghttp2_frame *f)
{
	struct h2stream *st = stream_of(r->s[H2_SANDBOX], f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (!st)
			break;
		if (!st->head_done) {
			start_request(st, end);
			break;
		}
		st->up_end = true; /* trailers */
		resume(r, H2_UPSTREAM, st->u_open ? st->uid : 0);
		break;
	case NGHTTP2_DATA:
		if (f->hd.length == 0 && !end && idle_frame(r, H2_SANDBOX))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		if (st && end) {
			st->up_end = true;
			resume(r, H2_UPSTREAM, st->u_open ? st->uid : 0);
		}
		break;
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && idle_frame(r, H2_SANDBOX))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		break;
	}
	return 0;
}

static int upstream_frame(struct h2relay *r, const nghttp2_frame *f)
{
	struct h2stream *st = stream_of(r->s[H2_UPSTREAM], f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (!st)
			break;
		if (!st->resp_final) {
			r->idle[H2_UPSTREAM] = 0;
			reply_head(st, end);
			break;
		}
		st->rin_end = true; /* trailers */
		pump_down(st);
		resume(r, H2_SANDBOX, st->sid);
		break;
	case NGHTTP2_DATA:
		if (f->hd.length == 0 && !end && idle_frame(r, H2_UPSTREAM))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		if (st && end) {
			st->rin_end = true;
			pump_down(st);
			resume(r, H2_SANDBOX, st->sid);
		}
		break;
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && idle_frame(r, H2_UPSTREAM))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		break;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2relay *r = ud;

	return s == r->s[H2_SANDBOX] ? sandbox_frame(r, f) : upstream_frame(r, f);
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		   void *ud)
{
	struct h2relay *r = ud;
	bool sandbox = s == r->s[H2_SANDBOX];
	struct h2stream *st = stream_of(s, id);
	struct bq *q = !st ? NULL : sandbox ? &st->up : &st->rin;

	(void)flags;
	r->idle[sandbox ? H2_SANDBOX : H2_UPSTREAM] = 0;
	if (!st || st->refused || (sandbox ? !st->u_open : !st->s_open) || !bq_add(q, p, n)) {
		nghttp2_session_consume(s, id, n); /* nobody takes them */
		return 0;
	}
	r->held += n;
	if (sandbox) {
		resume(r, H2_UPSTREAM, st->uid);
		return 0;
	}
	pump_down(st);
	resume(r, H2_SANDBOX, st->sid);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h2relay *r = ud;
	struct h2stream *st = stream_of(s, id);

	if (!st)
		return 0;
	if (s == r->s[H2_SANDBOX]) {
		st->s_open = false;
		/* a request not sent whole, or a reset: the upstream stops too (a
		 * request sent whole finishes upstream on its own) */
		if (st->u_open && (code != NGHTTP2_NO_ERROR || !st->up_end))
			nghttp2_submit_rst_stream(r->s[H2_UPSTREAM], NGHTTP2_FLAG_NONE, st->uid,
						  NGHTTP2_CANCEL);
		log_request(st, code != NGHTTP2_NO_ERROR || !st->resp_sent);
		stream_maybe_free(st);
		return 0;
	}
	st->u_open = false;
	if (st->s_open && !st->refused && (code != NGHTTP2_NO_ERROR || !st->rin_end)) {
		if (st->resp_too_big && !st->resp_sent)
			refuse(st, REASON_BAD_REQUEST, 502, "bad-response",
			       "egressd: the upstream's reply head is too large");
		else /* REFUSED_STREAM stays one: the sandbox may retry */
			nghttp2_submit_rst_stream(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid,
						  code != NGHTTP2_NO_ERROR ? code : NGHTTP2_INTERNAL_ERROR);
	}
	stream_maybe_free(st);
	return 0;
}

/* A request HEADERS nghttp2 could not send (the upstream refused new
 * streams, or the head is too large): the sandbox's stream is refused. */
static int on_not_sent(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
	struct h2relay *r = ud;
	struct h2stream *st;

	if (s != r->s[H2_UPSTREAM] || f->hd.type != NGHTTP2_HEADERS ||
	    !(st = by_uid(r, f->hd.stream_id)) || st->resp_final)
		return 0;
	/* a stream nghttp2 opened is closed next (on_stream_close frees st) */
	st->u_open = nghttp2_session_find_stream(s, f->hd.stream_id) != NULL;
	if (st->s_open && !st->resp_sent) {
		if (err == NGHTTP2_ERR_FRAME_SIZE_ERROR)
			refuse(st, REASON_BAD_REQUEST, 431, "bad-request",
			       "egressd: request head too large");
		else
			nghttp2_submit_rst_stream(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid,
						  NGHTTP2_REFUSED_STREAM);
	}
	stream_maybe_free(st);
	return 0;
}

/* ---- sessions ---- */

static nghttp2_session_callbacks *make_callbacks(bool sandbox)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return NULL;
	nghttp2_session_callbacks_set_send_callback(cb, sandbox ? sandbox_send : upstream_send);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_not_sent);
	return cb;
}

static nghttp2_option *make_option(const struct h2relay_limits *l, bool sandbox)
{
	nghttp2_option *o;

	if (nghttp2_option_new(&o) != 0)
		return NULL;
	nghttp2_option_set_no_auto_window_update(o, 1); /* credit as bytes move on */
	nghttp2_option_set_no_closed_streams(o, 1);
	nghttp2_option_set_max_continuations(o, 8);
	nghttp2_option_set_max_outbound_ack(o, 1000);
	nghttp2_option_set_max_settings(o, 32);
	if (sandbox)
		nghttp2_option_set_stream_reset_rate_limit(o, l->reset_burst, l->reset_rate);
	return o;
}

/* Initial SETTINGS and the connection window of one side. */
static int send_settings(struct h2relay *r, enum h2relay_side side)
{
	const struct h2relay_limits *l = &r->conf.lim;
	nghttp2_settings_entry sandbox[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_buf },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->header_list },
		{ NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
	};
	nghttp2_settings_entry upstream[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_buf },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->header_list },
	};
	bool sb = side == H2_SANDBOX;

	if (nghttp2_submit_settings(r->s[side], NGHTTP2_FLAG_NONE, sb ? sandbox : upstream,
				    sb ? 4 : 3) != 0)
		return -1;
	return nghttp2_session_set_local_window_size(r->s[side], NGHTTP2_FLAG_NONE, 0,
						     (int32_t)l->conn_buf);
}

static void make_authority(struct h2relay *r)
{
	const struct target *t = r->conf.t;
	int o = snprintf(r->authority, sizeof(r->authority),
			 t->is_ip && t->ip.family == 6 ? "[%s]" : "%s", t->host);

	if (t->port != 443 && o >= 0 && (size_t)o < sizeof(r->authority))
		snprintf(r->authority + o, sizeof(r->authority) - (size_t)o, ":%u", t->port);
}

struct h2relay *h2relay_new(const struct h2relay_conf *conf, const struct h2relay_cbs *cbs)
{
	struct h2relay *r = xcalloc(1, sizeof(*r));
	nghttp2_session_callbacks *cs = make_callbacks(true), *cu = make_callbacks(false);
	nghttp2_option *os = make_option(&conf->lim, true), *ou = make_option(&conf->lim, false);
	bool okay;

	r->conf = *conf;
	r->cbs = *cbs;
	if (r->conf.lim.stream_buf > NGHTTP2_MAX_WINDOW_SIZE)
		r->conf.lim.stream_buf = NGHTTP2_MAX_WINDOW_SIZE;
	if (r->conf.lim.conn_buf > NGHTTP2_MAX_WINDOW_SIZE)
		r->conf.lim.conn_buf = NGHTTP2_MAX_WINDOW_SIZE;
	make_authority(r);
	okay = cs && cu && os && ou &&
	       nghttp2_session_server_new3(&r->s[H2_SANDBOX], cs, r, os, &wipe_mem) == 0 &&
	       nghttp2_session_client_new3(&r->s[H2_UPSTREAM], cu, r, ou, &wipe_mem) == 0 &&
	       send_settings(r, H2_SANDBOX) == 0 && send_settings(r, H2_UPSTREAM) == 0;
	nghttp2_session_callbacks_del(cs);
	nghttp2_session_callbacks_del(cu);
	nghttp2_option_del(os);
	nghttp2_option_del(ou);
	if (!okay) {
		h2relay_free(r);
		return NULL;
	}
	return r;
}

void h2relay_free(struct h2relay *r)
{
	if (!r)
		return;
	while (r->streams) {
		log_request(r->streams, true);
		stream_free(r->streams);
	}
	/* no callbacks from here: the streams are gone */
	nghttp2_session_del(r->s[H2_SANDBOX]);
	nghttp2_session_del(r->s[H2_UPSTREAM]);
	free(r);
}

/* Streams whose reply waited for room in the connection's bound, and
 * bodies waiting on either side, are moved on. */
static void pump_all(struct h2relay *r)
{
	for (struct h2stream *st = r->streams, *nx; st; st = nx) {
		nx = st->next;
		if (st->s_open && (st->rin.len > 0 || (st->rin_end && !st->down_end)))
			pump_down(st);
		if (st->s_open && st->resp_sent && (st->down.len > 0 || st->down_end))
			resume(r, H2_SANDBOX, st->sid);
		if (st->u_open && (st->up.len > 0 || st->up_end))
			resume(r, H2_UPSTREAM, st->uid);
	}
}

/* One side's session is over: the other is ended too (GOAWAY). */
static void end_with(struct h2relay *r)
{
	for (int i = 0; i < 2; i++) {
		nghttp2_session *s = r->s[i], *o = r->s[!i];
		if (!nghttp2_session_want_read(s) && !nghttp2_session_want_write(s) &&
		    nghttp2_session_want_read(o))
			nghttp2_session_terminate_session(o, NGHTTP2_NO_ERROR);
	}
}

int h2relay_flush(struct h2relay *r)
{
	for (int round = 0; round < 16 && !r->failed; round++) {
		uint64_t before = r->written[0] + r->written[1];
		pump_all(r);
		for (int i = 0; i < 2; i++) {
			r->blocked[i] = false;
			if (nghttp2_session_send(r->s[i]) != 0)
				r->failed = true;
		}
		end_with(r);
		if (r->written[0] + r->written[1] == before)
			break;
	}
	if (r->failed) { /* what can still go out (a GOAWAY) does */
		nghttp2_session_send(r->s[H2_SANDBOX]);
		nghttp2_session_send(r->s[H2_UPSTREAM]);
	}
	return r->failed ? -1 : 0;
}

int h2relay_feed(struct h2relay *r, enum h2relay_side side, const uint8_t *p, size_t n)
{
	ssize_t rv;

	if (r->failed)
		return -1;
	rv = nghttp2_session_mem_recv(r->s[side], p, n);
	if (rv < 0) {
		/* a fatal error (bad preface, flood): nghttp2 sends no GOAWAY for
		 * every one of them; say why when it is ours to say */
		nghttp2_session_terminate_session(r->s[side],
						  rv == NGHTTP2_ERR_FLOODED || r->calm[side]
							  ? NGHTTP2_ENHANCE_YOUR_CALM
							  : NGHTTP2_PROTOCOL_ERROR);
		r->failed = true;
	}
	return h2relay_flush(r);
}

bool h2relay_want_read(const struct h2relay *r, enum h2relay_side side)
{
	return !r->failed && !r->blocked[side] && nghttp2_session_want_read(r->s[side]);
}

bool h2relay_want_write(const struct h2relay *r, enum h2relay_side side)
{
	return nghttp2_session_want_write(r->s[side]);
}

bool h2relay_done(const struct h2relay *r)
{
	for (int i = 0; i < 2; i++)
		if (nghttp2_session_want_read(r->s[i]) || nghttp2_session_want_write(r->s[i]))
			return false;
	return true;
}

size_t h2relay_buffered(const struct h2relay *r)
{
	return r->held;
}
