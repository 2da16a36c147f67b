/* h2relay_test.c -- unit tests for h2relay.c, h2stream.c and h2head.c: a
 * request and its reply, Host/:authority and request rules, injection and
 * leaks, hop-by-hop fields, trailers, gRPC's shape, interim replies and
 * resets, redaction of heads, DATA and trailers, compressed replies, and the
 * relay's CPU per request. The world is tests/unit/h2pair.h; floods and
 * limits are in h2limits_test.c. */
#include <openssl/evp.h>
#include <zlib.h>

#define H2PAIR_SEED "unit"
#include "h2pair.h"

static char *b64(const char *s)
{
	static char out[512];

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
	return out;
}

static void test_basic(void)
{
	struct resp *r;
	int32_t id;

	world_init(false, false, NULL);
	W.reply.parts[0] = "hello ";
	W.reply.parts[1] = "world";
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "text/plain";
	id = request("GET", "/x?y=1", "api.test", NULL, NULL);
	run(50);
	r = resp_of(id);
	ok(r->status == 200, "GET: the sandbox gets the upstream's 200");
	ok(r->body.len == 11 && memcmp(r->body.p, "hello world", 11) == 0,
	   "the body, sent in two DATA frames, arrives whole");
	ok(wire_has(&r->hdrs, "content-type: text/plain\n"), "reply fields arrive");
	ok(r->closed && r->code == NGHTTP2_NO_ERROR, "the stream ends cleanly");
	ok(wire_has(&W.uq[0].hdrs, ":authority: api.test\n") &&
	   wire_has(&W.uq[0].hdrs, ":path: /x?y=1\n") && wire_has(&W.uq[0].hdrs, ":scheme: https\n") &&
	   wire_has(&W.uq[0].hdrs, ":method: GET\n"), "the upstream gets the request's pseudo-fields");
	ok(W.events[H2EV_REQUEST] == 1 && W.last_status == 200 && !W.last_incomplete,
	   "one request event, status 200, complete");
	id = request("POST", "/p", "api.test", NULL, "payload-bytes");
	run(50);
	ok(W.uq[1].body.len == 13 && memcmp(W.uq[1].body.p, "payload-bytes", 13) == 0,
	   "a request body reaches the upstream");
	ok(resp_of(id)->status == 200 && W.events[H2EV_REQUEST] == 2, "second stream on the same connection");
	ok(h2relay_buffered(W.r) == 0, "nothing held once both streams ended");
	world_free();
}

static void test_host(void)
{
	const char *host_other[] = { "host", "evil.test", NULL };
	const char *host_same[] = { "host", "API.test:443", NULL };
	const char *host_plain[] = { "host", "api.test", NULL };
	int32_t a, b, c, d, e, f, g;

	world_init(false, false, NULL);
	a = request("GET", "/", "evil.test", NULL, NULL);
	b = request("GET", "/", "api.test:8443", NULL, NULL);
	c = request("GET", "/", "api.test", host_other, NULL);
	d = request("GET", "/", "api.test:443", host_same, NULL);
	e = request("GET", "/", NULL, NULL, NULL);
	g = request("GET", "/", NULL, host_plain, NULL);
	f = request("HEAD", "/", "evil.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 421 && wire_has(&resp_of(a)->hdrs, "x-egressd-reason: host-mismatch\n"),
	   ":authority naming another host: 421 host-mismatch");
	ok(wire_has(&resp_of(a)->body, "egressd: the :authority names another host"),
	   "... with a one-line body");
	ok(resp_of(b)->status == 421, ":authority with another port: 421");
	ok(resp_of(c)->status == 421, "a host field naming another host: 421");
	ok(resp_of(d)->status == 200, "the connection's host (case, explicit :443) is fine");
	ok(resp_of(e)->closed && resp_of(e)->code == NGHTTP2_PROTOCOL_ERROR,
	   "neither :authority nor host: reset as malformed (nghttp2)");
	ok(resp_of(g)->status == 200 && wire_has(&W.uq[1].hdrs, ":authority: api.test\n"),
	   "host alone: checked and sent as :authority");
	ok(resp_of(f)->status == 421 && resp_of(f)->body.len == 0, "a refused HEAD gets no body");
	ok(upstream_streams() == 2, "refused streams reach nobody");
	ok(!wire_has(&W.uq[0].hdrs, "host: "), "host is sent as :authority only");
	ok(W.events[H2EV_REQUEST] == 6 && !W.failed, "each stream logged; the connection lives");
	world_free();
}

static void test_rules(void)
{
	int32_t a, b, c, d;

	teardown_policy();
	setup_policy(true);
	world_init(false, false, NULL);
	a = request("GET", "/allowed/x", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 200 && W.last_ruled, "a rule allows GET /allowed/x");
	b = request("GET", "/denied", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(b)->status == 403 && wire_has(&resp_of(b)->hdrs, "x-egressd-reason: rule-denied\n"),
	   "GET /denied: 403 rule-denied");
	ok(resp_of(b)->body.len > 0 &&
	   strncmp((const char *)resp_of(b)->body.p,
		   "egressd: GET https://api.test/denied refused by rulesDefault: no rule matches "
		   "(rule-denied)\n", resp_of(b)->body.len) == 0,
	   "... with HTTP/1's one-line body");
	ok(W.last_reason == REASON_RULE_DENIED && W.last_ruled, "the event says rule-denied");
	c = request("POST", "/allowed/x", "api.test", NULL, "body");
	d = request("GET", "/allowed/../admin", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(c)->status == 403, "POST (no rule for it): 403");
	ok(resp_of(d)->status == 403 && wire_has(&resp_of(d)->body, "ambiguous path: dot-segment"),
	   "a dot-segment path is refused as ambiguous, normalised as for HTTP/1");
	ok(upstream_streams() == 1 && W.uq[1].body.len == 0, "refused requests and bodies reach nobody");
	world_free();
	teardown_policy();
	setup_policy(false);
}

static void test_inject(void)
{
	const char *f1[] = { "authorization", tap_fmt("Bearer %s", ph_api), "x-two", tap_fmt("a%sb", ph_api),
			     NULL };
	char basic[600];
	const char *f2[] = { "authorization", basic, NULL };
	int32_t a, b;

	world_init(false, false, NULL);
	a = request("GET", "/", "api.test", f1, NULL);
	run(50);
	ok(resp_of(a)->status == 200, "request with placeholders answered");
	ok(wire_has(&W.uq[0].hdrs, "authorization: Bearer " VALUE "\n"),
	   "authorization: the placeholder became the value");
	ok(wire_has(&W.uq[0].hdrs, "x-two: a" VALUE "b\n"), "any field value gets it");
	ok(!wire_has(&W.uq[0].hdrs, ph_api), "no placeholder left");
	ok(wire_has(&W.uq[0].noidx, "authorization\n") && wire_has(&W.uq[0].noidx, "x-two\n"),
	   "injected fields are sent never-indexed");
	ok(!wire_has(&W.uq[0].noidx, ":path\n"), "... and only they");
	ok(W.ev_secrets == 1, "the event names the injected secret (bit 0)");
	snprintf(basic, sizeof(basic), "Basic %s", b64(tap_fmt("user:%s", ph_api)));
	b = request("GET", "/b", "api.test", f2, NULL);
	run(50);
	snprintf(basic, sizeof(basic), "authorization: Basic %s\n", b64("user:" VALUE));
	ok(resp_of(b)->status == 200 && wire_has(&W.uq[1].hdrs, basic),
	   "Basic: decoded, injected, re-encoded");
	world_free();
}

static void test_leaks(void)
{
	const char *f[] = { "x-k", ph_other, NULL };
	int32_t a, b;

	world_init(false, false, NULL);
	a = request("GET", "/", "api.test", f, NULL);
	b = request("GET", tap_fmt("/q?k=%s", ph_other), "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 200 && wire_has(&W.uq[0].hdrs, tap_fmt("x-k: %s\n", ph_other)),
	   "log mode: another host's placeholder goes out unchanged");
	ok(!wire_has(&W.uq[0].hdrs, OTHER_VALUE), "... never its value");
	ok(resp_of(b)->status == 200 && W.events[H2EV_LEAK] == 2 && W.leak_bits == 2 &&
	   W.leak_blocked == 0, "a leak event each, in a field and in :path");
	world_free();
	world_init(false, true, NULL);
	a = request("GET", "/", "api.test", f, NULL);
	b = request("GET", "/fine", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 403 &&
	   wire_has(&resp_of(a)->hdrs, "x-egressd-reason: placeholder-leak\n") && W.leak_blocked == 1,
	   "block mode: 403 placeholder-leak");
	ok(resp_of(b)->status == 200 && upstream_streams() == 1, "... the connection goes on");
	world_free();
}

static void test_request_trailers(void)
{
	int32_t a;

	world_init(false, false, NULL);
	req_trailer = tap_fmt("t %s", ph_api);
	a = request("POST", "/t", "api.test", NULL, "body");
	run(50);
	req_trailer = NULL;
	ok(resp_of(a)->status == 200 && W.uq[0].body.len == 4 &&
	   wire_has(&W.uq[0].hdrs, "x-tr: t " VALUE "\n") && wire_has(&W.uq[0].noidx, "x-tr\n"),
	   "request trailers: placeholders injected, never indexed");
	world_free();
}

/* h2head alone: what nghttp2 would already refuse is dropped anyway. */
static void test_h2head(void)
{
	struct h2hdrs *h = h2hdrs_new(4096);
	struct h2head_req rq = { set, 1, true, "api.test" };
	static const char *const f[] = { ":method", "GET", ":path", "/", ":authority", "api.test",
		"host", "api.test", "connection", "close", "keep-alive", "1", "proxy-x", "1",
		"transfer-encoding", "chunked", "upgrade", "h2c", "te", "gzip", "accept-encoding",
		"br;q=0, gzip", "x-ok", "1", NULL };
	struct h2nv nv;
	uint64_t used = 1;
	struct obuf all;
	const char *why;
	struct target v6;
	char err[PATTERN_ERRLEN];

	for (size_t i = 0; f[i]; i += 2)
		h2hdrs_add(h, (const uint8_t *)f[i], strlen(f[i]), (const uint8_t *)f[i + 1],
			   strlen(f[i + 1]));
	h2nv_init(&nv);
	ok(h2head_request_nv(h, &rq, false, &nv, &used) && used == 0, "request head rewritten");
	obuf_init(&all, 1 << 16);
	for (size_t i = 0; i < nv.n; i++) {
		obuf_add(&all, (const char *)nv.nv[i].name, nv.nv[i].namelen);
		obuf_add(&all, ": ", 2);
		obuf_add(&all, (const char *)nv.nv[i].value, nv.nv[i].valuelen);
		obuf_add(&all, "\n", 1);
	}
	obuf_add(&all, "", 1);
	is_str(all.p, ":method: GET\n:scheme: https\n:authority: api.test\n:path: /\nx-ok: 1\n"
		      "accept-encoding: gzip\n",
	       "hop-by-hop, proxy-*, host and te other than trailers dropped; the offer replaced");
	obuf_dispose(&all);
	h2nv_dispose(&nv);
	ok(h2head_check_request(h, &tgt, &why) == 0, "the connection's host passes");
	h2hdrs_free(h);
	h = h2hdrs_new(4096);
	h2hdrs_add(h, (const uint8_t *)":method", 7, (const uint8_t *)"GET", 3);
	h2hdrs_add(h, (const uint8_t *)":path", 5, (const uint8_t *)"/", 1);
	h2hdrs_add(h, (const uint8_t *)":authority", 10, (const uint8_t *)"[2001:db8::1]:443", 17);
	target_parse_authority("[2001:db8::1]", 13, 443, &v6, err);
	ok(h2head_check_request(h, &v6, &why) == 0 && h2head_check_request(h, &tgt, &why) == 421,
	   "an IPv6 :authority names its own connection only");
	h2hdrs_add(h, (const uint8_t *)"host", 4, (const uint8_t *)"a", 1);
	h2hdrs_add(h, (const uint8_t *)"host", 4, (const uint8_t *)"a", 1);
	ok(h2head_check_request(h, &v6, &why) == 400, "a repeated host: 400");
	h2hdrs_free(h);
	h = h2hdrs_new(100);
	ok(h2hdrs_add(h, (const uint8_t *)"a", 1, (const uint8_t *)"b", 1) &&
	   !h2hdrs_add(h, (const uint8_t *)"c", 1, (const uint8_t *)"ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", 59) &&
	   h2hdrs_too_big(h) && h2hdrs_count(h) == 1, "the field list stops at its bound (32 + name + value each)");
	h2hdrs_free(h);
}

static void test_hop_by_hop(void)
{
	const char *f1[] = { "proxy-authorization", "Basic eDp5", "te", "trailers", "x-keep", "1", NULL };
	const char *f2[] = { "connection", "close", NULL };
	int32_t a, b;

	world_init(false, false, NULL);
	a = request("GET", "/", "api.test", f1, NULL);
	run(50);
	ok(resp_of(a)->status == 200 && !wire_has(&W.uq[0].hdrs, "proxy-authorization"),
	   "proxy-authorization is not forwarded");
	ok(wire_has(&W.uq[0].hdrs, "te: trailers\n") && wire_has(&W.uq[0].hdrs, "x-keep: 1\n"),
	   "te: trailers and other fields are");
	b = request("GET", "/", "api.test", f2, NULL);
	run(50);
	ok(resp_of(b)->closed && resp_of(b)->code == NGHTTP2_PROTOCOL_ERROR && upstream_streams() == 1,
	   "a connection field: the stream is reset (malformed), nothing forwarded");
	world_free();
}

/* gRPC's shape: a request of three length-prefixed messages streamed in
 * 7-byte DATA frames while the reply streams back, te: trailers, metadata
 * with a placeholder, trailers that echo the secret. */
static void test_grpc_bidi(void)
{
	const char *f[] = { "content-type", "application/grpc", "te", "trailers", "authorization",
			    tap_fmt("Bearer %s", ph_api), NULL };
	const char *third = "msg-three|" VALUE "|end";
	struct wire body = { 0 };
	const uint8_t *m1, *m3;
	size_t l1 = 0, l3 = 0;
	struct resp *r;
	int32_t a;

	grpc_msg(&body, false, "msg-one", 7);
	grpc_msg(&body, false, "msg-two", 7);
	grpc_msg(&body, false, third, strlen(third));
	world_init(false, false, NULL);
	W.reply.stream_echo = true;
	W.reply.tv = "token " VALUE " rejected";
	req_chunk = 7;
	req_body_len = body.len;
	a = request("POST", "/pkg.Svc/Chat", "api.test", f, (const char *)body.p);
	run(100);
	req_chunk = 1 << 20;
	r = resp_of(a);
	ok(W.uq[0].body.len == body.len && memcmp(W.uq[0].body.p, body.p, body.len) == 0 &&
	   wire_has(&W.uq[0].hdrs, "te: trailers\n") &&
	   wire_has(&W.uq[0].hdrs, "authorization: Bearer " VALUE "\n"),
	   "gRPC: the streamed request arrives whole, te: trailers and the injected metadata too");
	m1 = grpc_nth(&r->body, 0, &l1);
	m3 = grpc_nth(&r->body, 2, &l3);
	ok(r->status == 200 && m1 && l1 == 7 && m3 && l3 == 14 + PLACEHOLDER_LEN &&
	   memcmp(m3, tap_fmt("msg-three|%s|end", ph_api), l3) == 0 &&
	   r->body.len == 3 * 5 + 7 + 7 + l3,
	   "the streamed reply arrives, the echoed value redacted across frames, its message's "
	   "length prefix rewritten (%zu)", l3);
	ok(wire_has(&r->hdrs, "grpc-status: 0\n") &&
	   wire_has(&r->hdrs, tap_fmt("grpc-message: token %s rejected\n", ph_api)) &&
	   !wire_has(&r->hdrs, VALUE), "trailers delivered, grpc-message redacted");
	ok(r->closed && r->code == 0 && W.events[H2EV_REQUEST] == 1 && !W.last_incomplete,
	   "the stream ends cleanly, logged once");
	world_free();
	wire_free(&body);
}

/* gRPC replies from a secret's host, message by message: the value split
 * across DATA frames is redacted and its message gets its new length; a
 * compressed message, a message cut short, and a message over the stream
 * window that holds the value reset the stream; a big message without it
 * streams through. */
static void test_grpc_frames(void)
{
	const char *f[] = { "content-type", "application/grpc", "te", "trailers",
			    "grpc-accept-encoding", "gzip, deflate", NULL };
	const char *first = "abc " VALUE " xyz";
	struct h2relay_limits l;
	struct wire rep = { 0 };
	const uint8_t *m;
	size_t ml = 0, cut = 5 + 4 + 12;
	struct resp *r;
	int32_t a;

	grpc_msg(&rep, false, first, strlen(first));
	grpc_msg(&rep, false, "second", 6);
	world_init(false, false, NULL);
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "application/grpc+proto";
	W.reply.parts[0] = (const char *)rep.p;
	W.reply.plen[0] = cut;
	W.reply.parts[1] = (const char *)rep.p + cut;
	W.reply.plen[1] = rep.len - cut;
	a = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
	run(50);
	r = resp_of(a);
	m = grpc_nth(&r->body, 0, &ml);
	ok(r->status == 200 && m && ml == 8 + PLACEHOLDER_LEN &&
	   memcmp(m, tap_fmt("abc %s xyz", ph_api), ml) == 0,
	   "a gRPC message with the value split across DATA frames: redacted, its length %zu", ml);
	m = grpc_nth(&r->body, 1, &ml);
	ok(m && ml == 6 && memcmp(m, "second", 6) == 0 && r->body.len == 5 + 8 + PLACEHOLDER_LEN + 11 &&
	   r->closed && r->code == 0, "the next message follows intact, the stream ends cleanly");
	ok(!wire_has(&W.uq[0].hdrs, "grpc-accept-encoding"),
	   "grpc-accept-encoding is not forwarded to a secret's host (no compressed messages)");
	world_free();

	rep.len = 0;
	grpc_msg(&rep, true, "zzzz", 4);
	world_init(false, false, NULL);
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "application/grpc";
	W.reply.parts[0] = (const char *)rep.p;
	W.reply.plen[0] = rep.len;
	a = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
	run(50);
	ok(resp_of(a)->closed && resp_of(a)->code == NGHTTP2_INTERNAL_ERROR &&
	   W.events[H2EV_REFUSE] == 1 && resp_of(a)->body.len == 0,
	   "a compressed gRPC message: the stream is reset, nothing of it passed");
	world_free();

	world_init(false, false, NULL);
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "application/grpc";
	W.reply.parts[0] = "\0\0\0\0\x0a" "abc";
	W.reply.plen[0] = 8;
	a = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
	run(50);
	ok(resp_of(a)->closed && resp_of(a)->code == NGHTTP2_INTERNAL_ERROR &&
	   W.events[H2EV_REFUSE] == 1 && resp_of(a)->body.len == 0,
	   "a reply that ends inside a gRPC message: the stream is reset");
	world_free();

	world_init(false, false, NULL);
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "application/grpc-web-text";
	W.reply.parts[0] = "abc " VALUE;
	a = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
	run(50);
	ok(resp_of(a)->status == 200 && resp_of(a)->code == 0 &&
	   resp_of(a)->body.len == 4 + PLACEHOLDER_LEN && wire_has(&resp_of(a)->body, ph_api),
	   "grpc-web (other framing) is redacted as a byte stream, not cut into messages");
	world_free();

	h2relay_limits_default(&l);
	l.stream_buf = 65536;
	l.conn_buf = 131072;
	for (int tail = 0; tail < 2; tail++) {
		world_init(false, false, &l);
		W.reply.hn[0] = "content-type";
		W.reply.hv[0] = "application/grpc";
		W.reply.big = 300000;
		W.reply.big_grpc = true;
		W.reply.big_tail = tail ? " " VALUE : NULL;
		a = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
		run(200);
		r = resp_of(a);
		if (!tail)
			ok(r->status == 200 && grpc_nth(&r->body, 0, &ml) && ml == 300000 - 5 &&
			   r->body.len == 300000 && r->closed && r->code == 0,
			   "a gRPC message over the stream window without a secret streams through");
		else
			ok(r->closed && r->code == NGHTTP2_INTERNAL_ERROR && W.events[H2EV_REFUSE] == 1 &&
			   !wire_has(&r->body, VALUE),
			   "... with the value at its end: reset (its length would change), the value never passed");
		world_free();
	}
	wire_free(&rep);
}

static void test_interim_and_resets(void)
{
	int32_t a;

	world_init(false, false, NULL);
	W.reply.early_hints = true;
	W.reply.parts[0] = "x";
	a = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(wire_has(&resp_of(a)->hdrs, ":status: 103\n") && resp_of(a)->status == 200 &&
	   wire_has(&resp_of(a)->hdrs, "link: </s.css>; rel=preload\n"),
	   "a 103 is passed on before the final head");
	world_free();

	world_init(false, false, NULL);
	W.reply.refuse = true;
	a = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->closed && resp_of(a)->code == NGHTTP2_REFUSED_STREAM && W.last_incomplete,
	   "the upstream's REFUSED_STREAM reaches the sandbox as such (it may retry)");
	world_free();

	world_init(false, false, NULL);
	W.reply.big = 4 << 20;
	a = request("GET", "/", "api.test", NULL, NULL);
	run(3);
	nghttp2_submit_rst_stream(W.sb, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
	run(100);
	ok(W.uq[0].closed && W.uq[0].big_sent < (4 << 20), "the sandbox's reset cancels the upstream stream");
	ok(W.events[H2EV_REQUEST] == 1 && W.last_incomplete && h2relay_buffered(W.r) == 0,
	   "... logged as incomplete, nothing left held");
	world_free();
}

static void test_redact(void)
{
	const char *f[] = { "authorization", tap_fmt("Bearer %s", ph_api), NULL };
	struct resp *r;
	int32_t a;

	world_init(false, false, NULL);
	W.reply.echo_auth = true;
	W.reply.parts[0] = "abc sk-test-0123456";
	W.reply.parts[1] = "789abcdef-value xyz";
	W.reply.hn[0] = "content-length";
	W.reply.hv[0] = "38";
	W.reply.tn = "grpc-message";
	W.reply.tv = "bad key " VALUE;
	a = request("GET", "/", "api.test", f, NULL);
	run(50);
	r = resp_of(a);
	ok(r->status == 200 && wire_has(&r->hdrs, tap_fmt("x-echo: Bearer %s\n", ph_api)),
	   "a reply field echoing the value gets the placeholder");
	ok(r->body.len > 0 && strncmp((const char *)r->body.p, tap_fmt("abc %s xyz", ph_api),
				      r->body.len) == 0 && r->body.len == 8 + PLACEHOLDER_LEN,
	   "a value split across two DATA frames is redacted");
	ok(wire_has(&r->hdrs, tap_fmt("grpc-message: bad key %s\n", ph_api)),
	   "trailers (grpc-message) are redacted");
	ok(!wire_has(&r->hdrs, VALUE) && !wire_has(&r->body, VALUE), "the value reaches the sandbox nowhere");
	ok(!wire_has(&r->hdrs, "content-length"), "content-length dropped (redaction changes it)");
	ok(r->closed && r->code == 0, "the stream ends cleanly after the trailers");
	world_free();
}

static size_t gzip(const char *in, uint8_t *out, size_t cap)
{
	z_stream z;
	size_t n;

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)strlen(in);
	z.next_out = out;
	z.avail_out = (uInt)cap;
	deflate(&z, Z_FINISH);
	n = cap - z.avail_out;
	deflateEnd(&z);
	return n;
}

static void test_compressed(void)
{
	const char *ae[] = { "accept-encoding", "gzip, br;q=0, identity", NULL };
	static uint8_t gz[256];
	size_t n = gzip("echo " VALUE " end", gz, sizeof(gz));
	struct resp *r;
	int32_t a, b, c;

	world_init(false, false, NULL);
	W.reply.hn[0] = "content-encoding";
	W.reply.hv[0] = "gzip";
	W.reply.hn[1] = "etag";
	W.reply.hv[1] = "\"v1\"";
	W.reply.parts[0] = (const char *)gz;
	W.reply.plen[0] = n / 2;
	W.reply.parts[1] = (const char *)gz + n / 2;
	W.reply.plen[1] = n - n / 2;
	a = request("GET", "/", "api.test", ae, NULL);
	b = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	r = resp_of(a);
	ok(wire_has(&W.uq[0].hdrs, "accept-encoding: gzip\n"),
	   "accept-encoding: egressd's codings the sandbox accepts");
	ok(wire_has(&W.uq[1].hdrs, "accept-encoding: identity\n") && resp_of(b)->status == 200,
	   "none sent: identity");
	ok(r->status == 200 && r->body.len == 9 + PLACEHOLDER_LEN &&
	   strncmp((const char *)r->body.p, tap_fmt("echo %s end", ph_api), r->body.len) == 0,
	   "a gzip body is decoded and redacted");
	ok(!wire_has(&r->hdrs, "content-encoding") && wire_has(&r->hdrs, "etag: W/\"v1\"\n"),
	   "content-encoding dropped, the etag made weak");
	world_free();

	world_init(false, false, NULL);
	W.reply.hn[0] = "content-encoding";
	W.reply.hv[0] = "compress";
	W.reply.parts[0] = "x";
	a = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 502 &&
	   wire_has(&resp_of(a)->hdrs, "x-egressd-reason: unredactable-encoding\n") &&
	   W.events[H2EV_REFUSE] == 1, "an unknown coding: 502 unredactable-encoding");
	world_free();

	world_init(false, false, NULL);
	W.reply.hn[0] = "content-encoding";
	W.reply.hv[0] = "gzip";
	W.reply.parts[0] = "this is not gzip at all";
	c = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(c)->closed &&
	   resp_of(c)->code == NGHTTP2_INTERNAL_ERROR && W.events[H2EV_REFUSE] == 1,
	   "a corrupt gzip body after the head: the stream is reset");
	ok(resp_of(c)->body.len == 0, "... nothing of it passed");
	world_free();
}

/* A measure, not a check: CPU inside the relay per request, 64 streams at
 * a time, a header injected, a 1 KiB reply redacted (and without secrets). */
static void measure(bool secret)
{
	const char *f[] = { "authorization", tap_fmt("Bearer %s", ph_api), NULL };
	static char reply[1025];
	double t0 = cpu_now();
	int n = 0;

	memset(reply, 'r', 1024);
	world_init(false, false, NULL);
	W.reply.parts[0] = reply;
	for (int round = 0; round < 30; round++) {
		for (int i = 0; i < 64; i++)
			request("GET", "/m", "api.test", secret ? f : NULL, NULL);
		run(100);
	}
	for (int i = 0; i < MAXS; i++)
		n += W.rs[i].status == 200 && W.rs[i].body.len == 1024;
	printf("# measure (%s): %d requests, relay %.1f us CPU each (the in-memory world: %.1f us)\n",
	       secret ? "a placeholder injected, reply redacted" : "no placeholder, reply redacted", n, W.relay_cpu * 1e6 / n,
	       (cpu_now() - t0) * 1e6 / n);
	ok(n == 30 * 64, "measure: every request answered (%s)", secret ? "injected" : "not injected");
	world_free();
}

int main(void)
{
	h2pair_setup();
	test_basic();
	test_host();
	test_rules();
	test_inject();
	test_leaks();
	test_hop_by_hop();
	test_request_trailers();
	test_h2head();
	test_grpc_bidi();
	test_grpc_frames();
	test_interim_and_resets();
	test_redact();
	test_compressed();
	measure(true);
	measure(false);
	h2pair_teardown();
	return done_testing();
}
