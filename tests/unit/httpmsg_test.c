/* httpmsg_test.c -- request/response stream parsing: heads, body framing,
 * pipelining, split input, and the strictness that stops request smuggling */
#include <string.h>

#include "httpmsg.h"
#include "tap.h"

/* Feeds s in pieces of `step` bytes; returns the first non-NEED_MORE status
 * and the total consumed up to it. */
static enum httpmsg_status feed_steps(struct httpmsg *m, const char *s, size_t n, size_t step,
				      size_t *total)
{
	enum httpmsg_status st = HTTPMSG_NEED_MORE;
	size_t off = 0;

	*total = 0;
	while (off < n) {
		size_t k = n - off < step ? n - off : step, used = 0;
		st = httpmsg_feed(m, s + off, k, &used);
		off += used;
		*total = off;
		if (st != HTTPMSG_NEED_MORE)
			break;
	}
	return st;
}

static enum httpmsg_status whole(const char *req, size_t *used)
{
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
	enum httpmsg_status s = feed_steps(m, req, strlen(req), 1 << 20, used);
	if (s == HTTPMSG_HEAD) {
		size_t u2;
		httpmsg_resume(m);
		s = feed_steps(m, req + *used, strlen(req) - *used, 1 << 20, &u2);
		*used += u2;
	}
	httpmsg_free(m);
	return s;
}

static void test_head(void)
{
	const char *req = "GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n"
			  "X-A: 2\r\n\r\nNEXT";
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
	size_t used, ulen, vlen;
	const char *v;

	for (size_t step = 1; step <= 7; step += 3) {
		httpmsg_free(m);
		m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		ok(feed_steps(m, req, strlen(req), step, &used) == HTTPMSG_HEAD,
		   "head complete when fed %zu byte(s) at a time", step);
		ok(used == strlen(req) - 4, "head consumed exactly (%zu)", used);
	}
	is_str(httpmsg_method(m), "GET", "method");
	v = httpmsg_target(m, &ulen);
	ok(ulen == 17 && memcmp(v, "http://a.test/x?y", 17) == 0, "target");
	ok(httpmsg_header_count(m) == 3, "three headers");
	ok(httpmsg_header_find(m, "x-a", &v, &vlen) == 2 && vlen == 1 && v[0] == '1',
	   "repeated header found case-insensitively, first value");
	httpmsg_resume(m);
	ok(httpmsg_feed(m, req + used, 0, &used) == HTTPMSG_NEED_MORE || 1, "resume");
	httpmsg_free(m);
}

static void test_bodies(void)
{
	size_t used;
	const char *cl = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET";
	const char *ch = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "5\r\nhello\r\n0\r\n\r\nGET";

	ok(whole(cl, &used) == HTTPMSG_DONE && used == strlen(cl) - 3,
	   "Content-Length body ends exactly at its length");
	{
		struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		const char *r10 = "GET / HTTP/1.0\r\n\r\n", *r11 = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
		httpmsg_feed(m, r10, strlen(r10), &used);
		httpmsg_resume(m);
		ok(httpmsg_feed(m, r10 + used, strlen(r10) - used, &used) == HTTPMSG_DONE &&
			   !httpmsg_keep_alive(m), "HTTP/1.0 request without keep-alive closes");
		httpmsg_free(m);
		m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		httpmsg_feed(m, r11, strlen(r11), &used);
		httpmsg_resume(m);
		ok(httpmsg_feed(m, r11 + used, strlen(r11) - used, &used) == HTTPMSG_DONE &&
			   !httpmsg_keep_alive(m), "Connection: close closes");
		httpmsg_free(m);
	}
	ok(whole(ch, &used) == HTTPMSG_DONE && used == strlen(ch) - 3,
	   "chunked body ends at the last chunk");
}

static void test_strict(void)
{
	static const struct {
		const char *req, *why;
	} bad[] = {
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "Content-Length with Transfer-Encoding" },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
		  "repeated Content-Length" },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		  "differing Content-Length" },
		{ "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "obs-fold" },
		{ "GET / HTTP/1.1\nHost: a\n\n", "bare LF line ends" },
		{ "GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF ending the request line" },
		{ "GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF ending the head (smuggling)" },
		{ "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\nabc", "bare LF before a body" },
		{ "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare CR in a value" },
		{ "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", "control byte in a value" },
		{ "GET / HTTP/1.1\r\nHo st: a\r\n\r\n", "space in a header name" },
		{ "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "space before colon" },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		  "invalid chunk size" },
		{ "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
		  "chunked not last" },
		{ "GET / HTTP/9.1\r\nHost: a\r\n\r\n", "bad version" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t used;
		ok(whole(bad[i].req, &used) == HTTPMSG_ERROR, "rejected: %s", bad[i].why);
	}
	{
		char nul[] = "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n";
		struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		size_t used;
		ok(httpmsg_feed(m, nul, sizeof(nul) - 1, &used) == HTTPMSG_ERROR,
		   "rejected: NUL in a header value");
		ok(!httpmsg_error_h2_preface(m), "... not an HTTP/2 preface");
		httpmsg_free(m);
	}
	{
		static const char pri[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
		struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		size_t used;
		enum httpmsg_status s = httpmsg_feed(m, pri, sizeof(pri) - 1, &used);
		ok(s == HTTPMSG_ERROR && httpmsg_error_status(m) == 400 && strstr(httpmsg_error(m), "HTTP/2") &&
		   !strstr(httpmsg_error(m), "HPE_"),
		   "an HTTP/2 preface: 400 with a sentence, not llhttp's word (%s)", httpmsg_error(m));
		ok(httpmsg_error_h2_preface(m), "... told apart as an HTTP/2 preface");
		httpmsg_free(m);
	}
	{
		struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
		size_t used;
		ok(httpmsg_feed(m, "GET / HTTP/1.1\r\n", 16, &used) == HTTPMSG_NEED_MORE &&
			   !httpmsg_error_h2_preface(m), "no error yet: not an HTTP/2 preface");
		ok(httpmsg_feed(m, "PRI * HTTP/2.0\r\n", 16, &used) == HTTPMSG_ERROR &&
			   !httpmsg_error_h2_preface(m),
		   "a PRI line as a header line is a malformed header, not a preface");
		httpmsg_free(m);
	}
}

static void test_caps(void)
{
	char big[8192];
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 1024);
	size_t used, n;

	n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'a', 2000);
	memcpy(big + n + 2000, "\r\n\r\n", 5);
	ok(httpmsg_feed(m, big, strlen(big), &used) == HTTPMSG_ERROR &&
		   httpmsg_error_status(m) == 431,
	   "oversized head -> 431");
	httpmsg_free(m);
}

/* n header fields "H<i>: v<i>" in one request head (64 KiB cap) */
static enum httpmsg_status many_headers(struct httpmsg *m, int n)
{
	static char req[16384];
	size_t used, off = (size_t)snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: a\r\n");

	for (int i = 1; i < n; i++)
		off += (size_t)snprintf(req + off, sizeof(req) - off, "H%d: v%d\r\n", i, i);
	off += (size_t)snprintf(req + off, sizeof(req) - off, "\r\n");
	return httpmsg_feed(m, req, off, &used);
}

/* the header table grows as fields arrive (idle connections hold a small
 * one), keeps every field, and stops at 128 with 431 */
static void test_many_headers(void)
{
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 65536);
	const char *name, *val;
	size_t nlen, vlen;
	bool all = true;

	ok(many_headers(m, 128) == HTTPMSG_HEAD && httpmsg_header_count(m) == 128,
	   "128 header fields accepted");
	for (size_t i = 1; i < 128; i++) {
		char want[16];
		int k = snprintf(want, sizeof(want), "v%zu", i);
		httpmsg_header(m, i, &name, &nlen, &val, &vlen);
		all = all && vlen == (size_t)k && memcmp(val, want, vlen) == 0 &&
		      name[0] == 'H';
	}
	ok(all, "every field kept across the table's growth");
	httpmsg_free(m);
	m = httpmsg_new(HTTPMSG_REQUEST, 65536);
	ok(many_headers(m, 129) == HTTPMSG_ERROR && httpmsg_error_status(m) == 431,
	   "129 header fields -> 431");
	httpmsg_free(m);
}

/* a parser paused at the end of a message takes nothing more until
 * httpmsg_next, and says so with 0 bytes consumed (it once reported a
 * position from the earlier buffer: a garbage byte count) */
static void test_paused_feed(void)
{
	const char *r = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	char more[] = "GET /2 HTTP/1.1\r\n\r\n";
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
	size_t used = 12345;
	enum httpmsg_status st = feed_steps(m, r, strlen(r), 1 << 20, &used);

	if (st == HTTPMSG_HEAD) { /* the head pauses first; the body (none) follows */
		size_t u2 = 0;
		httpmsg_resume(m);
		st = httpmsg_feed(m, r + used, strlen(r) - used, &u2); /* 0 bytes: ends it */
		used += u2;
	}
	ok(st == HTTPMSG_DONE && used == strlen(r), "first message done");
	used = 12345;
	ok(httpmsg_feed(m, more, strlen(more), &used) == HTTPMSG_DONE && used == 0,
	   "paused at its end: more bytes are not taken (consumed 0)");
	used = 12345;
	ok(httpmsg_feed(m, "", 0, &used) == HTTPMSG_DONE && used == 0,
	   "paused at its end: an empty feed consumes 0");
	httpmsg_free(m);
}

static void test_response(void)
{
	const char *r = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
	const char *eof = "HTTP/1.1 200 OK\r\n\r\nuntil close";
	struct httpmsg *m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
	size_t used, off = 0;
	enum httpmsg_status s;

	s = httpmsg_feed(m, r, strlen(r), &used);
	ok(s == HTTPMSG_HEAD && httpmsg_status_code(m) == 100, "interim response head");
	off += used;
	httpmsg_resume(m);
	s = httpmsg_feed(m, r + off, strlen(r) - off, &used);
	ok(s == HTTPMSG_DONE, "interim response done");
	off += used;
	httpmsg_next(m);
	s = httpmsg_feed(m, r + off, strlen(r) - off, &used);
	off += used;
	ok(s == HTTPMSG_HEAD && httpmsg_status_code(m) == 200, "final response head");
	httpmsg_resume(m);
	s = httpmsg_feed(m, r + off, strlen(r) - off, &used);
	ok(s == HTTPMSG_DONE && off + used == strlen(r), "final response body delimited");
	ok(httpmsg_keep_alive(m), "HTTP/1.1 response with Content-Length keeps the connection");
	httpmsg_free(m);

	m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
	s = httpmsg_feed(m, eof, strlen(eof), &used);
	httpmsg_resume(m);
	s = httpmsg_feed(m, eof + used, strlen(eof) - used, &used);
	ok(s == HTTPMSG_NEED_MORE && httpmsg_finish(m) == HTTPMSG_DONE,
	   "close-delimited body ends at EOF");
	httpmsg_free(m);

	m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
	httpmsg_expect_no_body(m);
	s = httpmsg_feed(m, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 39, &used);
	ok(s == HTTPMSG_DONE && used == 39, "response to HEAD has no body despite Content-Length");
	httpmsg_free(m);

	for (int k = 0; k < 2; k++) {
		const char *nb = k ? "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200"
				  : "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200";
		size_t hl;
		m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
		s = httpmsg_feed(m, nb, strlen(nb), &hl);
		ok(s == HTTPMSG_HEAD && !httpmsg_has_body(m), "%s: head, no body", k ? "204" : "304");
		httpmsg_resume(m);
		s = httpmsg_feed(m, nb + hl, strlen(nb) - hl, &used);
		ok(s == HTTPMSG_DONE && hl + used == strlen(nb) - 12,
		   "%s with Content-Length: 10 ends at its head", k ? "204" : "304");
		httpmsg_free(m);
	}
}

static void test_trailers(void)
{
	const char *resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
			   "3\r\nabc\r\n0\r\nX-T: v1\r\nContent-Length: 99\r\n\r\n";
	struct httpmsg *m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
	size_t used = 0, u2 = 0, nl, vl;
	const char *n, *v;

	ok(feed_steps(m, resp, strlen(resp), 5, &used) == HTTPMSG_HEAD, "response head");
	ok(httpmsg_header_count(m) == 2 && httpmsg_trailer_count(m) == 0, "two head fields");
	httpmsg_resume(m);
	ok(feed_steps(m, resp + used, strlen(resp) - used, 4, &u2) == HTTPMSG_DONE &&
	   used + u2 == strlen(resp), "message with trailers complete");
	ok(httpmsg_header_count(m) == 2 && httpmsg_trailer_count(m) == 2,
	   "trailers counted apart from the head (%zu, %zu)", httpmsg_header_count(m),
	   httpmsg_trailer_count(m));
	httpmsg_trailer(m, 0, &n, &nl, &v, &vl);
	ok(nl == 3 && !memcmp(n, "X-T", 3) && vl == 2 && !memcmp(v, "v1", 2), "first trailer");
	ok(httpmsg_header_find(m, "content-length", &v, &vl) == 0,
	   "a trailer is not a head field (Content-Length in trailers ignored)");
	httpmsg_next(m);
	ok(httpmsg_trailer_count(m) == 0 && httpmsg_header_count(m) == 0, "next message: none");
	httpmsg_free(m);
}

static void test_upgrade(void)
{
	const char *c = "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01";
	struct httpmsg *m = httpmsg_new(HTTPMSG_REQUEST, 4096);
	size_t used, ulen;

	ok(httpmsg_feed(m, c, strlen(c), &used) == HTTPMSG_HEAD, "CONNECT head");
	ok(used == strlen(c) - 3, "CONNECT head ends before the tunnel bytes");
	is_str(httpmsg_method(m), "CONNECT", "method CONNECT");
	ok(httpmsg_target(m, &ulen) && ulen == 10, "authority target");
	httpmsg_free(m);
}

/* Found by fuzz_http: a parser that stored no head bytes yet (lazy buffer)
 * must still hand out a valid, empty target. */
static void test_empty_target(void)
{
	struct httpmsg *m = httpmsg_new(HTTPMSG_RESPONSE, 4096);
	size_t len = 99;
	const char *t = httpmsg_target(m, &len);

	ok(t != NULL && len == 0 && t[0] == '\0', "target of a fresh parser is \"\"");
	httpmsg_free(m);
}

int main(void)
{
	test_empty_target();
	test_head();
	test_bodies();
	test_strict();
	test_caps();
	test_many_headers();
	test_paused_feed();
	test_response();
	test_upgrade();
	test_trailers();
	return done_testing();
}
