/* inject_bench.c -- cost of the request-body rewriters (policy/injbody.c):
 * a 1 MiB form body and a 1 MiB JSON body held in 16 KiB reads and
 * rewritten, with a placeholder in the named field (and none), MB/s and
 * ms per body; then the rewriters alone (body in memory, output buffer
 * reused). Built and run by bench/inject.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inject.h"
#include "injbody.h"
#include "injjson.h"
#include "injparam.h"
#include "injspec.h"
#include "policy.h"
#include "secrets.h"

#define BODY (1u << 20)
#define READ 16384
#define ROUNDS 20

/* "k0=v&k1=v..." (or a JSON object of the same members) with, when ph is
 * not NULL, client_secret=PH in the middle */
static char *make_body(enum injwhere kind, const char *ph)
{
	char *b = malloc(BODY + 1);
	size_t o = 0;
	unsigned seed = 3;

	if (kind == INJ_JSON)
		b[o++] = '{';
	for (int i = 0; o < BODY - 200; i++) {
		unsigned v = (unsigned)rand_r(&seed);
		if (ph && i == 5000)
			o += (size_t)sprintf(b + o, "%s%s%s", kind == INJ_JSON ? "\"client_secret\": \"" :
					     "client_secret=", ph, kind == INJ_JSON ? "\", " : "&");
		if (kind == INJ_JSON)
			o += (size_t)sprintf(b + o, "\"k%d\": \"v%u %%20 \\u00e9\", ", i, v);
		else
			o += (size_t)sprintf(b + o, "k%d=v%u+%%20&", i, v);
	}
	o += (size_t)sprintf(b + o, "%s", kind == INJ_JSON ? "\"end\": 1}" : "end=1");
	b[o] = '\0';
	return b;
}

static void run(const char *what, const struct policy *p, const struct secretset *s,
		enum injwhere kind, const char *body, size_t expect)
{
	size_t n = strlen(body);
	double best = 1e9;
	uint64_t used = 0;

	for (int k = 0; k < ROUNDS; k++) {
		struct injbody *b = injbody_new(kind, INJBODY_MAX, expect);
		struct obuf out;
		struct timespec t0, t1;
		double secs;

		obuf_init(&out, 4 * (size_t)INJBODY_MAX);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (size_t off = 0; off < n; off += READ)
			injbody_feed(b, body + off, n - off < READ ? n - off : READ);
		if (!injbody_finish(b, p, s, 1, &out, &used))
			abort();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (secs < best)
			best = secs;
		obuf_dispose(&out);
		injbody_free(b);
	}
	printf("%-34s %7.0f MB/s  %6.2f ms per 1 MiB body (injected: %s)\n", what,
	       n / 1e6 / best, best * 1e3, used ? "yes" : "no");
}

/* the rewriter alone: the body already in memory, the output buffer grown
 * once and reused (no holder, no allocation in the loop) */
static void run_rewriter(const char *what, const struct policy *p, const struct secretset *s,
			 enum injwhere kind, const char *body)
{
	size_t n = strlen(body);
	double best = 1e9;
	struct obuf out;
	uint64_t used = 0;

	obuf_init(&out, 4 * (size_t)INJBODY_MAX);
	obuf_add(&out, body, n);
	for (int k = 0; k < ROUNDS; k++) {
		struct timespec t0, t1;
		double secs;

		out.len = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (kind == INJ_FORM ? !injparam_rewrite(p, s, 1, INJ_FORM, body, n, &out, &used) :
				       injjson_rewrite(p, s, 1, body, n, &out, &used) != INJJSON_OK)
			abort();
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (secs < best)
			best = secs;
	}
	obuf_dispose(&out);
	printf("%-34s %7.0f MB/s  %6.2f ms per 1 MiB body (injected: %s)\n", what,
	       n / 1e6 / best, best * 1e3, used ? "yes" : "no");
}

int main(void)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "bench";
	char err[SECRETS_ERRLEN];
	struct policy *p = policy_new();
	struct injspec *spec = injspec_new();
	struct secretset *s;

	if (!policy_add_secret(p, "S", "h.test", SECRET_VALUE, "sk-proj-3a9f/0c1d+2e4b=5a69 78", err) ||
	    !injspec_add_csv(spec, "form:client_secret,json:$.client_secret", err) ||
	    !policy_set_secret_inject(p, "S", spec, err) || !(s = secretset_load(p, key, err)))
		return fprintf(stderr, "%s\n", err), 1;
	const char *ph = secretset_placeholder(s, 0);
	char *f1 = make_body(INJ_FORM, ph), *f0 = make_body(INJ_FORM, NULL);
	char *j1 = make_body(INJ_JSON, ph), *j0 = make_body(INJ_JSON, NULL);
	run("form body, placeholder in field", p, s, INJ_FORM, f1, 0);
	run("form body, placeholder, length known", p, s, INJ_FORM, f1, strlen(f1));
	run("form body, no placeholder", p, s, INJ_FORM, f0, 0);
	run("JSON body, placeholder in member", p, s, INJ_JSON, j1, 0);
	run("JSON body, placeholder, length known", p, s, INJ_JSON, j1, strlen(j1));
	run("JSON body, no placeholder", p, s, INJ_JSON, j0, 0);
	run_rewriter("form rewriter alone, placeholder", p, s, INJ_FORM, f1);
	run_rewriter("JSON rewriter alone, placeholder", p, s, INJ_JSON, j1);
	free(f1), free(f0), free(j1), free(j0);
	secretset_free(s);
	policy_unref(p);
	return 0;
}
