/* intercept.c -- the sandbox-facing TLS of an intercepted connection: its
 * client stream becomes a TLS server on a leaf minted for the target (bytes
 * already read, a ClientHello behind the CONNECT or peeked, are fed to it
 * first), then requests (HTTP/2 when both sides chose h2: h2conn.c); a
 * failed handshake is logged and refused */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "audit.h"
#include "elapsed.h"
#include "exchange.h"
#include "h1h2.h"
#include "conn_int.h"
#include "httpmsg.h"
#include "metrics.h"
#include "mint.h"
#include "sock.h"
#include "worker.h"
#include "tls.h"

static void log_tls_error(struct conn *c, const char *what, const char *detail, const char *sni)
{
	struct refusal r = { .reason = what, .target = true, .sni = sni, .detail = detail };

	conn_log_refuse(c, &r);
}

static void client_ready(struct conn *c);
static void client_failed(struct conn *c, const char *reason);

/* The client's handshake ended, broke off or went quiet for the idle limit
 * (before --header-timeout, when that is the longer): requests, or a refusal. */
static bool handshake_event(struct conn *c, struct sock *s, enum conn_ev ev, const char *reason)
{
	if (ev == CONN_EV_TIMEOUT) {
		client_failed(c, ""); /* "handshake aborted", as a quiet client always was */
		return true;
	}
	if (s != c->cl)
		return false;
	if (ev == CONN_EV_CONNECTED)
		client_ready(c);
	else
		client_failed(c, reason);
	return true;
}

/* The sandbox's TLS handshake with egressd (a head phase: it is due in time). */
static const struct conn_phase handshake_phase = {
	.st = ST_TLS,
	.event = handshake_event,
};

/* Intercepted CONNECT: the upstream TLS is up and verified; answer 200 and
 * run the sandbox's handshake against a leaf minted for the CONNECT host. */
void intercept_start_client(struct conn *c)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	char err[256];
	SSL *ssl = tls_new_downstream(c->w->tls, c->w->certs, c->t.host, c->t.is_ip, err);
	size_t hits, misses, entries;

	certcache_stats(c->w->certs, &hits, &misses, &entries);
	metrics_certcache(c->w->mx, hits, misses, entries, certcache_minted(c->w->certs));
	if (!ssl) {
		conn_error(c, 502, "internal", err);
		return;
	}
	tls_set_expected_host(ssl, c->t.is_ip ? "" : c->t.host);
	tls_set_upstream_h2(ssl, tls_alpn_h2(sock_ssl(c->up)));
	if (!c->transparent)
		sock_write(c->cl, ok, sizeof(ok) - 1);
	/* the 200 goes out in plain first; transparent: the ClientHello already
	 * sits in the stream's input, and OpenSSL reads it first */
	if (sock_start_tls(c->cl, ssl, SOCK_TLS_SERVER) < 0) {
		conn_close(c);
		return;
	}
	conn_enter(c, &handshake_phase);
	evutil_gettimeofday(&c->hs_start, NULL);
	conn_head_phase(c); /* the handshake is due now */
	conn_read_client(c);
}

/* ---- the bridge: h1h2.c as c->up's codec ---- */

static void bridge_wire(void *arg, const char *p, size_t n)
{
	sock_codec_wire(arg, p, n);
}

static void bridge_reply(void *arg, const char *p, size_t n)
{
	sock_codec_input(arg, p, n);
}

static const struct h1h2_cbs bridge_cbs = { bridge_wire, bridge_reply };

static int bridge_encode(void *ctx, const char *p, size_t n)
{
	return h1h2_request(ctx, p, n);
}

static int bridge_decode(void *ctx, const char *p, size_t n, const char **why)
{
	return h1h2_recv(ctx, p, n, why);
}

static size_t bridge_pending(void *ctx)
{
	return h1h2_pending(ctx);
}

static void bridge_free(void *ctx)
{
	h1h2_free(ctx);
}

static const struct sock_codec bridge_codec = {
	bridge_encode, bridge_decode, bridge_pending, bridge_free,
};

bool intercept_bridge(struct conn *c)
{
	struct h1h2 *b;

	if (sock_has_codec(c->up))
		return true;
	b = h1h2_new(&bridge_cbs, c->up);
	if (!b)
		return false;
	sock_set_codec(c->up, &bridge_codec, b);
	return true;
}

/* The sandbox finished its TLS handshake: HTTP/2 when both sides chose it,
 * else read HTTP/1 requests. */
static void client_ready(struct conn *c)
{
	bool up_h2 = tls_alpn_h2(sock_ssl(c->up));

	metrics_handshake(c->w->mx, MX_SIDE_CLIENT, elapsed_usec(&c->hs_start));
	/* the CONNECT's exchange ends (its parser stopped at the upgrade): each
	 * request inside the tunnel is an exchange of its own */
	exchange_free(c->ex);
	c->ex = NULL;
	if (up_h2 && tls_alpn_h2(sock_ssl(c->cl))) {
		h2conn_enter(c);
		return;
	}
	if (up_h2 && !intercept_bridge(c)) {
		log_tls_error(c, "client-tls-failed", "cannot set up the HTTP/2 bridge", NULL);
		conn_close(c);
		return;
	}
	h1head_enter(c); /* to c->on_head, set by who began intercepting */
	conn_head_phase(c); /* the first request head in the tunnel */
	conn_touch(c);
	conn_client_input(c);
}

/* Why a sandbox whose ALPN offer was refused got the alert. */
static const char *alpn_detail(const char *offer, char *buf, size_t n)
{
	snprintf(buf, n, "the sandbox offered ALPN \"%.100s\" without http/1.1, and the upstream "
		 "chose HTTP/1.1: egressd serves this host over HTTP/1.1 only (alert "
		 "no_application_protocol)", offer);
	return buf;
}

/* reason: the stream's ("tls handshake: " and OpenSSL's error string, or
 * "unexpected eof" when the peer just went away). The alert OpenSSL wrote
 * for a failed handshake (unrecognized_name, no_application_protocol...)
 * went to the socket from inside the handshake step. */
static void client_failed(struct conn *c, const char *reason)
{
	SSL *ssl = sock_ssl(c->cl);
	char sni[256], buf[256];
	const char *detail = strncmp(reason, "tls handshake: ", 15) == 0 ? reason + 15 : reason;

	if (!*detail || strcmp(detail, "unexpected eof") == 0)
		detail = "handshake aborted";
	if (ssl && tls_sni_mismatched(ssl, sni, sizeof(sni)))
		log_tls_error(c, reason_str(REASON_SNI_MISMATCH), detail, sni);
	else if (ssl && tls_alpn_refused(ssl, sni, sizeof(sni)))
		log_tls_error(c, "client-tls-failed", alpn_detail(sni, buf, sizeof(buf)), NULL);
	else
		log_tls_error(c, "client-tls-failed", detail, NULL);
	conn_close(c);
}
