/* tls.h -- the proxy's TLS contexts: the sandbox-facing server side (leaves
 * minted for the CONNECT host, ALPN h2 where the upstream chose it, else
 * http/1.1) and the verified upstream
 * client side (system store + --upstream-ca, never egressd's own CA) */
#ifndef EGRESSD_TLS_H
#define EGRESSD_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

struct ca;
struct certcache;
struct minter;

struct tls;

/* Builds both contexts. ca and minter are borrowed (outlive the tls).
 * upstream_ca: extra PEM trust anchors or NULL. NULL with err (256 bytes). */
struct tls *tls_new(struct ca *ca, struct minter *minter, const char *upstream_ca, char *err);
void tls_free(struct tls *t);

/* A new server-side SSL for host, with the leaf from cache (one cache per
 * worker thread). NULL with err. Caller owns the SSL. */
SSL *tls_new_downstream(struct tls *t, struct certcache *cache, const char *host, bool is_ip,
			char *err);
/* ALPN h2 and http/1.1 in wire form (length-prefixed names), for
 * tls_new_upstream: (const unsigned char *)TLS_ALPN_H2_HTTP11, TLS_ALPN_H2_HTTP11_LEN. */
#define TLS_ALPN_H2_HTTP11 "\x02h2\x08http/1.1"
#define TLS_ALPN_H2_HTTP11_LEN (sizeof(TLS_ALPN_H2_HTTP11) - 1)

/* A new client-side SSL to host:port: SNI (names only), hostname or IP
 * check, and the last session for host:port offered for resumption. ALPN:
 * alpn[0..alpn_len) in wire form (borrowed; copied), or http/1.1 when alpn is
 * NULL. NULL with err. Caller owns the SSL. */
SSL *tls_new_upstream(struct tls *t, const char *host, unsigned port, bool is_ip,
		       const unsigned char *alpn, size_t alpn_len, char *err);

/* After a failed upstream handshake: a message naming what failed, and
 * whether it was certificate verification. */
bool tls_upstream_verify_failed(SSL *ssl, char *msg, size_t n);
/* After a failed upstream handshake: did the upstream end it with a
 * no_application_protocol alert (it serves none of the protocols offered)? */
bool tls_upstream_alpn_refused(const SSL *ssl);

/* Expected SNI for a downstream SSL (checked in the servername callback);
 * the callback stores "mismatch" in the SSL's ex data, read here. */
void tls_set_expected_host(SSL *ssl, const char *host);
bool tls_sni_mismatched(SSL *ssl, char *sni, size_t n);
/* The upstream of downstream ssl chose h2: the sandbox is offered h2 too
 * (preferred over http/1.1). Call after tls_set_expected_host. */
void tls_set_upstream_h2(SSL *ssl, bool h2);
/* Did ssl's handshake select ALPN h2? (NULL: false) */
bool tls_alpn_h2(const SSL *ssl);
/* After a failed downstream handshake: whether it failed because the
 * sandbox's ALPN offer (into offer, "h2, ...") named no protocol egressd
 * serves there (no http/1.1, and no h2 from the upstream: it got the
 * no_application_protocol alert). */
bool tls_alpn_refused(SSL *ssl, char *offer, size_t n);

#endif
