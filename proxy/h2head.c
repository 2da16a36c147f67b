/* h2head.c -- HTTP/2 header blocks of an intercepted connection: field
 * lists, request checks and rewrite (injection), reply heads and trailers
 * redacted; the policy/ functions HTTP/1 uses, applied to HTTP/2 fields */
#include "h2head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "inject.h"
#include "pattern.h"
#include "secrets.h"

#define VALUE_CAP (1u << 20) /* a rewritten or redacted field value, at most */

struct h2field {
	size_t noff, nl, voff, vl;
};

struct h2hdrs {
	struct obuf text;    /* names and values, back to back */
	struct h2field *f;
	size_t n, cap;
	size_t size, max;    /* HTTP/2 header list size so far, its bound */
	bool too_big;
};

struct h2hdrs *h2hdrs_new(size_t max)
{
	struct h2hdrs *h = xcalloc(1, sizeof(*h));

	obuf_init(&h->text, max);
	h->max = max;
	return h;
}

void h2hdrs_free(struct h2hdrs *h)
{
	if (!h)
		return;
	obuf_dispose(&h->text);
	free(h->f);
	free(h);
}

bool h2hdrs_add(struct h2hdrs *h, const uint8_t *name, size_t nl, const uint8_t *val, size_t vl)
{
	size_t add = nl + vl + H2HEAD_FIELD_OVERHEAD, at = h->text.len;

	if (h->too_big || add > h->max - h->size ||
	    !obuf_add(&h->text, (const char *)name, nl) ||
	    !obuf_add(&h->text, (const char *)val, vl)) {
		h->too_big = true;
		return false;
	}
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 16;
		h->f = xrealloc(h->f, h->cap * sizeof(*h->f));
	}
	h->f[h->n++] = (struct h2field){ at, nl, at + nl, vl };
	h->size += add;
	return true;
}

bool h2hdrs_too_big(const struct h2hdrs *h)
{
	return h->too_big;
}

size_t h2hdrs_count(const struct h2hdrs *h)
{
	return h->n;
}

void h2hdrs_get(const struct h2hdrs *h, size_t i, const char **name, size_t *nl,
		const char **val, size_t *vl)
{
	*name = h->text.p + h->f[i].noff;
	*nl = h->f[i].nl;
	*val = h->text.p + h->f[i].voff;
	*vl = h->f[i].vl;
}

static bool is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(name, want, n) == 0;
}

size_t h2hdrs_find(const struct h2hdrs *h, const char *name, const char **val, size_t *vl)
{
	size_t k = 0;

	for (size_t i = 0; i < h->n; i++) {
		const char *nm, *v;
		size_t nl, l;
		h2hdrs_get(h, i, &nm, &nl, &v, &l);
		if (!is(nm, nl, name))
			continue;
		if (k++ == 0) {
			*val = v;
			*vl = l;
		}
	}
	return k;
}

/* Every value of the fields named name joined with ", " into b; their count. */
static size_t join(const struct h2hdrs *h, const char *name, struct obuf *b)
{
	size_t k = 0;

	b->len = 0;
	for (size_t i = 0; i < h->n; i++) {
		const char *nm, *v;
		size_t nl, l;
		h2hdrs_get(h, i, &nm, &nl, &v, &l);
		if (is(nm, nl, name) && (k++ == 0 || obuf_add(b, ", ", 2)))
			obuf_add(b, v, l);
	}
	return k;
}

/* ---- nv arrays ---- */

void h2nv_init(struct h2nv *o)
{
	memset(o, 0, sizeof(*o));
}

void h2nv_dispose(struct h2nv *o)
{
	if (o->text)
		xwipe(o->text, o->tcap);
	free(o->text);
	free(o->nv);
	h2nv_init(o);
}

static size_t put_text(struct h2nv *o, const char *s, size_t n)
{
	size_t at = o->len;

	if (n > o->tcap - o->len) { /* grow by copy and wipe: it may hold secrets */
		size_t ncap = o->tcap ? 2 * o->tcap : 256;
		char *np;
		while (ncap - o->len < n)
			ncap *= 2;
		np = xmalloc(ncap);
		if (o->len)
			memcpy(np, o->text, o->len);
		if (o->text)
			xwipe(o->text, o->tcap);
		free(o->text);
		o->text = np;
		o->tcap = ncap;
	}
	if (n)
		memcpy(o->text + at, s, n);
	o->len += n;
	return at;
}

void h2nv_add(struct h2nv *o, const char *name, size_t nl, const char *val, size_t vl,
	      uint8_t flags)
{
	size_t no = put_text(o, name, nl), vo = put_text(o, val, vl);

	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 16;
		o->nv = xrealloc(o->nv, o->cap * sizeof(*o->nv));
	}
	/* offsets until sealed: text may still move */
	o->nv[o->n++] = (nghttp2_nv){ (uint8_t *)(uintptr_t)no, (uint8_t *)(uintptr_t)vo, nl, vl,
				      flags };
	o->fixed = false;
}

void h2nv_seal(struct h2nv *o)
{
	if (o->fixed)
		return;
	for (size_t i = 0; i < o->n; i++) {
		o->nv[i].name = (uint8_t *)o->text + (uintptr_t)o->nv[i].name;
		o->nv[i].value = (uint8_t *)o->text + (uintptr_t)o->nv[i].value;
	}
	o->fixed = true;
}

/* ---- requests ---- */

static bool same_target(const struct target *a, const struct target *b)
{
	return a->port == b->port && a->is_ip == b->is_ip && strcmp(a->host, b->host) == 0;
}

/* Does authority a name t (a missing port: t's port, as HTTP/1's Host)? */
static bool names_host(const struct target *t, const char *a, size_t n)
{
	struct target o;
	char err[PATTERN_ERRLEN];

	return target_parse_authority(a, n, t->port, &o, err) && same_target(&o, t);
}

int h2head_check_request(const struct h2hdrs *h, const struct target *t, const char **why)
{
	const char *m = NULL, *p, *a, *hv;
	size_t ml = 0, pl, al, hl, hosts;

	if (h2hdrs_find(h, ":method", &m, &ml) != 1 || is(m, ml, "CONNECT") ||
	    h2hdrs_find(h, ":path", &p, &pl) != 1) {
		*why = "egressd: CONNECT inside an intercepted HTTP/2 connection, or a missing "
		       ":method or :path";
		return 400;
	}
	hosts = h2hdrs_find(h, "host", &hv, &hl);
	if (hosts > 1) {
		*why = "egressd: a repeated Host";
		return 400;
	}
	if (h2hdrs_find(h, ":authority", &a, &al) == 1 && !names_host(t, a, al)) {
		*why = "egressd: the :authority names another host than this connection's";
		return 421;
	}
	if (hosts == 1 && !names_host(t, hv, hl)) {
		*why = "egressd: the Host header names another host than this connection's";
		return 421;
	}
	return 0;
}

static bool is_auth(const char *name, size_t n)
{
	return is(name, n, "authorization") || is(name, n, "proxy-authorization");
}

uint64_t h2head_scan_leaks(const struct h2hdrs *h, const struct secretset *ss, uint64_t approved)
{
	uint64_t leaks = 0;

	if (!ss || secretset_count(ss) == 0)
		return 0;
	for (size_t i = 0; i < h->n; i++) {
		const char *nm, *v;
		size_t nl, l;
		h2hdrs_get(h, i, &nm, &nl, &v, &l);
		leaks |= inject_scan_leaks(ss, approved, v, l, is_auth(nm, nl));
	}
	return leaks;
}

/* Connection-specific fields (RFC 9113 8.2.2) and the client's view of the
 * proxy: never forwarded. */
static bool hop_by_hop(const char *name, size_t n, const char *val, size_t vl)
{
	if (is(name, n, "te"))
		return !(vl == 8 && strncasecmp(val, "trailers", 8) == 0);
	return is(name, n, "connection") || is(name, n, "keep-alive") ||
	       is(name, n, "transfer-encoding") || is(name, n, "upgrade") ||
	       (n >= 6 && memcmp(name, "proxy-", 6) == 0);
}

/* Accept-Encoding for a secret's host: the codings egressd decodes that
 * the sandbox accepts, identity for a request with Range. */
static void add_accept_encoding(const struct h2hdrs *h, struct h2nv *out)
{
	struct obuf all;
	char offer[64];
	const char *rv;
	size_t rl, k;

	obuf_init(&all, VALUE_CAP);
	k = join(h, "accept-encoding", &all);
	if (h2hdrs_find(h, "range", &rv, &rl) > 0)
		k = 0;
	contentdec_accept(all.p ? all.p : "", all.len, k > 0, offer, sizeof(offer));
	obuf_dispose(&all);
	h2nv_add(out, "accept-encoding", 15, offer, strlen(offer), NGHTTP2_NV_FLAG_NONE);
}

static void add_pseudo(const struct h2hdrs *h, const struct h2head_req *rq, struct h2nv *out)
{
	const char *v;
	size_t l;

	if (h2hdrs_find(h, ":method", &v, &l))
		h2nv_add(out, ":method", 7, v, l, NGHTTP2_NV_FLAG_NONE);
	h2nv_add(out, ":scheme", 7, "https", 5, NGHTTP2_NV_FLAG_NONE);
	if (h2hdrs_find(h, ":authority", &v, &l) || h2hdrs_find(h, "host", &v, &l))
		h2nv_add(out, ":authority", 10, v, l, NGHTTP2_NV_FLAG_NONE);
	else
		h2nv_add(out, ":authority", 10, rq->authority, strlen(rq->authority),
			 NGHTTP2_NV_FLAG_NONE);
	if (h2hdrs_find(h, ":path", &v, &l))
		h2nv_add(out, ":path", 5, v, l, NGHTTP2_NV_FLAG_NONE);
}

bool h2head_request_nv(const struct h2hdrs *h, const struct h2head_req *rq, bool trailers,
		       struct h2nv *out, uint64_t *injected)
{
	struct obuf b;
	uint64_t all = 0;
	bool okay = true;

	obuf_init(&b, VALUE_CAP);
	if (!trailers)
		add_pseudo(h, rq, out);
	for (size_t i = 0; i < h->n && okay; i++) {
		const char *nm, *v;
		size_t nl, l;
		uint64_t used = 0;
		h2hdrs_get(h, i, &nm, &nl, &v, &l);
		if ((nl > 0 && nm[0] == ':') || is(nm, nl, "host") || hop_by_hop(nm, nl, v, l) ||
		    (rq->redact && (is(nm, nl, "accept-encoding") ||
				    is(nm, nl, "grpc-accept-encoding"))))
			continue;
		b.len = 0;
		if (rq->ss && rq->approved)
			okay = inject_header(rq->ss, rq->approved, nm, nl, v, l, &b, &used);
		else
			okay = obuf_add(&b, v, l);
		if (okay)
			h2nv_add(out, nm, nl, b.p ? b.p : "", b.len,
				 used ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE);
		all |= used;
	}
	obuf_dispose(&b);
	if (okay && rq->redact && !trailers)
		add_accept_encoding(h, out);
	h2nv_seal(out);
	if (okay)
		*injected = all;
	return okay;
}

/* ---- replies ---- */

int h2head_status(const struct h2hdrs *h)
{
	const char *v;
	size_t l;
	int s = 0;

	if (h2hdrs_find(h, ":status", &v, &l) != 1 || l != 3)
		return 0;
	for (size_t i = 0; i < 3; i++) {
		if (v[i] < '0' || v[i] > '9')
			return 0;
		s = s * 10 + (v[i] - '0');
	}
	return s;
}

const char *h2head_decide_coding(const struct h2hdrs *h, int status, bool has_body,
				 struct h2head_coding *c)
{
	struct obuf b;
	int n;

	obuf_init(&b, VALUE_CAP);
	join(h, "content-encoding", &b);
	n = contentdec_parse(b.p ? b.p : "", b.len, c->cs);
	obuf_dispose(&b);
	if (n < 0 && has_body)
		return "an unknown content coding, or more than two";
	if (n > 0 && has_body && status == 206)
		return "a range of an encoded representation";
	c->n = n > 0 && has_body ? n : 0;
	c->dec_head = n > 0;
	return NULL;
}

/* Is reply field name dropped (a changed length or coding, or hop-by-hop)? */
static bool skip_reply(const char *nm, size_t nl, const char *v, size_t l, bool redacting,
		       const struct h2head_coding *c, int status, bool has_body, bool head_req)
{
	bool length = is(nm, nl, "content-length");

	if (hop_by_hop(nm, nl, v, l) || (nl > 0 && nm[0] == ':'))
		return true;
	if (!redacting)
		return false;
	if (has_body && length) /* redaction changes the length */
		return true;
	if (c && c->dec_head && is(nm, nl, "content-encoding"))
		return true;
	return c && c->dec_head && length && (head_req || status == 304);
}

/* Appends name and value, redacted when ss is set. */
static bool add_redacted(struct h2nv *out, struct obuf *nb, struct obuf *vb,
			 const struct secretset *ss, uint64_t mask, const char *pre, const char *nm,
			 size_t nl, const char *v, size_t l)
{
	nb->len = vb->len = 0;
	if (!obuf_add(vb, pre, strlen(pre)))
		return false;
	if (!ss) {
		h2nv_add(out, nm, nl, v, l, NGHTTP2_NV_FLAG_NONE);
		return true;
	}
	if (!redact_string(ss, mask, nm, nl, nb) || !redact_string(ss, mask, v, l, vb))
		return false;
	h2nv_add(out, nb->p ? nb->p : "", nb->len, vb->p ? vb->p : "", vb->len,
		 NGHTTP2_NV_FLAG_NONE);
	return true;
}

bool h2head_reply_nv(const struct h2hdrs *h, const struct secretset *ss, uint64_t mask,
		     const struct h2head_coding *c, int status, bool has_body, bool head_req,
		     bool trailers, struct h2nv *out)
{
	struct obuf nb, vb;
	char st[8];
	bool okay = true;

	if (!mask)
		ss = NULL;
	obuf_init(&nb, VALUE_CAP);
	obuf_init(&vb, VALUE_CAP);
	if (!trailers) {
		snprintf(st, sizeof(st), "%03d", status % 1000);
		h2nv_add(out, ":status", 7, st, 3, NGHTTP2_NV_FLAG_NONE);
	}
	for (size_t i = 0; i < h->n && okay; i++) {
		const char *nm, *v;
		size_t nl, l;
		bool weak;
		h2hdrs_get(h, i, &nm, &nl, &v, &l);
		if (skip_reply(nm, nl, v, l, ss != NULL, trailers ? NULL : c, status,
			       has_body && !trailers, head_req))
			continue;
		/* a decoded body is another representation than the tag names */
		weak = ss && !trailers && c && c->dec_head && is(nm, nl, "etag") && l > 0 &&
		       v[0] == '"';
		okay = add_redacted(out, &nb, &vb, ss, mask, weak ? "W/" : "", nm, nl, v, l);
	}
	obuf_dispose(&nb);
	obuf_dispose(&vb);
	h2nv_seal(out);
	return okay;
}
