/* h1h2_test.c -- unit tests for h1h2.c: HTTP/1.1 requests in, against a real
 * nghttp2 server session in memory; what the server received (pseudo-headers,
 * fields, never-indexed flags, DATA) and the HTTP/1.1 bytes the bridge handed
 * back (Content-Length and chunked replies, trailers, HEAD, 204, 1xx, resets,
 * GOAWAY, a head over the cap). H1H2_CORPUS=DIR writes each case's input as
 * a seed of fuzz/fuzz_h1h2.c. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h1h2.h"
#include "tap.h"

struct bytes {
	char p[1 << 20];
	size_t len;
};

static struct {
	struct h1h2 *b;
	nghttp2_session *srv;
	struct bytes to_srv, reply, hdrs; /* hdrs: "name: value [ni]\n" the server got */
	size_t body;                        /* request DATA bytes the server got */
	char body_head[64];
	int rc;                             /* the last h1h2_recv */
	const char *why;
	FILE *seed;
	char paths[16][32];                 /* by stream id / 2 */
} W;

static void add(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n <= sizeof(b->p)) {
		memcpy(b->p + b->len, p, n);
		b->len += n;
	}
}

static void seed_add(int up, const char *p, size_t n)
{
	while (W.seed && n > 0) {
		size_t c = n < 32767 ? n : 32767;
		unsigned char h[2] = { (unsigned char)((c >> 8) << 1 | up), (unsigned char)c };
		fwrite(h, 1, 2, W.seed);
		fwrite(p, 1, c, W.seed);
		p += c, n -= c;
	}
}

static void on_wire(void *arg, const char *p, size_t n)
{
	(void)arg;
	add(&W.to_srv, p, n);
}

static void on_reply(void *arg, const char *p, size_t n)
{
	(void)arg;
	add(&W.reply, p, n);
}

static const struct h1h2_cbs cbs = { on_wire, on_reply };

/* ---- the server ---- */

static const char *path_of(int32_t id)
{
	return id / 2 < 16 && W.paths[id / 2][0] ? W.paths[id / 2] : NULL;
}

static int srv_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
		      const uint8_t *v, size_t vl, uint8_t flags, void *ud)
{
	(void)ud;
	add(&W.hdrs, n, nl);
	add(&W.hdrs, ": ", 2);
	add(&W.hdrs, v, vl);
	add(&W.hdrs, flags & NGHTTP2_NV_FLAG_NO_INDEX ? " [ni]\n" : "\n", flags & NGHTTP2_NV_FLAG_NO_INDEX ? 6 : 1);
	if (nl == 5 && !memcmp(n, ":path", 5) && f->hd.stream_id / 2 < 16)
		snprintf(W.paths[f->hd.stream_id / 2], 32, "%.*s", (int)vl, (const char *)v);
	return 0;
}

static int srv_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n, void *ud)
{
	(void)s, (void)flags, (void)id, (void)ud;
	if (W.body < sizeof(W.body_head))
		memcpy(W.body_head + W.body, p, n < sizeof(W.body_head) - W.body ? n : sizeof(W.body_head) - W.body);
	W.body += n;
	return 0;
}

static ssize_t two_parts(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	nghttp2_nv tr = { (uint8_t *)"x-t", (uint8_t *)"v", 3, 1, 0 };

	(void)len, (void)ud;
	if (src->ptr) {
		memcpy(buf, "first;", 6);
		src->ptr = NULL;
		return 6;
	}
	memcpy(buf, "second", 6);
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	nghttp2_submit_trailer(s, id, &tr, 1);
	return 6;
}

static ssize_t hello(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		     nghttp2_data_source *src, void *ud)
{
	(void)s, (void)id, (void)len, (void)src, (void)ud;
	memcpy(buf, "hello", 5);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return 5;
}

/* A body that says more than its Content-Length (a hostile upstream trying
 * to smuggle a second reply into the HTTP/1.1 bytes). */
static ssize_t overlong(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	static const char body[] = "helloHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nbad";

	(void)s, (void)id, (void)len, (void)src, (void)ud;
	memcpy(buf, body, sizeof(body) - 1);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)sizeof(body) - 1;
}

#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), 0 }

static char big[40 * 1024]; /* two such fields: over the bridge's head cap */

static void srv_answer(nghttp2_session *s, int32_t id, const char *path)
{
	nghttp2_nv len[] = { NV(":status", "200"), NV("content-length", "5") };
	nghttp2_nv chunk[] = { NV(":status", "200"), NV("content-type", "text/plain") };
	nghttp2_nv st204[] = { NV(":status", "204") };
	nghttp2_nv huge[] = { NV(":status", "200"), NV("x-big", big), NV("x-big2", big) };
	nghttp2_nv len10[] = { NV(":status", "200"), NV("content-length", "10") };
	nghttp2_data_provider p3 = { .read_callback = overlong };
	nghttp2_data_provider p1 = { .read_callback = hello }, p2 = { .source.ptr = s, .read_callback = two_parts };

	if (!strcmp(path, "/late")) {
		return; /* never answered */
	} else if (!strcmp(path, "/reset")) {
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
	} else if (!strcmp(path, "/chunk")) {
		nghttp2_submit_response(s, id, chunk, 2, &p2);
	} else if (!strcmp(path, "/204")) {
		nghttp2_submit_response(s, id, st204, 1, NULL);
	} else if (!strcmp(path, "/overlong")) {
		nghttp2_submit_response(s, id, len, 2, &p3);
	} else if (!strcmp(path, "/short")) {
		nghttp2_submit_response(s, id, len10, 2, &p1);
	} else if (!strcmp(path, "/huge")) {
		nghttp2_submit_response(s, id, huge, 3, NULL);
	} else {
		if (!strcmp(path, "/goaway"))
			nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, NULL, 0);
		nghttp2_submit_response(s, id, len, 2, !strncmp(path, "/head", 5) ? NULL : &p1);
	}
}

static int srv_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	nghttp2_nv cont[] = { NV(":status", "100") };
	const char *path = f->hd.stream_id ? path_of(f->hd.stream_id) : NULL;

	(void)ud;
	if (!path || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && !strcmp(path, "/100") &&
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NULL, cont, 1, NULL);
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		srv_answer(s, f->hd.stream_id, path);
	return 0;
}

/* ---- the world ---- */

static void start(const char *name)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *o;
	const char *dir = getenv("H1H2_CORPUS");
	char path[512];

	memset(&W, 0, sizeof(W));
	if (dir) {
		snprintf(path, sizeof(path), "%s/unit-%s", dir, name);
		W.seed = fopen(path, "wb");
	}
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, srv_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, srv_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame);
	nghttp2_option_new(&o);
	nghttp2_option_set_max_send_header_block_length(o, 256 * 1024); /* the huge head */
	nghttp2_session_server_new2(&W.srv, cb, NULL, o);
	nghttp2_option_del(o);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(W.srv, NGHTTP2_FLAG_NONE, NULL, 0);
	W.b = h1h2_new(&cbs, NULL);
}

static void finish(void)
{
	h1h2_free(W.b);
	nghttp2_session_del(W.srv);
	if (W.seed)
		fclose(W.seed);
}

/* Moves bytes both ways until neither side has any (or the bridge ended). */
static void pump(void)
{
	for (int round = 0; round < 1000 && W.rc == 0; round++) {
		const uint8_t *d;
		ssize_t n;
		bool moved = W.to_srv.len > 0;

		nghttp2_session_mem_recv(W.srv, (const uint8_t *)W.to_srv.p, W.to_srv.len);
		W.to_srv.len = 0;
		while ((n = nghttp2_session_mem_send(W.srv, &d)) > 0 && W.rc == 0) {
			moved = true;
			seed_add(1, (const char *)d, (size_t)n);
			W.rc = h1h2_recv(W.b, (const char *)d, (size_t)n, &W.why);
		}
		if (!moved)
			break;
	}
}

static void send_req(const char *s)
{
	seed_add(0, s, strlen(s));
	ok(h1h2_request(W.b, s, strlen(s)) == 0, "request bytes taken");
	pump();
}

static bool replied(const char *want)
{
	bool same = W.reply.len == strlen(want) && !memcmp(W.reply.p, want, W.reply.len);

	if (!same)
		printf("# reply: %.*s\n", (int)W.reply.len, W.reply.p);
	return same;
}

static bool got_hdr(const char *line)
{
	return memmem(W.hdrs.p, W.hdrs.len, line, strlen(line)) != NULL;
}

/* ---- cases ---- */

static void test_get(void)
{
	start("get");
	send_req("GET /len?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Gone\r\n"
		 "Keep-Alive: 5\r\nProxy-Authorization: x\r\nTE: gzip\r\nX-Gone: 1\r\n"
		 "Authorization: Bearer s3cret\r\nX-Kept: 2\r\n\r\n");
	ok(got_hdr(":method: GET\n") && got_hdr(":scheme: https\n") &&
	   got_hdr(":authority: a.test\n") && got_hdr(":path: /len?q=1 [ni]\n"),
	   "pseudo-headers from the request line and Host");
	ok(got_hdr("authorization: Bearer s3cret [ni]\n") && got_hdr("x-kept: 2 [ni]\n"),
	   "fields lower-cased, never indexed");
	ok(!got_hdr("connection") && !got_hdr("keep-alive") && !got_hdr("proxy-") &&
	   !got_hdr("\nte:") && !got_hdr("x-gone") && !got_hdr("\nhost:"),
	   "hop-by-hop fields, and what Connection names, dropped");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"), "a Content-Length reply");
	ok(W.rc == 0, "no EOF");
	W.reply.len = 0;
	send_req("GET /len HTTP/1.1\r\nHost: a.test\r\nTE: trailers\r\n\r\n");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello") && got_hdr("te: trailers"),
	   "a second request on the same session (TE: trailers kept)");
	finish();
}

static void test_post_chunked(void)
{
	const char *parts[] = { "POST /len HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
				"cde\r\n3\r\nfgh\r\n", "0\r\nX-Trailer: t\r\n\r\n" };

	start("post-chunked");
	for (int i = 0; i < 3; i++)
		send_req(parts[i]);
	ok(W.body == 8 && !memcmp(W.body_head, "abcdefgh", 8), "the body de-chunked as DATA (%zu)", W.body);
	ok(!got_hdr("transfer-encoding"), "no Transfer-Encoding on the stream");
	ok(h1h2_pending(W.b) == 0, "nothing held");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"), "the reply");
	finish();
}

static void test_post_length(void)
{
	static char req[100 * 1024 + 100];
	int n = snprintf(req, sizeof(req), "POST /len HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n", 100 * 1024);

	start("post-length");
	memset(req + n, 'p', 100 * 1024);
	seed_add(0, req, (size_t)n + 100 * 1024);
	ok(h1h2_request(W.b, req, (size_t)n + 100 * 1024) == 0, "a 100 KiB body taken");
	ok(h1h2_pending(W.b) > 0, "held until the server's window opens (%zu)", h1h2_pending(W.b));
	pump();
	ok(W.body == 100 * 1024 && h1h2_pending(W.b) == 0, "all of it sent (%zu)", W.body);
	ok(got_hdr("content-length: 102400"), "Content-Length kept");
	finish();
}

static void test_chunked_reply(void)
{
	start("chunked-reply");
	send_req("GET /chunk HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
		   "6\r\nfirst;\r\n6\r\nsecond\r\n0\r\nx-t: v\r\n\r\n"),
	   "no length: chunked, the h2 trailers as chunked trailers");
	finish();
}

static void test_http10(void)
{
	start("http10");
	send_req("GET /chunk HTTP/1.0\r\nHost: a.test\r\n\r\n");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst;second"),
	   "HTTP/1.0, no length: the body as it comes, no chunked framing, trailers dropped");
	ok(W.rc == 1 && W.why && strstr(W.why, "HTTP/1.0"), "then EOF ends it (%s)", W.why ? W.why : "-");
	finish();
}

static void test_no_body(void)
{
	start("no-body");
	send_req("HEAD /head HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"), "HEAD: the head only");
	W.reply.len = 0;
	send_req("GET /204 HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(replied("HTTP/1.1 204 No Content\r\n\r\n"), "204: no chunked framing");
	finish();
}

static void test_continue(void)
{
	start("continue");
	send_req("POST /100 HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
	ok(replied("HTTP/1.1 100 Continue\r\n\r\n"), "the 100 before the body");
	send_req("ok");
	ok(W.reply.len > 25 && !memcmp(W.reply.p + 25, "HTTP/1.1 200 OK\r\n", 17), "then the final reply");
	finish();
}

static void test_reset(void)
{
	start("reset");
	send_req("GET /reset HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(W.rc == 1 && W.why && strstr(W.why, "reset"), "a reset stream: EOF (%s)", W.why ? W.why : "-");
	ok(W.reply.len == 0, "nothing handed on");
	finish();
}

static void test_goaway(void)
{
	start("goaway");
	send_req("GET /goaway HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(replied("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"), "the reply in flight completes");
	ok(W.rc == 1 && W.why && strstr(W.why, "GOAWAY"), "then EOF (%s)", W.why ? W.why : "-");
	finish();
}

static void test_huge_head(void)
{
	start("huge-head");
	send_req("GET /huge HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(W.rc == 1 && W.reply.len == 0, "a reply head over 64 KiB: the stream reset, EOF, nothing handed on (%d %zu)", W.rc, W.reply.len);
	finish();
}

/* The reply's DATA must agree with its Content-Length: more (a second reply
 * smuggled into the HTTP/1.1 bytes) or less is a stream error, never bytes
 * past the length handed on. */
static void test_length_mismatch(void)
{
	start("overlong");
	send_req("GET /overlong HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(!memmem(W.reply.p, W.reply.len, "bad", 3) && !memmem(W.reply.p, W.reply.len, "HTTP/1.1 200 OK\r\ncontent-length: 3", 34),
	   "DATA past Content-Length: not handed on (%zu bytes)", W.reply.len);
	ok(W.rc == 1, "the stream is reset: EOF (%s)", W.why ? W.why : "-");
	finish();
	start("short");
	send_req("GET /short HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(W.rc == 1, "DATA short of Content-Length at END_STREAM: EOF, the reply left incomplete (%s)",
	   W.why ? W.why : "-");
	finish();
}

/* Two requests in flight (the engine never does that: a guard) and the
 * upstream answers the second first: the bridge fails rather than hand the
 * second reply on as the first's. */
static void test_out_of_order(void)
{
	start("out-of-order");
	send_req("GET /late HTTP/1.1\r\nHost: a.test\r\n\r\nGET /len HTTP/1.1\r\nHost: a.test\r\n\r\n");
	ok(W.rc == -1 && W.why && strstr(W.why, "out of order"), "a reply to the later stream first: failed (%s)",
	   W.why ? W.why : "-");
	ok(W.reply.len == 0, "nothing handed on (%zu)", W.reply.len);
	finish();
}

int main(void)
{
	memset(big, 'b', sizeof(big) - 1);
	test_get();
	test_post_chunked();
	test_post_length();
	test_chunked_reply();
	test_http10();
	test_no_body();
	test_continue();
	test_reset();
	test_goaway();
	test_huge_head();
	test_length_mismatch();
	test_out_of_order();
	return done_testing();
}
