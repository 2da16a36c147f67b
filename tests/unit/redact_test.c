/* redact_test.c -- unit tests for redact.c: the streaming redactor must give
 * exactly redact_string()'s output for every way of cutting the input, and
 * hold back at most (longest match - 1) bytes; each encoded form (JSON,
 * percent, hex, base64url) as real encoders write it is redacted; the match
 * plan is shared per (set, mask), also across threads, and an idle redactor
 * holds no buffer; plus a throughput measure */
#include <pthread.h>
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

/* The first n bytes of v, each byte at random raw, %XX, \u00XX (ASCII) or
 * its JSON short escape, hex digits in either case; returns the length. */
static size_t mixed_enc(const char *v, size_t n, unsigned *seed, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)v[i];
		int how = rand_r(seed) % 4, up = rand_r(seed) % 2;

		if (how == 1)
			o += (size_t)sprintf(out + o, up ? "%%%02X" : "%%%02x", b);
		else if (how == 2 && b < 0x80)
			o += (size_t)sprintf(out + o, up ? "\\u%04X" : "\\u%04x", b);
		else if (how == 3 && strchr("\"\\/", b) && b)
			out[o++] = '\\', out[o++] = (char)b;
		else
			out[o++] = (char)b;
	}
	return o;
}

/* Random texts built from values, their fragments, mixed encodings of them
 * and noise, random chunks. */
static void random_property(const char *const *vals, size_t nv, const char *what)
{
	struct policy *p;
	struct secretset *s = make_set(vals, nv, &p);
	struct redactor *r = s ? redactor_new(s, ~(uint64_t)0) : NULL;
	size_t bad = 0, runs = 0;
	char t[600 + 6 * 64];
	unsigned seed = 12345;

	held_ok = true;
	for (int iter = 0; r && iter < 3000; iter++) {
		size_t n = 0;
		struct obuf want;

		while (n < 500) {
			const char *v = vals[rand_r(&seed) % nv];
			size_t vl = strlen(v), take = (size_t)rand_r(&seed) % (vl + 1);
			int kind = rand_r(&seed) % 4;
			if (kind == 0)
				t[n++] = "xyz-ab%\\"[rand_r(&seed) % 8];
			else if (kind == 3)
				n += mixed_enc(v, take ? take : vl, &seed, t + n);
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

/* Redacts "x VALUE y" fed in two pieces cut inside the value; true if the
 * output is "x PLACEHOLDER y". */
static bool redacts_split(struct redactor *r, const struct secretset *s, size_t i)
{
	size_t len;
	const char *v = secretset_value(s, i, &len);
	char in[256], want[256];
	struct sink k;
	bool eq;

	snprintf(in, sizeof(in), "x %s y", v);
	snprintf(want, sizeof(want), "x %s y", secretset_placeholder(s, i));
	obuf_init(&k.o, 4096);
	k.overflow = false;
	redactor_feed(r, in, 4, collect, &k);
	redactor_feed(r, in + 4, strlen(in) - 4, collect, &k);
	redactor_flush(r, collect, &k);
	eq = !k.overflow && k.o.len == strlen(want) && memcmp(k.o.p, want, k.o.len) == 0;
	obuf_dispose(&k.o);
	return eq;
}

static void test_plan_sharing(void)
{
	static const char *const vals[] = { "sk-alpha", "sk-bravo-long", "charlie" };
	struct policy *p;
	struct secretset *s = make_set(vals, 3, &p);
	struct redactor *a, *b, *c, *many[SECRETSET_CACHE_MAX + 8];
	struct sink k;
	bool all = true;

	if (!s)
		return;
	a = redactor_new(s, 1 | 2);
	b = redactor_new(s, 1 | 2);
	c = redactor_new(s, 4);
	ok(a->plan == b->plan && a->plan != c->plan,
	   "one plan per (set, mask): shared by equal masks, apart for others");
	ok(atomic_load(&a->plan->refs) == 3, "plan references: the cache's and two redactors'");
	ok(sizeof(struct redactor) <= 4 * sizeof(void *) && !a->hold,
	   "a new redactor is a few words and holds no buffer (%zu bytes)",
	   sizeof(struct redactor));
	obuf_init(&k.o, 4096);
	k.overflow = false;
	redactor_feed(a, "x sk-br", 7, collect, &k);
	ok(a->hold && a->hold_len == 5 && !b->hold, "the buffer appears at the first hold-back");
	redactor_flush(a, collect, &k);
	ok(!a->hold && !a->hold_len, "flush wipes and frees it (an idle connection holds none)");
	obuf_dispose(&k.o);
	ok(redacts_split(a, s, 1) && redacts_split(b, s, 0) && redacts_split(c, s, 2) &&
		   !a->hold && !b->hold,
	   "redactors sharing a plan redact independently");
	redactor_free(b);
	ok(atomic_load(&a->plan->refs) == 2, "freeing a redactor drops its reference only");
	/* more masks than the cache holds: the rest get plans of their own */
	for (size_t m = 0; m < SECRETSET_CACHE_MAX + 8; m++) {
		uint64_t mask = (uint64_t)(m % 7 + 1) | (uint64_t)(m + 1) << 3; /* bits 3.. name no secret */
		many[m] = redactor_new(s, mask);
		all = all && redacts_split(many[m], s, (m % 7 + 1) & 1 ? 0 : (m % 7 + 1) & 2 ? 1 : 2);
	}
	ok(all && atomic_load(&many[SECRETSET_CACHE_MAX + 7]->plan->refs) == 1,
	   "cache full: a plan of the redactor's own, freed with it");
	for (size_t m = 0; m < SECRETSET_CACHE_MAX + 8; m++)
		redactor_free(many[m]);
	redactor_free(a);
	redactor_free(c);
	a = redactor_new(NULL, 1);
	obuf_init(&k.o, 4096);
	redactor_feed(a, "sk-alpha", 8, collect, &k);
	redactor_flush(a, collect, &k);
	ok(k.o.len == 8 && !a->hold, "no set: passthrough with a plan of its own");
	obuf_dispose(&k.o);
	redactor_free(a);
	secretset_free(s); /* frees the cached plans (ASan: no leak) */
	policy_unref(p);
}

struct thr {
	const struct secretset *s;
	const struct redact_plan *plan; /* the plan this thread's redactors got */
	bool ok;
};

static void *thr_run(void *arg)
{
	struct thr *t = arg;

	t->ok = true;
	for (int i = 0; i < 200; i++) {
		struct redactor *r = redactor_new(t->s, 7);
		t->ok = t->ok && redacts_split(r, t->s, (size_t)i % 3);
		if (i == 0)
			t->plan = r->plan;
		t->ok = t->ok && r->plan == t->plan;
		redactor_free(r);
	}
	return NULL;
}

static void test_plan_threads(void)
{
	static const char *const vals[] = { "sk-alpha", "sk-bravo-long", "charlie" };
	struct policy *p;
	struct secretset *s = make_set(vals, 3, &p);
	struct thr t[4];
	pthread_t th[4];
	bool all = true;

	if (!s)
		return;
	for (int i = 0; i < 4; i++) {
		t[i].s = s;
		pthread_create(&th[i], NULL, thr_run, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		all = all && t[i].ok && t[i].plan == t[0].plan;
	}
	ok(all, "4 threads building redactors on one set at once: one plan, all redact");
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

/* ---- encoded forms: independent encoders, as servers write them ---- */

/* One UTF-8 character at v: its length, *cp its code point (ASCII or valid
 * UTF-8 only: the test values are). */
static size_t utf8_cp(const unsigned char *v, unsigned *cp)
{
	if (v[0] < 0x80)
		return *cp = v[0], 1;
	if (v[0] < 0xe0)
		return *cp = (v[0] & 0x1fu) << 6 | (v[1] & 0x3f), 2;
	if (v[0] < 0xf0)
		return *cp = (v[0] & 0x0fu) << 12 | (v[1] & 0x3fu) << 6 | (v[2] & 0x3f), 3;
	*cp = (v[0] & 0x07u) << 18 | (v[1] & 0x3fu) << 12 | (v[2] & 0x3fu) << 6 | (v[3] & 0x3f);
	return 4;
}

enum json_style {
	JS_STRINGIFY, /* JSON.stringify: only " \ and controls */
	JS_PHP,       /* json_encode: also / and non-ASCII (\u lower-case) */
	JS_GO,        /* encoding/json: also < > & as \u003c...; non-ASCII raw */
	JS_PYTHON,    /* json.dumps: non-ASCII as \u (surrogate pairs) */
	JS_ALL_UPPER, /* every character as \uXXXX, upper-case hex */
};

static char *put_u(char *o, unsigned u, bool upper)
{
	return o + sprintf(o, upper ? "\\u%04X" : "\\u%04x", u);
}

/* v JSON-escaped in the given style, NUL-terminated, into out. */
static void json_enc(const char *v, enum json_style st, char *out)
{
	const unsigned char *u = (const unsigned char *)v;
	char *o = out;

	while (*u) {
		unsigned cp;
		size_t l = utf8_cp(u, &cp);
		bool as_u = st == JS_ALL_UPPER || cp < 0x20 ||
			    (cp >= 0x80 && (st == JS_PHP || st == JS_PYTHON)) ||
			    (st == JS_GO && (cp == '<' || cp == '>' || cp == '&'));

		if (!as_u && (cp == '"' || cp == '\\' || (cp == '/' && st == JS_PHP))) {
			*o++ = '\\', *o++ = (char)cp;
		} else if (as_u && cp >= 0x10000) {
			o = put_u(o, 0xd800 + ((cp - 0x10000) >> 10), st == JS_ALL_UPPER);
			o = put_u(o, 0xdc00 + ((cp - 0x10000) & 0x3ff), st == JS_ALL_UPPER);
		} else if (as_u) {
			o = put_u(o, cp, st == JS_ALL_UPPER);
		} else {
			memcpy(o, u, l), o += l;
		}
		u += l;
	}
	*o = '\0';
}

struct pct_style {
	const char *name;
	const char *safe; /* left raw besides letters and digits; NULL: encode all */
	bool plus;        /* space as '+' */
	bool lower;       /* lower-case hex */
};

static const struct pct_style pct_styles[] = {
	{ "encodeURIComponent", "-_.!~*'()", false, false },
	{ "python quote", "_.-~/", false, false },
	{ "python quote_plus", "_.-~", true, false },
	{ "go QueryEscape", "-_.~", true, false },
	{ "go PathEscape", "-_.~$&+=:@", false, false },
	{ "php urlencode", "-_.", true, false },
	{ "php rawurlencode", "-_.~", false, false },
	{ "lower-case hex", "-_.~", false, true },
	{ "every byte", NULL, false, false },
};

static void pct_enc(const char *v, const struct pct_style *st, char *out)
{
	char *o = out;

	for (const unsigned char *u = (const unsigned char *)v; *u; u++) {
		bool alnum = (*u >= '0' && *u <= '9') || ((*u | 32) >= 'a' && (*u | 32) <= 'z');
		if (st->safe && (alnum || strchr(st->safe, *u)))
			*o++ = (char)*u;
		else if (st->plus && *u == ' ')
			*o++ = '+';
		else
			o += sprintf(o, st->lower ? "%%%02x" : "%%%02X", *u);
	}
	*o = '\0';
}

static void hex_enc(const char *v, size_t n, bool upper, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, upper ? "%02X" : "%02x", (unsigned char)v[i]);
	out[2 * n] = '\0';
}

/* base64url of buf, padded or not */
static void b64url(const unsigned char *buf, size_t n, bool pad, char *out)
{
	b64(buf, n, out);
	for (char *c = out; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
	if (!pad)
		out[strcspn(out, "=")] = '\0';
}

/* Streams t split at every single byte boundary, byte by byte and whole:
 * every way must equal want (redact_string's output). */
static bool every_split(struct redactor *r, const char *t, const struct obuf *want)
{
	size_t n = strlen(t);
	bool eq = stream_eq(r, t, n, 0, 1, want) && stream_eq(r, t, n, 0, n + 1, want);

	for (size_t c = 1; eq && c < n; c++) {
		struct sink k;

		obuf_init(&k.o, 1 << 20);
		k.overflow = false;
		redactor_feed(r, t, c, collect, &k);
		redactor_feed(r, t + c, n - c, collect, &k);
		redactor_flush(r, collect, &k);
		eq = !k.overflow && k.o.len == want->len &&
		     (!want->len || memcmp(k.o.p, want->p, want->len) == 0);
		if (!eq)
			printf("#   split at %zu differs\n", c);
		obuf_dispose(&k.o);
	}
	return eq;
}

/* text = pre + enc + post must redact to pre + rep + post, streaming (every
 * split) as one-shot. */
static void expect(const struct secretset *s, struct redactor *r, const char *pre, const char *enc,
		   const char *post, const char *rep, const char *what)
{
	char text[1024], want[1024];
	struct obuf got;

	snprintf(text, sizeof(text), "%s%s%s", pre, enc, post);
	snprintf(want, sizeof(want), "%s%s%s", pre, rep, post);
	obuf_init(&got, 1 << 20);
	redact_string(s, 3, text, strlen(text), &got);
	ok(got.len == strlen(want) && memcmp(got.p, want, got.len) == 0, "%s: redacted", what);
	ok(every_split(r, text, &got), "%s: streaming == one-shot at every split", what);
	obuf_dispose(&got);
}

static const char *const enc_vals[] = {
	"sk/Te+st=ab cd\"q\\z<&>\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80-0123", /* / + = sp " \ < & é € 😀 */
	"p@ss w0rd/with+stuff&<x>",
};

static void test_json_pct_forms(void)
{
	static const char *const names[] = { "JSON.stringify", "php json_encode", "go json",
					     "python json.dumps", "all \\u upper-case" };
	struct policy *p;
	struct secretset *s = make_set(enc_vals, 2, &p);
	struct redactor *r = s ? redactor_new(s, 3) : NULL;
	char enc[1024];

	for (size_t k = 0; r && k < 2; k++) {
		const char *ph = secretset_placeholder(s, k);

		for (int st = JS_STRINGIFY; st <= JS_ALL_UPPER; st++) {
			json_enc(enc_vals[k], (enum json_style)st, enc);
			expect(s, r, "{\"echo\":\"", enc, "\"}", ph, names[st]);
		}
		for (size_t j = 0; j < sizeof(pct_styles) / sizeof(pct_styles[0]); j++) {
			pct_enc(enc_vals[k], &pct_styles[j], enc);
			expect(s, r, "GET /?q=", enc, "&x=1", ph, pct_styles[j].name);
		}
		ok(k > 0 || strchr(enc_vals[0], '/'), "value %zu tested", k);
	}
	/* a placeholder is its own JSON and URL encoding: nothing left to escape */
	json_enc(secretset_placeholder(s, 0), JS_PHP, enc);
	is_str(enc, secretset_placeholder(s, 0), "php json_encode leaves the placeholder as is");
	pct_enc(secretset_placeholder(s, 0), &pct_styles[5], enc);
	is_str(enc, secretset_placeholder(s, 0), "php urlencode leaves the placeholder as is");
	redactor_free(r);
	secretset_free(s);
	policy_unref(p);
}

static void test_hex_b64url_forms(void)
{
	struct policy *p;
	struct secretset *s = make_set(enc_vals, 2, &p);
	struct redactor *r = s ? redactor_new(s, 3) : NULL;
	char enc[1024], rep[256];

	for (size_t k = 0; r && k < 2; k++) {
		const char *v = enc_vals[k], *ph = secretset_placeholder(s, k);

		for (int up = 0; up < 2; up++) {
			hex_enc(v, strlen(v), up, enc);
			hex_enc(ph, PLACEHOLDER_LEN, up, rep);
			expect(s, r, "hex: ", enc, ".", rep, up ? "hex upper-case" : "hex lower-case");
		}
		/* base64url of "user:VALUE" for 1..6-byte users, padded or not */
		for (size_t ulen = 1; ulen <= 6; ulen++) {
			for (int pad = 0; pad < 2; pad++) {
				char cred[256], text[1100];
				unsigned char dec[1100];
				struct obuf got;
				int dl;

				snprintf(cred, sizeof(cred), "%.*s:%s", (int)ulen, "useruser", v);
				b64url((const unsigned char *)cred, strlen(cred), pad, enc);
				snprintf(text, sizeof(text), "token=%s;", enc);
				obuf_init(&got, 1 << 20);
				redact_string(s, 3, text, strlen(text), &got);
				/* decode the token back (url alphabet, padding restored) */
				snprintf(text, sizeof(text), "%.*s", (int)got.len - 7, got.p + 6);
				for (char *c = text; *c; c++)
					*c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
				while (strlen(text) % 4)
					strcat(text, "=");
				dl = EVP_DecodeBlock(dec, (const unsigned char *)text, (int)strlen(text));
				ok(dl > 0 && !memmem(dec, (size_t)dl, v, strlen(v)) &&
					   !memmem(dec, (size_t)dl, v + 3, 12),
				   "base64url (user %zu, %s): the value is gone", ulen,
				   pad ? "padded" : "unpadded");
				snprintf(text, sizeof(text), "token=%s;", enc);
				ok(every_split(r, text, &got),
				   "base64url (user %zu, %s): streaming == one-shot at every split",
				   ulen, pad ? "padded" : "unpadded");
				obuf_dispose(&got);
			}
		}
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
	static const char *const v9[] = { "/" };
	static const char *const v10[] = { "a b" };
	static const char *const tp1[] = { "sk-proj-3a9f0c1d2e4b5a6978" };
	static const char *const tp2[] = { "sk-proj-3a9f0c1d2e4b5a6978", "ghp_R2d2C3poXwing",
					   "xoxb-1234-5678", "AKIAIOSFODNN7EXAMPLE",
					   "db-password-42" };

	test_basics();
	test_plan_sharing();
	test_plan_threads();
	test_base64_forms();
	test_json_pct_forms();
	test_hex_b64url_forms();
	property(v1, 1, "ab", 9, 9, "aab in a/b strings (aaab)");
	property(v2, 2, "abc", 7, 6, "prefix values ab/abab");
	property(v3, 3, "abcd", 6, 5, "overlapping abc/bcd/c");
	property(v4, 3, "ab", 9, 9, "a/aa/aaa");
	property(v5, 3, "abc", 7, 6, "contained ba/abab/bab");
	property(v6, 3, "abc", 6, 6, "duplicate values");
	property(v7, 5, "abc", 7, 6, "five values, several first bytes");
	random_property(v8, 4, "realistic values");
	random_property(v7, 5, "short values");
	random_property(enc_vals, 2, "values with / + = space quotes < & UTF-8, mixed encodings");
	property(v9, 1, "/\\%2Fu0", 6, 5, "escapes of / (\\/, \\u002f, %2F)");
	property(v10, 1, "ab +%2", 6, 5, "a b (a+b, a%20b)");
	throughput(tp1, 1, "one secret");
	throughput(tp2, 5, "five secrets");
	return done_testing();
}
