/* contentdec.c -- content coding names (Content-Encoding, Accept-Encoding)
 * and a streaming decoder chain over zlib, libbrotli and libzstd: no I/O,
 * bounded output per call, wiping allocators under a process-wide budget */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem: the wiping allocator */
#include <zstd.h>

#include "alloc.h"
#include "contentdec.h"

#define MID_CAP (16 * 1024)   /* between two stacked decoders */
#define ZSTD_WINDOW_LOG 23    /* 8 MiB, the most RFC 8878 asks an HTTP decoder for */

/* One decoder of the chain. */
struct stage {
	enum contentdec_coding coding;
	z_stream z;
	bool z_init;            /* z is set up (deflate waits for two bytes to pick zlib or raw) */
	unsigned char hdr[2];   /* deflate: first bytes, held until the format is known */
	size_t hdr_len, hdr_off;
	BrotliDecoderState *br;
	ZSTD_DCtx *zs;
	bool ended;             /* the current stream/member ended (nothing pending) */
	bool zs_mid;            /* zstd: inside a frame */
	bool seen;              /* any input at all (an empty body is no stream) */
};

struct contentdec {
	struct stage st[CONTENTDEC_MAX_STACK]; /* st[0] is undone first */
	int n;
	char *mid;              /* st[0]'s output waiting for st[1] */
	size_t mid_len, mid_off;
	bool first_done;        /* st[0] returned DONE */
	bool over_budget;       /* an allocation was refused by the budget */
	const char *err;
};

/* ---- allocation: every block is wiped before it is freed, and counted
 * against the budget of all decoders of the process ---- */

#define HDR 16 /* keeps malloc's alignment */

static atomic_size_t budget = SIZE_MAX, in_use;

void contentdec_set_budget(size_t bytes)
{
	atomic_store(&budget, bytes);
}

size_t contentdec_in_use(void)
{
	return atomic_load(&in_use);
}

/* opaque: the struct contentdec the block is for. NULL (the library then
 * fails cleanly) over the budget or out of memory. */
static void *wipe_alloc(void *opaque, size_t n)
{
	struct contentdec *d = opaque;
	size_t total = n + HDR;
	unsigned char *p;

	if (n > SIZE_MAX / 2) {
		d->over_budget = true;
		return NULL;
	}
	if (atomic_fetch_add(&in_use, total) + total > atomic_load(&budget)) {
		atomic_fetch_sub(&in_use, total);
		d->over_budget = true;
		return NULL;
	}
	if (!(p = malloc(total))) {
		atomic_fetch_sub(&in_use, total);
		return NULL;
	}
	memcpy(p, &n, sizeof(n));
	return p + HDR;
}

static void wipe_free(void *opaque, void *q)
{
	unsigned char *p = q;
	size_t n;
	(void)opaque;
	if (!p)
		return;
	p -= HDR;
	memcpy(&n, p, sizeof(n));
	xwipe(p, n + HDR);
	free(p);
	atomic_fetch_sub(&in_use, n + HDR);
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
	return wipe_alloc(opaque, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
	wipe_free(opaque, p);
}

/* ---- names ---- */

static bool token_is(const char *p, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(p, want, n) == 0;
}

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* The next comma-separated element of [*p, end), trimmed; false at the end. */
static bool next_elem(const char **p, const char *end, const char **e, size_t *el)
{
	const char *s = *p, *t;

	if (s >= end)
		return false;
	t = memchr(s, ',', (size_t)(end - s));
	if (!t)
		t = end;
	*p = t < end ? t + 1 : end;
	while (s < t && is_ows(*s))
		s++;
	while (t > s && is_ows(t[-1]))
		t--;
	*e = s;
	*el = (size_t)(t - s);
	return true;
}

static int coding_of(const char *p, size_t n)
{
	if (token_is(p, n, "gzip") || token_is(p, n, "x-gzip"))
		return CODING_GZIP;
	if (token_is(p, n, "deflate"))
		return CODING_DEFLATE;
	if (token_is(p, n, "br"))
		return CODING_BR;
	if (token_is(p, n, "zstd"))
		return CODING_ZSTD;
	return -1;
}

int contentdec_parse(const char *val, size_t len, enum contentdec_coding codings[CONTENTDEC_MAX_STACK])
{
	const char *p = val, *end = val + len, *e;
	size_t el;
	int n = 0;

	while (next_elem(&p, end, &e, &el)) {
		int k;
		if (el == 0 || token_is(e, el, "identity"))
			continue;
		k = coding_of(e, el);
		if (k < 0 || n == CONTENTDEC_MAX_STACK)
			return -1;
		codings[n++] = (enum contentdec_coding)k;
	}
	return n;
}

/* A qvalue (RFC 9110 12.4.2): "0" ["." 0*3DIGIT] or "1" ["." 0*3("0")].
 * Returns 1 for q > 0, 0 for q = 0, -1 if malformed. */
static int q_positive(const char *p, size_t n)
{
	bool nonzero = false;

	if (n == 0 || (p[0] != '0' && p[0] != '1') || (n > 1 && p[1] != '.') || n > 5)
		return -1;
	nonzero = p[0] == '1';
	for (size_t i = 2; i < n; i++) {
		if (p[i] < '0' || p[i] > '9' || (p[0] == '1' && p[i] != '0'))
			return -1;
		nonzero |= p[i] != '0';
	}
	return nonzero;
}

/* One Accept-Encoding element "coding *( OWS ; OWS param )": its coding in
 * *name and whether its q is > 0 (malformed: not acceptable). */
static bool accept_elem(const char *e, size_t el, const char **name, size_t *nl)
{
	const char *semi = memchr(e, ';', el), *end = e + el, *p;
	int q = 1;

	*name = e;
	*nl = semi ? (size_t)(semi - e) : el;
	while (*nl > 0 && is_ows(e[*nl - 1]))
		(*nl)--;
	for (p = semi; p && p < end;) {
		const char *s = p + 1, *t = memchr(s, ';', (size_t)(end - s)), *eq;
		if (!t)
			t = end;
		while (s < t && is_ows(*s))
			s++;
		eq = memchr(s, '=', (size_t)(t - s));
		if (eq && eq - s == 1 && (*s == 'q' || *s == 'Q')) {
			const char *v = eq + 1, *ve = t;
			while (ve > v && is_ows(ve[-1]))
				ve--;
			q = q_positive(v, (size_t)(ve - v));
		}
		p = t;
	}
	return q == 1;
}

void contentdec_accept(const char *val, size_t len, bool present, char *out, size_t cap)
{
	static const char *const names[] = { "gzip", "deflate", "br", "zstd" };
	int want[4] = { -1, -1, -1, -1 }, star = -1; /* -1 unnamed, 0 refused, 1 accepted */
	const char *p = val, *end = val + len, *e, *name;
	size_t el, nl, o = 0;

	while (present && next_elem(&p, end, &e, &el)) {
		bool yes;
		int k;
		if (el == 0)
			continue;
		yes = accept_elem(e, el, &name, &nl);
		if (token_is(name, nl, "*"))
			star = yes;
		else if ((k = coding_of(name, nl)) >= 0 && want[k] != 0)
			want[k] = yes; /* a coding named twice: refused if either says so */
	}
	out[0] = '\0';
	for (int k = 0; k < 4; k++) {
		if (want[k] == 1 || (want[k] == -1 && star == 1))
			o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", names[k]);
		if (o >= cap)
			o = cap - 1;
	}
	if (o == 0)
		snprintf(out, cap, "identity");
}

/* ---- one stage ---- */

static bool stage_init(struct stage *s, enum contentdec_coding coding, struct contentdec *d)
{
	ZSTD_customMem zm = { wipe_alloc, wipe_free, d };

	memset(s, 0, sizeof(*s));
	s->coding = coding;
	s->z.zalloc = z_alloc;
	s->z.zfree = z_free;
	s->z.opaque = d;
	switch (coding) {
	case CODING_GZIP:
		s->z_init = inflateInit2(&s->z, 16 + MAX_WBITS) == Z_OK;
		return s->z_init;
	case CODING_DEFLATE:
		return true; /* at the first two bytes */
	case CODING_BR:
		s->br = BrotliDecoderCreateInstance(wipe_alloc, wipe_free, d);
		return s->br != NULL;
	case CODING_ZSTD:
		s->zs = ZSTD_createDCtx_advanced(zm);
		return s->zs && !ZSTD_isError(ZSTD_DCtx_setParameter(s->zs, ZSTD_d_windowLogMax,
								     ZSTD_WINDOW_LOG));
	}
	return false;
}

static void stage_dispose(struct stage *s)
{
	if (s->z_init)
		inflateEnd(&s->z);
	if (s->br)
		BrotliDecoderDestroyInstance(s->br);
	ZSTD_freeDCtx(s->zs);
	s->br = NULL;
	s->zs = NULL;
	s->z_init = false;
}

/* HTTP's "deflate" is the zlib format; some servers send raw deflate: a
 * valid zlib header (CM 8, window <= 32K, FCHECK) picks zlib. */
static bool deflate_start(struct stage *s)
{
	unsigned h = (unsigned)s->hdr[0] << 8 | s->hdr[1];
	bool zlib = (s->hdr[0] & 0x0f) == 8 && (s->hdr[0] >> 4) <= 7 && h % 31 == 0;

	s->z_init = inflateInit2(&s->z, zlib ? MAX_WBITS : -MAX_WBITS) == Z_OK;
	return s->z_init;
}

static enum contentdec_status run_zlib(struct stage *s, const char *in, size_t inlen,
				       size_t *used, char *out, size_t cap, size_t *made,
				       const char **err)
{
	int r;

	*used = *made = 0;
	if (s->ended && inlen > 0) {
		if (s->coding != CODING_GZIP) {
			*err = "data after the end of the deflate stream";
			return CONTENTDEC_ERROR;
		}
		inflateReset(&s->z); /* another gzip member */
		s->ended = false;
	}
	s->z.next_in = (Bytef *)in;
	s->z.avail_in = (uInt)inlen;
	s->z.next_out = (Bytef *)out;
	s->z.avail_out = (uInt)cap;
	r = inflate(&s->z, Z_NO_FLUSH);
	*used = inlen - s->z.avail_in;
	*made = cap - s->z.avail_out;
	if (r == Z_STREAM_END) {
		s->ended = true;
		return CONTENTDEC_NEED_MORE; /* the caller sees leftover input */
	}
	if (r == Z_OK || r == Z_BUF_ERROR)
		return s->z.avail_out == 0 ? CONTENTDEC_MORE : CONTENTDEC_NEED_MORE;
	*err = s->coding == CODING_GZIP ? "corrupt gzip stream" : "corrupt deflate stream";
	return CONTENTDEC_ERROR;
}

static enum contentdec_status run_br(struct stage *s, const char *in, size_t inlen,
				     size_t *used, char *out, size_t cap, size_t *made,
				     const char **err)
{
	const uint8_t *ni = (const uint8_t *)in;
	uint8_t *no = (uint8_t *)out;
	size_t ai = inlen, ao = cap;
	BrotliDecoderResult r;

	*used = *made = 0;
	if (s->ended) {
		*err = "data after the end of the brotli stream";
		return CONTENTDEC_ERROR;
	}
	r = BrotliDecoderDecompressStream(s->br, &ai, &ni, &ao, &no, NULL);
	*used = inlen - ai;
	*made = cap - ao;
	switch (r) {
	case BROTLI_DECODER_RESULT_SUCCESS:
		s->ended = true;
		return CONTENTDEC_NEED_MORE;
	case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
		return CONTENTDEC_NEED_MORE;
	case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
		return CONTENTDEC_MORE;
	default:
		*err = "corrupt brotli stream";
		return CONTENTDEC_ERROR;
	}
}

static enum contentdec_status run_zstd(struct stage *s, const char *in, size_t inlen,
				       size_t *used, char *out, size_t cap, size_t *made,
				       const char **err)
{
	ZSTD_inBuffer ib = { in, inlen, 0 };
	ZSTD_outBuffer ob = { out, cap, 0 };
	size_t r = ZSTD_decompressStream(s->zs, &ob, &ib);

	*used = ib.pos;
	*made = ob.pos;
	if (ZSTD_isError(r)) {
		*err = "corrupt zstd stream (or a window over 8 MiB)";
		return CONTENTDEC_ERROR;
	}
	s->zs_mid = r != 0;
	s->ended = r == 0; /* a frame is complete and flushed */
	if (ob.pos == cap && cap > 0)
		return CONTENTDEC_MORE;
	return CONTENTDEC_NEED_MORE;
}

/* One stage over in: MORE (out full), NEED_MORE (input used up, or the
 * stream ended with input left: the caller checks), or ERROR. */
static enum contentdec_status stage_step(struct stage *s, const char *in, size_t inlen,
					 size_t *used, char *out, size_t cap, size_t *made,
					 const char **err)
{
	enum contentdec_status r;
	size_t u = 0, m = 0;

	*used = *made = 0;
	s->seen |= inlen > 0;
	if (s->coding == CODING_DEFLATE && !s->z_init) {
		while (s->hdr_len < 2 && *used < inlen)
			s->hdr[s->hdr_len++] = (unsigned char)in[(*used)++];
		if (s->hdr_len < 2)
			return CONTENTDEC_NEED_MORE;
		if (!deflate_start(s)) {
			*err = "out of memory";
			return CONTENTDEC_ERROR;
		}
	}
	if (s->hdr_off < s->hdr_len) { /* the held first bytes go in first */
		r = run_zlib(s, (const char *)s->hdr + s->hdr_off, s->hdr_len - s->hdr_off, &u,
			     out, cap, &m, err);
		s->hdr_off += u;
		*made = m;
		if (r == CONTENTDEC_ERROR || (s->hdr_off < s->hdr_len && r == CONTENTDEC_MORE))
			return r;
		if (s->hdr_off < s->hdr_len) {
			*err = "data after the end of the deflate stream";
			return CONTENTDEC_ERROR;
		}
		if (m == cap)
			return CONTENTDEC_MORE;
	}
	if (s->ended && *used == inlen)
		return CONTENTDEC_NEED_MORE; /* nothing pending after the end */
	u = m = 0;
	switch (s->coding) {
	case CODING_GZIP:
	case CODING_DEFLATE:
		r = run_zlib(s, in + *used, inlen - *used, &u, out + *made, cap - *made, &m, err);
		break;
	case CODING_BR:
		r = run_br(s, in + *used, inlen - *used, &u, out + *made, cap - *made, &m, err);
		break;
	case CODING_ZSTD:
		if (inlen == *used && !s->zs_mid)
			return CONTENTDEC_NEED_MORE; /* between frames: no call (it would want one) */
		r = run_zstd(s, in + *used, inlen - *used, &u, out + *made, cap - *made, &m, err);
		break;
	default:
		return CONTENTDEC_ERROR;
	}
	*used += u;
	*made += m;
	return r;
}

/* Runs one stage as far as this call can go: all input used, out full,
 * or an error. */
static enum contentdec_status stage_run(struct stage *s, const char *in, size_t inlen,
					size_t *consumed, char *out, size_t cap, size_t *produced,
					bool end, const char **err)
{
	*consumed = *produced = 0;
	while (*produced < cap) {
		size_t u, m;
		enum contentdec_status r = stage_step(s, in + *consumed, inlen - *consumed, &u,
						      out + *produced, cap - *produced, &m, err);
		*consumed += u;
		*produced += m;
		if (r == CONTENTDEC_ERROR)
			return r;
		if (*consumed == inlen && r == CONTENTDEC_NEED_MORE)
			break;
		if (u == 0 && m == 0 && !(s->ended && *consumed < inlen)) {
			*err = "the decoder made no progress";
			return CONTENTDEC_ERROR;
		}
	}
	if (*produced == cap)
		return CONTENTDEC_MORE;
	if (!end)
		return CONTENTDEC_NEED_MORE;
	if (s->seen && (!s->ended || (s->coding == CODING_DEFLATE && !s->z_init))) {
		*err = "truncated stream";
		return CONTENTDEC_ERROR;
	}
	return CONTENTDEC_DONE;
}

/* ---- the chain ---- */

struct contentdec *contentdec_new(const enum contentdec_coding *codings, int n)
{
	struct contentdec *d;

	if (n < 1 || n > CONTENTDEC_MAX_STACK)
		return NULL;
	d = xcalloc(1, sizeof(*d));
	d->n = n;
	for (int i = 0; i < n; i++)
		if (!stage_init(&d->st[i], codings[n - 1 - i], d)) {
			d->n = i + 1;
			contentdec_free(d);
			return NULL;
		}
	if (n > 1)
		d->mid = xmalloc(MID_CAP);
	d->err = "";
	return d;
}

void contentdec_free(struct contentdec *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n; i++)
		stage_dispose(&d->st[i]);
	if (d->mid) {
		xwipe(d->mid, MID_CAP);
		free(d->mid);
	}
	xwipe(d, sizeof(*d));
	free(d);
}

const char *contentdec_error(const struct contentdec *d)
{
	return d->err;
}

static enum contentdec_status fail(struct contentdec *d, const char *err)
{
	d->err = d->over_budget ? "over the memory budget of all decoders (--max-decode-memory)"
		 : err		? err
				: "decoder error";
	return CONTENTDEC_ERROR;
}

/* Two stages: st[0]'s output goes through mid into st[1]. */
static enum contentdec_status feed_two(struct contentdec *d, const char *in, size_t inlen,
				       size_t *consumed, char *out, size_t cap,
				       size_t *produced, bool end)
{
	const char *err = NULL;

	for (;;) {
		size_t u, m;
		enum contentdec_status r;

		r = stage_run(&d->st[1], d->mid + d->mid_off, d->mid_len - d->mid_off, &u,
			      out + *produced, cap - *produced, &m, d->first_done, &err);
		d->mid_off += u;
		*produced += m;
		if (r == CONTENTDEC_ERROR)
			return fail(d, err);
		if (r == CONTENTDEC_MORE || r == CONTENTDEC_DONE)
			return r;
		d->mid_off = d->mid_len = 0;
		if (d->first_done)
			return CONTENTDEC_NEED_MORE; /* unreachable: st[1] saw end */
		r = stage_run(&d->st[0], in + *consumed, inlen - *consumed, &u, d->mid, MID_CAP,
			      &m, end, &err);
		*consumed += u;
		d->mid_len = m;
		if (r == CONTENTDEC_ERROR)
			return fail(d, err);
		d->first_done = r == CONTENTDEC_DONE;
		if (m == 0 && r == CONTENTDEC_NEED_MORE)
			return CONTENTDEC_NEED_MORE;
	}
}

enum contentdec_status contentdec_feed(struct contentdec *d, const char *in, size_t inlen,
				       size_t *consumed, char *out, size_t cap, size_t *produced,
				       bool end)
{
	const char *err = NULL;
	enum contentdec_status r;

	*consumed = *produced = 0;
	if (*d->err)
		return CONTENTDEC_ERROR;
	if (cap == 0)
		return CONTENTDEC_MORE;
	if (d->n == 2)
		return feed_two(d, in, inlen, consumed, out, cap, produced, end);
	r = stage_run(&d->st[0], in, inlen, consumed, out, cap, produced, end, &err);
	return r == CONTENTDEC_ERROR ? fail(d, err) : r;
}
