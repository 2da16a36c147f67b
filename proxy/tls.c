/* tls.c -- the proxy's TLS contexts: sandbox-facing (minted leaves, SNI must
 * name the CONNECT host) and upstream (verified chain and name, own CA refused) */
#include "tls.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "errmsg.h"
#include <pthread.h>
#include "ca.h"
#include "mint.h"

#define SESS_SLOTS 512
#define HOSTPORT_MAX 270
#define DOWN_TICKETS 0 /* TLS 1.3 tickets per sandbox handshake (make_down) */
/* TLS 1.3 suites, AES-128-GCM first (OpenSSL's default puts AES-256-GCM-SHA384
 * first): its SHA-256 key schedule and transcript run on the CPU's SHA
 * instructions where SHA-384 has none, and its 10 AES rounds beat 14. */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* Upstream sessions for resumption: a few per host:port slot (a collision
 * overwrites), shared by the worker threads under a mutex. The cache owns
 * private copies, never the session object of a live connection: OpenSSL
 * marks that one not resumable as the connection goes on (a TLS 1.3 ticket
 * once a handshake has used it; any session when its connection fails). A
 * TLS 1.3 ticket is used once (RFC 8446 C.4: reuse lets observers link
 * connections; servers, OpenSSL's included, would accept it again, so the
 * cache hands each copy out once): servers send one or two
 * with every handshake, so a slot refills while its host is in use. */
#define SESS_PER_SLOT 8
struct sess_slot {
	char key[HOSTPORT_MAX];
	SSL_SESSION *sess[SESS_PER_SLOT]; /* oldest first */
	int n;
};

struct tls {
	SSL_CTX *down, *up;
	struct ca *ca;
	struct minter *minter;
	pthread_mutex_t lock;
	struct sess_slot slots[SESS_SLOTS];
};

/* A downstream SSL's handshake checks (ex data): SNI, and the ALPN offer. */
struct sni_state {
	char expected[256];
	char got[256];
	bool mismatch;
	char offer[128];   /* protocols the sandbox offered, when none is served */
	bool alpn_refused;
	bool up_h2;        /* the upstream chose h2: the sandbox may get it too */
};

#define ALPN_H1 "\x08http/1.1" /* http/1.1 alone, in wire form */

static int sni_idx = -1, own_ca_idx = -1, key_idx = -1;
static int up_alert_idx = -1; /* upstream SSL: a fatal alert received, description + 1 */

static size_t slot_of(const char *key)
{
	size_t h = 5381;
	for (; *key; key++)
		h = h * 33 + (unsigned char)*key;
	return h % SESS_SLOTS;
}

static void slot_drop(struct sess_slot *sl, int i)
{
	SSL_SESSION_free(sl->sess[i]);
	memmove(&sl->sess[i], &sl->sess[i + 1], (size_t)(sl->n - i - 1) * sizeof(sl->sess[0]));
	sl->n--;
}

static void slot_clear(struct sess_slot *sl)
{
	while (sl->n > 0)
		slot_drop(sl, sl->n - 1);
}

/* New session from an upstream (TLS 1.3 tickets arrive after the handshake). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls *t = SSL_get_ex_data(ssl, own_ca_idx);
	const char *key = SSL_get_ex_data(ssl, key_idx);
	SSL_SESSION *copy;
	struct sess_slot *sl;

	if (!t || !key || !SSL_SESSION_is_resumable(sess) || !(copy = SSL_SESSION_dup(sess)))
		return 0;
	sl = &t->slots[slot_of(key)];
	pthread_mutex_lock(&t->lock);
	if (strcmp(sl->key, key) != 0) {
		slot_clear(sl);
		snprintf(sl->key, sizeof(sl->key), "%s", key);
	}
	if (sl->n == SESS_PER_SLOT)
		slot_drop(sl, 0);
	sl->sess[sl->n++] = copy;
	pthread_mutex_unlock(&t->lock);
	return 0; /* the connection keeps its own */
}

static bool expired(const SSL_SESSION *s, time_t now)
{
	return now >= SSL_SESSION_get_time(s) + SSL_SESSION_get_timeout(s);
}

/* The newest live session for key: a TLS 1.3 one leaves the cache, an
 * older protocol's is copied (it stays valid for many connections). */
static void resume_session(struct tls *t, SSL *ssl, const char *key)
{
	struct sess_slot *sl = &t->slots[slot_of(key)];
	SSL_SESSION *use = NULL;
	time_t now = time(NULL);

	pthread_mutex_lock(&t->lock);
	while (!use && sl->n > 0 && strcmp(sl->key, key) == 0) {
		SSL_SESSION *s = sl->sess[sl->n - 1];
		if (!SSL_SESSION_is_resumable(s) || expired(s, now)) {
			slot_drop(sl, sl->n - 1);
		} else if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION) {
			use = s;
			sl->n--;
		} else {
			use = SSL_SESSION_dup(s);
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (use) {
		SSL_set_session(ssl, use);
		SSL_SESSION_free(use);
	}
}

#define ssl_err(err, n, what) errmsg_ossl((err), (n), (what))

static void free_sni(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	free(ptr);
}

/* The sandbox must ask (SNI) for the host it CONNECTed to, or send no SNI. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
	struct sni_state *st = SSL_get_ex_data(ssl, sni_idx);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t n;

	(void)arg;
	if (!st || !name)
		return SSL_TLSEXT_ERR_OK;
	n = strlen(name);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == strlen(st->expected) && strncasecmp(name, st->expected, n) == 0)
		return SSL_TLSEXT_ERR_OK;
	snprintf(st->got, sizeof(st->got), "%s", name);
	st->mismatch = true;
	*alert = SSL_AD_UNRECOGNIZED_NAME;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The ALPN list in[0..inlen) as "a, b" (printable bytes only) into out. */
static void offer_text(const unsigned char *in, unsigned int inlen, char *out, size_t cap)
{
	size_t k = 0;

	out[0] = '\0';
	for (unsigned int i = 0; i < inlen && k + 8 < cap;) {
		unsigned int n = in[i++];
		if (k)
			k += (size_t)snprintf(out + k, cap - k, ", ");
		for (; n > 0 && i < inlen && k + 4 < cap; n--, i++)
			out[k++] = in[i] >= 0x21 && in[i] < 0x7f ? (char)in[i] : '?';
		i += n; /* what did not fit */
		out[k] = '\0';
	}
}

/* h2 when the upstream chose it and the sandbox offers it (tls_set_upstream_h2),
 * else http/1.1 when the sandbox offers it; a sandbox that offers ALPN without
 * any of those (h2 only to an HTTP/1.1 upstream, say) gets the
 * no_application_protocol alert (RFC 7301), not a handshake its client would
 * fail later on the missing protocol. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	struct sni_state *st = SSL_get_ex_data(ssl, sni_idx);
	bool h2 = st && st->up_h2;
	const char *ours = h2 ? TLS_ALPN_H2_HTTP11 : ALPN_H1;

	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, (const unsigned char *)ours,
				  (unsigned)strlen(ours), in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	if (st) {
		offer_text(in, inlen, st->offer, sizeof(st->offer));
		st->alpn_refused = true;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Refuses any chain that contains egressd's own CA or a cert it issued: a
 * sandbox must never be able to pose as an upstream with our own leaves. */
static int on_verify(int ok, X509_STORE_CTX *ctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls *t = ssl ? SSL_get_ex_data(ssl, own_ca_idx) : NULL;
	X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
	X509 *own = t ? ca_cert(t->ca) : NULL;

	if (own && cert && (X509_cmp(cert, own) == 0 || X509_check_issued(own, cert) == X509_V_OK)) {
		X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
		return 0;
	}
	return ok;
}

static SSL_CTX *make_down(struct tls *t, char *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		ssl_err(err, 256, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1) {
		ssl_err(err, 256, "TLS 1.3 cipher suites");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"egressd", 7);
	/* No TLS 1.3 session tickets towards the sandbox: each costs ~35 us of
	 * CPU per connection (a session copied through DER, encrypted and MACed,
	 * one more record), and clients that open a connection per request (one
	 * curl per tool call) never present them (bench/README.md). */
	SSL_CTX_set_num_tickets(ctx, DOWN_TICKETS);
	if (SSL_CTX_use_PrivateKey(ctx, minter_leaf_key(t->minter)) != 1) {
		ssl_err(err, 256, "leaf key");
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Upstream: remembers the fatal alert the server sent, if any (for
 * tls_upstream_alpn_refused; sock.c drains the error queue). */
static void on_up_info(const SSL *ssl, int where, int ret)
{
	if ((where & SSL_CB_READ_ALERT) && (ret >> 8) == SSL3_AL_FATAL)
		SSL_set_ex_data((SSL *)ssl, up_alert_idx, (void *)(uintptr_t)((ret & 0xff) + 1));
}

/* read-ahead buffer of an upstream TLS connection (freed while empty) */
#define UP_READ_BYTES (64 * 1024)

static SSL_CTX *make_up(struct tls *t, const char *upstream_ca, char *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	(void)t;
	if (!ctx) {
		ssl_err(err, 256, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1) {
		ssl_err(err, 256, "TLS 1.3 cipher suites");
		goto fail;
	}
	/* one read takes what the socket has, up to UP_READ_BYTES, instead of a
	 * record header and then its body (intercept.c reads what this buffers) */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, UP_READ_BYTES);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, on_verify);
	SSL_CTX_set_info_callback(ctx, on_up_info);
	SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)ALPN_H1, sizeof(ALPN_H1) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ssl_err(err, 256, "system trust store");
		goto fail;
	}
	if (upstream_ca && SSL_CTX_load_verify_locations(ctx, upstream_ca, NULL) != 1) {
		char e[200];
		ssl_err(e, sizeof(e), "load");
		snprintf(err, 256, "--upstream-ca %s: %s", upstream_ca, e);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls *tls_new(struct ca *ca, struct minter *minter, const char *upstream_ca, char *err)
{
	struct tls *t = xcalloc(1, sizeof(*t));

	if (sni_idx < 0)
		sni_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_sni);
	if (own_ca_idx < 0)
		own_ca_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (key_idx < 0)
		key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_sni);
	if (up_alert_idx < 0)
		up_alert_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	pthread_mutex_init(&t->lock, NULL);
	t->ca = ca;
	t->minter = minter;
	t->down = make_down(t, err);
	if (!t->down)
		goto fail;
	SSL_CTX_set_tlsext_servername_callback(t->down, on_servername);
	t->up = make_up(t, upstream_ca, err);
	if (!t->up)
		goto fail;
	return t;
fail:
	tls_free(t);
	return NULL;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->down);
	SSL_CTX_free(t->up);
	for (size_t i = 0; i < SESS_SLOTS; i++)
		slot_clear(&t->slots[i]);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

SSL *tls_new_downstream(struct tls *t, struct certcache *cache, const char *host, bool is_ip,
			char *err)
{
	X509 *leaf = certcache_get(cache, host, is_ip, err);
	SSL *ssl;

	if (!leaf)
		return NULL;
	ssl = SSL_new(t->down);
	if (!ssl || SSL_use_certificate(ssl, leaf) != 1 || !SSL_add1_chain_cert(ssl, ca_cert(t->ca))) {
		ssl_err(err, 256, "downstream TLS setup");
		SSL_free(ssl);
		ssl = NULL;
	}
	X509_free(leaf);
	return ssl;
}

SSL *tls_new_upstream(struct tls *t, const char *host, unsigned port, bool is_ip,
		       const unsigned char *alpn, size_t alpn_len, char *err)
{
	SSL *ssl = SSL_new(t->up);
	char key[HOSTPORT_MAX];
	bool okay;

	if (!ssl) {
		ssl_err(err, 256, "SSL_new");
		return NULL;
	}
	SSL_set_ex_data(ssl, own_ca_idx, t);
	snprintf(key, sizeof(key), "%s:%u", host, port);
	SSL_set_ex_data(ssl, key_idx, xstrdup(key));
	if (is_ip)
		okay = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
	else
		okay = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
	if (okay && alpn) /* SSL_set_alpn_protos: 0 on success */
		okay = alpn_len > 0 && alpn_len <= UINT_MAX &&
		       SSL_set_alpn_protos(ssl, alpn, (unsigned)alpn_len) == 0;
	if (!okay) {
		ssl_err(err, 256, "upstream TLS setup");
		SSL_free(ssl);
		return NULL;
	}
	resume_session(t, ssl, key); /* after SNI: a session resumes only for its name */
	return ssl;
}

bool tls_upstream_verify_failed(SSL *ssl, char *msg, size_t n)
{
	long v = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_last_error();

	if (v != X509_V_OK) {
		snprintf(msg, n, "upstream certificate: %s", X509_verify_cert_error_string(v));
		ERR_clear_error();
		return true;
	}
	if (e)
		ssl_err(msg, n, "upstream TLS handshake");
	else
		snprintf(msg, n, "upstream TLS handshake failed");
	return false;
}

bool tls_upstream_alpn_refused(const SSL *ssl)
{
	uintptr_t a = (uintptr_t)SSL_get_ex_data(ssl, up_alert_idx);

	return a == (uintptr_t)SSL_AD_NO_APPLICATION_PROTOCOL + 1;
}

void tls_set_expected_host(SSL *ssl, const char *host)
{
	struct sni_state *st = xcalloc(1, sizeof(*st));
	snprintf(st->expected, sizeof(st->expected), "%s", host);
	SSL_set_ex_data(ssl, sni_idx, st);
}

void tls_set_upstream_h2(SSL *ssl, bool h2)
{
	struct sni_state *st = SSL_get_ex_data(ssl, sni_idx);

	if (st)
		st->up_h2 = h2;
}

bool tls_alpn_h2(const SSL *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	if (ssl)
		SSL_get0_alpn_selected(ssl, &p, &n);
	return n == 2 && memcmp(p, "h2", 2) == 0;
}

bool tls_alpn_refused(SSL *ssl, char *offer, size_t n)
{
	struct sni_state *st = SSL_get_ex_data(ssl, sni_idx);

	if (!st || !st->alpn_refused)
		return false;
	snprintf(offer, n, "%s", st->offer);
	return true;
}

bool tls_sni_mismatched(SSL *ssl, char *sni, size_t n)
{
	struct sni_state *st = SSL_get_ex_data(ssl, sni_idx);
	if (!st || !st->mismatch)
		return false;
	snprintf(sni, n, "%s", st->got);
	return true;
}
