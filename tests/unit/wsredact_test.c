/* wsredact_test.c -- WebSocket frame redaction: messages and control frames
 * decoded from the output equal the input's with every secret value replaced,
 * however the input is cut and fragmented; what cannot be redacted fails */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "policy.h"
#include "secrets.h"
#include "tap.h"
#include "wsredact.h"

static const unsigned char key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";
static struct secretset *set;
static const char SECRET[] = "sk-live-SECRET-0123456789";

struct buf {
	char p[1 << 20];
	size_t n;
};

static void add(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->p))
		abort();
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void sink(void *ctx, const char *p, size_t n)
{
	add(ctx, p, n);
}

/* A server frame (unmasked unless masked). */
static void frame(struct buf *b, int op, bool fin, const char *p, size_t n, int rsv, bool masked)
{
	unsigned char h[14];
	size_t hl = 2;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | rsv << 4 | op);
	if (n < 126) {
		h[1] = (unsigned char)n;
	} else if (n < 65536) {
		h[1] = 126, h[2] = (unsigned char)(n >> 8), h[3] = (unsigned char)n, hl = 4;
	} else {
		h[1] = 127, hl = 10;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
	}
	if (masked) {
		h[1] |= 0x80;
		memset(h + hl, 0, 4);
		hl += 4;
	}
	add(b, h, hl);
	add(b, p, n);
}

/* Decodes server frames into events: "M<op>:<payload>\n" per message,
 * "C<op>:<payload>\n" per control frame. -1 if the stream is malformed. */
static int decode(const struct buf *in, struct buf *ev)
{
	size_t off = 0;
	int msg_op = -1;
	static struct buf msg;

	msg.n = 0;
	while (off < in->n) {
		const unsigned char *h = (const unsigned char *)in->p + off;
		uint64_t len;
		size_t hl = 2;
		int op = h[0] & 15;
		bool fin = h[0] & 0x80;
		char tag[8];

		if (in->n - off < 2 || (h[1] & 0x80) || (h[0] & 0x70))
			return -1;
		len = h[1] & 127;
		if (len == 126)
			len = (uint64_t)h[2] << 8 | h[3], hl = 4;
		else if (len == 127) {
			len = 0, hl = 10;
			for (int i = 0; i < 8; i++)
				len = len << 8 | h[2 + i];
		}
		if (in->n - off < hl + len)
			return -1;
		if (op >= 8) {
			snprintf(tag, sizeof(tag), "C%d:", op);
			add(ev, tag, strlen(tag)), add(ev, h + hl, len), add(ev, "\n", 1);
		} else {
			if ((op == 0) != (msg_op >= 0))
				return -1;
			if (op)
				msg_op = op;
			add(&msg, h + hl, len);
			if (fin) {
				snprintf(tag, sizeof(tag), "M%d:", msg_op);
				add(ev, tag, strlen(tag)), add(ev, msg.p, msg.n), add(ev, "\n", 1);
				msg.n = 0, msg_op = -1;
			}
		}
		off += hl + len;
	}
	return 0;
}

/* Feeds in with the given chunk size through a new redactor; decodes. */
static int run(const struct buf *in, size_t step, struct buf *ev, const char **err)
{
	static struct buf out;
	struct wsredact *w = wsredact_new(set, 1);
	bool ok = true;

	out.n = 0;
	ev->n = 0;
	for (size_t off = 0; off < in->n && ok; off += step)
		ok = wsredact_feed(w, in->p + off, in->n - off < step ? in->n - off : step, sink, &out);
	*err = ok ? NULL : wsredact_error(w);
	wsredact_free(w);
	return ok ? decode(&out, ev) : -2;
}

static void test_messages(void)
{
	static struct buf in, want, ev;
	const char *ph = secretset_placeholder(set, 0), *err;
	char text[300], big[70000];
	struct obuf o;
	bool all = true;

	/* a text message whose secret straddles two fragments, a ping between
	 * them carrying the secret, a binary message, an empty message, a close */
	frame(&in, 1, false, "hello sk-live-SEC", 17, 0, false);
	snprintf(text, sizeof(text), "ping %s", SECRET);
	frame(&in, 9, true, text, strlen(text), 0, false);
	frame(&in, 0, true, "RET-0123456789 bye", 18, 0, false);
	memset(big, 'x', sizeof(big));
	memcpy(big + 65530, SECRET, strlen(SECRET));
	frame(&in, 2, true, big, sizeof(big), 0, false);
	frame(&in, 1, true, "", 0, 0, false);
	frame(&in, 8, true, "\x03\xe8sk-live-SECRET-0123456789", 27, 0, false);

	snprintf(text, sizeof(text), "C9:ping %s\nM1:hello %s bye\n", ph, ph);
	add(&want, text, strlen(text));
	obuf_init(&o, sizeof(big) * 2);
	redact_string(set, 1, big, sizeof(big), &o);
	add(&want, "M2:", 3), add(&want, o.p, o.len), add(&want, "\nM1:\nC8:\x03\xe8", 10);
	add(&want, ph, strlen(ph)), add(&want, "\n", 1);
	obuf_dispose(&o);
	for (size_t step = 1; step < in.n; step = step * 3 + 1) {
		if (run(&in, step, &ev, &err) != 0 || ev.n != want.n || memcmp(ev.p, want.p, ev.n)) {
			all = false;
			printf("# step %zu: %s; got %zu bytes, want %zu\n", step, err ? err : "-", ev.n,
			       want.n);
		}
		if (memmem(ev.p, ev.n, SECRET, strlen(SECRET)))
			all = false;
	}
	ok(all, "messages and control frames equal the input's, redacted, for every cut");
}

static void expect_fail(const char *what, void (*build)(struct buf *), const char *msg)
{
	static struct buf in, ev;
	const char *err = NULL;
	int rc;

	in.n = 0;
	build(&in);
	rc = run(&in, 7, &ev, &err);
	ok(rc == -2 && err && strstr(err, msg), "%s refused: %s", what, err ? err : "(accepted)");
}

static void b_masked(struct buf *b) { frame(b, 1, true, "x", 1, 0, true); }
static void b_rsv(struct buf *b) { frame(b, 1, true, "x", 1, 4, false); }
static void b_op(struct buf *b) { frame(b, 3, true, "x", 1, 0, false); }
static void b_ctlfrag(struct buf *b) { frame(b, 9, false, "x", 1, 0, false); }
static void b_cont(struct buf *b) { frame(b, 0, true, "x", 1, 0, false); }
static void b_nested(struct buf *b)
{
	frame(b, 1, false, "x", 1, 0, false);
	frame(b, 2, true, "y", 1, 0, false);
}
static void b_bigctl(struct buf *b)
{
	static char p[126];
	frame(b, 10, true, p, sizeof(p), 0, false);
}
static void b_toplen(struct buf *b)
{
	add(b, "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01", 10);
}

int main(void)
{
	struct policy *p = policy_new();
	char err[SECRETS_ERRLEN];

	policy_add_secret(p, "K", "h.test", SECRET_VALUE, SECRET, err);
	set = secretset_load(p, key, err);
	if (!set) {
		printf("# %s\n", err);
		return 1;
	}
	test_messages();
	expect_fail("a masked server frame", b_masked, "masked");
	expect_fail("a compressed (RSV1) frame", b_rsv, "RSV");
	expect_fail("a reserved opcode", b_op, "reserved");
	expect_fail("a fragmented control frame", b_ctlfrag, "control");
	expect_fail("a 126-byte control frame", b_bigctl, "control");
	expect_fail("a continuation without a message", b_cont, "continuation");
	expect_fail("a message inside a message", b_nested, "inside");
	expect_fail("a length with its top bit set", b_toplen, "top bit");
	secretset_free(set);
	policy_unref(p);
	return done_testing();
}
