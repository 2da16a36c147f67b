/* h2head.h -- HTTP/2 header blocks of an intercepted connection, without a
 * session or I/O: a bounded field list as received (wiped when freed), the
 * request's checks (authority, CONNECT, leaks) and its rewrite for the
 * upstream (hop-by-hop fields dropped, placeholders injected, injected
 * fields never indexed), and a reply's head and trailers redacted for the
 * sandbox (content codings decided as for HTTP/1) */
#ifndef EGRESSD_H2HEAD_H
#define EGRESSD_H2HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "contentdec.h"

struct secretset;
struct target;
struct h2hdrs;

/* Header list size as HTTP/2 counts it: name + value + 32 per field. */
#define H2HEAD_FIELD_OVERHEAD 32

/* A field list holding at most max bytes (as HTTP/2 counts them); free with
 * h2hdrs_free (wipes: values may be secrets). */
struct h2hdrs *h2hdrs_new(size_t max);
void h2hdrs_free(struct h2hdrs *h); /* NULL: no-op */
/* Appends a field (copied). False once the list would pass its max: the
 * field is dropped and the list marked too big (h2hdrs_too_big). */
bool h2hdrs_add(struct h2hdrs *h, const uint8_t *name, size_t nl, const uint8_t *val, size_t vl);
bool h2hdrs_too_big(const struct h2hdrs *h);
size_t h2hdrs_count(const struct h2hdrs *h);
/* Field i (borrowed, valid until the list changes). */
void h2hdrs_get(const struct h2hdrs *h, size_t i, const char **name, size_t *nl,
		const char **val, size_t *vl);
/* How many fields are named name (lower case); *val and *vl get the first one's. */
size_t h2hdrs_find(const struct h2hdrs *h, const char *name, const char **val, size_t *vl);

/* An nghttp2_nv array and the bytes it points into (wiped when disposed). */
struct h2nv {
	nghttp2_nv *nv;
	size_t n, cap;
	char *text;       /* the names and values */
	size_t len, tcap; /* bytes used in text, its size */
	bool fixed;       /* nv's pointers are set (h2nv_seal) */
};
void h2nv_init(struct h2nv *o);
void h2nv_dispose(struct h2nv *o); /* wipes and frees */
/* Adds a field; flags: NGHTTP2_NV_FLAG_*. */
void h2nv_add(struct h2nv *o, const char *name, size_t nl, const char *val, size_t vl,
	      uint8_t flags);
/* Points nv at text (after the last h2nv_add, before passing nv on). */
void h2nv_seal(struct h2nv *o);

/* Checks a request head against the connection's target t: returns 0 when
 * it may go on; else the status to answer (400: CONNECT, a missing
 * :method or :path, a repeated Host; 421: :authority or Host names another
 * host or port than t's, where a missing port means t's port, as for HTTP/1)
 * and *why a one-line static message. */
int h2head_check_request(const struct h2hdrs *h, const struct target *t, const char **why);

/* Placeholders of secrets not in approved in :path or any field value (raw,
 * percent-encoded, Basic), as inject_scan_leaks finds them. */
uint64_t h2head_scan_leaks(const struct h2hdrs *h, const struct secretset *ss, uint64_t approved);

/* What the request rewrite needs. */
struct h2head_req {
	const struct secretset *ss; /* NULL: nothing injected */
	uint64_t approved;          /* secrets injected for this host */
	bool redact;                /* a secret's host: Accept-Encoding is egressd's offer */
	const char *authority;      /* the connection's authority, for a request without one */
};

/* The request head for the upstream: pseudo-fields first (:authority from
 * the request's :authority, else its Host, else rq->authority), then the
 * fields minus Host and the hop-by-hop and proxy ones (connection,
 * keep-alive, proxy-*, transfer-encoding, upgrade, te other than
 * "trailers"), each value with approved placeholders replaced (also inside
 * Basic); a field that got a secret is marked NGHTTP2_NV_FLAG_NO_INDEX.
 * For a redacting host Accept-Encoding is replaced as HTTP/1 does
 * (contentdec_accept; identity with Range) and grpc-accept-encoding is
 * dropped (a compressed gRPC message cannot be redacted, so the upstream
 * is not invited to send one). *injected gets the secrets'
 * bits. trailers: a trailer block (no pseudo-fields, no Accept-Encoding).
 * False if a value cannot be rewritten (over the cap). */
bool h2head_request_nv(const struct h2hdrs *h, const struct h2head_req *rq, bool trailers,
		       struct h2nv *out, uint64_t *injected);

/* How a reply's content coding is handled (HTTP/1's rules, httpresp.c). */
struct h2head_coding {
	int n;                                         /* codings to undo (0: none) */
	enum contentdec_coding cs[CONTENTDEC_MAX_STACK];
	bool dec_head;                                 /* the head drops its coding */
};
/* For a secret's host's final reply of status with a body (has_body false
 * for HEAD, 204, 304): returns NULL and fills c, or a static text saying why
 * it cannot be redacted (unknown coding or more than two; a 206 of an
 * encoded representation). */
const char *h2head_decide_coding(const struct h2hdrs *h, int status, bool has_body,
				 struct h2head_coding *c);

/* A reply head (or, trailers true, its trailer block) for the sandbox:
 * :status first, hop-by-hop fields dropped; when redacting (ss not NULL)
 * names and values redacted of mask's values, Content-Length dropped
 * from a head with a body, and with c->dec_head Content-Encoding dropped,
 * a strong ETag made weak. status, head_req: the reply's status and whether
 * it answers HEAD. False on a value over the cap. */
bool h2head_reply_nv(const struct h2hdrs *h, const struct secretset *ss, uint64_t mask,
		     const struct h2head_coding *c, int status, bool has_body, bool head_req,
		     bool trailers, struct h2nv *out);

/* The status of a reply head (0 if :status is missing or malformed). */
int h2head_status(const struct h2hdrs *h);

#endif
