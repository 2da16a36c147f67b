/* httpmsg.h -- one HTTP/1.x message stream (requests or responses) parsed with
 * llhttp in strict mode: heads collected under a cap, bodies delimited but not
 * stored, so callers forward raw bytes and know exactly where each message ends */
#ifndef EGRESSD_HTTPMSG_H
#define EGRESSD_HTTPMSG_H

#include <stdbool.h>
#include <stddef.h>

enum httpmsg_kind { HTTPMSG_REQUEST, HTTPMSG_RESPONSE };

enum httpmsg_status {
	HTTPMSG_NEED_MORE, /* all input consumed; message not finished */
	HTTPMSG_HEAD,      /* head complete (paused): inspect it, then httpmsg_resume */
	HTTPMSG_DONE,      /* message complete (paused): httpmsg_next for the next one */
	HTTPMSG_UPGRADE,   /* message complete and the stream switches protocol
			      (CONNECT, or Upgrade accepted): bytes after are not HTTP */
	HTTPMSG_ERROR,     /* malformed: see httpmsg_error / httpmsg_error_status */
};

struct httpmsg;

/* New parser for a stream of messages of one kind; head_cap bounds the bytes
 * of the request line/status line plus headers. Free with httpmsg_free. */
struct httpmsg *httpmsg_new(enum httpmsg_kind kind, size_t head_cap);
void httpmsg_free(struct httpmsg *m); /* NULL: no-op */

/* Parses data[0..n). *consumed is set to the number of bytes that belong to
 * the current message up to the event returned (all n for NEED_MORE).
 * After ERROR nothing more may be fed. */
enum httpmsg_status httpmsg_feed(struct httpmsg *m, const char *data, size_t n, size_t *consumed);
/* The peer closed: returns DONE if that ends the message properly (a response
 * delimited by close, or no message started), else ERROR. */
enum httpmsg_status httpmsg_finish(struct httpmsg *m);
/* After HEAD: continue parsing the body. */
void httpmsg_resume(struct httpmsg *m);
/* After DONE: forget this head and parse the next message. */
void httpmsg_next(struct httpmsg *m);
/* Responses only: the next response answers a HEAD request (no body). */
void httpmsg_expect_no_body(struct httpmsg *m);

bool httpmsg_head_complete(const struct httpmsg *m);
bool httpmsg_started(const struct httpmsg *m); /* any byte of a message seen */
const char *httpmsg_error(const struct httpmsg *m); /* static text */
int httpmsg_error_status(const struct httpmsg *m);  /* 400 or 431 */
/* The error is an HTTP/2 connection preface (PRI * HTTP/2.0): a client that
 * speaks HTTP/2 with prior knowledge, not a malformed HTTP/1 request. */
bool httpmsg_error_h2_preface(const struct httpmsg *m);

/* Head accessors, valid from HEAD (or DONE) until httpmsg_next. Borrowed. */
const char *httpmsg_method(const struct httpmsg *m); /* "GET" */
const char *httpmsg_target(const struct httpmsg *m, size_t *len);
int httpmsg_status_code(const struct httpmsg *m);
int httpmsg_version_minor(const struct httpmsg *m);
size_t httpmsg_header_count(const struct httpmsg *m);
void httpmsg_header(const struct httpmsg *m, size_t i, const char **name, size_t *nlen,
		    const char **val, size_t *vlen);
/* Trailer fields of a chunked message (after its last chunk), valid at DONE
 * until httpmsg_next; they count against head_cap. Borrowed. */
size_t httpmsg_trailer_count(const struct httpmsg *m);
void httpmsg_trailer(const struct httpmsg *m, size_t i, const char **name, size_t *nlen,
		     const char **val, size_t *vlen);
/* Number of headers named name (case-insensitive); the first's value in *val. */
size_t httpmsg_header_find(const struct httpmsg *m, const char *name, const char **val,
			   size_t *vlen);
/* Every header named name (case-insensitive), values joined with ", " into
 * b (emptied first); their number in *count. False if b's cap was reached
 * (b then holds what fitted). */
struct obuf;
bool httpmsg_header_join(const struct httpmsg *m, const char *name, struct obuf *b,
			 size_t *count);
/* Whether the connection may carry another message after this one. */
bool httpmsg_keep_alive(const struct httpmsg *m);
bool httpmsg_is_chunked(const struct httpmsg *m);

/* Body bytes, with chunked framing removed, go to fn as they are parsed
 * (in addition to being counted as consumed). NULL fn: none. */
typedef void (*httpmsg_body_fn)(void *ctx, const char *p, size_t n);
void httpmsg_set_body_sink(struct httpmsg *m, httpmsg_body_fn fn, void *ctx);
/* Response reason phrase ("OK"), borrowed; "" if none. */
const char *httpmsg_reason(const struct httpmsg *m, size_t *len);
/* After HEAD: will a body follow (chunked, Content-Length > 0, or close-delimited)? */
bool httpmsg_has_body(const struct httpmsg *m);

#endif
