/* h2relay.h -- one intercepted connection speaking HTTP/2 on both sides: an
 * nghttp2 server session towards the sandbox and a client session towards
 * the upstream, and per stream what HTTP/1 requests get (Host/:authority
 * check, request rules, injection, leak checks, redaction of heads, DATA
 * and trailers, compressed replies decoded). Bytes in, bytes out: no
 * socket, no event loop; the engine feeds what it reads and writes what
 * the write callback hands it.
 *
 * Memory: request DATA is credited back to the sandbox (WINDOW_UPDATE) only
 * as it is handed to the upstream, reply DATA to the upstream only as it is
 * decoded and redacted, and that only while the sandbox's side holds less
 * than the per-stream and per-connection bounds; so what the relay holds is
 * bounded by limits, whichever side stops reading. */
#ifndef EGRESSD_H2RELAY_H
#define EGRESSD_H2RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reason.h"
#include "rules.h"

struct policy;
struct secretset;
struct target;
struct h2relay;

enum h2relay_side { H2_SANDBOX, H2_UPSTREAM };

struct h2relay_limits {
	uint32_t stream_buf;  /* bytes held per stream and direction: the stream flow-control window */
	uint32_t conn_buf;    /* bytes held per connection and direction: the connection window */
	uint32_t max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS offered to the sandbox */
	uint32_t header_list; /* SETTINGS_MAX_HEADER_LIST_SIZE; a bigger request head gets 431 */
	uint32_t idle_burst;  /* PING, SETTINGS and empty DATA frames a side may send at once ... */
	uint32_t idle_rate;   /* ... and per second after that (a token bucket; a new stream
				 or DATA bytes from that side refill it); more: GOAWAY
				 ENHANCE_YOUR_CALM. A keepalive PING every few seconds
				 never ends a connection, a flood does. */
	uint32_t reset_burst; /* RST_STREAMs from the sandbox at once ... */
	uint32_t reset_rate;  /* ... and per second after that (CVE-2023-44487); more: GOAWAY */
};
/* 256 KiB per stream, 1 MiB per connection, 100 streams, 64 KiB heads,
 * idle frames 1000 then 100/s, resets 1000 then 33/s (nghttp2's defaults). */
void h2relay_limits_default(struct h2relay_limits *l);

enum h2relay_event_kind {
	H2EV_REQUEST, /* a stream ended: its `request` log line */
	H2EV_LEAK,    /* a request carries placeholders bound for other hosts */
	H2EV_REFUSE,  /* a reply that cannot be redacted (unredactable-encoding) */
};

/* One event; every pointer is borrowed for the call. */
struct h2relay_event {
	enum h2relay_event_kind kind;
	int32_t stream_id;        /* the sandbox's stream */
	const char *method;       /* "" when the head never came */
	const char *path;         /* :path, cut to EXCHANGE_PATH_MAX bytes */
	int status;               /* the status the sandbox got (0: none) */
	uint64_t bytes_up;        /* request DATA bytes sent upstream */
	uint64_t bytes_down;      /* reply DATA bytes sent to the sandbox */
	uint64_t secrets;         /* REQUEST: secrets injected; LEAK: secrets leaked (bits) */
	enum reason reason;       /* why the stream was refused, REASON_NONE if not */
	const char *detail;       /* a refusal's detail, or NULL */
	bool ruled;               /* request rules decided (verdict in rv) */
	struct rule_verdict rv;
	bool blocked;             /* LEAK: the request was refused for it */
	bool incomplete;          /* REQUEST: reset or cut before its reply ended */
	uint64_t usec;            /* REQUEST: microseconds since its head came */
};

struct h2relay_cbs {
	void *ctx;
	/* Bytes for side; returns how many it took (0..n; the rest is offered
	 * again at the next h2relay_flush, and until then h2relay_want_read
	 * says false for that side), or -1: that side is gone. */
	ssize_t (*write)(void *ctx, enum h2relay_side side, const uint8_t *p, size_t n);
	void (*event)(void *ctx, const struct h2relay_event *ev);
	/* The time in microseconds on a monotonic clock (the idle-frame rate),
	 * or NULL: CLOCK_MONOTONIC_COARSE. Tests set it to a simulated clock. */
	uint64_t (*now_us)(void *ctx);
};

struct h2relay_conf {
	const struct target *t;      /* the connection's checked host and port */
	const struct policy *pol;    /* request rules (may be NULL) */
	const struct secretset *ss;  /* may be NULL */
	uint64_t approved;           /* secrets approved for t: injected, and redacted from replies */
	bool leak_block;             /* --on-placeholder-leak block */
	struct h2relay_limits lim;
};

/* A relay for one connection; conf's pointers are borrowed and must outlive
 * it, cbs is copied. The initial SETTINGS of both sides are queued (the
 * upstream's preface too): call h2relay_flush. Free with h2relay_free. */
struct h2relay *h2relay_new(const struct h2relay_conf *conf, const struct h2relay_cbs *cbs);
/* Frees r; each stream still open is reported as an incomplete H2EV_REQUEST.
 * Buffers are wiped. NULL: no-op. */
void h2relay_free(struct h2relay *r);

/* Bytes read from side; runs the callbacks it causes and writes what is due
 * (h2relay_flush). Returns 0, or -1: the connection must end (a protocol
 * error, a flood, a side gone); a GOAWAY may be queued: flush, then close. */
int h2relay_feed(struct h2relay *r, enum h2relay_side side, const uint8_t *p, size_t n);
/* Hands both sides' pending bytes to the write callback (after it took less
 * than offered, once that side can take more). 0, or -1 as h2relay_feed. */
int h2relay_flush(struct h2relay *r);
/* Should the engine read side now? False while that side's session wants
 * no more input or has bytes the write callback did not take. */
bool h2relay_want_read(const struct h2relay *r, enum h2relay_side side);
/* Has side bytes to write? */
bool h2relay_want_write(const struct h2relay *r, enum h2relay_side side);
/* Both sessions are over (GOAWAY exchanged, no stream left): close. */
bool h2relay_done(const struct h2relay *r);
/* Bytes the relay holds in its stream buffers (both directions). */
size_t h2relay_buffered(const struct h2relay *r);

#endif
