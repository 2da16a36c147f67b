/* h1h2_bench.c -- the HTTP/1.1-to-h2 bridge's own CPU per request, without
 * sockets, TLS or the engine: one bridge (proxy/h1h2.c, as egressd builds it)
 * and an in-memory nghttp2 server answering like the bench's nginx (a
 * 30-byte reply with nginx's fields), a keep-alive GET with an Authorization
 * field each turn, on 64 connections in turn (each a bridge and a server, as
 * loadgen's c=64 keeps 64 apart: caches are not warm for one). Times only the bridge's calls (h1h2_request, h1h2_recv)
 * with CLOCK_MONOTONIC (the vDSO: a thread CPU clock is a syscall, which
 * would cost more than the bridge); the server's work is not counted.
 *
 *     build/bench/h1h2_bench [N [C]]   (N requests, default 200000, on C
 *                                       connections, default 64; prints ns per request)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "h1h2.h"

struct bytes {
	char *p;
	size_t len, cap;
};

static struct bytes wire, reply; /* bridge -> server; bridge -> sandbox */
#define MAXC 1024
static long replies;

static void add(struct bytes *b, const char *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void on_wire(void *arg, const char *p, size_t n)
{
	(void)arg;
	add(&wire, p, n);
}

static void on_reply(void *arg, const char *p, size_t n)
{
	(void)arg;
	add(&reply, p, n);
}

static const struct h1h2_cbs cbs = { on_wire, on_reply };

static ssize_t body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		    nghttp2_data_source *src, void *ud)
{
	static const char msg[] = "hello from the bench upstream\n";

	(void)s, (void)id, (void)len, (void)src, (void)ud;
	memcpy(buf, msg, sizeof(msg) - 1);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	return sizeof(msg) - 1;
}

/* nginx sends its reply fields as literals, never added to the dynamic
 * table: the bridge decodes (Huffman) each value on every reply */
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NO_INDEX }

static int srv_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	static nghttp2_nv nva[] = { NV(":status", "200"), NV("server", "nginx/1.22.1"),
				    NV("date", "Mon, 07 Dec 2026 10:40:00 GMT"),
				    NV("content-type", "application/octet-stream"),
				    NV("content-length", "30") };
	nghttp2_data_provider prd = { .read_callback = body };

	(void)ud;
	if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		nghttp2_submit_response(s, f->hd.stream_id, nva, 5, &prd);
	return 0;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* The server reads what the bridge wrote and answers; its bytes out. */
static void serve(nghttp2_session *srv, struct bytes *out)
{
	const uint8_t *d;
	ssize_t n;

	if (nghttp2_session_mem_recv(srv, (const uint8_t *)wire.p, wire.len) < 0)
		abort();
	wire.len = 0;
	while ((n = nghttp2_session_mem_send(srv, &d)) > 0)
		add(out, (const char *)d, (size_t)n);
}

int main(int argc, char **argv)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: api.bench.test\r\nUser-Agent: egressd-bench\r\n"
				  "Authorization: Bearer sk-bench-REAL-0123456789abcdef01234567\r\n\r\n";
	long n = argc > 1 ? atol(argv[1]) : 200000, nc = argc > 2 ? atol(argv[2]) : 64;
	static struct h1h2 *bs[MAXC];
	static nghttp2_session *srvs[MAXC];
	nghttp2_session_callbacks *cb;
	struct bytes in = { 0 };
	const char *why;
	double t = 0, t0;

	if (nc < 1 || nc > MAXC)
		return 2;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame);
	for (long i = 0; i < nc; i++) {
		bs[i] = h1h2_new(&cbs, NULL);
		if (!bs[i] || nghttp2_session_server_new(&srvs[i], cb, NULL) != 0 ||
		    nghttp2_submit_settings(srvs[i], NGHTTP2_FLAG_NONE, NULL, 0) != 0)
			return 1;
		serve(srvs[i], &in); /* the prefaces and SETTINGS */
		if (h1h2_recv(bs[i], in.p, in.len, &why) != 0)
			return 1;
		in.len = 0;
		serve(srvs[i], &in); /* SETTINGS ACK */
		in.len = 0;
	}
	for (long i = 0; i < n; i++) {
		struct h1h2 *b = bs[i % nc];
		t0 = now();
		if (h1h2_request(b, req, sizeof(req) - 1) != 0)
			return 1;
		t += now() - t0;
		in.len = 0;
		serve(srvs[i % nc], &in);
		t0 = now();
		if (h1h2_recv(b, in.p, in.len, &why) != 0)
			return 1;
		t += now() - t0;
		replies += reply.len > 0;
		reply.len = 0;
	}
	printf("{\"requests\": %ld, \"replies\": %ld, \"bridge_ns_per_request\": %.0f}\n", n, replies,
	       t / n * 1e9);
	for (long i = 0; i < nc; i++) {
		h1h2_free(bs[i]);
		nghttp2_session_del(srvs[i]);
	}
	nghttp2_session_callbacks_del(cb);
	return replies == n ? 0 : 1;
}
