/* intercept.c -- the TLS layers of an intercepted connection: the sandbox-facing
 * handshake on a minted leaf (as a filter over the client socket, so bytes
 * already read are not lost), the verified upstream TLS on the socket that
 * just connected, and their orderly close */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "audit.h"
#include "elapsed.h"
#include "exchange.h"
#include "conn_int.h"
#include "httpmsg.h"
#include "metrics.h"
#include "mint.h"
#include "worker.h"
#include "tls.h"

/* The TLS filter's records land in cl_raw's output; libevent would arm
 * EV_WRITE for them and disarm it once written: two epoll_ctl per reply.
 * Instead, whatever this loop turn adds is written by one writev at the end
 * of the turn (cl_flush, a non-socket event: no syscall to activate), and
 * EV_WRITE is enabled only when the socket would block (or fails: libevent's
 * write then reports the error), then disabled once libevent drained it. */
static void direct_flush(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct bufferevent *raw = c->cl_raw;
	struct evbuffer *out = bufferevent_get_output(raw);
	int n;

	if (c->closed)
		return; /* what the filter sent is dropped with it, as before */
	if (bufferevent_get_enabled(raw) & EV_WRITE)
		return; /* blocked meanwhile: libevent writes */
	/* a socket bufferevent's output is frozen at the start except while
	 * it writes; so is it here */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(raw));
	evbuffer_freeze(out, 1);
	if (n < 0 || evbuffer_get_length(out) > 0)
		bufferevent_enable(raw, EV_WRITE);
	else if (evbuffer_get_length(bufferevent_get_output(c->cl)) > 0)
		/* the filter stopped at raw's high-water mark (intercept_client
		 * sets it) and waits for raw's write callback, which libevent
		 * runs only after its own writes: run it */
		bufferevent_trigger(raw, EV_WRITE, 0);
}

static void direct_cb(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	bool armed = bufferevent_get_enabled(c->cl_raw) & EV_WRITE;

	if (info->n_added && !armed && !event_pending(c->cl_flush, EV_TIMEOUT, NULL))
		event_active(c->cl_flush, EV_TIMEOUT, 0);
	else if (info->n_deleted && armed && evbuffer_get_length(out) == 0)
		bufferevent_disable(c->cl_raw, EV_WRITE);
}

/* libevent 2.1 reads a socket 4096 bytes at a time, each after a FIONREAD
 * ioctl: an intercepted upload cost two syscalls per 4 KiB. Once the
 * handshake is done, cl_raw's socket is read here instead (cl_raw's own
 * EV_READ stays off), up to DIRECT_READ bytes at a time, into its input,
 * whose read callback (the TLS filter's) then runs as libevent would run it.
 * Reading pauses while --max-buffer bytes from the sandbox wait unconsumed,
 * still encrypted in that input or decrypted in the filter's (the filter has
 * no read high-water mark then: libevent's runs a TLS read, and reserves a
 * 32 KiB chain that stays empty, at every drain of the filter's input; an
 * idle connection kept one), and resumes as they are consumed (direct_rd_cb,
 * on both inputs). DIRECT_READ plus libevent's chain header is one 32 KiB
 * allocation (64 KiB made 128 KiB chains, which glibc mmaps: slower per
 * request). */
#define DIRECT_READ (32 * 1024 - 256)

static size_t client_unread(struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_input(c->cl_raw)) +
	       evbuffer_get_length(bufferevent_get_input(c->cl));
}

static void direct_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->cl_raw);
	struct evbuffer_iovec v[2];
	ssize_t got;
	int n;

	if (c->closed)
		return;
	evbuffer_unfreeze(in, 0); /* a socket bufferevent's input end is frozen */
	n = evbuffer_reserve_space(in, DIRECT_READ, v, 2);
	got = n > 0 ? readv(fd, (struct iovec *)v, n) : -1;
	if (got > 0) {
		size_t left = (size_t)got;
		for (int i = 0; i < n; i++) {
			v[i].iov_len = left < v[i].iov_len ? left : v[i].iov_len;
			left -= v[i].iov_len;
		}
		evbuffer_commit_space(in, v, n);
	}
	evbuffer_freeze(in, 0);
	if (got > 0) {
		if (client_unread(c) >= c->hiwat)
			event_del(c->cl_rd);
		bufferevent_trigger(c->cl_raw, EV_READ, 0);
	} else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
		c->cl_rd_end = true;
		event_del(c->cl_rd);
		bufferevent_trigger_event(c->cl_raw, BEV_EVENT_READING |
					  (got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), 0);
	}
}

static void direct_rd_cb(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;

	if (info->n_deleted && client_unread(c) < c->hiwat && !c->cl_rd_end &&
	    !event_pending(c->cl_rd, EV_READ, NULL))
		event_add(c->cl_rd, NULL);
}

/* Also undoes a reader_start that stopped half-way. */
static void reader_stop(struct conn *c)
{
	if (c->cl_rd_cb)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->cl_raw), c->cl_rd_cb);
	if (c->cl_rd_fcb)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->cl), c->cl_rd_fcb);
	if (c->cl_rd)
		event_free(c->cl_rd);
	c->cl_rd = NULL;
	c->cl_rd_cb = c->cl_rd_fcb = NULL;
}

static void reader_start(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cl_raw);

	c->cl_rd = event_new(c->w->base, bufferevent_getfd(c->cl_raw), EV_READ | EV_PERSIST,
			     direct_read, c);
	if (c->cl_rd)
		c->cl_rd_cb = evbuffer_add_cb(in, direct_rd_cb, c);
	if (c->cl_rd_cb)
		c->cl_rd_fcb = evbuffer_add_cb(bufferevent_get_input(c->cl), direct_rd_cb, c);
	if (!c->cl_rd_fcb || event_add(c->cl_rd, NULL) < 0) {
		reader_stop(c);
		return; /* libevent's reads, as before */
	}
	bufferevent_disable(c->cl_raw, EV_READ);
	bufferevent_setwatermark(c->cl, EV_READ, 0, 0);
}

/* Back to libevent's writes (our reader stops; this runs only as the TLS
 * layer goes away, so nothing reads any more); also undoes a direct_start
 * that stopped half-way. */
static void direct_stop(struct conn *c)
{
	reader_stop(c);
	if (c->cl_direct)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->cl_raw), c->cl_direct);
	if (c->cl_flush) {
		event_free(c->cl_flush);
		bufferevent_enable(c->cl_raw, EV_WRITE);
	}
	c->cl_direct = NULL;
	c->cl_flush = NULL;
}

static void direct_start(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->cl_raw);

	c->cl_flush = event_new(c->w->base, -1, 0, direct_flush, c);
	if (!c->cl_flush)
		return; /* libevent's writes, as before */
	c->cl_direct = evbuffer_add_cb(out, direct_cb, c);
	if (!c->cl_direct) {
		direct_stop(c);
		return;
	}
	if (evbuffer_get_length(out) == 0)
		bufferevent_disable(c->cl_raw, EV_WRITE);
	reader_start(c);
}

/* libevent's TLS filter reserves a chain for each read it tries (8 KiB for its
 * default 4 KiB read), and one that found nothing stays in the filter's input
 * when it is otherwise empty: an idle connection kept it. An evbuffer frees
 * its chains only in a drain, and a drain of nothing does nothing: one byte
 * is added to drain it. */
void intercept_trim(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cl);

	if (evbuffer_get_length(in) == 0 && evbuffer_add(in, "", 1) == 0)
		evbuffer_drain(in, 1);
}

/* Intercepted: frees the TLS filter (and its SSL), leaving c->cl = the raw
 * socket bufferevent, whose output already holds everything sent. */
static void drop_client(struct conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->cl);

	direct_stop(c);
	bufferevent_free(c->cl);
	SSL_free(ssl);
	c->cl = c->cl_raw;
	c->cl_raw = NULL;
}

/* Closing an intercepted connection: the TLS layer has handed everything to
 * the socket; send close_notify, drop the TLS layer, flush the socket. */
static void close_client(struct conn *c)
{
	SSL_shutdown(bufferevent_openssl_get_ssl(c->cl));
	drop_client(c);
	bufferevent_setcb(c->cl, NULL, conn_on_write, conn_on_event, c);
	bufferevent_enable(c->cl, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(c->cl)) == 0)
		conn_close(c);
}

static void log_tls_error(struct conn *c, const char *what, const char *detail, const char *sni)
{
	struct refusal r = { .reason = what, .target = true, .sni = sni, .detail = detail };

	conn_log_refuse(c, &r);
}

/* The sandbox-facing TLS filter in c->cl, over the socket c->cl_raw. */
static const struct conn_layer client_layer = {
	.drop = drop_client,
	.close = close_client,
};

static void client_ready(struct conn *c);
static void client_failed(struct conn *c);

/* The client's handshake ended (or broke off): requests, or a refusal. */
static bool handshake_event(struct conn *c, struct bufferevent *bev, short what)
{
	if (bev != c->cl)
		return false;
	if (what & BEV_EVENT_CONNECTED)
		client_ready(c);
	else
		client_failed(c);
	return true;
}

/* The sandbox's TLS handshake with egressd (a head phase: it is due in time). */
static const struct conn_phase handshake_phase = {
	.st = ST_TLS,
	.head = true,
	.event = handshake_event,
};

/* Intercepted CONNECT: the upstream TLS is up and verified; answer 200 and
 * run the sandbox's handshake against a leaf minted for the CONNECT host. */
void intercept_start_client(struct conn *c)
{
	const int opts = BEV_OPT_DEFER_CALLBACKS; /* we free the socket and SSL ourselves */
	char err[256];
	struct bufferevent *f;
	SSL *ssl = tls_new_downstream(c->w->tls, c->w->certs, c->t.host, c->t.is_ip, err);
	size_t hits, misses, entries;

	certcache_stats(c->w->certs, &hits, &misses, &entries);
	metrics_certcache(c->w->mx, hits, misses, entries, certcache_minted(c->w->certs));
	if (!ssl) {
		conn_error(c, 502, "internal", err);
		return;
	}
	tls_set_expected_host(ssl, c->t.is_ip ? "" : c->t.host);
	if (!c->transparent)
		evbuffer_add_printf(bufferevent_get_output(c->cl),
				    "HTTP/1.1 200 Connection established\r\n\r\n");
	f = bufferevent_openssl_filter_new(c->w->base, c->cl, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
	if (!f) {
		SSL_free(ssl);
		conn_close(c);
		return;
	}
	c->cl_raw = c->cl;
	c->cl = f;
	c->cl_layer = &client_layer;
	conn_enter(c, &handshake_phase);
	evutil_gettimeofday(&c->hs_start, NULL);
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	bufferevent_setcb(f, conn_on_client_read, conn_on_write, conn_on_event, c);
	bufferevent_setwatermark(f, EV_READ, 0, c->hiwat);
	/* back-pressure towards the sandbox: the filter writes records into
	 * raw's output only up to this mark, so a sandbox that stops reading
	 * leaves bytes in f's output, where relay and httpresp see them and
	 * stop reading the upstream (without it, all of a download was kept) */
	bufferevent_setwatermark(c->cl_raw, EV_WRITE, 0, c->hiwat);
	conn_head_phase(c); /* the handshake is due now */
	bufferevent_enable(f, EV_READ | EV_WRITE);
	bufferevent_enable(c->up, EV_READ | EV_WRITE);
	/* transparent: the ClientHello already sits in the socket's input */
	if (evbuffer_get_length(bufferevent_get_input(c->cl_raw)) > 0)
		bufferevent_trigger(c->cl_raw, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
}

/* The sandbox finished its TLS handshake: read requests. */
static void client_ready(struct conn *c)
{
	metrics_handshake(c->w->mx, MX_SIDE_CLIENT, elapsed_usec(&c->hs_start));
	/* the CONNECT's exchange ends (its parser stopped at the upgrade): each
	 * request inside the tunnel is an exchange of its own */
	exchange_free(c->ex);
	c->ex = NULL;
	h1head_enter(c); /* to c->on_head, set by who began intercepting */
	direct_start(c);
	conn_head_phase(c); /* the first request head in the tunnel */
	conn_touch(c);
	conn_client_input(c);
}

/* Why a sandbox whose ALPN offer was refused got the alert. */
static const char *alpn_detail(const char *offer, char *buf, size_t n)
{
	snprintf(buf, n, "the sandbox offered ALPN \"%.100s\" without http/1.1: egressd serves "
		 "intercepted hosts over HTTP/1.1 only (alert no_application_protocol)", offer);
	return buf;
}

/* The alert OpenSSL wrote for a failed handshake (unrecognized_name,
 * no_application_protocol...) is in cl_raw's output: one best-effort write
 * so the sandbox learns why, instead of a bare close. */
static void flush_alert(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->cl_raw);

	evbuffer_unfreeze(out, 1); /* a socket bufferevent's output start is frozen */
	(void)evbuffer_write(out, bufferevent_getfd(c->cl_raw));
	evbuffer_freeze(out, 1);
}

static void client_failed(struct conn *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->cl);
	char sni[256], detail[256] = "";
	unsigned long e = bufferevent_get_openssl_error(c->cl);

	if (e)
		ERR_error_string_n(e, detail, sizeof(detail));
	if (ssl && tls_sni_mismatched(ssl, sni, sizeof(sni)))
		log_tls_error(c, reason_str(REASON_SNI_MISMATCH), detail, sni);
	else if (ssl && tls_alpn_refused(ssl, sni, sizeof(sni)))
		log_tls_error(c, "client-tls-failed", alpn_detail(sni, detail, sizeof(detail)), NULL);
	else
		log_tls_error(c, "client-tls-failed", detail[0] ? detail : "handshake aborted", NULL);
	flush_alert(c);
	conn_close(c);
}

/* libevent's socket-based TLS bufferevent writes only from its EV_WRITE
 * callback: a request would arm EV_WRITE, wait one loop turn for it, write,
 * and disarm it. Bytes added to the upstream's output run that callback in
 * this loop turn instead (it is activated, not polled for). */
static void up_write_now(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;

	if (info->n_added)
		event_active(&c->up->ev_write, EV_WRITE, 1);
}

/* The upstream reads ahead (tls.c: one read takes several records), so
 * records can wait inside the SSL object while the socket stays quiet; so can
 * the rest of a record when the input reached its high-water mark (libevent
 * #854). libevent's socket-based TLS bufferevent only polls the socket, so
 * whenever it matters (bytes added to or taken from the input, reading
 * resumed) a read runs in this loop turn if OpenSSL holds bytes. A read that
 * finds only part of a record gets EAGAIN from the socket and stops. */
void intercept_upstream_pending(struct conn *c)
{
	SSL *ssl = c->up && c->up_tls ? bufferevent_openssl_get_ssl(c->up) : NULL;

	if (ssl && SSL_has_pending(ssl))
		event_active(&c->up->ev_read, EV_READ, 1);
}

static void up_input_cb(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg)
{
	intercept_upstream_pending(arg);
}

/* Intercepted upstream, TCP connected: replace the plain bufferevent with a
 * TLS one on the same socket (created here rather than before the connect:
 * libevent's SSL_clear on a late fd would drop the session we resume). */
void intercept_start_upstream(struct conn *c)
{
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct timeval tv = { (time_t)c->w->opts->connect_timeout_s, 0 };
	evutil_socket_t fd = bufferevent_getfd(c->up);
	struct bufferevent *bev = NULL;
	char err[256];
	SSL *ssl;

	ssl = tls_new_upstream(c->w->tls, c->t.host, c->t.port, c->t.is_ip, err);
	if (fd >= 0 && ssl) {
		/* the plain bufferevent lets go of the socket (no dup: the event
		 * loop's changelist must see one descriptor per socket) */
		bufferevent_setfd(c->up, -1);
		bev = bufferevent_openssl_socket_new(c->w->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
		if (!bev)
			close(fd);
	}
	conn_drop_upstream(c);
	if (!bev) {
		SSL_free(ssl);
		conn_refuse(c, REASON_CONNECT_FAILED, "cannot set up TLS to the upstream");
		return;
	}
	c->up = bev;
	c->up_tls = true;
	evutil_gettimeofday(&c->up_hs_start, NULL);
	/* many servers close without close_notify; framing tells us where bodies end */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, conn_on_upstream_read, conn_on_write, conn_on_event, c);
	evbuffer_add_cb(bufferevent_get_output(bev), up_write_now, c);
	evbuffer_add_cb(bufferevent_get_input(bev), up_input_cb, c);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}
