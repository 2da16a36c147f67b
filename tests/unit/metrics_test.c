/* metrics_test.c -- the Prometheus exposition of proxy/metrics.c: sums over
 * worker blocks, cumulative histogram buckets, the bounded secret-name table,
 * every refusal reason, label escaping, and the shape of the text format */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "reason.h"
#include "tap.h"

/* The value of the sample line that starts with series + ' ', or -1. */
static double value_of(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

/* Text format shape: every sample's family has HELP and TYPE lines before
 * it, series are unique, every line ends with a newline. */
static void check_shape(const char *text, size_t len)
{
	char *copy = strndup(text, len), *save = NULL, *line;
	char typed[64][96], series[1024][160];
	int ntyped = 0, nseries = 0, bad_family = 0, dupes = 0, helps = 0;

	ok(len > 0 && text[len - 1] == '\n', "exposition ends with a newline");
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[96];
		size_t nl = strcspn(line, "{ ");

		if (strncmp(line, "# HELP ", 7) == 0) {
			helps++;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			if (ntyped < 64)
				snprintf(typed[ntyped++], sizeof(typed[0]), "%.*s",
					 (int)strcspn(line + 7, " "), line + 7);
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)nl, line);
		for (const char *suf[] = { "_bucket", "_sum", "_count" }, **s = suf; s < suf + 3; s++) {
			size_t k = strlen(name), m = strlen(*s);
			bool known = false;
			for (int i = 0; i < ntyped; i++)
				known |= strcmp(typed[i], name) == 0;
			if (!known && k > m && strcmp(name + k - m, *s) == 0) {
				name[k - m] = '\0';
				break;
			}
		}
		bool found = false;
		for (int i = 0; i < ntyped; i++)
			found |= strcmp(typed[i], name) == 0;
		bad_family += !found;
		{
			size_t sl = strcspn(line, " ");
			if (line[nl] == '{')
				sl = (size_t)(strchr(line, '}') - line) + 1;
			for (int i = 0; i < nseries; i++)
				dupes += strlen(series[i]) == sl && strncmp(series[i], line, sl) == 0;
			if (nseries < 1024)
				snprintf(series[nseries++], sizeof(series[0]), "%.*s", (int)sl, line);
		}
	}
	ok(bad_family == 0, "every sample belongs to a family with a TYPE line (%d do not)", bad_family);
	ok(helps == ntyped, "one HELP per TYPE (%d HELP, %d TYPE)", helps, ntyped);
	ok(dupes == 0, "no duplicate series (%d)", dupes);
	free(copy);
}

int main(void)
{
	struct metrics *m = metrics_new(2, "1.2\"3\\x\ny");
	struct metrics_worker *w0 = metrics_worker(m, 0), *w1 = metrics_worker(m, 1);
	char *t, line[256];
	size_t len = 0;
	unsigned a, a2, b, slot;
	int nreasons = 0;

	ok(((uintptr_t)w0 & 63) == 0 && ((uintptr_t)w1 & 63) == 0 && (char *)w1 - (char *)w0 >= 64,
	   "worker blocks are on separate cache lines");

	/* connections */
	metrics_conn_open(w0);
	metrics_conn_open(w0);
	metrics_conn_open(w1);
	metrics_conn_close(w1);
	metrics_conn_decided(w0, MODE_CONNECT, true);
	metrics_conn_decided(w0, MODE_CONNECT, true);
	metrics_conn_decided(w1, MODE_CONNECT, true);
	metrics_conn_decided(w1, MODE_HTTP, false);
	metrics_conn_decided(w1, MODE_NONE, false);

	/* requests and their latency: 0.4 ms, exactly 0.5 s, 20 s */
	metrics_request(w0, MODE_INTERCEPT, MX_PROTO_HTTP1, 400);
	metrics_request(w1, MODE_INTERCEPT, MX_PROTO_HTTP1, 500000);
	metrics_request(w1, MODE_INTERCEPT, MX_PROTO_HTTP1, 20000000);
	/* HTTP/2 streams: a series of their own; h2 elsewhere cannot be and counts as http1 */
	metrics_request(w0, MODE_INTERCEPT, MX_PROTO_H2, 1000);
	metrics_request(w1, MODE_INTERCEPT, MX_PROTO_H2, 3000);
	metrics_request(w1, MODE_ORIGIN, MX_PROTO_H2, 1000);
	metrics_request(w1, MODE_ORIGIN, MX_PROTOS, 1000); /* out of range: not counted */
	metrics_handshake(w0, MX_SIDE_CLIENT, 3000);

	/* secrets: same name, same slot; past the table, "_other" */
	a = metrics_secret_slot(m, "A_KEY");
	a2 = metrics_secret_slot(m, "A_KEY");
	b = metrics_secret_slot(m, "B_TOKEN");
	ok(a == 0 && a2 == 0 && b == 1, "secret slots: A=%u again=%u B=%u", a, a2, b);
	for (int i = 2; i < METRICS_SECRET_NAMES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "S_%d", i);
		metrics_secret_slot(m, name);
	}
	slot = metrics_secret_slot(m, "ONE_TOO_MANY");
	ok(slot == METRICS_SECRET_NAMES, "name %d gets the _other slot (%u)", METRICS_SECRET_NAMES + 1,
	   slot);
	ok(metrics_secret_slot(m, "B_TOKEN") == 1, "a known name keeps its slot when the table is full");
	metrics_secret_injected(w0, a);
	metrics_secret_injected(w1, a);
	metrics_secret_injected(w1, b);
	metrics_secret_injected(w0, slot);
	metrics_secret_injected(w0, 100000); /* out of range: _other, never out of bounds */

	/* refusals */
	metrics_refusal(w0, REASON_DENIED);
	metrics_refusal(w1, REASON_DENIED);
	metrics_refusal_named(w0, "too-many-connections");
	metrics_refusal_named(w0, "bad-request");
	metrics_refusal_named(w1, "no-such-reason");
	metrics_refusal(w1, (enum reason)31);
	metrics_refusal_named(w1, NULL);

	metrics_upstream_error(w0, MX_UP_DNS);
	metrics_upstream_error(w1, MX_UP_CERT);
	metrics_bytes(w0, true, 100);
	metrics_bytes(w1, true, 5);
	metrics_bytes(w1, false, 7);
	metrics_placeholder_leak(w1);
	metrics_certcache(w0, 3, 2, 2, 2);
	metrics_certcache(w1, 1, 1, 1, 1);
	metrics_certcache(w1, 4, 1, 1, 1); /* absolute values: the latest wins */
	metrics_reload(m, true);
	metrics_reload(m, false);
	metrics_reload(m, false);

	t = metrics_render(m, &len);
	ok(t != NULL && strlen(t) == len, "render returns the text and its length");
	if (!t)
		return done_testing();

	ok(value_of(t, "egressd_connections_total{mode=\"connect\",decision=\"allow\"}") == 3,
	   "connections summed over workers");
	ok(value_of(t, "egressd_connections_total{mode=\"http\",decision=\"deny\"}") == 1, "http deny");
	ok(value_of(t, "egressd_connections_total{mode=\"none\",decision=\"none\"}") == 1, "no decision");
	ok(value_of(t, "egressd_connections_total{mode=\"none\",decision=\"allow\"}") == -1,
	   "mode none has only decision none");
	ok(value_of(t, "egressd_connections_open") == 2, "open = opens - closes over workers");

	ok(value_of(t, "egressd_requests_total{mode=\"intercept\"}") == -1,
	   "no request series without its proto");
	ok(value_of(t, "egressd_requests_total{mode=\"intercept\",proto=\"http1\"}") == 3,
	   "requests, http1");
	ok(value_of(t, "egressd_requests_total{mode=\"intercept\",proto=\"h2\"}") == 2,
	   "requests, h2: their own series");
	ok(value_of(t, "egressd_requests_total{mode=\"origin\",proto=\"http1\"}") == 1 &&
		   value_of(t, "egressd_requests_total{mode=\"origin\",proto=\"h2\"}") == -1,
	   "origin: http1 only");
	ok(value_of(t, "egressd_requests_total{mode=\"http\",proto=\"http1\"}") == 0 &&
		   value_of(t, "egressd_requests_total{mode=\"http\",proto=\"h2\"}") == -1,
	   "http: http1 only, rendered at 0");
	ok(value_of(t, "egressd_request_duration_seconds_count{mode=\"intercept\",proto=\"h2\"}") == 2 &&
		   value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"h2\","
				"le=\"0.001\"}") == 1,
	   "h2 latency histogram of its own");
	ok(has_line(t, "egressd_request_duration_seconds_sum{mode=\"intercept\",proto=\"h2\"} 0.004000"),
	   "h2 _sum");
	ok(value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"http1\",le=\"0.0005\"}") == 1,
	   "0.4 ms in the 0.0005 bucket");
	ok(value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"http1\",le=\"0.25\"}") == 1,
	   "buckets are cumulative (0.25)");
	ok(value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"http1\",le=\"0.5\"}") == 2,
	   "0.5 s is in le=0.5 (upper bound inclusive)");
	ok(value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"http1\",le=\"10\"}") == 2,
	   "20 s is above 10");
	ok(value_of(t, "egressd_request_duration_seconds_bucket{mode=\"intercept\",proto=\"http1\",le=\"+Inf\"}") == 3,
	   "+Inf holds everything");
	ok(value_of(t, "egressd_request_duration_seconds_count{mode=\"intercept\",proto=\"http1\"}") == 3, "_count");
	ok(has_line(t, "egressd_request_duration_seconds_sum{mode=\"intercept\",proto=\"http1\"} 20.500400"),
	   "_sum in seconds, exact");
	ok(value_of(t, "egressd_tls_handshake_seconds_bucket{side=\"client\",le=\"0.0025\"}") == 0 &&
		   value_of(t, "egressd_tls_handshake_seconds_bucket{side=\"client\",le=\"0.005\"}") == 1,
	   "handshake histogram");

	ok(value_of(t, "egressd_secret_injections_total{secret=\"A_KEY\"}") == 2, "A_KEY injected twice");
	ok(value_of(t, "egressd_secret_injections_total{secret=\"B_TOKEN\"}") == 1, "B_TOKEN once");
	ok(value_of(t, "egressd_secret_injections_total{secret=\"_other\"}") == 2, "_other");
	ok(value_of(t, "egressd_secret_injections_total{secret=\"ONE_TOO_MANY\"}") == -1,
	   "a name past the table has no series of its own");

	for (int r = REASON_NONE + 1; strcmp(reason_str((enum reason)r), "unknown") != 0; r++) {
		snprintf(line, sizeof(line), "egressd_refusals_total{reason=\"%s\"}", reason_str((enum reason)r));
		nreasons += value_of(t, line) >= 0;
		if (value_of(t, line) < 0)
			ok(0, "no series for reason %s", reason_str((enum reason)r));
	}
	ok(nreasons >= 11, "a series for every reason in reason.c (%d)", nreasons);
	ok(value_of(t, "egressd_refusals_total{reason=\"none\"}") == -1, "no series for reason none");
	ok(value_of(t, "egressd_refusals_total{reason=\"denied\"}") == 2, "denied x2");
	ok(value_of(t, "egressd_refusals_total{reason=\"bad-request\"}") == 1, "named enum reason");
	ok(value_of(t, "egressd_refusals_total{reason=\"too-many-connections\"}") == 1, "extra reason");
	ok(value_of(t, "egressd_refusals_total{reason=\"internal\"}") == 3,
	   "unknown names, NULL and values count as internal");

	ok(value_of(t, "egressd_upstream_errors_total{kind=\"dns\"}") == 1 &&
		   value_of(t, "egressd_upstream_errors_total{kind=\"cert\"}") == 1 &&
		   value_of(t, "egressd_upstream_errors_total{kind=\"reset\"}") == 0,
	   "upstream errors by kind");
	ok(value_of(t, "egressd_bytes_total{direction=\"up\"}") == 105 &&
		   value_of(t, "egressd_bytes_total{direction=\"down\"}") == 7,
	   "bytes by direction");
	ok(value_of(t, "egressd_placeholder_leaks_total") == 1, "leaks");
	ok(value_of(t, "egressd_cert_cache_hits_total") == 7 &&
		   value_of(t, "egressd_cert_cache_misses_total") == 3 &&
		   value_of(t, "egressd_cert_cache_entries") == 3 &&
		   value_of(t, "egressd_certs_minted_total") == 3,
	   "cert cache snapshots summed over workers");
	ok(value_of(t, "egressd_policy_reloads_total{result=\"ok\"}") == 1 &&
		   value_of(t, "egressd_policy_reloads_total{result=\"failed\"}") == 2,
	   "reloads");
	ok(has_line(t, "egressd_build_info{version=\"1.2\\\"3\\\\x\\ny\"} 1"),
	   "label values escaped (quote, backslash, newline)");
	ok(value_of(t, "egressd_start_time_seconds") > 1.6e9, "start time");
	check_shape(t, len);
	free(t);
	metrics_free(m);
	metrics_free(NULL);
	return done_testing();
}
