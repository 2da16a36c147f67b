/* h1h2.c -- HTTP/1.1 requests on the streams of an HTTP/2 client session and
 * their replies back as HTTP/1.1: llhttp (strict) parses the request bytes
 * the engine produced, an nghttp2 client session carries them; a reply's
 * HEADERS, DATA and trailers become an HTTP/1.1 head, a body (as given with
 * Content-Length, else chunked) and chunked trailers */
#include "h1h2.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include "alloc.h"
#include "h2body.h"
#include "h2mem.h"
#include "inject.h"

#define HEAD_CAP (64 * 1024)   /* a request head's URL and fields; a reply head */
#define MAX_FIELDS 256
#define WINDOW (256 * 1024)    /* per stream; the connection's is 4x */

/* One request and its reply; freed once both are over. */
struct h1stream {
	int32_t id;           /* 0 until submitted */
	struct h2queue body;  /* request body not yet sent as DATA */
	bool body_done;       /* the request message ended (llhttp) */
	bool closed;          /* nghttp2 closed the stream */
	bool head_req;        /* HEAD: the reply has no body */
	bool http10;          /* an HTTP/1.0 request: no chunked reply */
	bool close_delim;     /* ... so its body without a length ends with an EOF */
	bool final;           /* the final reply head was handed on */
	bool chunked;         /* ... with Transfer-Encoding: chunked */
	bool no_body;         /* ... with no body (HEAD, 204, 304) */
	bool trailers;        /* chunked trailers handed on */
	bool done;            /* the reply ended (END_STREAM) */
	int status;
	struct h1stream *next;
};

struct field {
	size_t no, nl, vo, vl; /* name and value in hb */
};

struct h1h2 {
	nghttp2_session *s;
	const struct h1h2_cbs *cbs;
	void *arg;
	llhttp_t p;
	llhttp_settings_t ps;
	struct h1stream *streams; /* oldest first */
	struct h1stream *req;     /* the request llhttp is in */
	struct obuf hb;           /* its URL, then names and values back to back */
	size_t url_len, nf;
	struct field *f;          /* the head's fields, while it is parsed */
	size_t fcap;
	bool in_field;
	struct obuf rh;           /* a reply head: its status line, then "name: value\r\n"
				     each (trailers: the fields only) */
	bool rh_cl;               /* ... with a content-length */
	bool goaway, failed, ended;
	const char *why;
};

/* ---- buffers: heads in obufs (inject.h), request bodies in h2queues
 * (h2body.h); both wiped when their memory moves or is freed ---- */

#define HEAD_FIRST 1024 /* a head buffer's first allocation */

static void reply(struct h1h2 *b, const char *p, size_t n)
{
	if (n)
		b->cbs->reply(b->arg, p, n);
}

static void reply_str(struct h1h2 *b, const char *s)
{
	reply(b, s, strlen(s));
}

/* ---- streams ---- */

static void stream_unlink(struct h1h2 *b, struct h1stream *st)
{
	for (struct h1stream **pp = &b->streams; *pp; pp = &(*pp)->next)
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	h2queue_dispose(&st->body);
	free(st);
}

/* Both halves over: nothing refers to st any more. */
static void stream_gc(struct h1h2 *b, struct h1stream *st)
{
	if (st->closed && st->body_done && b->req != st)
		stream_unlink(b, st);
}

static struct h1stream *stream_of(struct h1h2 *b, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(b->s, id) : NULL;
}

/* Hands nghttp2's pending frames to the wire. */
static void flush(struct h1h2 *b)
{
	const uint8_t *data;
	ssize_t n;

	while (!b->failed && (n = nghttp2_session_mem_send(b->s, &data)) != 0) {
		if (n < 0) {
			b->failed = true;
			b->why = nghttp2_strerror((int)n);
			break;
		}
		b->cbs->wire(b->arg, (const char *)data, (size_t)n);
	}
}

/* ---- the request: llhttp's callbacks ---- */

static struct h1h2 *of(llhttp_t *p)
{
	return p->data;
}

static int on_begin(llhttp_t *p)
{
	struct h1h2 *b = of(p);
	struct h1stream *st = xcalloc(1, sizeof(*st)), **pp = &b->streams;

	while (*pp)
		pp = &(*pp)->next;
	*pp = st;
	h2queue_init(&st->body, SIZE_MAX);
	b->req = st;
	obuf_dispose(&b->hb);
	b->url_len = b->nf = 0;
	b->in_field = false;
	return 0;
}

static int head_add(struct h1h2 *b, const char *at, size_t n)
{
	if (!b->hb.p)
		obuf_reserve(&b->hb, HEAD_FIRST);
	return obuf_add(&b->hb, at, n) ? 0 : -1; /* (its max: HEAD_CAP) */
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *b = of(p);

	b->url_len += n;
	return head_add(b, at, n);
}

/* Room for one more field (16, doubled up to MAX_FIELDS): the array lives
 * only while a head is parsed, so an idle bridge holds none. */
static int fields_grow(struct h1h2 *b)
{
	size_t cap = b->fcap ? 2 * b->fcap : 16;

	if (b->fcap == MAX_FIELDS)
		return -1;
	cap = cap < MAX_FIELDS ? cap : MAX_FIELDS;
	b->f = xrealloc(b->f, cap * sizeof(*b->f));
	b->fcap = cap;
	return 0;
}

static void fields_free(struct h1h2 *b)
{
	free(b->f);
	b->f = NULL;
	b->fcap = b->nf = 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *b = of(p);

	if (b->req->id)
		return 0; /* request trailers: not carried */
	if (!b->in_field) {
		if (b->nf == b->fcap && fields_grow(b) < 0)
			return -1;
		b->f[b->nf++] = (struct field){ b->hb.len, 0, 0, 0 };
		b->in_field = true;
	}
	b->f[b->nf - 1].nl += n;
	return head_add(b, at, n);
}

static int on_field_done(llhttp_t *p)
{
	struct h1h2 *b = of(p);

	b->in_field = false;
	if (b->nf)
		b->f[b->nf - 1].vo = b->hb.len;
	return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *b = of(p);

	if (b->req->id)
		return 0;
	b->f[b->nf - 1].vl += n;
	return head_add(b, at, n);
}

static bool named(const struct h1h2 *b, const struct field *f, const char *name)
{
	return f->nl == strlen(name) && strncasecmp(b->hb.p + f->no, name, f->nl) == 0;
}

/* Does a Connection field name the field f (a comma-separated token)? */
static bool connection_names(const struct h1h2 *b, const struct field *f)
{
	for (size_t i = 0; i < b->nf; i++) {
		const char *v = b->hb.p + b->f[i].vo, *end = v + b->f[i].vl;
		if (!named(b, &b->f[i], "connection"))
			continue;
		while (v < end) {
			const char *t = v, *e;
			while (t < end && (*t == ' ' || *t == '\t' || *t == ','))
				t++;
			for (e = t; e < end && *e != ',' && *e != ' ' && *e != '\t'; e++)
				;
			if (e > t && (size_t)(e - t) == f->nl && strncasecmp(t, b->hb.p + f->no, f->nl) == 0)
				return true;
			v = e;
		}
	}
	return false;
}

/* Fields that belong to one HTTP/1.1 hop, never sent on an h2 stream. */
static bool hop_by_hop(const struct h1h2 *b, const struct field *f)
{
	static const char *const hop[] = { "connection", "keep-alive", "transfer-encoding",
					   "upgrade", "host", "http2-settings" };

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (named(b, f, hop[i]))
			return true;
	if (f->nl >= 6 && strncasecmp(b->hb.p + f->no, "proxy-", 6) == 0)
		return true;
	if (named(b, f, "te"))
		return !(f->vl == 8 && strncasecmp(b->hb.p + f->vo, "trailers", 8) == 0);
	return connection_names(b, f);
}

static nghttp2_nv nv(const char *n, size_t nl, const char *v, size_t vl, uint8_t flags)
{
	return (nghttp2_nv){ (uint8_t *)(uintptr_t)n, (uint8_t *)(uintptr_t)v, nl, vl, flags };
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h1stream *st = src->ptr;
	size_t n = h2queue_take(&st->body, buf, len);

	(void)s;
	(void)id;
	(void)ud;
	if (st->body.len == 0)
		h2queue_dispose(&st->body); /* nothing held while the reply goes on */
	if (st->body_done && st->body.len == 0)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	else if (n == 0)
		return NGHTTP2_ERR_DEFERRED;
	return (ssize_t)n;
}

/* The head is complete: one stream, its fields without HTTP/1.1's hop-by-hop
 * ones, names lower-cased, values never indexed (they may be secrets). */
static int on_headers(llhttp_t *p)
{
	struct h1h2 *b = of(p);
	struct h1stream *st = b->req;
	const char *m = llhttp_method_name((llhttp_method_t)p->method);
	nghttp2_nv nva[MAX_FIELDS + 4];
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = read_body };
	bool body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
	size_t n = 0;
	int32_t id;

	nva[n++] = nv(":method", 7, m, strlen(m), NGHTTP2_NV_FLAG_NONE);
	nva[n++] = nv(":scheme", 7, "https", 5, NGHTTP2_NV_FLAG_NONE);
	for (size_t i = 0; i < b->nf; i++)
		if (named(b, &b->f[i], "host"))
			nva[n++] = nv(":authority", 10, b->hb.p + b->f[i].vo, b->f[i].vl,
				      NGHTTP2_NV_FLAG_NONE);
	nva[n++] = nv(":path", 5, b->hb.p, b->url_len, NGHTTP2_NV_FLAG_NO_INDEX);
	for (size_t i = 0; i < b->nf && n < MAX_FIELDS + 4; i++) {
		struct field *f = &b->f[i];
		if (hop_by_hop(b, f))
			continue;
		for (size_t k = 0; k < f->nl; k++)
			b->hb.p[f->no + k] = (char)(b->hb.p[f->no + k] | ((b->hb.p[f->no + k] >= 'A' &&
						    b->hb.p[f->no + k] <= 'Z') ? 0x20 : 0));
		nva[n++] = nv(b->hb.p + f->no, f->nl, b->hb.p + f->vo, f->vl, NGHTTP2_NV_FLAG_NO_INDEX);
	}
	st->head_req = p->method == HTTP_HEAD;
	st->http10 = p->http_major == 1 && p->http_minor == 0;
	id = nghttp2_submit_request(b->s, NULL, nva, n, body ? &prd : NULL, st);
	if (id < 0)
		return -1;
	st->id = id;
	if (!body)
		st->body_done = true;
	obuf_dispose(&b->hb); /* the fields are copied into nghttp2's frame */
	fields_free(b);
	b->url_len = 0;
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	struct h1h2 *b = of(p);
	struct h1stream *st = b->req;

	if (st->closed)
		return 0; /* the upstream is done with this stream: dropped */
	h2queue_add(&st->body, (const uint8_t *)at, n); /* (no max: never false) */
	nghttp2_session_resume_data(b->s, st->id);
	return 0;
}

static int on_complete(llhttp_t *p)
{
	struct h1h2 *b = of(p);
	struct h1stream *st = b->req;

	b->req = NULL;
	if (!st)
		return 0;
	if (!st->body_done) {
		st->body_done = true;
		if (!st->closed)
			nghttp2_session_resume_data(b->s, st->id);
	}
	stream_gc(b, st);
	return 0;
}

/* ---- the reply: nghttp2's callbacks ---- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 103: return "Early Hints";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 421: return "Misdirected Request";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status < 200 ? "Informational" : status < 300 ? "Success" :
		 status < 400 ? "Redirection" : status < 500 ? "Client Error" : "Server Error";
	}
}

/* HTTP/1.1 has one reply order: the requests'. A reply on any stream but
 * the oldest unanswered one would interleave two replies in the sandbox's
 * bytes; the engine sends one request at a time, so this is a guard. */
static bool out_of_order(const struct h1h2 *b, const struct h1stream *st)
{
	for (const struct h1stream *o = b->streams; o && o != st; o = o->next)
		if (o->id > 0 && !o->done && !o->closed)
			return true;
	return false;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h1h2 *b = ud;
	struct h1stream *st = stream_of(b, f->hd.stream_id);

	(void)s;
	if (st && out_of_order(b, st)) {
		b->failed = true;
		b->why = "the upstream answered HTTP/2 streams out of order";
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	obuf_dispose(&b->rh);
	b->rh_cl = false;
	return 0;
}

/* "HTTP/1.1 200 OK\r\n" into rh, so a head is handed on in one piece. */
static void status_line(struct h1h2 *b, int status)
{
	const char *why = reason_phrase(status);
	char d[3] = { (char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
		      (char)('0' + status % 10) };

	obuf_reserve(&b->rh, HEAD_FIRST);
	obuf_add(&b->rh, "HTTP/1.1 ", 9);
	obuf_add(&b->rh, d, 3);
	obuf_add(&b->rh, " ", 1);
	obuf_add(&b->rh, why, strlen(why));
	obuf_add(&b->rh, "\r\n", 2);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct h1h2 *b = ud;
	struct h1stream *st = stream_of(b, f->hd.stream_id);

	(void)s;
	(void)flags;
	if (!st)
		return 0;
	if (nl == 7 && memcmp(name, ":status", 7) == 0) {
		st->status = vl == 3 ? (value[0] - '0') * 100 + (value[1] - '0') * 10 + value[2] - '0' : 0;
		status_line(b, st->status); /* (pseudo-fields come first: rh is empty) */
		return 0;
	}
	if (nl > 0 && name[0] == ':')
		return 0;
	if (b->rh.len + nl + vl + 4 > HEAD_CAP)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the stream is reset */
	b->rh_cl |= nl == 14 && memcmp(name, "content-length", 14) == 0;
	obuf_add(&b->rh, (const char *)name, nl);
	obuf_add(&b->rh, ": ", 2);
	obuf_add(&b->rh, (const char *)value, vl);
	obuf_add(&b->rh, "\r\n", 2);
	return 0;
}

/* A 1xx or the final head, as HTTP/1.1: rh (its status line and fields),
 * completed and handed on in one piece. */
static void reply_head(struct h1h2 *b, struct h1stream *st)
{
	if (st->status >= 200) {
		st->final = true;
		st->no_body = st->head_req || st->status == 204 || st->status == 304;
		st->chunked = !st->no_body && !b->rh_cl && !st->http10;
		st->close_delim = !st->no_body && !b->rh_cl && st->http10;
		if (st->chunked)
			obuf_add(&b->rh, "Transfer-Encoding: chunked\r\n", 28);
	}
	obuf_add(&b->rh, "\r\n", 2);
	reply(b, b->rh.p, b->rh.len);
	obuf_dispose(&b->rh);
}

static void reply_end(struct h1h2 *b, struct h1stream *st)
{
	if (st->chunked && !st->trailers)
		reply_str(b, "0\r\n\r\n");
	st->done = true;
	if (st->close_delim && !b->ended) {
		b->ended = true; /* an HTTP/1.0 body without a length ends with the stream */
		b->why = "an HTTP/1.0 reply without a length ends with the connection";
	}
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h1h2 *b = ud;
	struct h1stream *st = stream_of(b, f->hd.stream_id);

	(void)s;
	if (f->hd.type == NGHTTP2_GOAWAY)
		b->goaway = true;
	if (!st || st->done || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && !st->final) {
		reply_head(b, st);
	} else if (f->hd.type == NGHTTP2_HEADERS && st->chunked) {
		reply_str(b, "0\r\n");
		reply(b, b->rh.p, b->rh.len);
		reply_str(b, "\r\n");
		st->trailers = true;
	}
	obuf_dispose(&b->rh); /* trailers with Content-Length: nowhere to put them */
	if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && st->final)
		reply_end(b, st);
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		   void *ud)
{
	struct h1h2 *b = ud;
	struct h1stream *st = stream_of(b, id);
	char size[24];

	(void)s;
	(void)flags;
	if (!st || !st->final || st->no_body || st->done || n == 0)
		return 0;
	if (st->chunked) {
		snprintf(size, sizeof(size), "%zx\r\n", n);
		reply_str(b, size);
	}
	reply(b, (const char *)p, n);
	if (st->chunked)
		reply_str(b, "\r\n");
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct h1h2 *b = ud;
	struct h1stream *st = stream_of(b, id);

	(void)s;
	if (!st)
		return 0;
	st->closed = true;
	h2queue_dispose(&st->body);
	if (!st->done && !b->ended) {
		b->ended = true;
		b->why = code == NGHTTP2_REFUSED_STREAM ? "the upstream refused the HTTP/2 stream" :
			 "the upstream reset the HTTP/2 stream";
	}
	stream_gc(b, st);
	return 0;
}

/* A request HEADERS nghttp2 would not send (the session is going away). */
static int on_not_sent(nghttp2_session *s, const nghttp2_frame *f, int err, void *ud)
{
	struct h1h2 *b = ud;

	(void)s;
	(void)err;
	if (f->hd.type == NGHTTP2_HEADERS && !b->ended) {
		b->ended = true;
		b->why = "the upstream's HTTP/2 session takes no new streams";
	}
	return 0;
}

/* ---- API ---- */

static bool session_new(struct h1h2 *b)
{
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *o = NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HEAD_CAP },
		{ NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
	};
	bool ok = false;

	if (nghttp2_session_callbacks_new(&cb) != 0 || !(o = h2mem_option_new()))
		goto out;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_not_sent);
	ok = nghttp2_session_client_new3(&b->s, cb, b, o, h2mem_wiping()) == 0 &&
	     nghttp2_submit_settings(b->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) == 0 &&
	     nghttp2_session_set_local_window_size(b->s, NGHTTP2_FLAG_NONE, 0, 4 * WINDOW) == 0;
out:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(o);
	return ok;
}

struct h1h2 *h1h2_new(const struct h1h2_cbs *cbs, void *arg)
{
	struct h1h2 *b = xcalloc(1, sizeof(*b));

	b->cbs = cbs;
	b->arg = arg;
	obuf_init(&b->hb, HEAD_CAP);
	obuf_init(&b->rh, SIZE_MAX); /* (on_header bounds a reply head) */
	llhttp_settings_init(&b->ps);
	b->ps.on_message_begin = on_begin;
	b->ps.on_url = on_url;
	b->ps.on_header_field = on_field;
	b->ps.on_header_field_complete = on_field_done;
	b->ps.on_header_value = on_value;
	b->ps.on_headers_complete = on_headers;
	b->ps.on_body = on_body;
	b->ps.on_message_complete = on_complete;
	llhttp_init(&b->p, HTTP_REQUEST, &b->ps);
	b->p.data = b;
	if (!session_new(b)) {
		h1h2_free(b);
		return NULL;
	}
	flush(b);
	return b;
}

void h1h2_free(struct h1h2 *b)
{
	if (!b)
		return;
	nghttp2_session_del(b->s); /* (no callbacks run from here) */
	b->req = NULL;
	while (b->streams)
		stream_unlink(b, b->streams);
	obuf_dispose(&b->hb);
	obuf_dispose(&b->rh);
	fields_free(b);
	free(b);
}

int h1h2_request(struct h1h2 *b, const char *p, size_t n)
{
	llhttp_errno_t e;

	if (b->failed)
		return -1;
	e = llhttp_execute(&b->p, p, n);
	while (e == HPE_PAUSED_UPGRADE) { /* the upgrade is not carried: parse on */
		const char *at = llhttp_get_error_pos(&b->p);
		llhttp_resume_after_upgrade(&b->p);
		n -= (size_t)(at - p);
		p = at;
		e = llhttp_execute(&b->p, p, n);
	}
	if (e != HPE_OK) {
		b->failed = true;
		b->why = "a request the HTTP/2 bridge cannot parse";
		return -1;
	}
	flush(b);
	return b->failed ? -1 : 0;
}

/* A reply in flight: a stream submitted and neither answered nor closed. */
static bool in_flight(const struct h1h2 *b)
{
	for (const struct h1stream *st = b->streams; st; st = st->next)
		if (st->id > 0 && !st->done && !st->closed)
			return true;
	return false;
}

int h1h2_recv(struct h1h2 *b, const char *p, size_t n, const char **why)
{
	ssize_t r;

	if (b->failed) {
		*why = b->why;
		return -1;
	}
	r = nghttp2_session_mem_recv(b->s, (const uint8_t *)p, n);
	if (r < 0) {
		if (!b->failed) /* (else a callback said why) */
			b->why = nghttp2_strerror((int)r);
		b->failed = true;
	}
	flush(b);
	if (b->failed) {
		*why = b->why;
		return -1;
	}
	if (!b->ended && !in_flight(b) &&
	    (b->goaway || (!nghttp2_session_want_read(b->s) && !nghttp2_session_want_write(b->s)))) {
		b->ended = true;
		b->why = "the upstream ended the HTTP/2 connection (GOAWAY)";
	}
	if (b->ended)
		*why = b->why;
	return b->ended ? 1 : 0;
}

size_t h1h2_pending(const struct h1h2 *b)
{
	size_t n = 0;

	for (const struct h1stream *st = b->streams; st; st = st->next)
		n += st->body.len;
	return n;
}
