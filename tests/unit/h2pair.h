/* h2pair.h -- the HTTP/2 relay's unit-test world (h2relay_test.c,
 * h2limits_test.c): real nghttp2 sessions in memory (a client playing the
 * sandbox, a server playing the upstream) around one relay, bytes moved
 * until nothing moves, a raw sandbox that writes hand-built frames for the
 * known attacks, a simulated clock for the relay (W.clock_us), and fuzz
 * seeds of what the relay read (H2RELAY_CORPUS=DIR, files named after
 * H2PAIR_SEED). Secret values are compared, never printed. Included by one
 * test file each. */
#ifndef EGRESSD_H2PAIR_H
#define EGRESSD_H2PAIR_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "h2body.h"
#include "h2head.h"
#include "h2relay.h"
#include "inject.h"
#include "pattern.h"
#include "policy.h"
#include "rules.h"
#include "secrets.h"
#include "tap.h"

/* not every test file uses every helper */
#pragma GCC diagnostic ignored "-Wunused-function"

#ifndef H2PAIR_SEED
#define H2PAIR_SEED "unit" /* fuzz seed file names: H2PAIR_SEED-NN */
#endif

#define VALUE "sk-test-0123456789abcdef-value" /* a test value, not a real secret */
#define OTHER_VALUE "other-test-value-9876543210"
#define MAXS 4200 /* streams a test may open (ids up to 2 * MAXS) */

static const unsigned char fixed_key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";

struct wire {
	uint8_t *p;
	size_t len, cap;
};

static void wire_add(struct wire *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2 + 64;
		w->p = realloc(w->p, w->cap);
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void wire_free(struct wire *w)
{
	free(w->p);
	memset(w, 0, sizeof(*w));
}

static bool wire_has(const struct wire *w, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; w->len >= n && i <= w->len - n; i++)
		if (memcmp(w->p + i, s, n) == 0)
			return true;
	return false;
}

/* What the sandbox got on one stream. */
struct resp {
	int status, heads;
	struct wire hdrs; /* "name: value\n" of every block */
	struct wire body;
	bool closed;
	uint32_t code;
};

/* What the upstream got on one stream, and how far its answer went. */
struct upreq {
	struct wire hdrs, noidx, body;
	size_t echo_off;
	bool ended, closed;
	size_t part, big_sent;
};

/* How the upstream answers a complete request. */
struct upreply {
	int status;
	const char *hn[6], *hv[6];
	const char *parts[6];
	size_t plen[6];
	const char *tn, *tv; /* one trailer field, or NULL */
	bool echo_auth;      /* header x-echo: the authorization it got */
	bool silent;         /* never answers */
	bool stream_echo;    /* answers at once, echoes request DATA as it comes, then trailers */
	bool early_hints;    /* a 103 before the final head */
	bool refuse;         /* resets the stream with REFUSED_STREAM */
	size_t big;          /* a body of big 'a' bytes */
	bool big_grpc;       /* ... framed as one gRPC message (a 5-byte prefix first) */
	const char *big_tail;/* ... ending with these bytes, or NULL */
};

struct world {
	struct h2relay *r;
	nghttp2_session *sb, *up; /* sandbox client (NULL: raw), upstream server */
	struct wire to_relay[2];  /* bytes for the relay from each side */
	struct wire from_relay[2];/* bytes the relay wrote for each side */
	bool block[2];            /* the relay's writes to that side are refused */
	bool failed;              /* h2relay_feed/flush said -1 */
	struct resp *rs;          /* by sandbox stream id / 2 */
	struct upreq *uq;         /* by upstream stream id / 2 */
	struct upreply reply;
	int events[3], leak_blocked;
	uint64_t ev_secrets, leak_bits;
	int last_status;
	enum reason last_reason;
	bool last_incomplete, last_ruled;
	uint32_t goaway_code;     /* from the relay to a raw sandbox */
	int32_t goaway_last;      /* its last stream id */
	bool goaway;
	size_t max_held;
	double relay_cpu;         /* seconds of CPU inside h2relay_feed / h2relay_flush */
	FILE *seed;               /* H2RELAY_CORPUS=DIR: what the relay read, as a fuzz seed */
	bool magic_seen;
	uint64_t clock_us;        /* the relay's clock (now_us): tests move it */
};

static struct world W;

/* ---- fuzz seeds (fuzz/fuzz_h2relay.c's format) ---- */

static void seed_open(bool rules, bool leak_block)
{
	static int k;
	const char *dir = getenv("H2RELAY_CORPUS");
	char path[512];
	uint8_t flags = (uint8_t)(rules | leak_block << 1);

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s-%02d", dir, H2PAIR_SEED, k++);
	W.seed = fopen(path, "wb");
	if (W.seed)
		fwrite(&flags, 1, 1, W.seed);
}

static void seed_add(int side, const uint8_t *p, size_t n)
{
	if (!W.seed)
		return;
	if (side == H2_SANDBOX && !W.magic_seen && n >= NGHTTP2_CLIENT_MAGIC_LEN) {
		p += NGHTTP2_CLIENT_MAGIC_LEN, n -= NGHTTP2_CLIENT_MAGIC_LEN; /* the harness sends it */
		W.magic_seen = true;
	}
	while (n > 0) {
		size_t c = n < 32767 ? n : 32767;
		uint8_t h[2] = { (uint8_t)((c >> 8) << 1 | (side == H2_UPSTREAM)), (uint8_t)c };
		fwrite(h, 1, 2, W.seed);
		fwrite(p, 1, c, W.seed);
		p += c, n -= c;
	}
}

/* ---- the relay's callbacks ---- */

static ssize_t relay_write(void *ctx, enum h2relay_side side, const uint8_t *p, size_t n)
{
	struct world *w = ctx;

	if (w->block[side])
		return 0;
	wire_add(&w->from_relay[side], p, n);
	return (ssize_t)n;
}

static void relay_event(void *ctx, const struct h2relay_event *ev)
{
	struct world *w = ctx;

	w->events[ev->kind]++;
	if (ev->kind == H2EV_LEAK) {
		w->leak_bits |= ev->secrets;
		w->leak_blocked += ev->blocked;
		return;
	}
	if (ev->kind != H2EV_REQUEST)
		return;
	w->ev_secrets |= ev->secrets;
	w->last_status = ev->status;
	w->last_reason = ev->reason;
	w->last_incomplete = ev->incomplete;
	w->last_ruled = ev->ruled;
}

static uint64_t relay_now(void *ctx)
{
	return ((struct world *)ctx)->clock_us;
}

/* ---- the sandbox: an nghttp2 client ---- */

static ssize_t sb_send(nghttp2_session *s, const uint8_t *p, size_t n, int f, void *ud)
{
	wire_add(&W.to_relay[H2_SANDBOX], p, n);
	return (ssize_t)n;
}

static struct resp *resp_of(int32_t id)
{
	return id > 0 && id / 2 < MAXS ? &W.rs[id / 2] : NULL;
}

static int sb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *val, size_t vl, uint8_t flags, void *ud)
{
	struct resp *r = resp_of(f->hd.stream_id);

	if (!r)
		return 0;
	if (nl == 7 && memcmp(name, ":status", 7) == 0)
		r->status = atoi((const char *)val);
	wire_add(&r->hdrs, name, nl);
	wire_add(&r->hdrs, ": ", 2);
	wire_add(&r->hdrs, val, vl);
	wire_add(&r->hdrs, "\n", 1);
	return 0;
}

static int sb_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct resp *r = resp_of(f->hd.stream_id);

	if (f->hd.type == NGHTTP2_HEADERS && r)
		r->heads++;
	if (f->hd.type == NGHTTP2_GOAWAY) {
		W.goaway = true;
		W.goaway_code = f->goaway.error_code;
	}
	return 0;
}

static int sb_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		   void *ud)
{
	struct resp *r = resp_of(id);

	if (r)
		wire_add(&r->body, p, n);
	return 0;
}

static int sb_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct resp *r = resp_of(id);

	if (r) {
		r->closed = true;
		r->code = code;
	}
	return 0;
}

/* ---- the upstream: an nghttp2 server ---- */

static ssize_t up_send(nghttp2_session *s, const uint8_t *p, size_t n, int f, void *ud)
{
	wire_add(&W.to_relay[H2_UPSTREAM], p, n);
	return (ssize_t)n;
}

static struct upreq *req_of(int32_t id)
{
	return id > 0 && id / 2 < MAXS ? &W.uq[id / 2] : NULL;
}

static int up_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *val, size_t vl, uint8_t flags, void *ud)
{
	struct upreq *q = req_of(f->hd.stream_id);

	if (!q)
		return 0;
	wire_add(&q->hdrs, name, nl);
	wire_add(&q->hdrs, ": ", 2);
	wire_add(&q->hdrs, val, vl);
	wire_add(&q->hdrs, "\n", 1);
	if (flags & NGHTTP2_NV_FLAG_NO_INDEX) {
		wire_add(&q->noidx, name, nl);
		wire_add(&q->noidx, "\n", 1);
	}
	return 0;
}

/* Bytes [at, at + n) of the big body: the gRPC prefix and the tail. */
static void big_shape(uint8_t *buf, size_t at, size_t n)
{
	const struct upreply *rp = &W.reply;
	size_t tl = rp->big_tail ? strlen(rp->big_tail) : 0, m = rp->big - 5;
	uint8_t pre[5] = { 0, (uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m };

	for (size_t j = at; j < at + n; j++) {
		if (rp->big_grpc && j < 5)
			buf[j - at] = pre[j];
		if (tl && j >= rp->big - tl)
			buf[j - at] = (uint8_t)rp->big_tail[j - (rp->big - tl)];
	}
}

static ssize_t up_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct upreq *q = req_of(id);
	const struct upreply *rp = &W.reply;
	size_t n = 0;

	if (rp->big) {
		n = rp->big - q->big_sent < len ? rp->big - q->big_sent : len;
		memset(buf, 'a', n);
		big_shape(buf, q->big_sent, n);
		q->big_sent += n;
		if (q->big_sent == rp->big)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (q->part < 6 && rp->parts[q->part]) { /* one DATA frame per part */
		n = rp->plen[q->part] ? rp->plen[q->part] : strlen(rp->parts[q->part]);
		memcpy(buf, rp->parts[q->part], n);
		q->part++;
	}
	if (q->part >= 6 || !rp->parts[q->part]) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (rp->tn) {
			nghttp2_nv tr = { (uint8_t *)rp->tn, (uint8_t *)rp->tv, strlen(rp->tn),
					  strlen(rp->tv), 0 };
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			nghttp2_submit_trailer(s, id, &tr, 1);
		}
	}
	return (ssize_t)n;
}

static void up_answer(nghttp2_session *s, int32_t id)
{
	const struct upreply *rp = &W.reply;
	struct upreq *q = req_of(id);
	nghttp2_nv nv[8];
	char st[8], echo[512] = "";
	size_t n = 0;
	nghttp2_data_provider prd = { .read_callback = up_body };
	const char *a = (const char *)q->hdrs.p;

	snprintf(st, sizeof(st), "%d", rp->status ? rp->status : 200);
	nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)st, 7, strlen(st), 0 };
	for (size_t i = 0; i < 6 && rp->hn[i]; i++)
		nv[n++] = (nghttp2_nv){ (uint8_t *)rp->hn[i], (uint8_t *)rp->hv[i],
					strlen(rp->hn[i]), strlen(rp->hv[i]), 0 };
	if (rp->echo_auth && wire_has(&q->hdrs, "authorization: ")) {
		const char *b = strstr(a, "authorization: ") + 15;
		size_t l = strcspn(b, "\n");
		memcpy(echo, b, l < sizeof(echo) ? l : sizeof(echo) - 1);
		nv[n++] = (nghttp2_nv){ (uint8_t *)"x-echo", (uint8_t *)echo, 6, strlen(echo), 0 };
	}
	nghttp2_submit_response(s, id, nv, n, rp->parts[0] || rp->big || rp->tn ? &prd : NULL);
}

/* stream_echo: the request's DATA back as it comes, trailers at its end */
static ssize_t up_echo(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct upreq *q = req_of(id);
	size_t n = q->body.len - q->echo_off < len ? q->body.len - q->echo_off : len;
	nghttp2_nv tr[2] = { { (uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0 },
			     { (uint8_t *)"grpc-message", (uint8_t *)W.reply.tv, 12,
			       W.reply.tv ? strlen(W.reply.tv) : 0, 0 } };

	memcpy(buf, q->body.p + q->echo_off, n);
	q->echo_off += n;
	if (q->echo_off == q->body.len && q->ended) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nghttp2_submit_trailer(s, id, tr, W.reply.tv ? 2 : 1);
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

static void up_start(nghttp2_session *s, int32_t id)
{
	nghttp2_nv hints[2] = { { (uint8_t *)":status", (uint8_t *)"103", 7, 3, 0 },
				{ (uint8_t *)"link", (uint8_t *)"</s.css>; rel=preload", 4, 21, 0 } };
	nghttp2_nv head[2] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, 0 },
			       { (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0 } };
	nghttp2_data_provider prd = { .read_callback = up_echo };

	if (W.reply.early_hints)
		nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, id, NULL, hints, 2, NULL);
	if (W.reply.stream_echo)
		nghttp2_submit_response(s, id, head, 2, &prd);
	if (W.reply.refuse)
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
}

static int up_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct upreq *q = req_of(f->hd.stream_id);

	if (q && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		up_start(s, f->hd.stream_id);
	if (q && W.reply.stream_echo && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		q->ended = true;
	if (q && W.reply.stream_echo)
		nghttp2_session_resume_data(s, f->hd.stream_id);
	if (!q || W.reply.stream_echo || W.reply.refuse ||
	    (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	wire_add(&q->hdrs, "\0", 1);
	q->hdrs.len--; /* NUL-terminated for strstr */
	q->ended = true;
	if (!W.reply.silent)
		up_answer(s, f->hd.stream_id);
	return 0;
}

static int up_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
		   void *ud)
{
	struct upreq *q = req_of(id);

	if (q)
		wire_add(&q->body, p, n);
	return 0;
}

static int up_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct upreq *q = req_of(id);

	if (q)
		q->closed = true;
	return 0;
}

/* ---- the world ---- */

static struct policy *pol;
static struct secretset *set;
static struct target tgt;

static void setup_policy(bool rules)
{
	char err[SECRETS_ERRLEN];

	pol = policy_new();
	policy_add_secret(pol, "API_KEY", "api.test", SECRET_VALUE, VALUE, err);
	policy_add_secret(pol, "OTHER_KEY", "other.test", SECRET_VALUE, OTHER_VALUE, err);
	if (rules) {
		struct ruleset *rs = ruleset_new();
		struct patlist *h = patlist_new();
		const char *get = "GET";
		patlist_add_csv(h, "api.test", err);
		ruleset_add(rs, h, &get, 1, "^/allowed", 9, true, err);
		policy_set_rules(pol, rs, err);
	}
	set = secretset_load(pol, fixed_key, err);
	target_parse_authority("api.test", 8, 443, &tgt, err);
}

static void teardown_policy(void)
{
	secretset_free(set);
	policy_unref(pol);
	set = NULL;
	pol = NULL;
}

static nghttp2_session *new_sandbox(void)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *s;

	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_send_callback(cb, sb_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, sb_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, sb_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, sb_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, sb_close);
	nghttp2_session_client_new(&s, cb, NULL);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
	return s;
}

static nghttp2_session *new_upstream(void)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *s;
	nghttp2_settings_entry e = { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000 };

	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_send_callback(cb, up_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, up_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, up_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, up_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, up_close);
	nghttp2_session_server_new(&s, cb, NULL);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, &e, 1);
	return s;
}

/* A relay between a sandbox (raw: the test writes its bytes) and an upstream. */
static void world_init(bool raw, bool leak_block, const struct h2relay_limits *lim)
{
	struct h2relay_conf conf = { &tgt, pol, set, 0, leak_block, { 0 } };
	struct h2relay_cbs cbs = { &W, relay_write, relay_event, relay_now };

	memset(&W, 0, sizeof(W));
	W.rs = calloc(MAXS, sizeof(*W.rs));
	W.uq = calloc(MAXS, sizeof(*W.uq));
	conf.approved = secretset_approved(set, pol, &tgt);
	if (lim)
		conf.lim = *lim;
	else
		h2relay_limits_default(&conf.lim);
	W.r = h2relay_new(&conf, &cbs);
	W.sb = raw ? NULL : new_sandbox();
	W.up = new_upstream();
	seed_open(policy_rules(pol) != NULL, leak_block);
}

static void world_free(void)
{
	h2relay_free(W.r);
	if (W.seed)
		fclose(W.seed);
	nghttp2_session_del(W.sb);
	nghttp2_session_del(W.up);
	for (size_t i = 0; i < MAXS; i++) {
		wire_free(&W.rs[i].hdrs), wire_free(&W.rs[i].body);
		wire_free(&W.uq[i].hdrs), wire_free(&W.uq[i].noidx), wire_free(&W.uq[i].body);
	}
	free(W.rs);
	free(W.uq);
	for (int i = 0; i < 2; i++)
		wire_free(&W.to_relay[i]), wire_free(&W.from_relay[i]);
}

static double cpu_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Moves bytes until nothing moves (at most rounds rounds). */
static void run(int rounds)
{
	for (int i = 0; i < rounds; i++) {
		double t0;
		bool moved = false;
		if (W.sb)
			nghttp2_session_send(W.sb);
		nghttp2_session_send(W.up);
		t0 = cpu_now();
		for (int s = 0; s < 2; s++) {
			struct wire *in = &W.to_relay[s];
			if (in->len && !W.failed) {
				moved = true;
				seed_add(s, in->p, in->len);
				if (h2relay_feed(W.r, s, in->p, in->len) != 0)
					W.failed = true;
			}
			in->len = 0;
		}
		if (!W.failed && h2relay_flush(W.r) != 0)
			W.failed = true;
		W.relay_cpu += cpu_now() - t0;
		if (h2relay_buffered(W.r) > W.max_held)
			W.max_held = h2relay_buffered(W.r);
		for (int s = 0; s < 2; s++) {
			struct wire *out = &W.from_relay[s];
			nghttp2_session *to = s == H2_SANDBOX ? W.sb : W.up;
			if (!out->len || (s == H2_SANDBOX && !W.sb))
				continue;
			moved = true;
			nghttp2_session_mem_recv(to, out->p, out->len);
			out->len = 0;
		}
		if (!moved)
			return;
	}
}

/* Submits a request from the sandbox: fields as name, value pairs (NULL
 * ends), body (NULL: none; req_body_len bytes if set, else a string).
 * Returns the stream id. */
static size_t req_chunk = 1 << 20; /* request DATA bytes per frame */
static const char *req_trailer;     /* a value for the trailer field x-tr, or NULL */
static size_t req_body_len;         /* the next request's body length (0: strlen) */
static struct sbody {
	const char *p;
	size_t off, len;
} bodies[64];
static size_t nbodies;

static ssize_t sb_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct sbody *b = src->ptr;
	size_t n = b->len - b->off;

	n = n < req_chunk ? n : req_chunk;
	memcpy(buf, b->p + b->off, n);
	b->off += n;
	if (b->off == b->len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (b->off == b->len && req_trailer) {
		nghttp2_nv tr = { (uint8_t *)"x-tr", (uint8_t *)req_trailer, 4, strlen(req_trailer), 0 };
		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nghttp2_submit_trailer(s, id, &tr, 1);
	}
	return (ssize_t)n;
}

static int32_t request(const char *method, const char *path, const char *authority,
		       const char *const *fields, const char *body)
{
	nghttp2_nv nv[16];
	size_t n = 0;
	nghttp2_data_provider prd = { .read_callback = sb_body };

	nv[n++] = (nghttp2_nv){ (uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0 };
	nv[n++] = (nghttp2_nv){ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 };
	if (authority)
		nv[n++] = (nghttp2_nv){ (uint8_t *)":authority", (uint8_t *)authority, 10,
					strlen(authority), 0 };
	nv[n++] = (nghttp2_nv){ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 };
	for (size_t i = 0; fields && fields[i]; i += 2)
		nv[n++] = (nghttp2_nv){ (uint8_t *)fields[i], (uint8_t *)fields[i + 1],
					strlen(fields[i]), strlen(fields[i + 1]), 0 };
	bodies[nbodies % 64] = (struct sbody){ body, 0, !body ? 0 : req_body_len ? req_body_len : strlen(body) };
	req_body_len = 0;
	prd.source.ptr = &bodies[nbodies++ % 64];
	return nghttp2_submit_request(W.sb, NULL, nv, n, body ? &prd : NULL, NULL);
}

/* Appends a gRPC message (flag 0, or 1: compressed) of n bytes to a wire. */
static void grpc_msg(struct wire *w, bool compressed, const void *p, size_t n)
{
	uint8_t pre[5] = { compressed, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
			   (uint8_t)n };

	wire_add(w, pre, 5);
	wire_add(w, p, n);
}

/* The i-th gRPC message of a body (0-based): its bytes and length, or NULL
 * if the framing ends first or does not match the body's length. */
static const uint8_t *grpc_nth(const struct wire *w, int i, size_t *len)
{
	size_t off = 0;

	for (int k = 0; off + 5 <= w->len; k++) {
		size_t n = (size_t)w->p[off + 1] << 24 | (size_t)w->p[off + 2] << 16 |
			   (size_t)w->p[off + 3] << 8 | w->p[off + 4];
		if (off + 5 + n > w->len)
			return NULL;
		if (k == i) {
			*len = n;
			return w->p + off + 5;
		}
		off += 5 + n;
	}
	return NULL;
}

static char ph_api[PLACEHOLDER_LEN + 1], ph_other[PLACEHOLDER_LEN + 1];

/* ---- a raw (hostile) sandbox ---- */

static nghttp2_hd_deflater *defl;

static void raw_frame(uint8_t type, uint8_t flags, int32_t id, const void *p, size_t n)
{
	uint8_t h[9] = { (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, type, flags,
			 (uint8_t)((id >> 24) & 0x7f), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
			 (uint8_t)id };

	wire_add(&W.to_relay[H2_SANDBOX], h, 9);
	if (n)
		wire_add(&W.to_relay[H2_SANDBOX], p, n);
}

static void raw_preface(void)
{
	wire_add(&W.to_relay[H2_SANDBOX], NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
	raw_frame(NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	if (defl)
		nghttp2_hd_deflate_del(defl);
	nghttp2_hd_deflate_new(&defl, 4096);
}

static size_t raw_block(uint8_t *out, size_t cap, const char *path)
{
	nghttp2_nv nv[4] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"api.test", 10, 8, 0 },
		{ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 },
	};

	return (size_t)nghttp2_hd_deflate_hd(defl, out, cap, nv, 4);
}

static void raw_get(int32_t id, bool end)
{
	uint8_t b[256];
	size_t n = raw_block(b, sizeof(b), "/");

	raw_frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | (end ? NGHTTP2_FLAG_END_STREAM : 0), id,
		  b, n);
}

/* Reads what the relay wrote to the raw sandbox: statuses, resets, GOAWAY. */
static void raw_scan(void)
{
	const uint8_t *p = W.from_relay[H2_SANDBOX].p;
	size_t len = W.from_relay[H2_SANDBOX].len, off = 0;
	nghttp2_hd_inflater *inf;

	nghttp2_hd_inflate_new(&inf);
	while (off + 9 <= len) {
		size_t n = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2];
		uint8_t type = p[off + 3], flags = p[off + 4];
		int32_t id = (int32_t)((uint32_t)(p[off + 5] & 0x7f) << 24 | (uint32_t)p[off + 6] << 16 |
				       (uint32_t)p[off + 7] << 8 | p[off + 8]);
		const uint8_t *pl = p + off + 9;
		struct resp *r = resp_of(id);
		if (off + 9 + n > len)
			break;
		if (type == NGHTTP2_HEADERS && r) {
			const uint8_t *in = pl;
			size_t left = n;
			if (flags & NGHTTP2_FLAG_PADDED)
				break;
			for (;;) {
				nghttp2_nv nv;
				int fl = 0;
				ssize_t k = nghttp2_hd_inflate_hd2(inf, &nv, &fl, in, left, 1);
				if (k < 0)
					break;
				in += k;
				left -= (size_t)k;
				if (fl & NGHTTP2_HD_INFLATE_EMIT && nv.namelen == 7 &&
				    memcmp(nv.name, ":status", 7) == 0)
					r->status = atoi((const char *)nv.value);
				if (fl & NGHTTP2_HD_INFLATE_FINAL) {
					nghttp2_hd_inflate_end_headers(inf);
					break;
				}
				if (k == 0 && left == 0)
					break;
			}
		} else if (type == NGHTTP2_RST_STREAM && r && n == 4) {
			r->closed = true;
			r->code = (uint32_t)pl[0] << 24 | (uint32_t)pl[1] << 16 | (uint32_t)pl[2] << 8 | pl[3];
		} else if (type == NGHTTP2_GOAWAY && n >= 8) {
			W.goaway = true;
			W.goaway_last = (int32_t)((uint32_t)(pl[0] & 0x7f) << 24 | (uint32_t)pl[1] << 16 |
						  (uint32_t)pl[2] << 8 | pl[3]);
			W.goaway_code = (uint32_t)pl[4] << 24 | (uint32_t)pl[5] << 16 |
					(uint32_t)pl[6] << 8 | pl[7];
		}
		off += 9 + n;
	}
	nghttp2_hd_inflate_del(inf);
}

static int upstream_streams(void)
{
	int k = 0;

	for (size_t i = 0; i < MAXS; i++)
		k += W.uq[i].hdrs.len > 0;
	return k;
}

/* Before the first test: the policy (no rules) and its placeholders. */
static void h2pair_setup(void)
{
	setup_policy(false);
	strcpy(ph_api, secretset_placeholder(set, 0));
	strcpy(ph_other, secretset_placeholder(set, 1));
}

/* After the last. */
static void h2pair_teardown(void)
{
	if (defl)
		nghttp2_hd_deflate_del(defl);
	defl = NULL;
	teardown_policy();
}

#endif
