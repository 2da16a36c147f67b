/* metrics.c -- per-worker counter blocks, their Prometheus text exposition, and
 * the scrape listener (GET /metrics) on a thread and event loop of its own */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "alloc.h"
#include "contentdec.h"
#include "httpmsg.h"

#define MX_ENUM_REASONS 32 /* slots for enum reason values (reason_str != "unknown") */
#define MX_BUCKETS 14      /* finite histogram buckets; one more for +Inf */
#define SCRAPE_HEAD_CAP 8192
#define SCRAPE_TIMEOUT_S 5
#define SCRAPE_MAX_CONNS 32

/* Refusals that are not enum reasons but reach the client with a reason. */
enum { XR_TOO_MANY, XR_BAD_RESPONSE, XR_INTERNAL, XR_CLIENT_TLS };
static const char *const extra_reasons[] = {
	"too-many-connections", /* 503: --max-connections reached */
	"bad-response",         /* 502: the upstream's response did not parse */
	"internal",             /* 502: egressd could not set up the client TLS */
	"client-tls-failed",    /* the sandbox's TLS handshake with egressd failed */
	"websocket-not-redactable", /* a secret's host sent frames that cannot be redacted */
};
#define MX_EXTRA_REASONS (sizeof(extra_reasons) / sizeof(extra_reasons[0]))
#define MX_REASONS (MX_ENUM_REASONS + MX_EXTRA_REASONS)

/* Upper bounds of the latency buckets, in microseconds and as exported. */
static const uint64_t bucket_us[MX_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[MX_BUCKETS + 1] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
	"1", "2.5", "5", "10", "+Inf",
};

static const char *const mode_names[MODE_COUNT] = {
	"none", "connect", "http", "intercept", "origin", "transparent",
};
static const char *const upstream_names[MX_UP_KINDS] = {
	"dns", "connect", "timeout", "tls", "cert", "reset", "protocol",
};
static const char *const timeout_names[MX_TO_KINDS] = {
	"clienthello", "tls-handshake", "first-bytes", "request-head", "idle",
};
static const char *const side_names[MX_SIDES] = { "client", "upstream" };
static const char *const proto_names[MX_PROTOS] = { "http1", "h2" };

/* The (mode, proto) series of the request families: HTTP/2 is served on
 * intercepted connections only (a count elsewhere would not be rendered,
 * and metrics_request never makes one). */
static const struct {
	enum conn_mode mode;
	enum metrics_proto proto;
} req_series[] = {
	{ MODE_HTTP, MX_PROTO_HTTP1 },
	{ MODE_INTERCEPT, MX_PROTO_HTTP1 },
	{ MODE_INTERCEPT, MX_PROTO_H2 },
	{ MODE_ORIGIN, MX_PROTO_HTTP1 },
};

struct hist {
	uint64_t bucket[MX_BUCKETS + 1]; /* per bucket, not cumulative; last = above 10 s */
	uint64_t sum_us;
};

/* Written only by its worker's thread (plain load + store, relaxed), read by
 * the scrape thread (relaxed loads); aligned so no two workers share a line. */
struct metrics_worker {
	uint64_t conns[MODE_COUNT][2];      /* [mode][allow] */
	int64_t open;                     /* this worker's opens minus closes */
	uint64_t requests[MODE_COUNT][MX_PROTOS];
	uint64_t refusals[MX_REASONS];
	uint64_t upstream[MX_UP_KINDS];
	uint64_t timeouts[MX_TO_KINDS];
	uint64_t bytes[2];                /* [0] down, [1] up */
	uint64_t leaks;
	uint64_t cert_hits, cert_misses, cert_entries, cert_minted;
	struct hist handshake[MX_SIDES];
	struct hist request[MODE_COUNT][MX_PROTOS];
	uint64_t secrets[METRICS_SECRET_NAMES + 1]; /* the last: "_other" */
	uint64_t sandboxes[METRICS_SANDBOX_NAMES + 1][2]; /* [slot][allow]; the last: "_other" */
} __attribute__((aligned(64)));

/* Names that label counters (secrets, sandboxes): append-only, so a slot
 * never changes meaning; published by n. */
struct nametab {
	char *v[METRICS_SECRET_NAMES > METRICS_SANDBOX_NAMES ? METRICS_SECRET_NAMES
							       : METRICS_SANDBOX_NAMES];
	unsigned n;   /* release-stored after v[n-1] */
	unsigned cap; /* slots; a name past them counts as "_other" (slot cap) */
};

struct scrape; /* one scrape connection */

struct metrics {
	struct metrics_worker *w; /* nworkers blocks, 64-byte aligned (owned) */
	int nworkers;
	char *version;
	double start_time;
	pthread_mutex_t names_lock;       /* writers of the name tables */
	struct nametab secret_names, sandbox_names;
	uint64_t reloads[2];              /* [0] failed, [1] ok; atomic RMW (rare) */
	uint64_t control[MX_CONTROL_CODES]; /* control API answers by code; atomic RMW */
	void (*count_sandboxes)(void *ctx, size_t *nfile, size_t *napi);
	void *count_ctx;
	/* the listener: its own event loop on its own thread */
	struct event_base *base;
	struct evconnlistener *ls;
	struct event *stop;   /* on wake_fd */
	int wake_fd;          /* eventfd metrics_stop writes to (-1: none) */
	struct scrape *scrapes;
	int nscrapes;
	pthread_t thread;
	bool running;
};

#define ADD(field, n) \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct metrics *metrics_new(int nworkers, const char *version)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	struct timeval now;
	size_t size;

	if (nworkers < 1)
		nworkers = 1;
	size = (size_t)nworkers * sizeof(struct metrics_worker);
	m->w = aligned_alloc(64, size);
	if (!m->w)
		abort();
	memset(m->w, 0, size);
	m->nworkers = nworkers;
	m->version = xstrdup(version ? version : "unknown");
	evutil_gettimeofday(&now, NULL);
	m->start_time = (double)now.tv_sec + now.tv_usec / 1e6;
	pthread_mutex_init(&m->names_lock, NULL);
	m->wake_fd = -1;
	m->secret_names.cap = METRICS_SECRET_NAMES;
	m->sandbox_names.cap = METRICS_SANDBOX_NAMES;
	return m;
}

struct metrics_worker *metrics_worker(struct metrics *m, int i)
{
	return &m->w[i];
}

/* ---- reload time ---- */

static unsigned name_slot(struct metrics *m, struct nametab *t, const char *name)
{
	unsigned n, slot = t->cap;

	pthread_mutex_lock(&m->names_lock);
	n = t->n;
	for (unsigned i = 0; i < n; i++)
		if (strcmp(t->v[i], name) == 0) {
			slot = i;
			goto out;
		}
	if (n < t->cap) {
		t->v[n] = xstrdup(name);
		__atomic_store_n(&t->n, n + 1, __ATOMIC_RELEASE);
		slot = n;
	}
out:
	pthread_mutex_unlock(&m->names_lock);
	return slot;
}

unsigned metrics_secret_slot(struct metrics *m, const char *name)
{
	return name_slot(m, &m->secret_names, name);
}

unsigned metrics_sandbox_slot(struct metrics *m, const char *name)
{
	return name_slot(m, &m->sandbox_names, name);
}

void metrics_reload(struct metrics *m, bool ok)
{
	__atomic_fetch_add(&m->reloads[ok ? 1 : 0], 1, __ATOMIC_RELAXED);
}

/* ---- hooks ---- */

void metrics_conn_open(struct metrics_worker *w)
{
	ADD(w->open, 1);
}

void metrics_conn_close(struct metrics_worker *w)
{
	/* release: a scrape that sees this close also sees the connection counted
	 * in conns[] (conn_close counts it first); render_connections reads open first */
	__atomic_store_n(&w->open, GET(w->open) - 1, __ATOMIC_RELEASE);
}

void metrics_conn_decided(struct metrics_worker *w, enum conn_mode mode, bool allow)
{
	if (mode < MODE_COUNT)
		ADD(w->conns[mode][allow ? 1 : 0], 1);
}

static void observe(struct hist *h, uint64_t usec)
{
	int i = 0;

	while (i < MX_BUCKETS && usec > bucket_us[i])
		i++;
	ADD(h->bucket[i], 1);
	ADD(h->sum_us, usec);
}

void metrics_request(struct metrics_worker *w, enum conn_mode mode, enum metrics_proto proto,
		     uint64_t usec)
{
	if (mode >= MODE_COUNT || proto >= MX_PROTOS)
		return;
	if (mode != MODE_INTERCEPT)
		proto = MX_PROTO_HTTP1; /* only intercepted connections have an h2 series */
	ADD(w->requests[mode][proto], 1);
	observe(&w->request[mode][proto], usec);
}

void metrics_sandbox_conn(struct metrics_worker *w, unsigned slot, bool allow)
{
	ADD(w->sandboxes[slot < METRICS_SANDBOX_NAMES ? slot : METRICS_SANDBOX_NAMES][allow ? 1 : 0], 1);
}

void metrics_secret_injected(struct metrics_worker *w, unsigned slot)
{
	ADD(w->secrets[slot < METRICS_SECRET_NAMES ? slot : METRICS_SECRET_NAMES], 1);
}

/* Enum reasons are 1..N-1 where reason_str(N) is "unknown": a reason added
 * to reason.c shows up here without any change. */
static bool reason_valid(int r)
{
	return r > REASON_NONE && r < MX_ENUM_REASONS &&
	       strcmp(reason_str((enum reason)r), "unknown") != 0;
}

void metrics_refusal(struct metrics_worker *w, enum reason r)
{
	ADD(w->refusals[reason_valid((int)r) ? (size_t)r : MX_ENUM_REASONS + XR_INTERNAL], 1);
}

void metrics_refusal_named(struct metrics_worker *w, const char *reason)
{
	if (!reason)
		reason = "internal";
	for (int r = REASON_NONE + 1; reason_valid(r); r++)
		if (strcmp(reason_str((enum reason)r), reason) == 0) {
			ADD(w->refusals[r], 1);
			return;
		}
	for (size_t i = 0; i < MX_EXTRA_REASONS; i++)
		if (strcmp(extra_reasons[i], reason) == 0) {
			ADD(w->refusals[MX_ENUM_REASONS + i], 1);
			return;
		}
	ADD(w->refusals[MX_ENUM_REASONS + XR_INTERNAL], 1);
}

void metrics_upstream_error(struct metrics_worker *w, enum metrics_upstream kind)
{
	if (kind < MX_UP_KINDS)
		ADD(w->upstream[kind], 1);
}

void metrics_timeout(struct metrics_worker *w, enum metrics_timeout phase)
{
	if (phase < MX_TO_KINDS)
		ADD(w->timeouts[phase], 1);
}

const char *metrics_timeout_name(enum metrics_timeout phase)
{
	return phase < MX_TO_KINDS ? timeout_names[phase] : "?";
}

void metrics_bytes(struct metrics_worker *w, bool up, uint64_t n)
{
	ADD(w->bytes[up ? 1 : 0], n);
}

void metrics_handshake(struct metrics_worker *w, enum metrics_side side, uint64_t usec)
{
	if (side < MX_SIDES)
		observe(&w->handshake[side], usec);
}

void metrics_placeholder_leak(struct metrics_worker *w)
{
	ADD(w->leaks, 1);
}

void metrics_certcache(struct metrics_worker *w, size_t hits, size_t misses, size_t entries,
		       size_t minted)
{
	__atomic_store_n(&w->cert_hits, (uint64_t)hits, __ATOMIC_RELAXED);
	__atomic_store_n(&w->cert_misses, (uint64_t)misses, __ATOMIC_RELAXED);
	__atomic_store_n(&w->cert_entries, (uint64_t)entries, __ATOMIC_RELAXED);
	__atomic_store_n(&w->cert_minted, (uint64_t)minted, __ATOMIC_RELAXED);
}

/* ---- exposition ---- */

/* Sums a uint64_t field at byte offset off over every worker block. */
static uint64_t sum_at(const struct metrics *m, size_t off)
{
	uint64_t t = 0;

	for (int i = 0; i < m->nworkers; i++)
		t += __atomic_load_n((const uint64_t *)((const char *)&m->w[i] + off), __ATOMIC_RELAXED);
	return t;
}

#define SUM(m, field) sum_at((m), offsetof(struct metrics_worker, field))

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the text format wants. */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void sample1(FILE *f, const char *name, const char *label, const char *value,
		    uint64_t v)
{
	fprintf(f, "%s{%s=\"", name, label);
	label_value(f, value);
	fprintf(f, "\"} %llu\n", (unsigned long long)v);
}

/* A histogram family member: buckets (cumulative), _sum, _count. labels:
 * the series' labels, written out (`a="x",b="y"`, values from fixed tables),
 * or NULL. */
static void hist_sample(FILE *f, const char *name, const char *labels, const struct metrics *m,
			size_t off)
{
	uint64_t cum = 0, sum_us = sum_at(m, off + offsetof(struct hist, sum_us));
	char lab[96] = "";

	if (labels)
		snprintf(lab, sizeof(lab), "%s,", labels);
	for (int i = 0; i <= MX_BUCKETS; i++) {
		cum += sum_at(m, off + offsetof(struct hist, bucket) + (size_t)i * sizeof(uint64_t));
		fprintf(f, "%s_bucket{%sle=\"%s\"} %llu\n", name, lab, bucket_le[i],
			(unsigned long long)cum);
	}
	if (labels)
		lab[strlen(lab) - 1] = '\0'; /* no trailing comma */
	fprintf(f, "%s_sum%s%s%s %llu.%06llu\n", name, labels ? "{" : "", lab, labels ? "}" : "",
		(unsigned long long)(sum_us / 1000000), (unsigned long long)(sum_us % 1000000));
	fprintf(f, "%s_count%s%s%s %llu\n", name, labels ? "{" : "", lab, labels ? "}" : "",
		(unsigned long long)cum);
}

static void render_connections(FILE *f, const struct metrics *m)
{
	int64_t open = 0;

	for (int i = 0; i < m->nworkers; i++) /* before the totals: see metrics_conn_close */
		open += __atomic_load_n(&m->w[i].open, __ATOMIC_ACQUIRE);
	family(f, "egressd_connections_total", "counter",
	       "Client connections by the mode they ended up in and the decision (counted once "
	       "each; mode=none: ended before a decision was logged)");
	fprintf(f, "egressd_connections_total{mode=\"none\",decision=\"none\"} %llu\n",
		(unsigned long long)(SUM(m, conns[MODE_NONE][0]) + SUM(m, conns[MODE_NONE][1])));
	for (int md = MODE_NONE + 1; md < MODE_COUNT; md++)
		for (int a = 1; a >= 0; a--)
			fprintf(f, "egressd_connections_total{mode=\"%s\",decision=\"%s\"} %llu\n",
				mode_names[md], a ? "allow" : "deny",
				(unsigned long long)sum_at(m, offsetof(struct metrics_worker, conns) +
							       ((size_t)md * 2 + (size_t)a) * sizeof(uint64_t)));
	family(f, "egressd_connections_open", "gauge", "Client connections open now");
	fprintf(f, "egressd_connections_open %lld\n", (long long)(open < 0 ? 0 : open));
}

/* Request series i's index in the [mode][proto] arrays, flattened. */
static size_t req_slot(size_t i)
{
	return (size_t)req_series[i].mode * MX_PROTOS + (size_t)req_series[i].proto;
}

/* The labels of request series i: mode="...",proto="..." */
static void req_labels(size_t i, char *buf, size_t n)
{
	snprintf(buf, n, "mode=\"%s\",proto=\"%s\"", mode_names[req_series[i].mode],
		 proto_names[req_series[i].proto]);
}

static void render_requests(FILE *f, const struct metrics *m)
{
	const size_t n = sizeof(req_series) / sizeof(req_series[0]);
	char lab[64];

	family(f, "egressd_requests_total", "counter",
	       "HTTP requests forwarded and answered by the upstream (mode=intercept: inside "
	       "terminated TLS), by the protocol the sandbox sent them in");
	for (size_t i = 0; i < n; i++) {
		req_labels(i, lab, sizeof(lab));
		fprintf(f, "egressd_requests_total{%s} %llu\n", lab, (unsigned long long)sum_at(m,
			offsetof(struct metrics_worker, requests) + req_slot(i) * sizeof(uint64_t)));
	}
	family(f, "egressd_request_duration_seconds", "histogram",
	       "Time from a request head received to its response complete");
	for (size_t i = 0; i < n; i++) {
		req_labels(i, lab, sizeof(lab));
		hist_sample(f, "egressd_request_duration_seconds", lab, m,
			    offsetof(struct metrics_worker, request) + req_slot(i) * sizeof(struct hist));
	}
}

static void render_secrets(FILE *f, const struct metrics *m)
{
	unsigned n = __atomic_load_n(&m->secret_names.n, __ATOMIC_ACQUIRE);

	family(f, "egressd_secret_injections_total", "counter",
	       "Requests a secret was injected into, by secret name (names only, never values)");
	for (unsigned i = 0; i < n; i++)
		sample1(f, "egressd_secret_injections_total", "secret", m->secret_names.v[i],
			sum_at(m, offsetof(struct metrics_worker, secrets) + i * sizeof(uint64_t)));
	if (n >= METRICS_SECRET_NAMES)
		sample1(f, "egressd_secret_injections_total", "secret", "_other",
			SUM(m, secrets[METRICS_SECRET_NAMES]));
}

static void sandbox_samples(FILE *f, const struct metrics *m, const char *name, unsigned slot)
{
	for (int a = 1; a >= 0; a--) {
		fputs("egressd_sandbox_connections_total{sandbox=\"", f);
		label_value(f, name);
		fprintf(f, "\",decision=\"%s\"} %llu\n", a ? "allow" : "deny",
			(unsigned long long)sum_at(m, offsetof(struct metrics_worker, sandboxes) +
						       ((size_t)slot * 2 + (size_t)a) * sizeof(uint64_t)));
	}
}

/* Only with a policy of "sandboxes": connections by sandbox and decision. */
static void render_sandboxes(FILE *f, const struct metrics *m)
{
	unsigned n = __atomic_load_n(&m->sandbox_names.n, __ATOMIC_ACQUIRE);

	if (n == 0)
		return;
	family(f, "egressd_sandbox_connections_total", "counter",
	       "Client connections by the sandbox that claimed them and the decision "
	       "(connections no sandbox claims are refusals with reason unknown-source)");
	for (unsigned i = 0; i < n; i++)
		sandbox_samples(f, m, m->sandbox_names.v[i], i);
	if (n >= METRICS_SANDBOX_NAMES)
		sandbox_samples(f, m, "_other", METRICS_SANDBOX_NAMES);
}

static void render_refusals(FILE *f, const struct metrics *m)
{
	family(f, "egressd_refusals_total", "counter",
	       "Connections and requests refused, by the reason the client was given");
	for (int r = REASON_NONE + 1; reason_valid(r); r++)
		sample1(f, "egressd_refusals_total", "reason", reason_str((enum reason)r),
			sum_at(m, offsetof(struct metrics_worker, refusals) + (size_t)r * sizeof(uint64_t)));
	for (size_t i = 0; i < MX_EXTRA_REASONS; i++)
		sample1(f, "egressd_refusals_total", "reason", extra_reasons[i],
			sum_at(m, offsetof(struct metrics_worker, refusals) +
					  (MX_ENUM_REASONS + i) * sizeof(uint64_t)));
}

/* A counter family with one sample per name: names[k] counts in the workers'
 * uint64_t array at off. */
static void counters(FILE *f, const struct metrics *m, const char *name, const char *help,
		     const char *label, const char *const names[], size_t n, size_t off)
{
	family(f, name, "counter", help);
	for (size_t k = 0; k < n; k++)
		sample1(f, name, label, names[k], sum_at(m, off + k * sizeof(uint64_t)));
}

static void render_upstream(FILE *f, const struct metrics *m)
{
	counters(f, m, "egressd_upstream_errors_total",
		 "Failures towards upstreams, by kind (each failed connect attempt counts)", "kind",
		 upstream_names, MX_UP_KINDS, offsetof(struct metrics_worker, upstream));
	counters(f, m, "egressd_client_timeouts_total",
		 "Client connections closed for a timeout, by phase (header timeouts: clienthello, "
		 "tls-handshake, first-bytes, request-head; idle: nothing moved for --idle-timeout)",
		 "phase", timeout_names, MX_TO_KINDS, offsetof(struct metrics_worker, timeouts));
	family(f, "egressd_tls_handshake_seconds", "histogram",
	       "TLS handshakes of intercepted connections: with the sandbox (side=client, on a "
	       "minted leaf) and the verified one with the upstream (side=upstream)");
	for (int s = 0; s < MX_SIDES; s++) {
		char lab[32];

		snprintf(lab, sizeof(lab), "side=\"%s\"", side_names[s]);
		hist_sample(f, "egressd_tls_handshake_seconds", lab, m,
			    offsetof(struct metrics_worker, handshake) + (size_t)s * sizeof(struct hist));
	}
}

/* The control API's answers: these codes, then any other as "other". */
static const int control_codes[MX_CONTROL_CODES] = { 200, 201, 400, 403, 404, 405, 409, 413,
						     431, 500, 0 };

void metrics_control_request(struct metrics *m, int code)
{
	int i = 0;

	while (control_codes[i] && control_codes[i] != code)
		i++;
	__atomic_fetch_add(&m->control[i], 1, __ATOMIC_RELAXED);
}

void metrics_count_sandboxes(struct metrics *m, void (*fn)(void *ctx, size_t *nfile,
							   size_t *napi), void *ctx)
{
	m->count_sandboxes = fn;
	m->count_ctx = ctx;
}

static void render_control(FILE *f, const struct metrics *m)
{
	size_t nfile = 0, napi = 0;

	if (!m->count_sandboxes)
		return;
	m->count_sandboxes(m->count_ctx, &nfile, &napi);
	family(f, "egressd_sandboxes", "gauge",
	       "Sandboxes served: from the policy file (file) or the control API (api)");
	fprintf(f, "egressd_sandboxes{origin=\"file\"} %zu\n", nfile);
	fprintf(f, "egressd_sandboxes{origin=\"api\"} %zu\n", napi);
	family(f, "egressd_control_requests_total", "counter",
	       "Control API requests by the HTTP status of the answer");
	for (int i = 0; i < MX_CONTROL_CODES; i++) {
		unsigned long long n = __atomic_load_n(&m->control[i], __ATOMIC_RELAXED);
		if (control_codes[i])
			fprintf(f, "egressd_control_requests_total{code=\"%d\"} %llu\n",
				control_codes[i], n);
		else
			fprintf(f, "egressd_control_requests_total{code=\"other\"} %llu\n", n);
	}
}

static void render_misc(FILE *f, const struct metrics *m)
{
	family(f, "egressd_build_info", "gauge", "The running egressd's version (always 1)");
	fputs("egressd_build_info{version=\"", f);
	label_value(f, m->version);
	fputs("\"} 1\n", f);
	family(f, "egressd_start_time_seconds", "gauge", "When egressd started (Unix time)");
	fprintf(f, "egressd_start_time_seconds %.3f\n", m->start_time);
	family(f, "egressd_policy_reloads_total", "counter",
	       "SIGHUP policy reloads, applied (ok) or refused (failed)");
	fprintf(f, "egressd_policy_reloads_total{result=\"ok\"} %llu\n",
		(unsigned long long)__atomic_load_n(&m->reloads[1], __ATOMIC_RELAXED));
	fprintf(f, "egressd_policy_reloads_total{result=\"failed\"} %llu\n",
		(unsigned long long)__atomic_load_n(&m->reloads[0], __ATOMIC_RELAXED));
	family(f, "egressd_placeholder_leaks_total", "counter",
	       "Requests carrying a placeholder bound for another host (logged or blocked)");
	fprintf(f, "egressd_placeholder_leaks_total %llu\n", (unsigned long long)SUM(m, leaks));
	family(f, "egressd_bytes_total", "counter",
	       "Bytes relayed: up = client to upstream, down = upstream to client (plaintext "
	       "when intercepted)");
	fprintf(f, "egressd_bytes_total{direction=\"up\"} %llu\n", (unsigned long long)SUM(m, bytes[1]));
	fprintf(f, "egressd_bytes_total{direction=\"down\"} %llu\n", (unsigned long long)SUM(m, bytes[0]));
	family(f, "egressd_cert_cache_hits_total", "counter",
	       "Leaf certificate lookups answered from the per-worker caches");
	fprintf(f, "egressd_cert_cache_hits_total %llu\n", (unsigned long long)SUM(m, cert_hits));
	family(f, "egressd_cert_cache_misses_total", "counter",
	       "Leaf certificate lookups that had to mint (absent or close to expiry)");
	fprintf(f, "egressd_cert_cache_misses_total %llu\n", (unsigned long long)SUM(m, cert_misses));
	family(f, "egressd_cert_cache_entries", "gauge", "Leaf certificates held in the caches");
	fprintf(f, "egressd_cert_cache_entries %llu\n", (unsigned long long)SUM(m, cert_entries));
	family(f, "egressd_certs_minted_total", "counter", "Leaf certificates minted");
	fprintf(f, "egressd_certs_minted_total %llu\n", (unsigned long long)SUM(m, cert_minted));
	family(f, "egressd_decode_memory_bytes", "gauge",
	       "Bytes the reply decoders hold now (bounded by --max-decode-memory)");
	fprintf(f, "egressd_decode_memory_bytes %zu\n", contentdec_in_use());
}

char *metrics_render(struct metrics *m, size_t *len)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);

	if (!f)
		return NULL;
	render_misc(f, m);
	render_connections(f, m);
	render_requests(f, m);
	render_secrets(f, m);
	render_sandboxes(f, m);
	render_refusals(f, m);
	render_upstream(f, m);
	render_control(f, m);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	*len = n;
	return out;
}

/* ---- the scrape listener ---- */

struct scrape {
	struct metrics *m;
	struct bufferevent *bev;
	struct httpmsg *req;
	bool answered;
	struct scrape *prev, *next;
};

static void scrape_free(struct scrape *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		s->m->scrapes = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->m->nscrapes--;
	bufferevent_free(s->bev);
	httpmsg_free(s->req);
	free(s);
}

static void reply(struct scrape *s, int status, const char *text, const char *extra,
		  const char *ctype, const char *body, size_t blen, bool head_only)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
				 "%sConnection: close\r\n\r\n",
			    status, text, ctype, blen, extra);
	if (!head_only)
		evbuffer_add(out, body, blen);
	s->answered = true;
	bufferevent_disable(s->bev, EV_READ);
}

static void plain(struct scrape *s, int status, const char *text, const char *extra,
		  const char *msg, bool head_only)
{
	reply(s, status, text, extra, "text/plain; charset=utf-8", msg, strlen(msg), head_only);
}

static bool is_metrics_path(const char *t, size_t n)
{
	return (n == 8 && memcmp(t, "/metrics", 8) == 0) ||
	       (n > 8 && memcmp(t, "/metrics?", 9) == 0);
}

static void answer(struct scrape *s)
{
	const char *method = httpmsg_method(s->req);
	size_t tlen;
	const char *target = httpmsg_target(s->req, &tlen);
	bool head = strcmp(method, "HEAD") == 0;
	char *body;
	size_t blen = 0;

	if (!head && strcmp(method, "GET") != 0) {
		plain(s, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
		      "egressd metrics: only GET and HEAD\n", false);
		return;
	}
	if (!is_metrics_path(target, tlen)) {
		plain(s, 404, "Not Found", "", "egressd metrics: not found (try /metrics)\n", head);
		return;
	}
	body = metrics_render(s->m, &blen);
	if (!body) {
		plain(s, 500, "Internal Server Error", "", "egressd metrics: out of memory\n", head);
		return;
	}
	reply(s, 200, "OK", "", "text/plain; version=0.0.4; charset=utf-8", body, blen, head);
	free(body);
}

static void on_scrape_read(struct bufferevent *bev, void *arg)
{
	struct scrape *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!s->answered && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t used = 0;
		enum httpmsg_status st;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		st = httpmsg_feed(s->req, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (st == HTTPMSG_NEED_MORE)
			continue;
		if (st == HTTPMSG_ERROR) {
			int code = httpmsg_error_status(s->req);
			plain(s, code, code == 431 ? "Request Header Fields Too Large" : "Bad Request", "",
			      "egressd metrics: malformed request\n", false);
		} else {
			answer(s);
		}
	}
}

static void on_scrape_write(struct bufferevent *bev, void *arg)
{
	struct scrape *s = arg;

	if (s->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		scrape_free(s);
}

static void on_scrape_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	scrape_free(arg); /* EOF, error or timeout: nothing more to do */
}

static void on_scrape_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			     int len, void *arg)
{
	struct metrics *m = arg;
	struct timeval tv = { SCRAPE_TIMEOUT_S, 0 };
	struct scrape *s;

	(void)l;
	(void)sa;
	(void)len;
	if (m->nscrapes >= SCRAPE_MAX_CONNS) {
		evutil_closesocket(fd);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev) {
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->req = httpmsg_new(HTTPMSG_REQUEST, SCRAPE_HEAD_CAP);
	s->next = m->scrapes;
	if (m->scrapes)
		m->scrapes->prev = s;
	m->scrapes = s;
	m->nscrapes++;
	bufferevent_setcb(s->bev, on_scrape_read, on_scrape_write, on_scrape_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, 2 * SCRAPE_HEAD_CAP);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and the like: the next scrape tries again; never spin */
	fprintf(stderr, "egressd: metrics accept: %s\n", strerror(errno));
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

int metrics_listen(struct metrics *m, const struct ipaddr *a, uint16_t port, uint16_t *bound,
		   char *err)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_to_sockaddr(a, port, (struct sockaddr *)&ss);
	int one = 1, rc = -1;
	evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->family == 6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    !addr_from_sockaddr((struct sockaddr *)&ss, &(struct ipaddr){ 0 }, bound))
		goto fail;
	m->base = event_base_new();
	if (!m->base) {
		snprintf(err, METRICS_ERRLEN, "cannot create the metrics event loop");
		goto out;
	}
	/* the event loops run without locks: the stop is a write to an eventfd */
	m->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	m->stop = m->wake_fd < 0 ? NULL : event_new(m->base, m->wake_fd, EV_READ, on_stop, m->base);
	m->ls = evconnlistener_new(m->base, on_scrape_accept, m,
				   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!m->stop || !m->ls || event_add(m->stop, NULL) != 0) {
		snprintf(err, METRICS_ERRLEN, "cannot create the metrics listener");
		goto out;
	}
	evconnlistener_set_error_cb(m->ls, on_accept_error);
	return 0;
fail:
	snprintf(err, METRICS_ERRLEN, "cannot listen for metrics: %s", strerror(errno));
out:
	if (fd >= 0 && !m->ls)
		close(fd);
	return rc;
}

static void *metrics_main(void *arg)
{
	struct metrics *m = arg;

	event_base_loop(m->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

void metrics_start(struct metrics *m)
{
	if (!m->ls || m->running)
		return;
	if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
		fprintf(stderr, "egressd: cannot start the metrics thread: %s\n", strerror(errno));
		return;
	}
	m->running = true;
}

void metrics_stop(struct metrics *m)
{
	if (!m || !m->running)
		return;
	if (eventfd_write(m->wake_fd, 1) != 0)
		abort(); /* cannot fail on a valid eventfd below its maximum */
	pthread_join(m->thread, NULL);
	m->running = false;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	metrics_stop(m);
	while (m->scrapes)
		scrape_free(m->scrapes);
	if (m->ls)
		evconnlistener_free(m->ls);
	if (m->stop)
		event_free(m->stop);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	if (m->base)
		event_base_free(m->base);
	for (unsigned i = 0; i < m->secret_names.n; i++)
		free(m->secret_names.v[i]);
	for (unsigned i = 0; i < m->sandbox_names.n; i++)
		free(m->sandbox_names.v[i]);
	pthread_mutex_destroy(&m->names_lock);
	free(m->version);
	free(m->w);
	free(m);
}
