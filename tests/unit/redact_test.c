/* redact_test.c -- unit tests for redact.c: the streaming redactor must give
 * exactly redact_string()'s output for every way of cutting the input, and
 * hold back at most (longest value - 1) bytes; plus a throughput measure */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <time.h>

#include "inject.h"
#include "policy.h"
#include "secrets.h"
#include "tap.h"

#include "../../policy/redact.c" /* for struct redactor (hold_len, maxlen) */

static const unsigned char fixed_key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";

struct sink {
	struct obuf o;
	bool overflow;
};

static void collect(void *ctx, const char *p, size_t n)
{
	struct sink *k = ctx;

	if (n == 0)
		k->overflow = true; /* emit is never called with nothing */
	if (!obuf_add(&k->o, p, n))
		k->overflow = true;
}

/* A set whose secrets V0, V1... have the given values, all in the mask. */
static struct secretset *make_set(const char *const *vals, size_t n, struct policy **pp)
{
	struct policy *p = policy_new();
	char err[SECRETS_ERRLEN], name[32];
	struct secretset *s;

	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "V%zu", i);
		if (!policy_add_secret(p, name, "h.test", SECRET_VALUE, vals[i], err))
			printf("# %s\n", err);
	}
	s = secretset_load(p, fixed_key, err);
	if (!s)
		printf("# %s\n", err);
	*pp = p;
	return s;
}

static bool held_ok; /* hold-back bound respected in every run */

/* Streams text cut at the positions where bit i of cuts is set (cut after
 * byte i), or in chunks of `step` bytes if step > 0; compares to want. */
static bool stream_eq(struct redactor *r, const char *t, size_t n, uint64_t cuts, size_t step,
		      const struct obuf *want)
{
	struct sink k;
	size_t from = 0;
	bool eq;

	obuf_init(&k.o, 1 << 20);
	k.overflow = false;
	for (size_t i = 0; i < n; i++) {
		bool cut = step ? (i + 1) % step == 0 : (i < 64 && (cuts >> i & 1));
		if (cut || i + 1 == n) {
			redactor_feed(r, t + from, i + 1 - from, collect, &k);
			from = i + 1;
			if (r->hold_len > (r->maxlen ? r->maxlen - 1 : 0))
				held_ok = false;
		}
	}
	redactor_flush(r, collect, &k);
	if (r->hold_len)
		held_ok = false;
	eq = !k.overflow && k.o.len == want->len &&
	     (want->len == 0 || memcmp(k.o.p, want->p, want->len) == 0);
	if (!eq)
		printf("#   mismatch on '%.*s' cuts %#llx step %zu: got '%.*s' want '%.*s'\n",
		       (int)n, t, (unsigned long long)cuts, step, (int)k.o.len,
		       k.o.p ? k.o.p : "", (int)want->len, want->p ? want->p : "");
	obuf_dispose(&k.o);
	return eq;
}

/* Every string over alphabet up to maxlen: every chunking up to all_upto
 * bytes, every single split point, 1-byte feeds, whole feed. */
static void property(const char *const *vals, size_t nv, const char *alpha, size_t maxlen,
		     size_t all_upto, const char *what)
{
	struct policy *p;
	struct secretset *s = make_set(vals, nv, &p);
	struct redactor *r = s ? redactor_new(s, ~(uint64_t)0) : NULL;
	size_t na = strlen(alpha), runs = 0, bad = 0;
	char t[16];

	held_ok = true;
	for (size_t len = 0; r && len <= maxlen; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= na;
		for (size_t idx = 0; idx < total; idx++) {
			struct obuf want;
			size_t x = idx;

			for (size_t i = 0; i < len; i++, x /= na)
				t[i] = alpha[x % na];
			obuf_init(&want, 1 << 20);
			redact_string(s, ~(uint64_t)0, t, len, &want);
			bad += !stream_eq(r, t, len, 0, 0, &want);
			bad += !stream_eq(r, t, len, 0, 1, &want);
			runs += 2;
			for (size_t c = 0; c + 1 < len; c++, runs++)
				bad += !stream_eq(r, t, len, (uint64_t)1 << c, 0, &want);
			for (uint64_t c = 0; len <= all_upto && len > 1 && c < (1ull << (len - 1));
			     c++, runs++)
				bad += !stream_eq(r, t, len, c, 0, &want);
			obuf_dispose(&want);
			if (bad > 5)
				goto out;
		}
	}
out:
	ok(r && bad == 0, "%s: streaming == redact_string in %zu runs", what, runs);
	ok(held_ok, "%s: at most maxlen-1 bytes held back", what);
	redactor_free(r);
	secretset_free(s);
	policy_unref(p);
}

/* Random texts built from values, their fragments and noise, random chunks. */
static void random_property(const char *const *vals, size_t nv, const char *what)
{
	struct policy *p;
	struct secretset *s = make_set(vals, nv, &p);
	struct redactor *r = s ? redactor_new(s, ~(uint64_t)0) : NULL;
	size_t bad = 0, runs = 0;
	char t[600];
	unsigned seed = 12345;

	held_ok = true;
	for (int iter = 0; r && iter < 3000; iter++) {
		size_t n = 0;
		struct obuf want;

		while (n < 500) {
			const char *v = vals[rand_r(&seed) % nv];
			size_t vl = strlen(v), take = (size_t)rand_r(&seed) % (vl + 1);
			int kind = rand_r(&seed) % 3;
			if (kind == 0)
				t[n++] = "xyz-ab"[rand_r(&seed) % 6];
			else
				for (size_t i = 0; i < (kind == 1 ? vl : take); i++)
					t[n++] = v[i];
		}
		obuf_init(&want, 1 << 20);
		redact_string(s, ~(uint64_t)0, t, n, &want);
		bad += !stream_eq(r, t, n, ((uint64_t)rand_r(&seed) << 32) | (uint64_t)rand_r(&seed),
				  0, &want);
		bad += !stream_eq(r, t, n, 0, 1 + (size_t)rand_r(&seed) % 40, &want);
		runs += 2;
		obuf_dispose(&want);
		if (bad > 5)
			break;
	}
	ok(r && bad == 0, "%s: random texts, random chunks, %zu runs", what, runs);
	ok(held_ok, "%s: hold-back bound", what);
	redactor_free(r);
	secretset_free(s);
	policy_unref(p);
}

static void test_basics(void)
{
	static const char *const vals[] = { "sk-alpha", "sk-alpha-long", "bravo" };
	struct policy *p;
	struct secretset *s = make_set(vals, 3, &p);
	struct redactor *r;
	struct sink k;
	char want[256];

	if (!s)
		return;
	r = redactor_new(s, 1 | 4);
	obuf_init(&k.o, 4096);
	k.overflow = false;
	redactor_feed(r, "x sk-al", 7, collect, &k);
	ok(k.o.len == 2 && r->hold_len == 5, "prefix of a value held back (5 bytes)");
	redactor_feed(r, "pha y", 5, collect, &k);
	redactor_feed(r, "bravo", 5, collect, &k);
	redactor_flush(r, collect, &k);
	snprintf(want, sizeof(want), "x %s y%s", secretset_placeholder(s, 0),
		 secretset_placeholder(s, 2));
	is_str(k.o.p, want, "value across a chunk boundary and at the end");
	obuf_dispose(&k.o);

	obuf_init(&k.o, 4096);
	redactor_feed(r, "sk-alpha-lo", 11, collect, &k);
	redactor_flush(r, collect, &k);
	snprintf(want, sizeof(want), "%s-lo", secretset_placeholder(s, 0));
	is_str(k.o.p, want, "reused after flush; mask excludes the longer value");
	obuf_dispose(&k.o);
	redactor_free(r);

	r = redactor_new(s, 0);
	obuf_init(&k.o, 4096);
	redactor_feed(r, "sk-alpha", 8, collect, &k);
	ok(k.o.len == 8 && r->hold_len == 0, "empty mask: passthrough, nothing held");
	redactor_flush(r, collect, &k);
	obuf_dispose(&k.o);
	redactor_free(r);
	redactor_free(NULL);
	secretset_free(s);
	policy_unref(p);
}

static void sink_count(void *ctx, const char *p, size_t n)
{
	(void)p;
	*(size_t *)ctx += n;
}

static void throughput(const char *const *vals, size_t nv, const char *what)
{
	struct policy *p;
	struct secretset *s = make_set(vals, nv, &p);
	struct redactor *r = s ? redactor_new(s, ~(uint64_t)0) : NULL;
	size_t total = 64u << 20, chunk = 16384, out = 0;
	char *buf = malloc(chunk);
	unsigned seed = 7;
	struct timespec a, b;
	double secs;

	for (size_t i = 0; i < chunk; i++)
		buf[i] = (char)(32 + rand_r(&seed) % 95); /* printable: hits first bytes */
	memcpy(buf + 1000, vals[0], strlen(vals[0]));
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (size_t done = 0; r && done < total; done += chunk)
		redactor_feed(r, buf, chunk, sink_count, &out);
	if (r)
		redactor_flush(r, sink_count, &out);
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("# throughput (%s): 64 MiB in %.3f s = %.0f MB/s\n", what, secs,
	       64.0 * 1048576 / 1e6 / secs);
	/* loose bound: sanitizer builds are several times slower than -O2 */
	ok(r && out > 0 && secs < 10, "%s: 64 MiB streamed (%.3f s)", what, secs);
	free(buf);
	redactor_free(r);
	secretset_free(s);
	policy_unref(p);
}

/* base64 of buf (n bytes), standard alphabet with padding, into out */
static void b64(const unsigned char *buf, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)buf[i] << 16 | (unsigned)buf[i + 1] << 8 | buf[i + 2];
		out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63];
		out[o++] = t[v >> 6 & 63], out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)buf[i] << 16;
		out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63], out[o++] = '=', out[o++] = '=';
	} else if (n - i == 2) {
		unsigned v = (unsigned)buf[i] << 16 | (unsigned)buf[i + 1] << 8;
		out[o++] = t[v >> 18 & 63], out[o++] = t[v >> 12 & 63], out[o++] = t[v >> 6 & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* An echoed "Authorization: Basic b64(user:VALUE)" must not carry the value:
 * its base64 core is replaced, at every alignment (user names of any length),
 * by streaming and one-shot redaction alike. */
static void test_base64_forms(void)
{
	static const char *const vals[] = { "sk-REAL-0123456789abcdef" };
	struct policy *p;
	struct secretset *s = make_set(vals, 1, &p);
	struct redactor *r = redactor_new(s, 1);

	for (size_t ulen = 1; ulen <= 6; ulen++) {
		char cred[128], enc[256], text[300];
		struct obuf want;
		bool found;

		snprintf(cred, sizeof(cred), "%.*s:%s", (int)ulen, "useruser", vals[0]);
		b64((const unsigned char *)cred, strlen(cred), enc);
		snprintf(text, sizeof(text), "{\"Authorization\": \"Basic %s\"}", enc);
		obuf_init(&want, 4096);
		redact_string(s, 1, text, strlen(text), &want);
		{
			/* decode what the sandbox would get: the value must not be there */
			const char *tok = strstr(want.p, "Basic ") + 6;
			size_t tl = strcspn(tok, "\"");
			unsigned char dec[256];
			int dl = EVP_DecodeBlock(dec, (const unsigned char *)tok, (int)tl);
			found = dl < 0 || memmem(dec, (size_t)dl, vals[0], strlen(vals[0])) != NULL ||
				memmem(dec, (size_t)dl, "REAL-0123456789", 15) != NULL;
		}
		ok(!found, "user of %zu bytes: the echoed credentials decode without the value", ulen);
		ok(stream_eq(r, text, strlen(text), 0, 3, &want),
		   "user of %zu bytes: streaming agrees", ulen);
		obuf_dispose(&want);
	}
	redactor_free(r);
	secretset_free(s);
	policy_unref(p);
}

int main(void)
{
	static const char *const v1[] = { "aab" };
	static const char *const v2[] = { "ab", "abab" };
	static const char *const v3[] = { "abc", "bcd", "c" };
	static const char *const v4[] = { "a", "aa", "aaa" };
	static const char *const v5[] = { "ba", "abab", "bab" };
	static const char *const v6[] = { "ab", "ab", "b" };
	static const char *const v7[] = { "aaaa", "aab", "abc", "b", "ca" };
	static const char *const v8[] = { "sk-alpha", "sk-alpha-long", "bravo", "long-b" };
	static const char *const tp1[] = { "sk-proj-3a9f0c1d2e4b5a6978" };
	static const char *const tp2[] = { "sk-proj-3a9f0c1d2e4b5a6978", "ghp_R2d2C3poXwing",
					   "xoxb-1234-5678", "AKIAIOSFODNN7EXAMPLE",
					   "db-password-42" };

	test_basics();
	test_base64_forms();
	property(v1, 1, "ab", 9, 9, "aab in a/b strings (aaab)");
	property(v2, 2, "abc", 7, 6, "prefix values ab/abab");
	property(v3, 3, "abcd", 6, 5, "overlapping abc/bcd/c");
	property(v4, 3, "ab", 9, 9, "a/aa/aaa");
	property(v5, 3, "abc", 7, 6, "contained ba/abab/bab");
	property(v6, 3, "abc", 6, 6, "duplicate values");
	property(v7, 5, "abc", 7, 6, "five values, several first bytes");
	random_property(v8, 4, "realistic values");
	random_property(v7, 5, "short values");
	throughput(tp1, 1, "one secret (memchr)");
	throughput(tp2, 5, "five secrets (first-byte table)");
	return done_testing();
}
