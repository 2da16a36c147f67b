/* wsredact.c -- WebSocket server-to-client frames with secret values replaced
 * by placeholders: a frame parser over a byte stream, data payloads through
 * the streaming redactor re-framed as fragments of the same message, control
 * frames redacted whole (RFC 6455 section 5) */
#include "wsredact.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "inject.h"

#define FRAG_FLUSH (64 * 1024) /* emit a fragment once this much is redacted */
#define OUT_MAX (4u << 20)     /* cap of the pending fragment buffer */
#define CTL_MAX 125

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

struct wsredact {
	const struct secretset *ss;
	uint64_t mask;
	struct redactor *r;
	unsigned char hdr[14];
	size_t hlen;            /* header bytes collected */
	bool in_frame;          /* header parsed; payload bytes pending */
	uint64_t left;          /* payload bytes left in the frame */
	int opcode;
	bool fin;
	bool in_msg;            /* a data message is open */
	int msg_opcode;         /* its opcode (text or binary) */
	bool sent_first;        /* its first fragment went out */
	char ctl[CTL_MAX];      /* a control frame's payload */
	size_t ctl_len;
	struct obuf out;        /* redacted data not yet framed */
	const char *error;
};

struct wsredact *wsredact_new(const struct secretset *ss, uint64_t mask)
{
	struct wsredact *w = xcalloc(1, sizeof(*w));

	w->ss = ss;
	w->mask = mask;
	w->r = redactor_new(ss, mask);
	obuf_init(&w->out, OUT_MAX);
	return w;
}

void wsredact_free(struct wsredact *w)
{
	if (!w)
		return;
	redactor_free(w->r);
	obuf_dispose(&w->out);
	xwipe(w->ctl, sizeof(w->ctl));
	free(w);
}

const char *wsredact_error(const struct wsredact *w)
{
	return w->error;
}

static bool fail(struct wsredact *w, const char *why)
{
	if (!w->error)
		w->error = why;
	return false;
}

/* One unmasked frame: header, then payload. */
static void emit_frame(int opcode, bool fin, const char *p, size_t n, redact_emit_fn emit,
		       void *ctx)
{
	unsigned char h[10];
	size_t hl = 2;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | opcode);
	if (n < 126) {
		h[1] = (unsigned char)n;
	} else if (n < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	emit(ctx, (const char *)h, hl);
	if (n)
		emit(ctx, p, n);
}

/* The redacted data so far as the message's next fragment (final: its last). */
static void emit_fragment(struct wsredact *w, bool final, redact_emit_fn emit, void *ctx)
{
	if (!final && w->out.len == 0)
		return;
	emit_frame(w->sent_first ? OP_CONT : w->msg_opcode, final, w->out.p, w->out.len, emit, ctx);
	w->sent_first = true;
	xwipe(w->out.p, w->out.len);
	w->out.len = 0;
}

static void collect(void *arg, const char *p, size_t n)
{
	struct wsredact *w = arg;

	if (!obuf_add(&w->out, p, n))
		fail(w, "redacted WebSocket data over the buffer cap");
}

/* Validates a parsed header and starts its frame. */
static bool start_frame(struct wsredact *w)
{
	bool control = w->opcode >= 8;

	if (w->hdr[0] & 0x70)
		return fail(w, "WebSocket frame with RSV bits (an extension) cannot be redacted");
	if (w->hdr[1] & 0x80)
		return fail(w, "masked WebSocket frame from the server");
	if ((w->opcode > OP_BINARY && w->opcode < OP_CLOSE) || w->opcode > OP_PONG)
		return fail(w, "reserved WebSocket opcode");
	if (control && (!w->fin || w->left > CTL_MAX))
		return fail(w, "fragmented or oversized WebSocket control frame");
	if (w->opcode == OP_CONT && !w->in_msg)
		return fail(w, "WebSocket continuation frame without a message");
	if ((w->opcode == OP_TEXT || w->opcode == OP_BINARY) && w->in_msg)
		return fail(w, "new WebSocket message inside an unfinished one");
	if (w->opcode == OP_TEXT || w->opcode == OP_BINARY) {
		w->in_msg = true;
		w->msg_opcode = w->opcode;
		w->sent_first = false;
	}
	w->ctl_len = 0;
	w->hlen = 0;
	w->in_frame = true;
	return true;
}

static size_t header_need(const struct wsredact *w)
{
	unsigned l7 = w->hdr[1] & 0x7f;

	if (w->hlen < 2)
		return 2;
	return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((w->hdr[1] & 0x80) ? 4 : 0);
}

/* Header bytes from p; *done once the header is complete (then parsed). */
static size_t take_header(struct wsredact *w, const char *p, size_t n, bool *done)
{
	unsigned l7 = 0;
	size_t used = 0;
	uint64_t len;

	*done = false;
	while (used < n && w->hlen < header_need(w))
		w->hdr[w->hlen++] = (unsigned char)p[used++];
	if (w->hlen < header_need(w))
		return used;
	l7 = w->hdr[1] & 0x7f;
	len = l7;
	if (l7 == 126)
		len = (uint64_t)w->hdr[2] << 8 | w->hdr[3];
	if (l7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | w->hdr[2 + i];
		if (len >> 63)
			return fail(w, "WebSocket frame length with its top bit set"), used;
	}
	w->left = len;
	w->fin = (w->hdr[0] & 0x80) != 0;
	w->opcode = w->hdr[0] & 0x0f;
	*done = true;
	return used;
}

/* A control frame's payload is complete: redact it whole, cap it at 125. */
static void end_control(struct wsredact *w, redact_emit_fn emit, void *ctx)
{
	struct obuf b;

	obuf_init(&b, 2 * CTL_MAX + 1024);
	if (!redact_string(w->ss, w->mask, w->ctl, w->ctl_len, &b))
		b.len = 0; /* cannot happen below the cap; never pass it unredacted */
	emit_frame(w->opcode, true, b.p, b.len < CTL_MAX ? b.len : CTL_MAX, emit, ctx);
	obuf_dispose(&b);
	xwipe(w->ctl, sizeof(w->ctl));
}

static void end_frame(struct wsredact *w, redact_emit_fn emit, void *ctx)
{
	w->in_frame = false;
	if (w->opcode >= OP_CLOSE) {
		end_control(w, emit, ctx);
		return;
	}
	if (!w->fin)
		return;
	redactor_flush(w->r, collect, w);
	emit_fragment(w, true, emit, ctx);
	w->in_msg = false;
}

/* Payload bytes of the current frame from p. */
static size_t take_payload(struct wsredact *w, const char *p, size_t n, redact_emit_fn emit,
			   void *ctx)
{
	size_t k = w->left < n ? (size_t)w->left : n;

	if (w->opcode >= OP_CLOSE) {
		memcpy(w->ctl + w->ctl_len, p, k);
		w->ctl_len += k;
	} else {
		redactor_feed(w->r, p, k, collect, w);
		if (w->out.len >= FRAG_FLUSH)
			emit_fragment(w, false, emit, ctx);
	}
	w->left -= k;
	if (w->left == 0)
		end_frame(w, emit, ctx);
	return k;
}

bool wsredact_feed(struct wsredact *w, const char *p, size_t n, redact_emit_fn emit, void *ctx)
{
	size_t off = 0;

	while (off < n && !w->error) {
		bool done;
		if (w->in_frame) {
			off += take_payload(w, p + off, n - off, emit, ctx);
			continue;
		}
		off += take_header(w, p + off, n - off, &done);
		if (!done)
			continue;
		if (w->opcode >= OP_CLOSE && w->in_msg)
			emit_fragment(w, false, emit, ctx); /* data before it goes first */
		if (start_frame(w) && w->left == 0)
			end_frame(w, emit, ctx);
	}
	/* what was redacted so far goes out now (before a control frame that
	 * may follow, and so nothing waits for more input than the redactor
	 * must hold back) */
	if (!w->error && w->in_msg)
		emit_fragment(w, false, emit, ctx);
	return !w->error;
}
