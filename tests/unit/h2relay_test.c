/* h2relay_test.c -- unit tests for h2relay.c and h2head.c: real nghttp2
 * sessions in memory (a client playing the sandbox, a server playing the
 * upstream) drive one relay; hand-built frame sequences play a hostile
 * sandbox for the known HTTP/2 attacks. Secret values are compared, never
 * printed. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include <openssl/evp.h>

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
	snprintf(path, sizeof(path), "%s/unit-%02d", dir, k++);
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

static ssize_t up_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct upreq *q = req_of(id);
	const struct upreply *rp = &W.reply;
	size_t n = 0;

	if (rp->big) {
		n = rp->big - q->big_sent < len ? rp->big - q->big_sent : len;
		memset(buf, 'a', n);
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
	struct h2relay_cbs cbs = { &W, relay_write, relay_event };

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
 * ends), body (NULL: none). Returns the stream id. */
static size_t req_chunk = 1 << 20; /* request DATA bytes per frame */
static const char *req_trailer;     /* a value for the trailer field x-tr, or NULL */
static struct sbody {
	const char *p;
	size_t off;
} bodies[64];
static size_t nbodies;

static ssize_t sb_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct sbody *b = src->ptr;
	size_t n = strlen(b->p + b->off);

	n = n < req_chunk ? n : req_chunk;
	memcpy(buf, b->p + b->off, n);
	b->off += n;
	if (!b->p[b->off])
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (!b->p[b->off] && req_trailer) {
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
	bodies[nbodies % 64] = (struct sbody){ body, 0 };
	prd.source.ptr = &bodies[nbodies++ % 64];
	return nghttp2_submit_request(W.sb, NULL, nv, n, body ? &prd : NULL, NULL);
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

/* ---- step 1: a request and its reply ---- */

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

/* ---- step 2: Host / :authority and request rules ---- */

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

/* ---- step 3: injection and leaks ---- */

static char *b64(const char *s)
{
	static char out[512];

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
	return out;
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

/* gRPC's shape: a request streamed in several DATA frames while the reply
 * streams back, te: trailers, metadata with a placeholder, trailers that
 * echo the secret. */
static void test_grpc_bidi(void)
{
	const char *f[] = { "content-type", "application/grpc", "te", "trailers", "authorization",
			    tap_fmt("Bearer %s", ph_api), NULL };
	struct resp *r;
	int32_t a;

	world_init(false, false, NULL);
	W.reply.stream_echo = true;
	W.reply.tv = "token " VALUE " rejected";
	req_chunk = 7;
	a = request("POST", "/pkg.Svc/Chat", "api.test", f, "msg-one|msg-two|msg-three|" VALUE "|end");
	run(100);
	req_chunk = 1 << 20;
	r = resp_of(a);
	ok(W.uq[0].body.len == 26 + strlen(VALUE) + 4 && wire_has(&W.uq[0].hdrs, "te: trailers\n") &&
	   wire_has(&W.uq[0].hdrs, "authorization: Bearer " VALUE "\n"),
	   "gRPC: the streamed request arrives whole, te: trailers and the injected metadata too");
	ok(r->status == 200 && r->body.len == 26 + PLACEHOLDER_LEN + 4 &&
	   wire_has(&r->body, tap_fmt("msg-three|%s|end", ph_api)),
	   "the streamed reply arrives, the echoed value redacted across frames");
	ok(wire_has(&r->hdrs, "grpc-status: 0\n") &&
	   wire_has(&r->hdrs, tap_fmt("grpc-message: token %s rejected\n", ph_api)) &&
	   !wire_has(&r->hdrs, VALUE), "trailers delivered, grpc-message redacted");
	ok(r->closed && r->code == 0 && W.events[H2EV_REQUEST] == 1 && !W.last_incomplete,
	   "the stream ends cleanly, logged once");
	world_free();
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

/* ---- step 4: redaction ---- */

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

/* ---- step 5: limits and attacks ---- */

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
	l.idle_frames = 100000;
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
	setup_policy(false);
	strcpy(ph_api, secretset_placeholder(set, 0));
	strcpy(ph_other, secretset_placeholder(set, 1));
	test_basic();
	test_host();
	test_rules();
	test_inject();
	test_leaks();
	test_hop_by_hop();
	test_request_trailers();
	test_h2head();
	test_grpc_bidi();
	test_interim_and_resets();
	test_redact();
	test_compressed();
	test_body_bomb();
	test_max_streams();
	test_header_list();
	test_continuation_flood();
	test_rapid_reset();
	flood(NGHTTP2_SETTINGS, "SETTINGS");
	flood(NGHTTP2_PING, "PING");
	flood(NGHTTP2_DATA, "empty DATA");
	test_ack_flood_unread();
	test_window_overflow();
	test_hpack_bomb();
	test_window_credit();
	measure(true);
	measure(false);
	never_reads(true);
	never_reads(false);
	if (defl)
		nghttp2_hd_deflate_del(defl);
	teardown_policy();
	return done_testing();
}
