/* mint.c -- per-host leaf certificates signed by the CA, with one shared leaf key */
#include "mint.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "errmsg.h"
#include "ca.h"

#define MINT_ERRLEN 256    /* size of every err buffer (mint.h) */
#define LEAF_VALID_DAYS 7
#define CN_MAX 64          /* ub-common-name */
#define DNS_NAME_MAX 253

struct minter {
	const struct ca *ca;            /* borrowed; outlives the minter */
	EVP_PKEY *key;                  /* the one leaf key pair, owned */
	STACK_OF(X509_EXTENSION) *exts; /* extensions every leaf carries, owned; read-only after minter_new */
};

/* ---- error helpers ---- */

#define seterr(err, ...) errmsg_set((err), MINT_ERRLEN, __VA_ARGS__)
#define set_ossl_err(err, what) errmsg_ossl((err), MINT_ERRLEN, (what))

/* ---- minter ---- */

/* Appends the extension nid=value (X509V3 config syntax) to exts. 0 or -1. */
static int push_ext(STACK_OF(X509_EXTENSION) *exts, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);

	if (!ext)
		return -1;
	if (!sk_X509_EXTENSION_push(exts, ext)) {
		X509_EXTENSION_free(ext);
		return -1;
	}
	return 0;
}

struct minter *minter_new(const struct ca *ca, char *err)
{
	struct minter *m = xcalloc(1, sizeof(*m));
	struct minter *ret = NULL;
	X509 *tmpl = NULL; /* carries the leaf public key, for the SKI */
	X509V3_CTX ctx;

	m->ca = ca;
	m->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!m->key) {
		set_ossl_err(err, "leaf key generation failed");
		goto out;
	}
	m->exts = sk_X509_EXTENSION_new_null();
	tmpl = X509_new();
	if (!m->exts || !tmpl || X509_set_pubkey(tmpl, m->key) != 1) {
		set_ossl_err(err, "preparing leaf extensions");
		goto out;
	}
	X509V3_set_ctx(&ctx, ca_cert(ca), tmpl, NULL, NULL, 0);
	/* The leaf key is EC, so keyEncipherment (RSA key transport) does not apply. */
	if (push_ext(m->exts, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    push_ext(m->exts, &ctx, NID_key_usage, "critical,digitalSignature") < 0 ||
	    push_ext(m->exts, &ctx, NID_ext_key_usage, "serverAuth") < 0 ||
	    push_ext(m->exts, &ctx, NID_subject_key_identifier, "hash") < 0 ||
	    push_ext(m->exts, &ctx, NID_authority_key_identifier, "keyid:always") < 0) {
		set_ossl_err(err, "preparing leaf extensions");
		goto out;
	}
	ret = m;
	m = NULL;
out:
	X509_free(tmpl);
	minter_free(m);
	return ret;
}

void minter_free(struct minter *m)
{
	if (!m)
		return;
	sk_X509_EXTENSION_pop_free(m->exts, X509_EXTENSION_free);
	EVP_PKEY_free(m->key);
	free(m);
}

EVP_PKEY *minter_leaf_key(const struct minter *m)
{
	return m->key;
}

/* ---- minting ---- */

/* Copies a DNS name into out (DNS_NAME_MAX+1 bytes) lower-cased, checking it
 * holds only letters, digits, '-', '_' and '.'. 0 or -1 (err set). */
static int check_dns_name(const char *host, char *out, char *err)
{
	size_t n = strlen(host);

	if (n == 0 || n > DNS_NAME_MAX) {
		seterr(err, "cannot mint a certificate for a name of %zu bytes", n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)host[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
			seterr(err, "cannot mint a certificate for \"%.64s\": byte 0x%02x at offset %zu is not allowed in a host name",
			       host, c, i);
			return -1;
		}
		out[i] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* Builds the SAN (one DNS name or one IP address) and adds it to x. 0 or -1. */
static int add_san(X509 *x, const char *name, const unsigned char *ip, int iplen)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_STRING *s = ip ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
	int rc = -1;

	if (!gens || !gn || !s)
		goto out;
	if (ip ? ASN1_OCTET_STRING_set(s, ip, iplen) != 1 : ASN1_STRING_set(s, name, -1) != 1)
		goto out;
	GENERAL_NAME_set0_value(gn, ip ? GEN_IPADD : GEN_DNS, s);
	s = NULL; /* owned by gn */
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto out;
	gn = NULL; /* owned by gens */
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;
	rc = 0;
out:
	ASN1_STRING_free(s);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gens);
	return rc;
}

X509 *minter_mint(struct minter *m, const char *host, bool is_ip, char *err)
{
	char name[DNS_NAME_MAX + 1];
	unsigned char ip[16];
	int iplen = 0;
	X509 *x = NULL, *ret = NULL;
	X509_NAME *subj = NULL;
	X509 *cacert = ca_cert(m->ca);

	if (!host) {
		seterr(err, "cannot mint a certificate for a NULL host");
		goto out;
	}
	if (is_ip) {
		if (inet_pton(AF_INET, host, ip) == 1) {
			iplen = 4;
		} else if (inet_pton(AF_INET6, host, ip) == 1) {
			iplen = 16;
		} else {
			seterr(err, "cannot mint a certificate for \"%.64s\": not an IPv4 or IPv6 address", host);
			goto out;
		}
		snprintf(name, sizeof(name), "%s", host); /* fits: inet_pton accepted it */
	} else if (check_dns_name(host, name, err) < 0) {
		goto out;
	}

	x = X509_new();
	subj = X509_NAME_new();
	if (!x || !subj ||
	    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)name,
				       (int)(strlen(name) > CN_MAX ? CN_MAX : strlen(name)), -1, 0) != 1 ||
	    X509_set_version(x, X509_VERSION_3) != 1 || ca_random_serial(x) < 0 ||
	    X509_set_subject_name(x, subj) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(cacert)) != 1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), LEAF_VALID_DAYS, 0, NULL) ||
	    X509_set_pubkey(x, m->key) != 1) {
		set_ossl_err(err, "building the leaf certificate");
		goto out;
	}
	for (int i = 0; i < sk_X509_EXTENSION_num(m->exts); i++) {
		if (X509_add_ext(x, sk_X509_EXTENSION_value(m->exts, i), -1) != 1) { /* copies */
			set_ossl_err(err, "adding leaf extensions");
			goto out;
		}
	}
	if (add_san(x, name, iplen ? ip : NULL, iplen) < 0) {
		set_ossl_err(err, "adding the subjectAltName");
		goto out;
	}
	if (X509_sign(x, ca_key(m->ca), EVP_sha256()) <= 0) {
		set_ossl_err(err, "signing the leaf certificate");
		goto out;
	}
	ret = x;
	x = NULL;
out:
	X509_NAME_free(subj);
	X509_free(x);
	return ret;
}
