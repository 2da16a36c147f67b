/* redact_bench.c -- throughput of the streaming reply redactor (policy/redact.c):
 * MB/s over 8 MB bodies fed in 16 KiB reads, with 1 and 8 secrets approved.
 * Built and run by bench/redact.sh; prints one line per (body, secrets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inject.h"
#include "policy.h"
#include "redact.h"
#include "secrets.h"

#define BODY (8u << 20)
#define READ 16384
#define ROUNDS 5

static const char *const vals[8] = {
	"sk-proj-3a9f/0c1d+2e4b=5a69 78", "ghp_R2d2C3poXwing0123456789abcd", "xoxb-1234-5678-abcdefgh",
	"AKIAIOSFODNN7EXAMPLE",           "db-password-42\"<&>",             "p@ss w0rd/with+stuff",
	"glpat-xyzzy_9876543210",         "Bearer eyJhbGciOiJIUzI1NiJ9.e30",
};

static void count(void *ctx, const char *p, size_t n)
{
	(void)p;
	*(size_t *)ctx += n;
}

/* A JSON-ish reply: words, numbers, quotes, slashes, escapes, and every 64
 * KiB one secret value (so matches are found, not only rejected). */
static void make_json(char *b, size_t n)
{
	static const char *const words[] = { "\"id\": ", "\"name\": \"", "https:\\/\\/api.test\\/v1",
					     "\", ", "12345", "{", "}", "[", "]", "\"text\": \"",
					     "hello world ", "%20", "\\u00e9", "sk-", "ab" };
	unsigned seed = 1;
	size_t o = 0;

	while (o < n) {
		const char *w = (o & 0xffff) < 40 ? vals[(o >> 16) % 8] :
						    words[rand_r(&seed) % (sizeof(words) / sizeof(*words))];
		size_t l = strlen(w);
		if (l > n - o)
			l = n - o;
		memcpy(b + o, w, l);
		o += l;
	}
}

static void make_printable(char *b, size_t n)
{
	unsigned seed = 7;

	for (size_t i = 0; i < n; i++)
		b[i] = (char)(32 + rand_r(&seed) % 95);
}

static double run(const struct secretset *s, uint64_t mask, const char *b)
{
	double best = 0;

	for (int k = 0; k < ROUNDS; k++) {
		struct redactor *r = redactor_new(s, mask);
		struct timespec t0, t1;
		size_t out = 0;
		double secs;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (size_t off = 0; off < BODY; off += READ)
			redactor_feed(r, b + off, READ, count, &out);
		redactor_flush(r, count, &out);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (BODY / 1e6 / secs > best)
			best = BODY / 1e6 / secs;
		redactor_free(r);
	}
	return best;
}

int main(void)
{
	static const unsigned char key[PLACEHOLDER_KEYLEN] = "bench";
	char err[SECRETS_ERRLEN], name[8];
	struct policy *p = policy_new();
	struct secretset *s;
	char *json = malloc(BODY), *pr = malloc(BODY);

	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "S%d", i);
		if (!policy_add_secret(p, name, "h.test", SECRET_VALUE, vals[i], err))
			return fprintf(stderr, "%s\n", err), 1;
	}
	if (!(s = secretset_load(p, key, err)) || !json || !pr)
		return fprintf(stderr, "%s\n", err), 1;
	make_json(json, BODY);
	make_printable(pr, BODY);
	printf("json body,      1 secret:  %7.0f MB/s\n", run(s, 1, json));
	printf("json body,      8 secrets: %7.0f MB/s\n", run(s, 0xff, json));
	printf("printable body, 1 secret:  %7.0f MB/s\n", run(s, 1, pr));
	printf("printable body, 8 secrets: %7.0f MB/s\n", run(s, 0xff, pr));
	secretset_free(s);
	policy_unref(p);
	free(json);
	free(pr);
	return 0;
}
