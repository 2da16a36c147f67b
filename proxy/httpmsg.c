/* httpmsg.c -- HTTP/1.x message stream parsing on llhttp (strict mode, no
 * lenient flags): capped heads, delimited bodies, pause at head and end */
#include "httpmsg.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "inject.h"

#define MAX_HEADERS 128

struct span {
	size_t off, len;
};

struct hdr {
	struct span name, val;
};

struct httpmsg {
	llhttp_t p;
	llhttp_settings_t s;
	enum httpmsg_kind kind;
	char *hb;            /* head bytes: url, header names and values */
	size_t cap, used, alloc; /* limit, in use, allocated */
	struct span url;
	struct span reason;   /* response reason phrase */
	httpmsg_body_fn sink; /* receives de-framed body bytes, if set */
	void *sink_ctx;
	struct hdr *hdrs;    /* grown on demand up to MAX_HEADERS, like hb */
	size_t nhdrs, hcap;
	size_t nhead;        /* of hdrs, those of the head; the rest are trailers */
	bool new_field;      /* the next header-name bytes start a new field */
	size_t raw;          /* raw bytes of the current head so far */
	char prev;           /* last head byte seen (obs-fold detection) */
	bool head_done, started, no_body, chunked;
	bool paused_at_end; /* the last pause was at message end */
	bool keep_alive;    /* llhttp's verdict, taken before it resets its flags */
	int status;          /* response status code */
	int err_status;      /* 400 or 431 */
	const char *err;
	bool h2_preface;     /* err is llhttp's HPE_PAUSED_H2_UPGRADE */
	char method[24];
};

static struct httpmsg *from(llhttp_t *p)
{
	return (struct httpmsg *)p->data;
}

static int too_big(struct httpmsg *m, const char *what)
{
	m->err = what;
	m->err_status = 431;
	return -1;
}

/* Appends at[0..n) to the head buffer, extending span sp (which must be the
 * last thing written). */
static int append(struct httpmsg *m, struct span *sp, const char *at, size_t n)
{
	if (n == 0)
		return 0; /* llhttp may report empty spans; the buffer may not exist yet */
	if (m->used + n > m->cap)
		return too_big(m, "request head too large");
	if (m->used + n > m->alloc) {
		/* grow on demand: most heads are small, and idle connections many */
		size_t a = m->alloc ? m->alloc : 512;
		while (a < m->used + n)
			a *= 2;
		m->alloc = a < m->cap ? a : m->cap;
		m->hb = xrealloc(m->hb, m->alloc);
	}
	if (sp->len == 0)
		sp->off = m->used;
	memcpy(m->hb + m->used, at, n);
	m->used += n;
	sp->len += n;
	return 0;
}

static int on_begin(llhttp_t *p)
{
	from(p)->started = true;
	return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
	struct httpmsg *m = from(p);
	return append(m, &m->reason, at, n);
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	struct httpmsg *m = from(p);
	if (m->sink)
		m->sink(m->sink_ctx, at, n);
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	struct httpmsg *m = from(p);
	return append(m, &m->url, at, n);
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
	struct httpmsg *m = from(p);

	if (m->new_field) {
		if (m->nhdrs == MAX_HEADERS)
			return too_big(m, "too many header fields");
		if (m->nhdrs == m->hcap) {
			m->hcap = m->hcap ? 2 * m->hcap : 16;
			m->hdrs = xrealloc(m->hdrs, m->hcap * sizeof(struct hdr));
		}
		memset(&m->hdrs[m->nhdrs++], 0, sizeof(struct hdr));
		m->new_field = false;
	}
	return append(m, &m->hdrs[m->nhdrs - 1].name, at, n);
}

/* A value byte llhttp lets through that we refuse: controls other than HTAB
 * (NUL, bare CR/LF are already errors in strict mode; DEL too). */
static bool bad_value(const char *at, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)at[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
	struct httpmsg *m = from(p);

	if (m->nhdrs == 0)
		return -1;
	if (bad_value(at, n)) {
		m->err = "control character in header value";
		m->err_status = 400;
		return -1;
	}
	return append(m, &m->hdrs[m->nhdrs - 1].val, at, n);
}

static int on_value_complete(llhttp_t *p)
{
	from(p)->new_field = true;
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	struct httpmsg *m = from(p);

	m->head_done = true;
	m->nhead = m->nhdrs;
	m->status = p->status_code;
	m->chunked = (p->flags & F_CHUNKED) != 0;
	if (m->kind == HTTPMSG_REQUEST) {
		const char *mn = llhttp_method_name((llhttp_method_t)p->method);
		size_t l = strlen(mn);
		if (l >= sizeof(m->method))
			l = sizeof(m->method) - 1;
		memcpy(m->method, mn, l);
		m->method[l] = '\0';
	}
	if (m->kind == HTTPMSG_RESPONSE && m->no_body)
		return 1;
	/* 204 and 304 have no body whatever Content-Length says (a 304 may
	 * carry the representation's length, RFC 9110 8.6): llhttp would read
	 * that many bytes unless told, as returning 1 does (we pause instead) */
	if (m->kind == HTTPMSG_RESPONSE && (m->status == 204 || m->status == 304))
		p->flags |= F_SKIPBODY;
	return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
	/* an upgrade (CONNECT, 101) makes llhttp stop with HPE_PAUSED_UPGRADE */
	from(p)->paused_at_end = true;
	from(p)->keep_alive = llhttp_should_keep_alive(p) != 0;
	return p->upgrade ? 0 : HPE_PAUSED;
}

struct httpmsg *httpmsg_new(enum httpmsg_kind kind, size_t head_cap)
{
	struct httpmsg *m = xcalloc(1, sizeof(*m));

	m->kind = kind;
	m->cap = head_cap;
	llhttp_settings_init(&m->s);
	m->s.on_message_begin = on_begin;
	m->s.on_url = on_url;
	m->s.on_status = on_status;
	m->s.on_body = on_body;
	m->s.on_header_field = on_field;
	m->s.on_header_value = on_value;
	m->s.on_header_value_complete = on_value_complete;
	m->s.on_headers_complete = on_headers_complete;
	m->s.on_message_complete = on_message_complete;
	llhttp_init(&m->p, kind == HTTPMSG_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &m->s);
	m->p.data = m;
	m->new_field = true;
	return m;
}

void httpmsg_free(struct httpmsg *m)
{
	if (!m)
		return;
	free(m->hb);
	free(m->hdrs);
	free(m);
}

static void clear_head(struct httpmsg *m)
{
	m->used = 0;
	m->url.off = m->url.len = 0;
	m->reason.off = m->reason.len = 0;
	m->nhdrs = m->nhead = 0;
	m->new_field = true;
	m->raw = 0;
	m->prev = 0;
	m->head_done = m->started = m->chunked = false;
	m->status = 0;
	m->method[0] = '\0';
}

/* What llhttp lets through in a head even in strict mode and we refuse:
 * obs-fold (a line starting with SP/HTAB; RFC 9112 5.2), a bare LF (a line
 * not ended by CRLF, including the blank line that ends the head) and a bare
 * CR. Returns the problem, or NULL. */
static const char *bad_head_bytes(struct httpmsg *m, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];

		if (m->prev == '\n' && (c == ' ' || c == '\t'))
			return "obs-fold (folded header line)";
		if (c == '\n' && m->prev != '\r')
			return "bare LF (lines must end with CRLF)";
		if (m->prev == '\r' && c != '\n')
			return "bare CR";
		m->prev = c;
	}
	return NULL;
}

static enum httpmsg_status fail(struct httpmsg *m, llhttp_errno_t e)
{
	if (!m->err) {
		/* llhttp's words are for its callers; this one reaches users */
		m->err = e == HPE_PAUSED_H2_UPGRADE
				 ? "an HTTP/2 connection preface (PRI * HTTP/2.0): egressd speaks "
				   "HTTP/1.1 here, HTTP/2 with prior knowledge is not served"
				 : llhttp_errno_name(e);
		m->err_status = 400;
		m->h2_preface = e == HPE_PAUSED_H2_UPGRADE;
	}
	return HTTPMSG_ERROR;
}

static bool paused(llhttp_errno_t e)
{
	return e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE;
}

/* Where llhttp paused (e is paused()): an upgrade, a message end or a head. */
static enum httpmsg_status paused_status(const struct httpmsg *m, llhttp_errno_t e)
{
	if (e == HPE_PAUSED_UPGRADE)
		return HTTPMSG_UPGRADE;
	return m->paused_at_end ? HTTPMSG_DONE : HTTPMSG_HEAD;
}

enum httpmsg_status httpmsg_feed(struct httpmsg *m, const char *data, size_t n, size_t *consumed)
{
	llhttp_errno_t e;

	*consumed = 0;
	if (m->err)
		return HTTPMSG_ERROR;
	e = llhttp_get_errno(&m->p);
	if (paused(e))
		/* still paused (not resumed): llhttp would take nothing and report
		 * its error position in the buffer of an earlier call */
		return paused_status(m, e);
	bool in_head = !m->head_done;
	e = llhttp_execute(&m->p, data, n);
	if (in_head && (e == HPE_OK || paused(e))) {
		size_t upto = e == HPE_OK ? n : (size_t)(llhttp_get_error_pos(&m->p) - data);
		const char *bad = bad_head_bytes(m, data, upto);
		if (bad) {
			m->err = bad;
			m->err_status = 400;
			return HTTPMSG_ERROR;
		}
	}
	if (!m->head_done) {
		m->raw += n;
		if (m->raw > 2 * m->cap) {
			too_big(m, "request head too large");
			return HTTPMSG_ERROR;
		}
	}
	if (e == HPE_OK) {
		*consumed = n;
		return HTTPMSG_NEED_MORE;
	}
	if (paused(e)) {
		*consumed = (size_t)(llhttp_get_error_pos(&m->p) - data);
		return paused_status(m, e);
	}
	return fail(m, e);
}

enum httpmsg_status httpmsg_finish(struct httpmsg *m)
{
	llhttp_errno_t e;

	if (m->err)
		return HTTPMSG_ERROR;
	if (!m->started)
		return HTTPMSG_DONE;
	e = llhttp_finish(&m->p);
	if (e == HPE_OK || e == HPE_PAUSED)
		return m->head_done && m->paused_at_end ? HTTPMSG_DONE : fail(m, HPE_INVALID_EOF_STATE);
	return fail(m, e);
}

void httpmsg_resume(struct httpmsg *m)
{
	llhttp_resume(&m->p);
}

void httpmsg_next(struct httpmsg *m)
{
	clear_head(m);
	m->paused_at_end = false;
	m->no_body = false;
	llhttp_resume(&m->p);
}

void httpmsg_expect_no_body(struct httpmsg *m)
{
	m->no_body = true;
}

bool httpmsg_head_complete(const struct httpmsg *m)
{
	return m->head_done;
}

bool httpmsg_started(const struct httpmsg *m)
{
	return m->started;
}

const char *httpmsg_error(const struct httpmsg *m)
{
	return m->err ? m->err : "no error";
}

int httpmsg_error_status(const struct httpmsg *m)
{
	return m->err_status ? m->err_status : 400;
}

bool httpmsg_error_h2_preface(const struct httpmsg *m)
{
	return m->err && m->h2_preface;
}

const char *httpmsg_method(const struct httpmsg *m)
{
	return m->method;
}

const char *httpmsg_target(const struct httpmsg *m, size_t *len)
{
	*len = m->url.len;
	return m->hb ? m->hb + m->url.off : ""; /* no head bytes stored yet */
}

int httpmsg_status_code(const struct httpmsg *m)
{
	return m->status;
}

int httpmsg_version_minor(const struct httpmsg *m)
{
	return m->p.http_minor;
}

size_t httpmsg_header_count(const struct httpmsg *m)
{
	return m->head_done ? m->nhead : m->nhdrs;
}

size_t httpmsg_trailer_count(const struct httpmsg *m)
{
	return m->head_done ? m->nhdrs - m->nhead : 0;
}

void httpmsg_trailer(const struct httpmsg *m, size_t i, const char **name, size_t *nlen,
		     const char **val, size_t *vlen)
{
	httpmsg_header(m, m->nhead + i, name, nlen, val, vlen);
}

void httpmsg_header(const struct httpmsg *m, size_t i, const char **name, size_t *nlen,
		    const char **val, size_t *vlen)
{
	*name = m->hb + m->hdrs[i].name.off;
	*nlen = m->hdrs[i].name.len;
	*val = m->hb + m->hdrs[i].val.off;
	*vlen = m->hdrs[i].val.len;
}

size_t httpmsg_header_find(const struct httpmsg *m, const char *name, const char **val,
			   size_t *vlen)
{
	size_t count = 0, l = strlen(name);

	for (size_t i = 0; i < httpmsg_header_count(m); i++) {
		const struct hdr *h = &m->hdrs[i];
		if (h->name.len != l || strncasecmp(m->hb + h->name.off, name, l) != 0)
			continue;
		if (count++ == 0) {
			*val = m->hb + h->val.off;
			*vlen = h->val.len;
		}
	}
	return count;
}

bool httpmsg_header_join(const struct httpmsg *m, const char *name, struct obuf *b,
			 size_t *count)
{
	size_t l = strlen(name);

	b->len = 0;
	*count = 0;
	for (size_t i = 0; i < httpmsg_header_count(m); i++) {
		const struct hdr *h = &m->hdrs[i];
		if (h->name.len != l || strncasecmp(m->hb + h->name.off, name, l) != 0)
			continue;
		if ((*count)++ > 0 && !obuf_add(b, ", ", 2))
			return false;
		if (!obuf_add(b, m->hb + h->val.off, h->val.len))
			return false;
	}
	return true;
}

bool httpmsg_keep_alive(const struct httpmsg *m)
{
	return m->keep_alive;
}

bool httpmsg_is_chunked(const struct httpmsg *m)
{
	return m->chunked;
}

void httpmsg_set_body_sink(struct httpmsg *m, httpmsg_body_fn fn, void *ctx)
{
	m->sink = fn;
	m->sink_ctx = ctx;
}

const char *httpmsg_reason(const struct httpmsg *m, size_t *len)
{
	*len = m->reason.len;
	return m->reason.len ? m->hb + m->reason.off : "";
}

bool httpmsg_has_body(const struct httpmsg *m)
{
	const llhttp_t *p = &m->p;

	if (m->no_body || (m->kind == HTTPMSG_RESPONSE &&
			   ((m->status >= 100 && m->status < 200) || m->status == 204 ||
			    m->status == 304)))
		return false;
	if (p->flags & F_CHUNKED)
		return true;
	if (p->flags & F_CONTENT_LENGTH)
		return p->content_length > 0;
	return m->kind == HTTPMSG_RESPONSE; /* delimited by close */
}
