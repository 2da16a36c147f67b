/* h2relay_int.h -- the HTTP/2 relay's connection and stream, shared by its
 * two halves: the sessions and their callbacks (h2relay.c) and what each
 * stream does (h2stream.c). Not for other modules. */
#ifndef EGRESSD_H2RELAY_INT_H
#define EGRESSD_H2RELAY_INT_H

#include <sys/time.h>

#include <nghttp2/nghttp2.h>

#include "h2body.h"
#include "h2head.h"
#include "h2relay.h"
#include "pattern.h"

#define MIN_WINDOW 65535 /* RFC 9113's initial window: a peer may fill it before our SETTINGS */

struct h2stream {
	struct h2relay *r;
	struct h2stream *prev, *next;
	int32_t sid, uid;        /* the sandbox's stream, the upstream's (0: none yet) */
	bool s_open, u_open;     /* each session still has it */
	struct h2hdrs *req, *req_tr;   /* request head and trailers from the sandbox */
	struct h2hdrs *resp, *resp_tr; /* reply head and trailers from the upstream */
	bool head_done;          /* the request head was taken (logged at the end) */
	struct timeval start;    /* ... then */
	char method[33];
	char *path;
	bool head_req;           /* HEAD: the reply has no body */
	struct h2queue up;       /* request DATA waiting for the upstream */
	bool up_end;             /* the sandbox ended its request */
	struct h2body *body;     /* the reply's DATA, decoded and redacted for the sandbox */
	bool rin_end;            /* the upstream ended its reply */
	bool redacting;          /* the reply is redacted (a secret's host) */
	bool resp_final;         /* a final reply head came */
	bool resp_sent;          /* the sandbox got a final head (or egressd's answer) */
	bool resp_too_big;       /* the upstream's head or trailers passed the bound */
	bool refused;            /* egressd answered: request DATA is dropped */
	bool reset;              /* the reply failed after its head: the stream is reset */
	int status;
	enum reason reason;
	const char *detail;
	uint64_t injected, bytes_up, bytes_down;
	bool ruled;
	struct rule_verdict rv;
};

struct h2relay {
	struct h2relay_conf conf;
	struct h2relay_cbs cbs;
	nghttp2_session *s[2];   /* [H2_SANDBOX] server, [H2_UPSTREAM] client */
	bool blocked[2];         /* the write callback took less than offered */
	uint64_t written[2];
	uint64_t idle_tat[2];    /* idle frames' token bucket (GCRA): the time (us) at which
				    it is full again; 0: full (a useful frame came) */
	bool calm[2];            /* ... too many: that side gets ENHANCE_YOUR_CALM */
	bool failed;             /* a side is gone or misbehaved: end the connection */
	struct h2stream *streams;
	size_t down_total;       /* reply bytes ready for the sandbox (the per-connection bound) */
	char authority[HOST_MAX + 16];
};

/* A stream the sandbox opened (sid), in r's list; its reply body and
 * request queue bounded by r's window. */
struct h2stream *h2stream_new(struct h2relay *r, int32_t sid);
/* Frees st (its unforwarded bytes credited to both sessions' windows). */
void h2stream_free(struct h2stream *st);
/* Frees st once neither session knows it. */
void h2stream_maybe_free(struct h2stream *st);
/* st's H2EV_REQUEST event, once (if its head was taken). */
void h2stream_log(struct h2stream *st, bool incomplete);
/* The sandbox's request head is complete (end: no body follows): checked,
 * answered by egressd or opened upstream. */
void h2stream_start(struct h2stream *st, bool end);
/* The upstream's reply head (1xx or final) is complete (end: no body). */
void h2stream_reply_head(struct h2stream *st, bool end);
/* Moves reply bytes on while the bounds allow (credits the upstream). */
void h2stream_pump(struct h2stream *st);
/* egressd answers st itself: status, X-Egressd-Reason hdr, body msg. */
void h2stream_refuse(struct h2stream *st, enum reason rs, int status, const char *hdr,
		     const char *msg);

#endif
