/* h2relay.c -- one intercepted HTTP/2 connection: an nghttp2 server session
 * towards the sandbox and a client session towards the upstream, their
 * callbacks routed to the streams (h2stream.c), the limits and flood
 * counters, and the feed/flush interface the engine drives */
#include "h2relay_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "h2mem.h"
#include "policy.h"

/* ---- limits and streams ---- */

void h2relay_limits_default(struct h2relay_limits *l)
{
	l->stream_buf = 256 * 1024;
	l->conn_buf = 1024 * 1024;
	l->max_streams = 100;
	l->header_list = 64 * 1024;
	l->idle_burst = 1000;
	l->idle_rate = 100;
	l->reset_burst = 1000;
	l->reset_rate = 33;
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

static uint64_t now_us(struct h2relay *r)
{
	struct timespec ts;

	if (r->cbs.now_us)
		return r->cbs.now_us(r->cbs.ctx);
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A side sent one more frame that carries nothing (PING, SETTINGS, empty
 * DATA): it takes a token from that side's bucket, idle_burst deep and
 * refilled at idle_rate per second (GCRA: idle_tat is the time the bucket
 * is full again; each frame moves it one interval on). An empty bucket: the
 * callback fails, so nghttp2_session_mem_recv stops at once, and
 * h2relay_feed ends the session with GOAWAY ENHANCE_YOUR_CALM. (Terminating
 * from inside a callback lets nghttp2 1.52 go on parsing the same input in a
 * state it asserts against: a frame size error after it aborts.) */
static int idle_frame(struct h2relay *r, enum h2relay_side side)
{
	const struct h2relay_limits *l = &r->conf.lim;
	uint64_t now = now_us(r), step = 1000000u / l->idle_rate;
	uint64_t t = r->idle_tat[side] > now ? r->idle_tat[side] : now;

	if (t - now < (uint64_t)l->idle_burst * step) {
		r->idle_tat[side] = t + step;
		return 0;
	}
	r->calm[side] = true;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
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
			st = h2stream_new(r, f->hd.stream_id);
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
			h2stream_start(st, end);
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
			r->idle_tat[H2_UPSTREAM] = 0;
			h2stream_reply_head(st, end);
			break;
		}
		st->rin_end = true; /* trailers */
		h2body_in_end(st->body);
		h2stream_pump(st);
		resume(r, H2_SANDBOX, st->sid);
		break;
	case NGHTTP2_DATA:
		if (f->hd.length == 0 && !end && idle_frame(r, H2_UPSTREAM))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		if (st && end) {
			st->rin_end = true;
			h2body_in_end(st->body);
			h2stream_pump(st);
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

	(void)flags;
	r->idle_tat[sandbox ? H2_SANDBOX : H2_UPSTREAM] = 0; /* DATA bytes: full again */
	if (!st || st->refused || (sandbox ? !st->u_open : !st->s_open) ||
	    !(sandbox ? h2queue_add(&st->up, p, n) : h2body_in(st->body, p, n))) {
		nghttp2_session_consume(s, id, n); /* nobody takes them */
		return 0;
	}
	if (sandbox) {
		resume(r, H2_UPSTREAM, st->uid);
		return 0;
	}
	h2stream_pump(st);
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
		h2stream_log(st, code != NGHTTP2_NO_ERROR || !st->resp_sent);
		h2stream_maybe_free(st);
		return 0;
	}
	st->u_open = false;
	if (st->s_open && !st->refused && (code != NGHTTP2_NO_ERROR || !st->rin_end)) {
		if (st->resp_too_big && !st->resp_sent)
			h2stream_refuse(st, REASON_BAD_REQUEST, 502, "bad-response",
			       "egressd: the upstream's reply head is too large");
		else /* REFUSED_STREAM stays one: the sandbox may retry */
			nghttp2_submit_rst_stream(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid,
						  code != NGHTTP2_NO_ERROR ? code : NGHTTP2_INTERNAL_ERROR);
	}
	h2stream_maybe_free(st);
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
			h2stream_refuse(st, REASON_BAD_REQUEST, 431, "bad-request",
			       "egressd: request head too large");
		else
			nghttp2_submit_rst_stream(r->s[H2_SANDBOX], NGHTTP2_FLAG_NONE, st->sid,
						  NGHTTP2_REFUSED_STREAM);
	}
	h2stream_maybe_free(st);
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
	nghttp2_option *o = h2mem_option_new();

	if (!o)
		return NULL;
	nghttp2_option_set_no_auto_window_update(o, 1); /* credit as bytes move on */
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
	if (r->conf.lim.idle_rate == 0) /* a rate below 1/s is not one */
		r->conf.lim.idle_rate = 1;
	if (r->conf.lim.idle_rate > 1000000)
		r->conf.lim.idle_rate = 1000000;
	make_authority(r);
	okay = cs && cu && os && ou &&
	       nghttp2_session_server_new3(&r->s[H2_SANDBOX], cs, r, os, h2mem_wiping()) == 0 &&
	       nghttp2_session_client_new3(&r->s[H2_UPSTREAM], cu, r, ou, h2mem_wiping()) == 0 &&
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
		h2stream_log(r->streams, true);
		h2stream_free(r->streams);
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
		if (st->s_open)
			h2stream_pump(st);
		if (st->s_open && st->resp_sent &&
		    (h2body_out_len(st->body) > 0 || h2body_out_done(st->body)))
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
	size_t n = 0;

	for (const struct h2stream *st = r->streams; st; st = st->next)
		n += st->up.len + h2body_in_len(st->body) + h2body_out_len(st->body) +
		     h2body_held(st->body);
	return n;
}
