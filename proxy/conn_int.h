/* conn_int.h -- the connection object (both sockets, their timeouts and
 * lifetime, the target and its decision) and the exchange object (one
 * request/response) shared by the proxy's connection modules (conn.c:
 * lifecycle and decisions; relay.c: byte pumps and tunnels; httpfwd.c and
 * httpresp.c: request/response forwarding; exchange.c: an exchange's
 * lifetime and log line). Not for use outside proxy/. */
#ifndef EGRESSD_CONN_INT_H
#define EGRESSD_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include <event2/util.h>
#include <openssl/ssl.h>

#include "clienthello.h"
#include "closeq.h"
#include "httpmsg.h"
#include "pattern.h"
#include "policy.h"
#include "connmode.h"
#include "exchange.h"
#include "reason.h"

struct conn;
struct evbuffer;
struct event;
struct evdns_getaddrinfo_request;
struct httpmsg;
struct gen;
struct jsonw;
struct secretset;
struct sock;
struct tunnel;
struct worker;

#define CONN_MAX_ADDRS 16
#define CONN_HEAD_CAP (64 * 1024)       /* request/response head bytes */

enum conn_state {
	ST_HEAD,      /* reading a request head from the client */
	ST_RESOLVE,   /* waiting for DNS */
	ST_CONNECT,   /* waiting for the upstream TCP connect */
	ST_SNI,       /* CONNECT tunnel: holding client bytes until the hello is read */
	ST_TUNNEL,    /* raw bytes both ways */
	ST_HTTP,      /* absolute-form: forwarding one request and its response */
	ST_TLS,       /* intercepted CONNECT: the sandbox's TLS handshake with us */
	ST_PEEK,      /* transparent: reading (not consuming) the first bytes */
	ST_H2,        /* intercepted, HTTP/2 on both sides: the h2 relay (h2conn.c) */
	ST_CLOSING,   /* flushing a final reply to the client, then free */
};

/* What happened to a connection's stream (or to the connection's timer). */
enum conn_ev {
	CONN_EV_CONNECTED, /* the stream's TLS handshake is done */
	CONN_EV_EOF,       /* its peer will send no more */
	CONN_EV_ERROR,     /* it failed (the reason says where) */
	CONN_EV_TIMEOUT,   /* nothing moved for the connection's idle limit (no stream) */
};

/* A phase of a connection (a request head, DNS and connect, the ClientHello
 * check, a tunnel, an exchange, a TLS handshake, the peek, closing): the
 * module that runs it enters it with conn_enter, and conn.c's stream
 * callbacks reach it only through this table. NULL: nothing to do. */
struct conn_phase {
	enum conn_state st;            /* its name (logs, timeouts, checks) */
	void (*client_input)(struct conn *c);   /* client bytes in c->cl's input */
	void (*upstream_input)(struct conn *c); /* upstream bytes in c->up's input */
	/* s's output was written out (also once its shutdown is done) */
	void (*drained)(struct conn *c, struct sock *s);
	/* an event of c->cl or c->up (s), or the idle timer's (s NULL): true
	 * when the phase handled it, false for conn.c's default (close; a
	 * timeout is counted and logged first). reason: the stream's, or "". */
	bool (*event)(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason);
};

struct conn {
	struct worker *w;
	const struct conn_phase *ph;   /* the phase running (c->st is its name) */
	/* what follows once the upstream is connected (upstream_start's argument) */
	void (*up_ready)(struct conn *c);
	/* a request head was read (h1head.c): explicit proxy, intercepted, origin */
	void (*on_head)(struct conn *c, const char *url, size_t ulen);
	void (*dispose)(struct conn *c); /* frees what a phase took over (a spliced tunnel) */
	struct gen *gen;               /* reference held for the connection's life */
	struct policy *pol;            /* borrowed from gen */
	const struct secretset *ss;    /* borrowed from gen; NULL without interception */
	unsigned long long id;
	struct sock *cl, *up;          /* client, upstream (NULL until connected) */
	int up_fd;                     /* the upstream socket while it connects, or -1 */
	struct event *up_wait;         /* ... its connect (EV_WRITE), then its TLS handshake's
					* deadline (--connect-timeout); NULL otherwise */
	struct event *timer;           /* the idle timer (re-armed lazily from last_activity) */
	unsigned idle_s;               /* its limit: --idle-timeout, or a phase's (0: none) */
	struct evbuffer *pending;      /* bytes for the upstream once connected */
	enum conn_state st;
	enum conn_mode mode;           /* MODE_NONE until decided (connmode.h) */
	char client[ADDR_STRLEN + 8];  /* "addr:port" of the client */
	struct target t;               /* current (checked) target */
	struct decision d;
	struct ipaddr addrs[CONN_MAX_ADDRS];
	int naddr, ai;                 /* checked addresses, the one being tried */
	struct ipaddr addr;            /* the address connected to */
	bool up_connected;
	enum reason dropped;           /* why resolved addresses were dropped */
	struct evdns_getaddrinfo_request *dnsreq;
	struct exchange *ex;           /* the request in progress (owned), or NULL */
	bool cl_eof, up_eof, cl_shut, up_shut;
	uint64_t bytes_up, bytes_down;
	struct timeval start, last_activity;
	bool logged_connect;
	bool up_tls;                   /* c->up is a TLS stream (handshaking or up) */
	bool up_h1_only;               /* offer upstreams http/1.1 only (a WebSocket) */
	bool transparent;              /* accepted on a transparent listener (not a mode) */
	struct ipaddr orig;            /* transparent: original destination */
	uint16_t orig_port;
	enum { PEEK_NONE, PEEK_TLS, PEEK_HTTP } peeked; /* what the first bytes were */
	struct ch_alpn alpn;           /* PEEK_TLS: the ClientHello's ALPN offer (h2, http/1.1) */
	uint64_t approved;             /* secrets approved for c->t (bit i = secret i) */
	struct redactor *redactor;     /* replies: real values -> placeholders */
	struct wsredact *ws;           /* after a WebSocket upgrade: frames from upstream */
	bool ws_failed;                /* they could not be redacted: closing */
	struct conn *prev, *next;      /* the worker's list */
	struct event *deadline;        /* the current head phase must end by then */
	size_t hiwat;                  /* bytes buffered per direction at most (--max-buffer) */
	bool metered;                  /* counted in egressd_connections_total */
	struct timeval hs_start;       /* intercepted: client TLS handshake started */
	struct timeval up_hs_start;    /* intercepted: upstream TLS handshake started */
	struct tunnel *tun;            /* spliced tunnel (cl, up NULL then), or NULL */
	struct h2relay *h2;            /* ST_H2: the HTTP/2 relay (h2conn.c), or NULL */
	bool h2_ending;                /* ... over: closing once both outputs are out */
	bool closed;                   /* conn_close ran: no callback acts on c any more */
	struct closeq_node cq;         /* its place in the worker's close queue */
};

/* One request and its response (exchange.h: its lifetime and log line). */
struct exchange {
	struct httpmsg *req, *resp;    /* parsers (resp from exchange_begin on) */
	char method[24];
	char *path;                    /* request path for the log (owned) */
	bool begun;                    /* exchange_begin ran */
	bool req_done, req_upgrade, resp_head_seen;
	bool resp_done;                /* the response ended before its request did */
	uint64_t req_up, req_down;     /* bytes of the request/response */
	struct timeval start;          /* its head was complete */
	uint64_t injected;             /* secrets injected into the request */
	bool redacting;                /* the response is re-framed through c->redactor */
	bool chunk_out;                /* ... and sent chunked to the client */
	struct contentdec *dec;        /* ... and its Content-Encoding undone first */
	struct evbuffer *zin;          /* body bytes parsed, not yet decoded (< --max-buffer) */
	bool dec_head;                 /* the head drops Content-Encoding (decodable coding) */
	bool dec_end;                  /* the body ended; the decoder still has output */
	bool dec_failed;               /* the stream did not decode: closing */
	bool force_close;              /* close the connection after the response */
	bool discarding;               /* a blocked request's body is being dropped */
	int block_status;              /* status of a blocked request (for the log) */
	enum reason block_reason;      /* ... and why it was refused */
	bool ruled;                    /* the request is subject to request rules */
	struct rule_verdict rv;        /* ... and their verdict */
	bool logged;                   /* its request event is written */
	bool cut;                      /* ... as cut off: the connection ended mid-exchange */
	bool up_h2;                    /* carried on an upstream h2 stream (h1h2.c) */
	struct exinject inj;           /* injection beyond header values (httpfwd.c) */
};

/* conn.c */
/* A new connection on accepted socket fd (owned), reading into c->cl; NULL
 * if out of resources (fd closed). The caller enters its first phase before
 * it returns to the loop. */
struct conn *conn_create(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, int li);
/* c's phase is ph from now on (its callbacks, c->st). */
void conn_enter(struct conn *c, const struct conn_phase *ph);
/* The upstream connected (and its TLS is up when intercepting): counted,
 * timeouts and marks set, logged; the caller goes on with c->up_ready. */
void conn_up_connected(struct conn *c);
/* Counts an upstream reset when s is c->up and ev an error. */
void conn_count_up_error(struct conn *c, struct sock *s, enum conn_ev ev);
/* The idle limit from now on: c times out (CONN_EV_TIMEOUT to its phase,
 * then closed) once nothing moved for secs (0: never). */
void conn_set_idle(struct conn *c, unsigned secs);
/* The upstream stream on connected socket fd (owned), TLS client on ssl
 * (owned) or plain (ssl NULL), with c's callbacks and marks; false if it
 * cannot be set up (fd and ssl freed). */
bool conn_attach_upstream(struct conn *c, int fd, SSL *ssl);
/* Appends b's bytes to s's output (b is drained); sock_write's answer. */
int conn_write_buf(struct sock *s, struct evbuffer *b);
/* Bytes in s's input (0 for NULL). */
size_t conn_in_len(const struct sock *s);
/* A head phase starts (request head, ClientHello, TLS handshake): it must be
 * complete within --header-timeout however the bytes trickle in, or c is
 * closed. conn_head_done: the phase ended in time. Both also set the idle
 * limit to --idle-timeout (but while peeking). */
void conn_head_phase(struct conn *c);
void conn_head_done(struct conn *c);
/* Closes c now: its request (if cut off) and close events are logged, it is
 * counted closed and its --max-connections slot is free at once, its state
 * becomes ST_CLOSING, and it is queued on its worker, whose loop frees it
 * (sockets, buffers, memory) once the callbacks running now have returned.
 * Every callback of c returns at once from then on, so a caller may still
 * read c after this, but must do nothing more with it. Closing again is a
 * no-op. */
void conn_close(struct conn *c);
/* Frees c->up (if any) and sets it to NULL. */
void conn_drop_upstream(struct conn *c);
/* Stops reading, drops the upstream, frees c once the client output is sent. */
void conn_close_flushed(struct conn *c);
/* A `refuse` line: what the connection refused after its connect decision
 * (a TLS handshake, a reply, WebSocket frames), counted as a refusal. */
struct refusal {
	const char *reason;            /* its name, for the line and the metric */
	bool target;                   /* with "host" and "port" */
	const char *method, *path;     /* non-NULL: with them and "status" */
	int status;                    /* ... the reply's status */
	const char *sni, *detail;      /* NULL: left out */
};
/* The one writer of `refuse` lines: counts r->reason in the refusals metric
 * and logs it (warn) with c's id. */
void conn_log_refuse(struct conn *c, const struct refusal *r);
/* Sends an HTTP error reply ("egressd refused ...") and closes after flush;
 * a transparent TLS client whose handshake has not begun gets a TLS alert
 * instead (access_denied for a 403 reason, else handshake_failure). */
void conn_refuse(struct conn *c, enum reason r, const char *detail);
/* Sends conn_error's reply without its "error" event (the caller logs). */
void conn_send_error(struct conn *c, int status, const char *reason_hdr, const char *msg);
/* Sends a plain error (400/431/502) with a message and closes after flush. */
void conn_error(struct conn *c, int status, const char *reason_hdr, const char *msg);
/* Handles whatever is in the client's input: the phase's client_input. */
void conn_client_input(struct conn *c);
/* Reads the client (again); what its input holds already is not delivered
 * again (the caller calls conn_client_input). */
void conn_read_client(struct conn *c);
void conn_log_connect(struct conn *c);
/* Counts c once in egressd_connections_total, with its mode and decision. */
void conn_meter(struct conn *c);
/* No byte moved either way for --idle-timeout (c->last_activity). */
bool conn_idle_expired(const struct conn *c);
/* Sets c->intercept / approved / redactor for the allowed target c->t. */
void conn_decide_intercept(struct conn *c);
void conn_touch(struct conn *c);

/* h1head.c */
/* Reading a request head from the client: each complete head goes to
 * c->on_head (a bad one is answered 400/431 and closed). */
void h1head_enter(struct conn *c);

/* upstream.c */
/* Starts resolution + connect for c->t (already allowed by name); ready runs
 * once it is connected (after the verified TLS handshake when intercepting). */
void upstream_start(struct conn *c, void (*ready)(struct conn *c));

/* intercept.c */
/* The upstream TLS is up and verified: answer (CONNECT) and start the
 * sandbox's handshake on a leaf for c->t. */
void intercept_start_client(struct conn *c);
/* The upstream chose h2 and the sandbox speaks HTTP/1.1: c->up carries the
 * engine's HTTP/1.1 requests on h2 streams from here on (h1h2.c as its
 * codec). Idempotent; false if the bridge cannot be set up. */
bool intercept_bridge(struct conn *c);

/* h2conn.c */
/* Both TLS handshakes chose h2: relay HTTP/2 frames between them (per stream
 * what HTTP/1 requests get) until either side ends. */
void h2conn_enter(struct conn *c);

/* relay.c */
/* Moves bytes from->to up to the high-water mark; returns bytes moved. */
size_t relay_pump(struct conn *c, struct sock *from, struct sock *to);
/* Feeds `from`'s input through parser m; consumed bytes are moved to `to`
 * (raw) or dropped (the caller produces output itself, e.g. redacting), within
 * the high-water mark, counting the bytes held(c) says the caller keeps for
 * `to` (NULL: none) as queued. Returns the parser's last status. */
enum httpmsg_status relay_pump_msg(struct conn *c, struct httpmsg *m, struct sock *from,
				   struct sock *to, bool raw, uint64_t *count,
				   size_t (*held)(const struct conn *c));
/* The CONNECT's upstream is up (not intercepted): answer 200, check the
 * ClientHello, then tunnel. */
void relay_connect_established(struct conn *c);
/* s drained and `from`, the other side, had its EOF: pass the rest and the
 * half-close on. false when from has not ended. */
bool relay_drained_eof(struct conn *c, struct sock *from, struct sock *s);
/* Switches the connection to a raw tunnel in both directions. */
void relay_start_tunnel(struct conn *c);
/* A fatal TLS alert with description desc, before closing a refused client. */
void relay_send_tls_alert(struct conn *c, unsigned char desc);

/* tunnel.c */
/* An un-inspected tunnel (CONNECT after the SNI check, transparent) leaves
 * its streams for the raw sockets and splice(2): c->cl and c->up become
 * NULL, c->tun owns the sockets. Returns false (nothing changed) when c is not
 * such a tunnel; true when c->tun took over (c may be closed already). */
bool tunnel_start(struct conn *c);

/* httpfwd.c */
/* A request head is parsed in c->ex->req (absolute-form on the proxy, or any
 * request inside an intercepted tunnel): check, rewrite and forward. */
void httpfwd_on_head(struct conn *c, const char *url, size_t ulen);
/* The upstream is connected: send the pending head and body. */
void httpfwd_on_connected(struct conn *c);

/* httpresp.c */
/* Per request: hook the response body into the redactor when needed. */
void httpresp_prepare(struct conn *c);
/* A blocked request's body has been dropped (or is not coming: c->force_close):
 * log it, read the next one or close. */
void httpresp_blocked_done(struct conn *c);
/* The request's body ended after its response did: log, next request or close. */
void httpresp_request_done(struct conn *c);
/* Upstream bytes (response). */
void httpresp_upstream_input(struct conn *c);
/* The client drained after the response paused: go on (input or EOF). */
void httpresp_resume(struct conn *c);
/* Bytes the response holds besides the client's output (re-framed bytes not
 * flushed yet; --max-buffer while body bytes wait to be decoded): the pump
 * counts them as queued. */
size_t httpresp_held(const struct conn *c);
/* Upstream EOF in HTTP mode. */
void httpresp_upstream_eof(struct conn *c);

#endif
