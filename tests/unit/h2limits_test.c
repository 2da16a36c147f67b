/* h2limits_test.c -- the HTTP/2 relay's limits and the known HTTP/2
 * attacks: a decompression bomb, max concurrent streams, header list size,
 * CONTINUATION flood, rapid reset, SETTINGS/PING/empty-DATA floods (a rate
 * on a simulated clock: keepalive PINGs for hours pass, a flood does not),
 * unread ACKs, WINDOW_UPDATE overflow, an HPACK bomb, window credit, and a
 * sandbox that never reads. The world is tests/unit/h2pair.h. */
#include <zlib.h>

#define H2PAIR_SEED "limits"
#include "h2pair.h"

/* A gzip bomb (16 MiB of zeros in ~16 KiB) through h2body: the output never
 * passes the room granted (plus one step), and all of it comes out. */
static void test_body_bomb(void)
{
	enum contentdec_coding gz = CODING_GZIP;
	static uint8_t zin[65536], out[32768];
	size_t zn, total = 0, maxout = 0;
	z_stream z;
	const char *err = NULL;
	struct h2body *b = h2body_new(65535);
	static char zeros[1 << 16];

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
	z.next_out = zin;
	z.avail_out = sizeof(zin);
	for (int i = 0; i < 256; i++) {
		z.next_in = (Bytef *)zeros;
		z.avail_in = sizeof(zeros);
		deflate(&z, i == 255 ? Z_FINISH : Z_NO_FLUSH);
	}
	zn = sizeof(zin) - z.avail_out;
	deflateEnd(&z);
	h2body_setup(b, &gz, 1, set, 1);
	ok(h2body_in(b, zin, zn) && !h2body_in(b, zin, 65536), "the input holds at most its window");
	h2body_in_end(b);
	while (!err && (h2body_pending(b) || h2body_out_len(b))) {
		size_t room = 65536 - h2body_out_len(b);
		h2body_pump(b, room, &err);
		if (h2body_out_len(b) > maxout)
			maxout = h2body_out_len(b);
		total += h2body_take(b, out, sizeof(out));
	}
	ok(!err && h2body_out_done(b) && total == 16u << 20,
	   "a gzip bomb (%zu bytes in) decodes whole: %zu bytes out", zn, total);
	ok(maxout <= 65536 + 16384, "... never holding more than the room granted plus a step (%zu)", maxout);
	h2body_free(b);
}

static void test_max_streams(void)
{
	struct h2relay_limits l;
	int refused = 0;

	h2relay_limits_default(&l);
	l.max_streams = 4;
	world_init(true, false, &l);
	W.reply.silent = true;
	raw_preface();
	for (int32_t id = 1; id <= 11; id += 2)
		raw_get(id, true);
	run(50);
	raw_scan();
	for (int32_t id = 1; id <= 11; id += 2)
		refused += resp_of(id)->closed && resp_of(id)->code == NGHTTP2_REFUSED_STREAM;
	ok(refused == 2 && upstream_streams() == 4,
	   "SETTINGS_MAX_CONCURRENT_STREAMS 4: streams 5 and 6 refused, 4 reach the upstream");
	world_free();
}

static void test_header_list(void)
{
	struct h2relay_limits l;
	static char big[6000];
	const char *f[] = { "x-big", big, NULL };
	int32_t a, b;

	h2relay_limits_default(&l);
	l.header_list = 4096;
	memset(big, 'q', sizeof(big) - 1);
	world_init(false, false, &l);
	a = request("GET", "/", "api.test", f, NULL);
	b = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 431 && upstream_streams() == 1,
	   "a head over the header list size: 431, nothing forwarded");
	ok(resp_of(b)->status == 200 && !W.failed, "the connection goes on");
	world_free();

	world_init(false, false, &l);
	W.reply.hn[0] = "x-big";
	W.reply.hv[0] = big;
	W.reply.parts[0] = "body";
	a = request("GET", "/", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 502 && wire_has(&resp_of(a)->hdrs, "x-egressd-reason: bad-response\n") &&
	   W.uq[0].closed && !W.failed, "a reply head over the bound: 502 bad-response, the upstream stream reset");
	world_free();
}

static void test_continuation_flood(void)
{
	uint8_t b[256], lit[] = { 0x40, 1, 'x', 1, 'y' }; /* literal, incremental indexing */
	size_t n;

	world_init(true, false, NULL);
	raw_preface();
	n = raw_block(b, sizeof(b), "/");
	raw_frame(NGHTTP2_HEADERS, 0, 1, b, n);
	for (int i = 0; i < 100; i++)
		raw_frame(NGHTTP2_CONTINUATION, 0, 1, lit, sizeof(lit));
	run(50);
	raw_scan();
	ok(W.failed && W.goaway, "CONTINUATION flood: the connection ends with GOAWAY");
	ok(upstream_streams() == 0, "... nothing reached the upstream");
	world_free();
}

static void test_rapid_reset(void)
{
	struct h2relay_limits l;
	uint8_t cancel[4] = { 0, 0, 0, NGHTTP2_CANCEL };

	h2relay_limits_default(&l);
	l.reset_burst = 100;
	l.reset_rate = 1;
	world_init(true, false, &l);
	W.reply.silent = true;
	raw_preface();
	for (int32_t id = 1; id < 2 * 4000; id += 2) {
		raw_get(id, true);
		raw_frame(NGHTTP2_RST_STREAM, 0, id, cancel, 4);
	}
	run(50);
	raw_scan();
	ok(W.goaway && W.goaway_last < 2 * 110,
	   "rapid reset (CVE-2023-44487): GOAWAY after the reset budget of 100 (last stream %d)",
	   (int)W.goaway_last);
	ok(h2relay_done(W.r) || W.failed, "... and the relay is over");
	ok(upstream_streams() <= 110, "... at most the budget of streams reached the upstream (%d)",
	   upstream_streams());
	world_free();
}

static void flood(uint8_t type, const char *what)
{
	uint8_t ping[8] = { 0 };

	world_init(true, false, NULL);
	raw_preface();
	if (type == NGHTTP2_DATA)
		raw_get(1, false);
	/* in batches, the relay's ACKs read in between: what nghttp2's own
	 * bound on queued ACKs does not catch */
	for (int i = 0; i < 3000 && !W.failed; i++) {
		raw_frame(type, 0, type == NGHTTP2_DATA ? 1 : 0, ping, type == NGHTTP2_PING ? 8 : 0);
		if (i % 50 == 49)
			run(5);
	}
	run(50);
	raw_scan();
	ok(W.failed && W.goaway && W.goaway_code == NGHTTP2_ENHANCE_YOUR_CALM,
	   "%s flood: GOAWAY ENHANCE_YOUR_CALM", what);
	world_free();
}

static void test_ack_flood_unread(void)
{
	uint8_t ping[8] = { 0 };
	struct h2relay_limits l;

	h2relay_limits_default(&l);
	l.idle_burst = 100000;
	world_init(true, false, &l);
	raw_preface();
	W.block[H2_SANDBOX] = true; /* the sandbox reads nothing */
	for (int i = 0; i < 3000; i++)
		raw_frame(NGHTTP2_PING, 0, 0, ping, 8);
	run(50);
	ok(W.failed, "PINGs from a sandbox that reads no ACK: ended at nghttp2's outbound ACK bound");
	world_free();
}

static void test_window_overflow(void)
{
	uint8_t inc[4] = { 0x7f, 0xff, 0xff, 0xff };

	world_init(true, false, NULL);
	raw_preface();
	raw_frame(NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
	run(50);
	raw_scan();
	ok(W.goaway && W.goaway_code == NGHTTP2_FLOW_CONTROL_ERROR,
	   "WINDOW_UPDATE past 2^31-1: GOAWAY FLOW_CONTROL_ERROR");
	world_free();
}

static void test_hpack_bomb(void)
{
	static uint8_t blk[8192];
	size_t n;

	world_init(true, false, NULL);
	raw_preface();
	n = raw_block(blk, sizeof(blk), "/");
	/* one 4000-byte field into the dynamic table, then 3000 references to it */
	blk[n++] = 0x40, blk[n++] = 3, memcpy(blk + n, "x-b", 3), n += 3;
	blk[n++] = 0x7f, blk[n++] = 0xa1, blk[n++] = 0x1e; /* length 127 + 3873 = 4000 */
	memset(blk + n, 'b', 4000), n += 4000;
	for (int i = 0; i < 3000; i++)
		blk[n++] = 0xbe; /* indexed: dynamic entry 62 */
	raw_frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, blk, n);
	run(50);
	raw_scan();
	ok(resp_of(1)->status == 431 && upstream_streams() == 0,
	   "HPACK bomb (12 MB of fields from 7 KB): 431, nothing forwarded");
	ok(W.max_held < 64 * 1024, "... without holding the decoded fields");
	world_free();
}

static void never_reads(bool tcp)
{
	struct h2relay_limits l;
	size_t sent = 0, before = 0;
	nghttp2_option *o;

	h2relay_limits_default(&l);
	l.stream_buf = 65536;
	l.conn_buf = 131072;
	world_init(false, false, &l);
	if (!tcp) { /* reads the socket, never grants window */
		nghttp2_session_del(W.sb);
		nghttp2_session_callbacks *cb;
		nghttp2_session_callbacks_new(&cb);
		nghttp2_session_callbacks_set_send_callback(cb, sb_send);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, sb_data);
		nghttp2_option_new(&o);
		nghttp2_option_set_no_auto_window_update(o, 1);
		nghttp2_session_client_new2(&W.sb, cb, NULL, o);
		nghttp2_option_del(o);
		nghttp2_session_callbacks_del(cb);
		nghttp2_submit_settings(W.sb, NGHTTP2_FLAG_NONE, NULL, 0);
	}
	W.reply.big = 8 << 20;
	for (int i = 0; i < 4; i++)
		request("GET", "/big", "api.test", NULL, NULL);
	run(30);
	for (int i = 0; i < 4; i++)
		before += tcp ? W.uq[i].big_sent : 0;
	if (tcp)
		W.block[H2_SANDBOX] = true;
	W.max_held = 0;
	run(200);
	for (int i = 0; i < 4; i++)
		sent += W.uq[i].big_sent;
	sent -= before;
	ok(W.max_held <= 2 * l.conn_buf + 16384,
	   "%s: the relay holds at most its bounds (%zu bytes)",
	   tcp ? "a sandbox that stops reading" : "a sandbox that never grants window", W.max_held);
	/* the sandbox's own windows (64 KiB) + what the relay may hold (both
	 * queues at most conn_buf each) + one frame in nghttp2's hands */
	ok(sent <= 65535 + 2 * l.conn_buf + 16384,
	   "... and the upstream was held back by flow control (%zu bytes sent since)", sent);
	world_free();
}

/* Streams reset while the relay holds their reply bytes: those bytes are
 * credited to the upstream's connection window, else it shrinks for good
 * and a later stream stalls. */
static void test_window_credit(void)
{
	struct h2relay_limits l;
	int32_t a;

	h2relay_limits_default(&l);
	l.stream_buf = l.conn_buf = 65535;
	world_init(false, false, &l);
	W.reply.big = 300000;
	for (int i = 0; i < 4; i++) {
		a = request("GET", "/big", "api.test", NULL, NULL);
		run(2);
		W.block[H2_SANDBOX] = true;
		run(20);
		nghttp2_submit_rst_stream(W.sb, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
		W.block[H2_SANDBOX] = false;
		run(20);
	}
	W.reply.big = 0;
	W.reply.parts[0] = "after";
	a = request("GET", "/small", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->body.len == 5 && resp_of(a)->closed && resp_of(a)->code == 0,
	   "after 4 streams reset with reply bytes held, a new stream still gets its reply");
	world_free();
}

/* gRPC replies from a secret's host are held a message at a time until
 * whole (to rewrite its length), up to 64 KiB per stream, outside the
 * connection's bound (else partial messages of several streams could fill
 * it and none complete: this case deadlocked that way). 8 streams of
 * 60000-byte messages to a sandbox that stops reading: the bounds plus one
 * message per stream; once it reads, every message arrives whole. */
static void test_grpc_held(void)
{
	const char *f[] = { "content-type", "application/grpc", "te", "trailers", NULL };
	struct h2relay_limits l;
	int32_t ids[8];
	int whole = 0;
	size_t ml;

	h2relay_limits_default(&l);
	l.stream_buf = 65536;
	l.conn_buf = 131072;
	world_init(false, false, &l);
	W.reply.hn[0] = "content-type";
	W.reply.hv[0] = "application/grpc";
	W.reply.big = 60005;
	W.reply.big_grpc = true;
	for (int i = 0; i < 8; i++)
		ids[i] = request("POST", "/pkg.Svc/Get", "api.test", f, NULL);
	run(3);
	W.block[H2_SANDBOX] = true;
	W.max_held = 0;
	run(200);
	ok(W.max_held <= 2 * l.conn_buf + 16384 + 8 * 65536,
	   "8 gRPC streams, a sandbox that stops reading: the relay holds at most its bounds "
	   "and one message per stream (%zu bytes)", W.max_held);
	W.block[H2_SANDBOX] = false;
	run(400);
	for (int i = 0; i < 8; i++)
		whole += grpc_nth(&resp_of(ids[i])->body, 0, &ml) && ml == 60000 &&
			 resp_of(ids[i])->body.len == 60005 && resp_of(ids[i])->code == 0;
	ok(whole == 8, "... and once it reads, all 8 messages arrive whole (%d)", whole);
	world_free();
}

/* gRPC keepalive: a PING every 10 s from the sandbox (and one from the
 * upstream) for 2000 rounds, about 5.5 simulated hours, with no new stream
 * or DATA in between: the connection lives, and a request after it is
 * served. (A count of idle frames in a row ended it after 1000.) */
static void test_keepalive_pings(void)
{
	int32_t a;

	world_init(false, false, NULL);
	W.reply.parts[0] = "ok";
	a = request("GET", "/before", "api.test", NULL, NULL);
	run(50);
	for (int i = 0; i < 2000 && !W.failed && !W.goaway; i++) {
		W.clock_us += 10 * 1000000ull;
		nghttp2_submit_ping(W.sb, NGHTTP2_FLAG_NONE, NULL);
		nghttp2_submit_ping(W.up, NGHTTP2_FLAG_NONE, NULL);
		run(10);
	}
	ok(resp_of(a)->status == 200 && !W.failed && !W.goaway,
	   "2000 keepalive PINGs each way, one per 10 simulated seconds: no GOAWAY");
	a = request("GET", "/after", "api.test", NULL, NULL);
	run(50);
	ok(resp_of(a)->status == 200 && resp_of(a)->closed && resp_of(a)->code == 0,
	   "... and the next stream on the connection is served");
	world_free();
}

/* Idle frames at a steady rate: below the refill rate (half of it) they
 * never run out; above it (twice) the bucket empties and the flood ends. */
static void idle_rate(uint32_t per_s, bool ends)
{
	struct h2relay_limits l;
	uint8_t ping[8] = { 0 };
	int i;

	h2relay_limits_default(&l);
	world_init(true, false, &l);
	raw_preface();
	for (i = 0; i < 4000 && !W.failed; i++) {
		W.clock_us += 1000000u / per_s;
		raw_frame(NGHTTP2_PING, 0, 0, ping, 8);
		run(5);
	}
	raw_scan();
	if (ends)
		ok(W.failed && W.goaway && W.goaway_code == NGHTTP2_ENHANCE_YOUR_CALM &&
		   i > (int)l.idle_burst && i < 3 * (int)l.idle_burst,
		   "PINGs at %u/s (rate %u/s, burst %u): GOAWAY ENHANCE_YOUR_CALM after %d",
		   per_s, l.idle_rate, l.idle_burst, i);
	else
		ok(!W.failed && !W.goaway, "4000 PINGs at %u/s (rate %u/s): the connection lives",
		   per_s, l.idle_rate);
	world_free();
}

int main(void)
{
	h2pair_setup();
	test_body_bomb();
	test_max_streams();
	test_header_list();
	test_continuation_flood();
	test_rapid_reset();
	flood(NGHTTP2_SETTINGS, "SETTINGS");
	flood(NGHTTP2_PING, "PING");
	flood(NGHTTP2_DATA, "empty DATA");
	test_grpc_held();
	test_keepalive_pings();
	idle_rate(50, false);
	idle_rate(200, true);
	test_ack_flood_unread();
	test_window_overflow();
	test_hpack_bomb();
	test_window_credit();
	never_reads(true);
	never_reads(false);
	h2pair_teardown();
	return done_testing();
}
