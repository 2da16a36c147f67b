/* contentdec_test.c -- content codings: Content-Encoding and Accept-Encoding
 * parsing, and every coding (alone and stacked) decoded to the original
 * however the input is split and however small the output buffer; corrupt,
 * truncated and trailing data fail */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "contentdec.h"
#include "tap.h"

/* brotli -c of BR_TEXT (the tests do not link an encoder) */
static const unsigned char br_fixture[] = {
	0xa1, 0x28, 0x0a, 0x00, 0x60, 0x1c, 0xc6, 0x8d, 0xdd, 0xe2, 0x14, 0x93, 0xf6, 0x5e,
	0x2b, 0x08, 0xed, 0xf5, 0x31, 0xb7, 0x51, 0xaa, 0xc7, 0x65, 0x07, 0x3e, 0x7f, 0x6b,
	0x0a, 0x4b, 0x06, 0x61, 0xea, 0x01, 0x57, 0x2b, 0xaa, 0x59, 0x51, 0xb6, 0x6c, 0x8b,
	0x5e, 0x1e, 0x63, 0xe7, 0x88, 0x45, 0x99, 0x4a, 0xc5, 0x39, 0x36, 0x79, 0x30, 0x38,
	0x41, 0x75, 0x99, 0x1a, 0xde, 0x11, 0xa5, 0xe5, 0xab, 0xe0, 0x25, 0x3e, 0xc4, 0x94,
	0x4b, 0x6d, 0x7d, 0xd0, 0x81, 0x69, 0x27, 0x5f, 0x95, 0x88, 0x6d, 0xf7, 0x3f, 0x06,
	0x20, 0x1c
};
#define BR_TEXT_REP "hello brotli "

struct buf {
	char *p;
	size_t n, cap;
};

static void add(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void br_text(struct buf *b)
{
	add(b, "{\"authorization\": \"Bearer sk-live-SECRET-0123456789\", \"echo\": \"", 63);
	for (int i = 0; i < 20; i++)
		add(b, BR_TEXT_REP, strlen(BR_TEXT_REP));
	add(b, "\"}\n", 3);
}

/* zlib-family encoding: bits 15 zlib, -15 raw deflate, 31 gzip */
static struct buf zenc(const char *p, size_t n, int bits)
{
	struct buf o = { 0 };
	z_stream z = { 0 };
	char tmp[4096];
	int r;

	if (deflateInit2(&z, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	z.next_in = (Bytef *)p;
	z.avail_in = (uInt)n;
	do {
		z.next_out = (Bytef *)tmp;
		z.avail_out = sizeof(tmp);
		r = deflate(&z, Z_FINISH);
		add(&o, tmp, sizeof(tmp) - z.avail_out);
	} while (r == Z_OK);
	deflateEnd(&z);
	return o;
}

static struct buf zstdenc(const char *p, size_t n)
{
	struct buf o = { 0 };
	size_t cap = ZSTD_compressBound(n);

	o.p = malloc(cap);
	o.cap = cap;
	o.n = ZSTD_compress(o.p, cap, p, n, 3);
	if (ZSTD_isError(o.n))
		abort();
	return o;
}

static struct buf encode(enum contentdec_coding c, const struct buf *in)
{
	switch (c) {
	case CODING_GZIP: return zenc(in->p, in->n, 31);
	case CODING_DEFLATE: return zenc(in->p, in->n, 15);
	case CODING_ZSTD: return zstdenc(in->p, in->n);
	default: abort();
	}
}

/* Decodes in, fed in pieces of step bytes (0: whole) plus a split at split
 * (0: none), into out with an output buffer of outcap; returns the last status. */
static enum contentdec_status decode(const enum contentdec_coding *cs, int n, const char *in,
				     size_t inlen, size_t split, size_t step, size_t outcap,
				     struct buf *out)
{
	struct contentdec *d = contentdec_new(cs, n);
	char *ob = malloc(outcap);
	size_t off = 0;
	enum contentdec_status r = CONTENTDEC_ERROR;

	out->n = 0;
	while (d) {
		size_t lim = inlen, u, m;
		if (split && off < split)
			lim = split;
		if (step && lim - off > step)
			lim = off + step;
		r = contentdec_feed(d, in + off, lim - off, &u, ob, outcap, &m, lim == inlen);
		add(out, ob, m);
		off += u;
		if (r == CONTENTDEC_ERROR || r == CONTENTDEC_DONE)
			break;
		if (r == CONTENTDEC_NEED_MORE && off != lim)
			break; /* contract broken: reported as an error below */
	}
	if (r == CONTENTDEC_NEED_MORE)
		r = CONTENTDEC_ERROR;
	contentdec_free(d);
	free(ob);
	return r;
}

static bool same(const struct buf *a, const struct buf *b)
{
	return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

static void test_parse(void)
{
	enum contentdec_coding c[CONTENTDEC_MAX_STACK];

	ok(contentdec_parse("gzip", 4, c) == 1 && c[0] == CODING_GZIP, "gzip");
	ok(contentdec_parse(" X-Gzip ", 8, c) == 1 && c[0] == CODING_GZIP, "x-gzip, any case, OWS");
	ok(contentdec_parse("gzip, br", 8, c) == 2 && c[0] == CODING_GZIP && c[1] == CODING_BR,
	   "stacked: applied order");
	ok(contentdec_parse("deflate,,identity,zstd", 22, c) == 2 && c[0] == CODING_DEFLATE &&
	   c[1] == CODING_ZSTD, "empty elements and identity skipped");
	ok(contentdec_parse("identity", 8, c) == 0, "identity alone: 0");
	ok(contentdec_parse("", 0, c) == 0, "empty: 0");
	ok(contentdec_parse("gzip, br, zstd", 14, c) == -1, "three codings refused");
	ok(contentdec_parse("compress", 8, c) == -1, "unknown coding refused");
	ok(contentdec_parse("gzip;q=1", 8, c) == -1, "parameters refused");
}

static void accept_is(const char *in, bool present, const char *want)
{
	char out[64];

	contentdec_accept(in, strlen(in), present, out, sizeof(out));
	is_str(out, want, "Accept-Encoding '%s'%s -> '%s'", in, present ? "" : " (absent)", want);
}

static void test_accept(void)
{
	accept_is("", false, "identity");
	accept_is("", true, "identity");
	accept_is("gzip, deflate, br, zstd", true, "gzip, deflate, br, zstd");
	accept_is("zstd,br", true, "br, zstd");
	accept_is("*", true, "gzip, deflate, br, zstd");
	accept_is("*;q=0", true, "identity");
	accept_is("gzip;q=0, *", true, "deflate, br, zstd");
	accept_is("identity;q=0", true, "identity");
	accept_is("br;q=0.5, identity;q=0", true, "br");
	accept_is("gzip;q=0.000", true, "identity");
	accept_is("gzip ; Q=0.001", true, "gzip");
	accept_is("gzip;q=1.5", true, "identity");
	accept_is("gzip;q=", true, "identity");
	accept_is("compress, x-gzip, sdch", true, "gzip");
	accept_is("gzip, gzip;q=0", true, "identity");
	accept_is("gzip;level=1;q=1.000", true, "gzip");
}

/* Every coding alone: every split point, tiny and large output buffers. */
static void test_single(void)
{
	struct buf text = { 0 }, out = { 0 };
	static const enum contentdec_coding all[] = { CODING_GZIP, CODING_DEFLATE, CODING_ZSTD };
	static const char *const names[] = { "gzip", "deflate", "zstd" };

	br_text(&text);
	for (size_t k = 0; k < 3; k++) {
		struct buf enc = encode(all[k], &text);
		bool good = true;
		for (size_t s = 1; s < enc.n && good; s++)
			good = decode(&all[k], 1, enc.p, enc.n, s, 0, 4096, &out) == CONTENTDEC_DONE &&
			       same(&out, &text);
		ok(good, "%s: decoded at every split point", names[k]);
		ok(decode(&all[k], 1, enc.p, enc.n, 0, 1, 1, &out) == CONTENTDEC_DONE &&
		   same(&out, &text), "%s: byte by byte into a 1-byte buffer", names[k]);
		free(enc.p);
	}
	{
		enum contentdec_coding br = CODING_BR;
		bool good = true;
		for (size_t s = 1; s < sizeof(br_fixture) && good; s++)
			good = decode(&br, 1, (const char *)br_fixture, sizeof(br_fixture), s, 0, 4096,
				      &out) == CONTENTDEC_DONE && same(&out, &text);
		ok(good, "br: decoded at every split point");
		ok(decode(&br, 1, (const char *)br_fixture, sizeof(br_fixture), 0, 1, 3, &out) ==
			   CONTENTDEC_DONE && same(&out, &text), "br: byte by byte into a 3-byte buffer");
	}
	{
		/* raw deflate, as some servers send for "deflate" */
		struct buf raw = zenc(text.p, text.n, -15);
		enum contentdec_coding d = CODING_DEFLATE;
		bool good = true;
		for (size_t s = 1; s < raw.n && good; s++)
			good = decode(&d, 1, raw.p, raw.n, s, 0, 4096, &out) == CONTENTDEC_DONE &&
			       same(&out, &text);
		ok(good, "raw deflate: decoded at every split point");
		free(raw.p);
	}
	free(text.p);
	free(out.p);
}

static void test_stacked(void)
{
	struct buf text = { 0 }, out = { 0 };
	enum contentdec_coding gz_zs[2] = { CODING_GZIP, CODING_ZSTD };
	enum contentdec_coding br_gz[2] = { CODING_BR, CODING_GZIP };
	enum contentdec_coding df_gz[2] = { CODING_DEFLATE, CODING_GZIP };
	struct buf brb = { 0 }, a, b, c2;
	bool good = true;

	br_text(&text);
	a = encode(CODING_GZIP, &text);
	b = encode(CODING_ZSTD, &a); /* "Content-Encoding: gzip, zstd" */
	for (size_t s = 1; s < b.n && good; s++)
		good = decode(gz_zs, 2, b.p, b.n, s, 0, 4096, &out) == CONTENTDEC_DONE &&
		       same(&out, &text);
	ok(good, "gzip, zstd: decoded at every split point");
	ok(decode(gz_zs, 2, b.p, b.n, 0, 1, 1, &out) == CONTENTDEC_DONE && same(&out, &text),
	   "gzip, zstd: byte by byte into a 1-byte buffer");
	ok(decode(gz_zs + 1, 1, b.p, b.n, 0, 0, 4096, &out) == CONTENTDEC_DONE && same(&out, &a),
	   "one layer only: the inner gzip stream");
	add(&brb, br_fixture, sizeof(br_fixture));
	c2 = encode(CODING_GZIP, &brb); /* "br, gzip" */
	good = true;
	for (size_t s = 1; s < c2.n && good; s++)
		good = decode(br_gz, 2, c2.p, c2.n, s, 0, 4096, &out) == CONTENTDEC_DONE &&
		       same(&out, &text);
	ok(good, "br, gzip: decoded at every split point");
	{
		struct buf df = encode(CODING_DEFLATE, &text), dg = encode(CODING_GZIP, &df);
		ok(decode(df_gz, 2, dg.p, dg.n, 0, 7, 5, &out) == CONTENTDEC_DONE && same(&out, &text),
		   "deflate, gzip: 7-byte pieces into a 5-byte buffer");
		free(df.p);
		free(dg.p);
	}
	free(a.p);
	free(b.p);
	free(c2.p);
	free(brb.p);
	free(text.p);
	free(out.p);
}

static void test_bad(void)
{
	struct buf text = { 0 }, out = { 0 }, g, z, s, m = { 0 };
	enum contentdec_coding gz = CODING_GZIP, df = CODING_DEFLATE, br = CODING_BR,
			       zs = CODING_ZSTD;
	struct contentdec *d;
	size_t u, p;
	char ob[64];

	br_text(&text);
	g = encode(CODING_GZIP, &text);
	z = encode(CODING_DEFLATE, &text);
	s = encode(CODING_ZSTD, &text);
	ok(decode(&gz, 1, g.p, g.n - 3, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "gzip truncated");
	ok(decode(&df, 1, z.p, z.n - 1, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "deflate truncated");
	ok(decode(&br, 1, (const char *)br_fixture, sizeof(br_fixture) - 2, 0, 0, 4096, &out) ==
	   CONTENTDEC_ERROR, "br truncated");
	ok(decode(&zs, 1, s.p, s.n - 1, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "zstd truncated");
	ok(decode(&df, 1, "x", 1, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "deflate: one byte");
	d = contentdec_new(&df, 1); /* raw: an empty final block, then a byte */
	ok(contentdec_feed(d, "\x03\x00\x00", 3, &u, ob, sizeof(ob), &p, true) == CONTENTDEC_ERROR &&
	   u <= 3 && p == 0, "raw deflate ending in its first two bytes, then junk (used %zu)", u);
	contentdec_free(d);
	g.p[g.n - 6] ^= 0x55; /* the CRC */
	ok(decode(&gz, 1, g.p, g.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "gzip: bad CRC");
	g.p[g.n - 6] ^= 0x55;
	g.p[0] = 0;
	ok(decode(&gz, 1, g.p, g.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "gzip: bad magic");
	g.p[0] = 0x1f;
	s.p[0] = 0;
	ok(decode(&zs, 1, s.p, s.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "zstd: bad magic");
	ok(decode(&br, 1, "\xff\xff\xff\xff", 4, 0, 0, 4096, &out) == CONTENTDEC_ERROR,
	   "br: garbage");
	add(&m, z.p, z.n);
	add(&m, "xy", 2);
	ok(decode(&df, 1, m.p, m.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR,
	   "deflate: trailing garbage");
	m.n = 0;
	add(&m, br_fixture, sizeof(br_fixture));
	add(&m, "\0", 1);
	ok(decode(&br, 1, m.p, m.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "br: trailing byte");
	m.n = 0;
	add(&m, g.p, g.n);
	add(&m, "garbage", 7);
	ok(decode(&gz, 1, m.p, m.n, 0, 0, 4096, &out) == CONTENTDEC_ERROR, "gzip: trailing garbage");
	m.n = 0;
	add(&m, g.p, g.n);
	add(&m, g.p, g.n);
	ok(decode(&gz, 1, m.p, m.n, 0, 3, 10, &out) == CONTENTDEC_DONE && out.n == 2 * text.n,
	   "gzip: two members back to back");
	ok(decode(&gz, 1, "", 0, 0, 0, 10, &out) == CONTENTDEC_DONE && out.n == 0,
	   "an empty body is no stream: done, nothing out");
	d = contentdec_new(&gz, 1);
	ok(contentdec_feed(d, "\0\0\0", 3, &u, ob, sizeof(ob), &p, false) == CONTENTDEC_ERROR &&
	   *contentdec_error(d), "error has a message");
	ok(contentdec_feed(d, g.p, g.n, &u, ob, sizeof(ob), &p, true) == CONTENTDEC_ERROR,
	   "nothing more after an error");
	contentdec_free(d);
	ok(contentdec_new(&gz, 3) == NULL && contentdec_new(&gz, 0) == NULL, "1..2 codings");
	free(g.p);
	free(z.p);
	free(s.p);
	free(m.p);
	free(text.p);
	free(out.p);
}

/* A gzip bomb: 64 MiB of zeros from ~64 KiB, decoded through 16 KiB. */
static void test_bomb(void)
{
	size_t big = 64u << 20, total = 0, off = 0, u, p;
	char *zeros = calloc(1, big), ob[16384];
	struct buf g = zenc(zeros, big, 31);
	enum contentdec_coding gz = CODING_GZIP;
	struct contentdec *d = contentdec_new(&gz, 1);
	enum contentdec_status r;
	size_t calls = 0;

	free(zeros);
	do {
		r = contentdec_feed(d, g.p + off, g.n - off, &u, ob, sizeof(ob), &p, true);
		off += u;
		total += p;
		calls++;
	} while (r == CONTENTDEC_MORE);
	ok(r == CONTENTDEC_DONE && total == big && calls >= big / sizeof(ob),
	   "bomb: %zu bytes from %zu, at most 16 KiB per call", total, g.n);
	contentdec_free(d);
	free(g.p);
}

/* The process-wide budget: a decoder whose window does not fit fails with
 * an error that says so (never a crash, never output passed undecoded),
 * small ones still work, and every byte is given back on free. */
static void test_budget(void)
{
	size_t n = 4u << 20, u, p, total = 0, off = 0;
	char *text = malloc(n), ob[16384];
	struct buf z, g, out = { 0 };
	enum contentdec_coding zc = CODING_ZSTD, gz = CODING_GZIP;
	struct contentdec *d;
	enum contentdec_status r;
	unsigned x = 1;

	for (size_t i = 0; i < n; i++) { /* incompressible enough to need the window */
		x = x * 1103515245u + 12345u;
		text[i] = (char)(x >> 16);
	}
	z = zstdenc(text, n);
	g = zenc(text, 100000, 31);
	ok(contentdec_in_use() == 0, "nothing held before");
	contentdec_set_budget(1u << 20);
	d = contentdec_new(&zc, 1);
	do {
		r = d ? contentdec_feed(d, z.p + off, z.n - off, &u, ob, sizeof(ob), &p, true)
		      : CONTENTDEC_ERROR;
		off += d ? u : 0;
	} while (r == CONTENTDEC_MORE);
	ok(d && r == CONTENTDEC_ERROR && strstr(contentdec_error(d), "--max-decode-memory"),
	   "a 4 MiB zstd window over a 1 MiB budget: an error naming the budget (%s)",
	   d ? contentdec_error(d) : "no decoder");
	contentdec_free(d);
	ok(contentdec_in_use() == 0, "all given back after the failure (%zu)", contentdec_in_use());
	r = decode(&gz, 1, g.p, g.n, 0, 0, sizeof(ob), &out);
	ok(r == CONTENTDEC_DONE && out.n == 100000 && !memcmp(out.p, text, out.n),
	   "gzip (a 32 KiB window) fits the same budget");
	free(out.p);
	contentdec_set_budget((size_t)-1);
	off = total = 0;
	d = contentdec_new(&zc, 1);
	do {
		r = contentdec_feed(d, z.p + off, z.n - off, &u, ob, sizeof(ob), &p, true);
		off += u;
		total += p;
	} while (r == CONTENTDEC_MORE);
	ok(r == CONTENTDEC_DONE && total == n && contentdec_in_use() > (1u << 20),
	   "without the budget it decodes (%zu bytes held while it lives)", contentdec_in_use());
	contentdec_free(d);
	ok(contentdec_in_use() == 0, "and gives every byte back");
	free(text);
	free(z.p);
	free(g.p);
}

int main(void)
{
	test_parse();
	test_accept();
	test_single();
	test_stacked();
	test_bad();
	test_bomb();
	test_budget();
	return done_testing();
}
