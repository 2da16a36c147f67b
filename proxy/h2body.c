/* h2body.c -- HTTP/2 bodies inside the relay: capped, wiped byte queues,
 * and a reply body decoded (contentdec) and redacted (redactor) into its
 * output only as room is granted; gRPC replies redacted message by message
 * (grpcframe), each with its new length */
#include "h2body.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "grpcframe.h"
#include "redact.h"

#define CHUNK 16384 /* bytes decoded or redacted per step */
#define GRPC_HOLD (64 * 1024) /* a gRPC message held whole at most (per stream) */

void h2queue_init(struct h2queue *q, size_t max)
{
	memset(q, 0, sizeof(*q));
	q->max = max;
}

void h2queue_dispose(struct h2queue *q)
{
	if (q->p)
		xwipe(q->p, q->cap);
	free(q->p);
	h2queue_init(q, q->max);
}

bool h2queue_add(struct h2queue *q, const uint8_t *p, size_t n)
{
	if (n > q->max - q->len)
		return false;
	if (n > q->cap - q->off - q->len) { /* grow or compact: copy, wipe the old */
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
	if (n)
		memcpy(q->p + q->off + q->len, p, n);
	q->len += n;
	return true;
}

static void drain(struct h2queue *q, size_t n)
{
	q->off += n;
	q->len -= n;
	if (q->len == 0)
		q->off = 0;
}

size_t h2queue_take(struct h2queue *q, uint8_t *buf, size_t n)
{
	if (n > q->len)
		n = q->len;
	if (n)
		memcpy(buf, q->p + q->off, n);
	drain(q, n);
	return n;
}

struct h2body {
	struct h2queue in, out;
	struct redactor *red;  /* NULL: nothing to redact */
	struct contentdec *dec; /* NULL: identity */
	bool in_end;           /* the upstream's body ended */
	bool dec_done;         /* every coded stream ended */
	bool out_done;         /* all of the body is in out */
	bool failed;
	bool grpc;             /* redacted per gRPC message (h2body_grpc) */
	struct grpcframe gf;
	struct h2queue msg;    /* the current gRPC message, when it fits in in.max */
	bool msg_stream;       /* ... it does not: streamed, its length must not change */
	uint64_t msg_out;      /* bytes of a streamed message emitted so far */
	const char *gerr;      /* why the gRPC body cannot be redacted, or NULL */
};

struct h2body *h2body_new(size_t in_max)
{
	struct h2body *b = xcalloc(1, sizeof(*b));

	h2queue_init(&b->in, in_max);
	h2queue_init(&b->out, SIZE_MAX);
	h2queue_init(&b->msg, in_max < GRPC_HOLD ? in_max : GRPC_HOLD);
	grpcframe_init(&b->gf);
	return b;
}

static void drop_input(struct h2body *b)
{
	h2queue_dispose(&b->in);
	h2queue_dispose(&b->msg);
	contentdec_free(b->dec);
	b->dec = NULL;
	redactor_free(b->red);
	b->red = NULL;
}

void h2body_free(struct h2body *b)
{
	if (!b)
		return;
	drop_input(b);
	h2queue_dispose(&b->out);
	free(b);
}

void h2body_setup(struct h2body *b, const enum contentdec_coding *cs, int n,
		  const struct secretset *ss, uint64_t mask)
{
	if (n > 0)
		b->dec = contentdec_new(cs, n);
	if (mask && ss)
		b->red = redactor_new(ss, mask);
}

void h2body_grpc(struct h2body *b)
{
	b->grpc = b->red != NULL;
}

bool h2body_in(struct h2body *b, const uint8_t *p, size_t n)
{
	return h2queue_add(&b->in, p, n);
}

void h2body_in_end(struct h2body *b)
{
	b->in_end = true;
}

static void emit(void *ctx, const char *p, size_t n)
{
	struct h2queue *out = ctx;

	h2queue_add(out, (const uint8_t *)p, n); /* out has no cap */
}

static void emit_counted(void *ctx, const char *p, size_t n)
{
	struct h2body *b = ctx;

	emit(&b->out, p, n);
	b->msg_out += n;
}

/* A gRPC message's prefix was read. */
static void msg_start(struct h2body *b)
{
	uint8_t pre[5];

	if (b->gf.compressed) {
		b->gerr = "a compressed gRPC message (grpc-encoding) cannot be redacted";
		return;
	}
	b->msg_stream = b->gf.len > b->msg.max;
	b->msg_out = 0;
	if (!b->msg_stream)
		return;
	grpcframe_prefix(pre, false, b->gf.len);
	emit(&b->out, (const char *)pre, sizeof(pre));
}

/* The message is whole: redacted into out behind a prefix with its new
 * length (written once the length is known); a streamed one must have
 * kept its length. */
static void msg_end(struct h2body *b)
{
	size_t at = b->out.len, n;

	if (b->msg_stream) {
		redactor_flush(b->red, emit_counted, b);
		if (b->msg_out != b->gf.len)
			b->gerr = "a secret's value in a gRPC message over 64 KiB (its length would change)";
		return;
	}
	emit(&b->out, "\0\0\0\0\0", 5);
	if (b->msg.len)
		redactor_feed(b->red, (const char *)b->msg.p + b->msg.off, b->msg.len, emit, &b->out);
	redactor_flush(b->red, emit, &b->out);
	n = b->out.len - at - 5;
	if (n > UINT32_MAX) {
		b->gerr = "a redacted gRPC message over 4 GiB";
		return;
	}
	grpcframe_prefix(b->out.p + b->out.off + at, false, (uint32_t)n);
	if (b->msg.len) { /* an empty message has no buffer */
		xwipe(b->msg.p + b->msg.off, b->msg.len);
		drain(&b->msg, b->msg.len);
	}
}

/* Reply bytes of a gRPC body: messages cut out, each redacted (b->gerr on
 * failure). */
static void grpc_in(struct h2body *b, const uint8_t *p, size_t n)
{
	enum grpcframe_ev ev;

	while (n > 0 && !b->gerr) {
		size_t k = grpcframe_next(&b->gf, p, n, &ev);
		if (ev == GRPCFRAME_BAD) {
			b->gerr = "a gRPC message prefix with a flag other than 0 or 1";
			return;
		}
		if (ev == GRPCFRAME_START)
			msg_start(b);
		else if (ev == GRPCFRAME_BYTES && b->msg_stream)
			redactor_feed(b->red, (const char *)p, k, emit_counted, b);
		else if (ev == GRPCFRAME_BYTES)
			h2queue_add(&b->msg, p, k); /* fits: len <= msg.max */
		if (!b->gerr && ev != GRPCFRAME_NEED && grpcframe_msg_done(&b->gf))
			msg_end(b);
		p += k, n -= k;
	}
}

/* Decoded or raw bytes, redacted when a redactor is set, to out. */
static void to_out(struct h2body *b, const char *p, size_t n)
{
	if (b->grpc)
		grpc_in(b, (const uint8_t *)p, n);
	else if (b->red)
		redactor_feed(b->red, p, n, emit, &b->out);
	else
		emit(&b->out, p, n);
}

/* One step through the decoder; *used input bytes. False: it failed. */
static bool decode_step(struct h2body *b, size_t room, size_t *used, size_t *made)
{
	char buf[CHUNK];
	enum contentdec_status rs;
	const char *in = b->in.len ? (const char *)b->in.p + b->in.off : "";

	rs = contentdec_feed(b->dec, in, b->in.len, used, buf, room < CHUNK ? room : CHUNK, made,
			     b->in_end);
	if (*made)
		to_out(b, buf, *made);
	xwipe(buf, *made);
	drain(&b->in, *used);
	if (rs == CONTENTDEC_DONE)
		b->dec_done = true;
	return rs != CONTENTDEC_ERROR;
}

/* One step; returns input bytes used, *moved whether anything moved. */
static size_t step(struct h2body *b, size_t room, bool *moved, const char **err)
{
	size_t used = 0, made = 0, take;

	*moved = false;
	if (b->dec && !b->dec_done) {
		if (b->in.len == 0 && !b->in_end)
			return 0;
		if (!decode_step(b, room, &used, &made)) {
			*err = contentdec_error(b->dec);
			return used;
		}
		if (b->gerr) {
			*err = b->gerr;
			return used;
		}
		*moved = used > 0 || made > 0 || b->dec_done;
		return used;
	}
	if (b->in.len > 0) {
		if (b->dec_done) { /* bytes after the coded streams: junk */
			*err = "data after the end of the encoded body";
			return 0;
		}
		take = b->in.len < room ? b->in.len : room;
		take = take < CHUNK ? take : CHUNK;
		to_out(b, (const char *)b->in.p + b->in.off, take);
		drain(&b->in, take);
		*moved = true;
		if (b->gerr)
			*err = b->gerr;
		return take;
	}
	if (b->in_end) {
		if (b->grpc && !grpcframe_msg_done(&b->gf)) {
			*err = "the reply ended inside a gRPC message";
			return 0;
		}
		if (b->red && !b->grpc)
			redactor_flush(b->red, emit, &b->out);
		b->out_done = true;
	}
	return 0;
}

size_t h2body_pump(struct h2body *b, size_t room, const char **err)
{
	size_t used = 0, start = b->out.len;
	bool moved = true;

	*err = NULL;
	while (moved && !b->out_done && !b->failed && b->out.len - start < room) {
		used += step(b, room - (b->out.len - start), &moved, err);
		if (*err) { /* what is left is dropped: used up, for the window */
			used += b->in.len;
			b->failed = true;
			drop_input(b);
		}
	}
	return used;
}

bool h2body_pending(const struct h2body *b)
{
	return !b->failed && !b->out_done && (b->in.len > 0 || b->in_end);
}

size_t h2body_in_len(const struct h2body *b)
{
	return b->in.len;
}

size_t h2body_out_len(const struct h2body *b)
{
	return b->out.len;
}

size_t h2body_held(const struct h2body *b)
{
	return b->msg.len;
}

size_t h2body_take(struct h2body *b, uint8_t *buf, size_t n)
{
	return h2queue_take(&b->out, buf, n);
}

bool h2body_out_done(const struct h2body *b)
{
	return b->out_done;
}

size_t h2body_replace(struct h2body *b, const char *p, size_t n)
{
	size_t dropped = b->in.len;

	drop_input(b);
	h2queue_dispose(&b->out);
	emit(&b->out, p, n);
	b->out_done = true;
	return dropped;
}
