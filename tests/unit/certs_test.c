/* certs_test.c -- unit tests for the CA (certs/ca.c), leaf minting (certs/mint.c),
 * the leaf cache (certs/certcache.c), and an in-memory TLS handshake with a minted leaf */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "mint.h"
#include "tap.h"

static char tmpdir[] = "/tmp/certs_test.XXXXXX";

/* ---- helpers ---- */

static char *path(const char *a, const char *b)
{
	static char buf[8][512];
	static int i;
	char *p = buf[i++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s%s%s", tmpdir, a, b ? "/" : "", b ? b : "");
	return p;
}

static unsigned mode_of(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0xffffu;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool contains(const char *s, const char *sub)
{
	return s && strstr(s, sub) != NULL;
}

static int copy_file(const char *from, const char *to)
{
	char buf[8192];
	size_t n;
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	int rc = in && out ? 0 : -1;

	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			rc = -1;
	if (in)
		fclose(in);
	if (out)
		fclose(out);
	return rc;
}

/* X509_verify_cert of leaf against a store holding only cacert, as a TLS
 * server for host (a name, or an IP when is_ip). Returns the verify error. */
static int verify_leaf(X509 *cacert, X509 *leaf, const char *host, bool is_ip)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_VERIFY_PARAM *param;
	int rc = -1;

	if (!store || !ctx || X509_STORE_add_cert(store, cacert) != 1 ||
	    X509_STORE_CTX_init(ctx, store, leaf, NULL) != 1)
		goto out;
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
	if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1
		  : X509_VERIFY_PARAM_set1_host(param, host, 0) != 1)
		goto out;
	rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
	if (rc == X509_V_OK && X509_STORE_CTX_get_error(ctx) != X509_V_OK)
		rc = X509_STORE_CTX_get_error(ctx);
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	ERR_clear_error();
	return rc;
}

/* The single SAN of leaf, as text ("DNS:name" or "IP:" + inet_ntop). */
static const char *san_of(X509 *leaf, int *count)
{
	static char buf[300];
	int crit = -1;
	GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);

	buf[0] = '\0';
	*count = gens ? sk_GENERAL_NAME_num(gens) : 0;
	if (gens && *count >= 1) {
		GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
		if (gn->type == GEN_DNS) {
			snprintf(buf, sizeof(buf), "DNS:%.*s", ASN1_STRING_length(gn->d.dNSName),
				 (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
		} else if (gn->type == GEN_IPADD) {
			char txt[INET6_ADDRSTRLEN];
			int len = ASN1_STRING_length(gn->d.iPAddress);
			const unsigned char *d = ASN1_STRING_get0_data(gn->d.iPAddress);
			if ((len == 4 || len == 16) && inet_ntop(len == 4 ? AF_INET : AF_INET6, d, txt, sizeof(txt)))
				snprintf(buf, sizeof(buf), "IP:%s", txt);
			else
				snprintf(buf, sizeof(buf), "IP:<%d bytes>", len);
		}
	}
	GENERAL_NAMES_free(gens);
	return buf;
}

static const char *cn_of(X509 *x)
{
	static char buf[256];

	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) < 0)
		buf[0] = '\0';
	return buf;
}

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

static int serial_len(X509 *x)
{
	return ASN1_STRING_length(X509_get0_serialNumber(x));
}

/* Connects two SSL objects through a BIO pair and runs the handshake: the
 * server presents leaf+key, the client trusts only cacert and expects host.
 * Returns 1 if the handshake completed; *vr gets the client's verify result. */
static int tls_handshake(X509 *leaf, EVP_PKEY *key, X509 *cacert, const char *host, bool is_ip, long *vr)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *s = NULL, *c = NULL;
	BIO *bs = NULL, *bc = NULL;
	bool sdone = false, cdone = false;
	int rc = 0;

	*vr = -1;
	if (!sctx || !cctx || SSL_CTX_use_certificate(sctx, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(sctx, key) != 1 || SSL_CTX_check_private_key(sctx) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), cacert) != 1)
		goto out;
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	if (!s || !c || BIO_new_bio_pair(&bs, 0, &bc, 0) != 1)
		goto out;
	SSL_set_bio(s, bs, bs);
	SSL_set_bio(c, bc, bc);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c), host) != 1)
			goto out;
	} else if (SSL_set1_host(c, host) != 1 || SSL_set_tlsext_host_name(c, host) != 1) {
		goto out;
	}
	for (int i = 0; i < 100 && !(sdone && cdone); i++) {
		int r;
		if (!cdone) {
			r = SSL_do_handshake(c);
			if (r == 1)
				cdone = true;
			else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ && SSL_get_error(c, r) != SSL_ERROR_WANT_WRITE)
				break;
		}
		if (!sdone) {
			r = SSL_do_handshake(s);
			if (r == 1)
				sdone = true;
			else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ && SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
				break;
		}
	}
	*vr = SSL_get_verify_result(c);
	rc = sdone && cdone;
out:
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	ERR_clear_error();
	return rc;
}

/* ---- CA ---- */

static void test_ca_create_and_reload(void)
{
	char err[CA_ERRLEN] = "";
	int created = -1;
	struct ca *ca, *ca2;
	X509 *x;
	char o[64];
	const char *cn;
	FILE *f;
	char pem[8192];
	size_t n;

	ca = ca_load_or_create(path("a/state", NULL), CA_KEY_EC_P256, &created, err);
	if (!ok(ca != NULL, "CA created in a new nested state dir: %s", err))
		return;
	ok(created == 1, "created = 1 for a new CA");
	ok(mode_of(path("a/state", NULL)) == 0700, "state dir mode 0700 (got %04o)", mode_of(path("a/state", NULL)));
	ok(mode_of(path("a", NULL)) == 0700, "parent created 0700 too");
	ok(mode_of(path("a/state", "ca.key")) == 0600, "ca.key mode 0600 (got %04o)", mode_of(path("a/state", "ca.key")));
	ok(mode_of(path("a/state", "ca.crt")) == 0644, "ca.crt mode 0644 (got %04o)", mode_of(path("a/state", "ca.crt")));
	is_str(ca_cert_path(ca), path("a/state", "ca.crt"), "ca_cert_path");

	f = fopen(path("a/state", "ca.key"), "r");
	n = f ? fread(pem, 1, sizeof(pem) - 1, f) : 0;
	pem[n] = '\0';
	if (f)
		fclose(f);
	ok(strncmp(pem, "-----BEGIN PRIVATE KEY-----", 27) == 0, "ca.key is PEM PKCS#8");

	x = ca_cert(ca);
	cn = cn_of(x);
	ok(strncmp(cn, "egressd CA ", 11) == 0 && strlen(cn) == 19 && strspn(cn + 11, "0123456789abcdef") == 8,
	   "CN is 'egressd CA <8 hex>' (%s)", cn);
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, o, sizeof(o)) < 0)
		o[0] = '\0';
	is_str(o, "egressd", "O = egressd");
	ok(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0, "self-issued");
	ok(X509_verify(x, X509_get0_pubkey(x)) == 1, "self-signature verifies");
	ok(X509_get_signature_nid(x) == NID_ecdsa_with_SHA256, "signed with ecdsa-with-SHA256");
	ok(X509_check_ca(x) >= 1, "is a CA");
	ok(ext_critical(x, NID_basic_constraints), "basicConstraints critical");
	ok(X509_get_pathlen(x) == 0, "pathlen 0");
	ok(ext_critical(x, NID_key_usage), "keyUsage critical");
	ok(X509_get_key_usage(x) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN), "keyUsage keyCertSign+cRLSign only");
	ok(X509_get0_subject_key_id(x) != NULL, "has a subjectKeyIdentifier");
	ok(serial_len(x) == 16, "128-bit serial");
	{
		time_t t = time(NULL), t9y = t + 9L * 365 * 86400, t11y = t + 11L * 365 * 86400;
		time_t t50m = t - 50 * 60, t70m = t - 70 * 60;
		ok(X509_cmp_time(X509_get0_notBefore(x), &t50m) < 0 && X509_cmp_time(X509_get0_notBefore(x), &t70m) > 0,
		   "notBefore is about now-1h");
		ok(X509_cmp_time(X509_get0_notAfter(x), &t9y) > 0 && X509_cmp_time(X509_get0_notAfter(x), &t11y) < 0,
		   "notAfter is about now+10y");
	}
	ok(EVP_PKEY_is_a(ca_key(ca), "EC"), "EC key by default");

	f = tmpfile();
	ok(f && ca_write_pem(ca, f) == 0, "ca_write_pem");
	if (f) {
		X509 *back;
		rewind(f);
		back = PEM_read_X509(f, NULL, NULL, NULL);
		ok(back && X509_cmp(back, x) == 0, "ca_write_pem writes the CA certificate");
		X509_free(back);
		fclose(f);
	}

	created = -1;
	ca2 = ca_load_or_create(path("a/state", NULL), CA_KEY_RSA_2048, &created, err);
	ok(ca2 != NULL, "reload: %s", ca2 ? "ok" : err);
	if (ca2) {
		ok(created == 0, "reload: created = 0");
		ok(X509_cmp(ca_cert(ca2), x) == 0, "reload: same certificate");
		ok(ASN1_INTEGER_cmp(X509_get0_serialNumber(ca_cert(ca2)), X509_get0_serialNumber(x)) == 0,
		   "reload: same serial");
		ok(EVP_PKEY_eq(ca_key(ca2), ca_key(ca)) == 1, "reload: same key (requested key type ignored)");
	}
	ca_free(ca2);
	ca_free(ca);
	ca_free(NULL);
}

static void test_ca_errors(void)
{
	char err[CA_ERRLEN];
	int created = 7;
	struct ca *ca;

	/* key present, certificate missing */
	ca = ca_load_or_create(path("b", NULL), CA_KEY_EC_P256, NULL, err);
	ca_free(ca);
	unlink(path("b", "ca.crt"));
	err[0] = '\0';
	ca = ca_load_or_create(path("b", NULL), CA_KEY_EC_P256, &created, err);
	ok(ca == NULL && contains(err, "ca.crt is missing"), "cert missing -> error: %s", err);
	ok(created == 7, "created untouched on error");
	ca_free(ca);
	ok(access(path("b", "ca.key"), F_OK) == 0, "the lone key is left alone");

	/* certificate present, key missing */
	ca = ca_load_or_create(path("c", NULL), CA_KEY_EC_P256, NULL, err);
	ca_free(ca);
	unlink(path("c", "ca.key"));
	ca = ca_load_or_create(path("c", NULL), CA_KEY_EC_P256, NULL, err);
	ok(ca == NULL && contains(err, "ca.key is missing"), "key missing -> error: %s", err);
	ca_free(ca);

	/* group-writable and world-writable state dirs */
	ca = ca_load_or_create(path("d", NULL), CA_KEY_EC_P256, NULL, err);
	ok(ca != NULL, "CA in d");
	ca_free(ca);
	chmod(path("d", NULL), 0770);
	ca = ca_load_or_create(path("d", NULL), CA_KEY_EC_P256, NULL, err);
	ok(ca == NULL && contains(err, "writable by its group"), "group-writable dir -> error: %s", err);
	ca_free(ca);
	chmod(path("d", NULL), 0707);
	ca = ca_load_or_create(path("d", NULL), CA_KEY_EC_P256, NULL, err);
	ok(ca == NULL && contains(err, "writable by others"), "world-writable dir -> error: %s", err);
	ca_free(ca);
	chmod(path("d", NULL), 0755);
	ca = ca_load_or_create(path("d", NULL), CA_KEY_EC_P256, NULL, err);
	ok(ca != NULL, "readable-by-others dir is fine: %s", ca ? "ok" : err);
	ca_free(ca);

	/* mismatched key and certificate: d's certificate with b's key */
	if (copy_file(path("d", "ca.crt"), path("b", "ca.crt")) == 0) {
		ca = ca_load_or_create(path("b", NULL), CA_KEY_EC_P256, NULL, err);
		ok(ca == NULL && contains(err, "do not match"), "mismatched pair -> error: %s", err);
		ca_free(ca);
	}

	/* garbage key */
	{
		FILE *f = fopen(path("d", "ca.key"), "w");
		if (f) {
			fputs("not a key\n", f);
			fclose(f);
		}
		ca = ca_load_or_create(path("d", NULL), CA_KEY_EC_P256, NULL, err);
		ok(ca == NULL && contains(err, "cannot read private key") && contains(err, "error:"),
		   "garbage key -> error with the OpenSSL reason: %s", err);
		ca_free(ca);
	}

	/* the state dir path is a file */
	{
		FILE *f = fopen(path("file", NULL), "w");
		if (f)
			fclose(f);
		ca = ca_load_or_create(path("file", NULL), CA_KEY_EC_P256, NULL, err);
		ok(ca == NULL && contains(err, "state dir"), "state dir is a file -> error: %s", err);
		ca_free(ca);
	}
	ok(ca_load_or_create("", CA_KEY_EC_P256, NULL, err) == NULL, "empty state dir -> error: %s", err);

	/* no temp files left behind */
	{
		int leftovers = 0;
		const char *dirs[] = {"a/state", "b", "c", "d"};
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			char cmd[600];
			snprintf(cmd, sizeof(cmd), "ls -A %s | grep -q tmp", path(dirs[i], NULL));
			if (system(cmd) == 0)
				leftovers++;
		}
		ok(leftovers == 0, "no temp files left in state dirs");
	}
}

/* ---- leaves ---- */

struct leafcase {
	const char *host;
	bool is_ip;
	const char *san;   /* expected SAN text */
	const char *other; /* a name the leaf must not verify for */
	int other_err;
};

static const struct leafcase leafcases[] = {
	{"example.com", false, "DNS:example.com", "other.example.com", X509_V_ERR_HOSTNAME_MISMATCH},
	{"api.sub.example.com", false, "DNS:api.sub.example.com", "sub.example.com", X509_V_ERR_HOSTNAME_MISMATCH},
	{"203.0.113.7", true, "IP:203.0.113.7", "203.0.113.8", X509_V_ERR_IP_ADDRESS_MISMATCH},
	{"2001:db8::1", true, "IP:2001:db8::1", "2001:db8::2", X509_V_ERR_IP_ADDRESS_MISMATCH},
};

static void test_leaves(struct ca *ca, struct minter *m)
{
	char err[256] = "";
	X509 *cacert = ca_cert(ca);
	X509 *first = NULL;
	time_t t = time(NULL), t6d = t + 6 * 86400, t8d = t + 8 * 86400;

	ok(minter_leaf_key(m) == minter_leaf_key(m), "minter_leaf_key is stable");
	ok(EVP_PKEY_is_a(minter_leaf_key(m), "EC") && EVP_PKEY_get_bits(minter_leaf_key(m)) == 256,
	   "leaf key is EC P-256");

	for (size_t i = 0; i < sizeof(leafcases) / sizeof(leafcases[0]); i++) {
		const struct leafcase *lc = &leafcases[i];
		const char *host = lc->host;
		X509 *x = minter_mint(m, lc->host, lc->is_ip, err);
		int nsan, vr;

		if (!ok(x != NULL, "mint %s: %s", lc->host, x ? "ok" : err))
			continue;
		vr = verify_leaf(cacert, x, lc->host, lc->is_ip);
		ok(vr == X509_V_OK, "%s: verifies against the CA for itself (%s)", lc->host,
		   X509_verify_cert_error_string(vr));
		vr = verify_leaf(cacert, x, lc->other, lc->is_ip);
		ok(vr == lc->other_err, "%s: fails for %s (%s)", lc->host, lc->other,
		   X509_verify_cert_error_string(vr));
		is_str(san_of(x, &nsan), lc->san, "%s: SAN", lc->host);
		ok(nsan == 1, "%s: exactly one SAN entry", lc->host);
		is_str(cn_of(x), host, "leaf %zu: CN", i);
		ok(X509_cmp_time(X509_get0_notBefore(x), &t) < 0, "%s: validity starts in the past", lc->host);
		ok(X509_cmp_time(X509_get0_notAfter(x), &t6d) > 0 && X509_cmp_time(X509_get0_notAfter(x), &t8d) < 0,
		   "%s: valid for about 7 days", lc->host);
		ok(EVP_PKEY_eq(X509_get0_pubkey(x), minter_leaf_key(m)) == 1, "%s: uses the minter's leaf key", lc->host);
		ok(X509_get0_pubkey(x) == minter_leaf_key(m), "%s: the very EVP_PKEY object (no new key made)", lc->host);
		ok((X509_get_extended_key_usage(x) & XKU_SSL_SERVER) && X509_get_extended_key_usage(x) == XKU_SSL_SERVER,
		   "%s: EKU serverAuth only", lc->host);
		ok(X509_check_ca(x) == 0 && (X509_get_extension_flags(x) & EXFLAG_BCONS), "%s: CA:FALSE present", lc->host);
		ok(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE && ext_critical(x, NID_key_usage),
		   "%s: keyUsage digitalSignature, critical", lc->host);
		ok(X509_get0_subject_key_id(x) && X509_get0_authority_key_id(x) &&
		   ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(cacert)) == 0,
		   "%s: SKI present, AKI = CA's SKI", lc->host);
		ok(X509_check_issued(cacert, x) == X509_V_OK, "%s: issued by the CA", lc->host);
		ok(X509_get_signature_nid(x) == (EVP_PKEY_is_a(ca_key(ca), "RSA") ? NID_sha256WithRSAEncryption
										   : NID_ecdsa_with_SHA256),
		   "%s: SHA-256 signature", lc->host);
		ok(serial_len(x) == 16 && ASN1_STRING_type(X509_get0_serialNumber(x)) == V_ASN1_INTEGER,
		   "%s: positive 128-bit serial", lc->host);
		if (!first) {
			first = x;
			continue;
		}
		ok(EVP_PKEY_eq(X509_get0_pubkey(x), X509_get0_pubkey(first)) == 1,
		   "%s: same public key as the first leaf", lc->host);
		ok(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(first)) != 0,
		   "%s: serial differs from the first leaf", lc->host);
		X509_free(x);
	}
	X509_free(first);
}

static void test_leaf_inputs(struct ca *ca, struct minter *m)
{
	char err[256];
	char longname[200];
	int nsan;
	X509 *x;

	x = minter_mint(m, "Example.COM", false, err);
	ok(x && strcmp(san_of(x, &nsan), "DNS:example.com") == 0, "upper case is lowered");
	X509_free(x);

	/* a 100-byte name: CN cut to 64 bytes, SAN whole, still verifies */
	memset(longname, 'a', 60);
	memcpy(longname + 60, ".", 1);
	memset(longname + 61, 'b', 27);
	strcpy(longname + 88, ".example.com");
	x = minter_mint(m, longname, false, err);
	ok(x != NULL, "mint a 100-byte name: %s", x ? "ok" : err);
	if (x) {
		ok(strlen(cn_of(x)) == 64 && strncmp(cn_of(x), longname, 64) == 0, "CN cut to 64 bytes");
		ok(strcmp(san_of(x, &nsan) + 4, longname) == 0, "SAN holds the whole name");
		ok(verify_leaf(ca_cert(ca), x, longname, false) == X509_V_OK, "long name verifies");
	}
	X509_free(x);

	ok(!minter_mint(m, "[2001:db8::1]", true, err) && contains(err, "not an IPv4 or IPv6"),
	   "bracketed IPv6 refused: %s", err);
	ok(!minter_mint(m, "example.com", true, err), "name with is_ip refused: %s", err);
	ok(!minter_mint(m, "", false, err), "empty name refused: %s", err);
	ok(!minter_mint(m, "a.com,DNS:evil.com", false, err) && contains(err, "0x2c"),
	   "comma refused (no SAN injection): %s", err);
	ok(!minter_mint(m, "*.example.com", false, err), "wildcard refused: %s", err);
	ok(!minter_mint(m, "exa mple.com", false, err), "space refused: %s", err);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	{
		char huge[300];
		memset(huge, 'a', sizeof(huge) - 1);
		huge[sizeof(huge) - 1] = '\0';
		ok(!minter_mint(m, huge, false, err), "254+ byte name refused: %s", err);
	}
	ok(!minter_mint(m, NULL, false, err), "NULL host refused");
}

/* ---- cache ---- */

static void stats_are(struct certcache *c, size_t h, size_t mi, size_t sz, const char *what)
{
	size_t hits, misses, size;

	certcache_stats(c, &hits, &misses, &size);
	ok(hits == h && misses == mi && size == sz, "%s: hits %zu misses %zu size %zu (want %zu %zu %zu)",
	   what, hits, misses, size, h, mi, sz);
}

static void test_cache(struct ca *ca, struct minter *m)
{
	char err[256];
	struct certcache *c = certcache_new(m, 2);
	X509 *a1, *a2, *b, *cc, *x;

	a1 = certcache_get(c, "a.example", false, err);
	ok(a1 != NULL, "get a: %s", a1 ? "ok" : err);
	stats_are(c, 0, 1, 1, "after a");
	a2 = certcache_get(c, "a.example", false, err);
	ok(a2 == a1, "second get of a returns the cached leaf");
	stats_are(c, 1, 1, 1, "after a again");
	X509_free(a2);
	x = certcache_get(c, "A.Example", false, err);
	ok(x == a1, "lookup is case-insensitive");
	X509_free(x);
	stats_are(c, 2, 1, 1, "after A.Example");

	b = certcache_get(c, "b.example", false, err);
	ok(b && b != a1, "get b: a new leaf");
	stats_are(c, 2, 2, 2, "after b");
	x = certcache_get(c, "a.example", false, err); /* a is now most recent */
	ok(x == a1, "a still cached");
	X509_free(x);
	cc = certcache_get(c, "c.example", false, err); /* evicts b, the LRU */
	ok(cc != NULL, "get c");
	stats_are(c, 3, 3, 2, "after c (cap 2)");
	x = certcache_get(c, "a.example", false, err);
	ok(x == a1, "a survived the eviction (it was more recent than b)");
	X509_free(x);
	stats_are(c, 4, 3, 2, "after a");
	ok(verify_leaf(ca_cert(ca), b, "b.example", false) == X509_V_OK, "evicted b: our reference still verifies");
	x = certcache_get(c, "b.example", false, err); /* miss; evicts c */
	ok(x && x != b, "b re-minted after eviction");
	X509_free(x);
	stats_are(c, 4, 4, 2, "after b again");
	x = certcache_get(c, "c.example", false, err);
	ok(x && x != cc, "c was evicted (LRU after a was used)");
	X509_free(x);
	stats_are(c, 4, 5, 2, "after c again");
	ok(verify_leaf(ca_cert(ca), cc, "c.example", false) == X509_V_OK, "evicted c: our reference still verifies");
	X509_free(b);
	X509_free(cc);

	/* is_ip is part of the key */
	x = certcache_get(c, "203.0.113.7", true, err);
	ok(x && strcmp(san_of(x, &(int){0}), "IP:203.0.113.7") == 0, "IP leaf from the cache");
	X509_free(x);
	x = certcache_get(c, "203.0.113.7", false, err);
	ok(x && strcmp(san_of(x, &(int){0}), "DNS:203.0.113.7") == 0, "same text as a name is another entry");
	X509_free(x);
	stats_are(c, 4, 7, 2, "after the IP pair");

	/* a leaf close to expiry is re-minted; the old reference stays valid */
	x = certcache_get(c, "203.0.113.7", false, err);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600); /* test only: pretend it expires within the hour */
	{
		X509 *y = certcache_get(c, "203.0.113.7", false, err);
		time_t t6d = time(NULL) + 6 * 86400;
		ok(y && y != x && X509_cmp_time(X509_get0_notAfter(y), &t6d) > 0, "leaf near expiry re-minted");
		X509_free(y);
	}
	X509_free(x);
	stats_are(c, 5, 8, 2, "after the re-mint");

	/* errors are not cached */
	ok(certcache_get(c, "bad host", false, err) == NULL && err[0], "bad host -> error: %s", err);
	stats_are(c, 5, 9, 2, "after the error");
	X509_free(a1);
	certcache_free(c);
	certcache_free(NULL);

	/* cap 0 behaves as cap 1 */
	c = certcache_new(m, 0);
	x = certcache_get(c, "a.example", false, err);
	X509_free(x);
	x = certcache_get(c, "b.example", false, err);
	X509_free(x);
	stats_are(c, 0, 2, 1, "cap 0 holds one");
	certcache_free(c);
}

/* ---- TLS ---- */

static void test_tls(struct ca *ca, struct minter *m, const char *label)
{
	char err[256];
	long vr = -1;
	int hs;
	X509 *x = minter_mint(m, "api.example.com", false, err);
	X509 *ipx = minter_mint(m, "2001:db8::1", true, err);

	if (!ok(x && ipx, "%s: mint for TLS", label))
		goto out;
	hs = tls_handshake(x, minter_leaf_key(m), ca_cert(ca), "api.example.com", false, &vr);
	ok(hs && vr == X509_V_OK, "%s: TLS handshake with the expected host succeeds (%s)", label,
	   X509_verify_cert_error_string(vr));
	hs = tls_handshake(x, minter_leaf_key(m), ca_cert(ca), "evil.example.net", false, &vr);
	ok(!hs && vr == X509_V_ERR_HOSTNAME_MISMATCH,
	   "%s: TLS handshake expecting another host fails verification (%s)", label, X509_verify_cert_error_string(vr));
	hs = tls_handshake(ipx, minter_leaf_key(m), ca_cert(ca), "2001:db8::1", true, &vr);
	ok(hs && vr == X509_V_OK, "%s: TLS handshake to an IPv6 leaf succeeds (%s)", label,
	   X509_verify_cert_error_string(vr));
	hs = tls_handshake(ipx, minter_leaf_key(m), ca_cert(ca), "2001:db8::2", true, &vr);
	ok(!hs && vr == X509_V_ERR_IP_ADDRESS_MISMATCH, "%s: TLS handshake expecting another IP fails (%s)", label,
	   X509_verify_cert_error_string(vr));
out:
	X509_free(x);
	X509_free(ipx);
}

/* ---- RSA CA ---- */

static void test_rsa(double *create_s)
{
	char err[CA_ERRLEN];
	int created = 0;
	double t0 = now_sec();
	struct ca *ca = ca_load_or_create(path("rsa", NULL), CA_KEY_RSA_2048, &created, err);
	struct minter *m = NULL;
	X509 *x = NULL;

	*create_s = now_sec() - t0;
	if (!ok(ca != NULL && created == 1, "RSA CA created: %s", ca ? "ok" : err))
		return;
	ok(EVP_PKEY_is_a(ca_key(ca), "RSA") && EVP_PKEY_get_bits(ca_key(ca)) == 2048, "RSA 2048 key");
	ok(X509_get_signature_nid(ca_cert(ca)) == NID_sha256WithRSAEncryption, "sha256WithRSAEncryption");
	m = minter_new(ca, err);
	ok(m != NULL, "minter over an RSA CA: %s", m ? "ok" : err);
	if (m) {
		x = minter_mint(m, "rsa.example.org", false, err);
		ok(x && verify_leaf(ca_cert(ca), x, "rsa.example.org", false) == X509_V_OK, "RSA-signed leaf verifies");
		ok(x && X509_get_signature_nid(x) == NID_sha256WithRSAEncryption, "leaf signed sha256WithRSA");
		test_tls(ca, m, "RSA CA");
	}
	X509_free(x);
	minter_free(m);
	ca_free(ca);
	ca = ca_load_or_create(path("rsa", NULL), CA_KEY_EC_P256, &created, err);
	ok(ca && created == 0 && EVP_PKEY_is_a(ca_key(ca), "RSA"), "RSA CA reloads");
	ca_free(ca);
}

/* ---- timings (diagnostics only) ---- */

static void timings(struct ca *ca, struct minter *m, double rsa_create_s)
{
	char err[256];
	const int nmint = 1000, nhit = 200000;
	static char hosts[1000][32];
	struct certcache *c;
	struct ca *tca;
	double t0;
	X509 *x;

	t0 = now_sec();
	tca = ca_load_or_create(path("timing", NULL), CA_KEY_EC_P256, NULL, err);
	printf("# timing: create EC P-256 CA (keygen, sign, 2 fsynced files): %.2f ms\n", (now_sec() - t0) * 1e3);
	ca_free(tca);
	printf("# timing: create RSA-2048 CA: %.2f ms\n", rsa_create_s * 1e3);
	t0 = now_sec();
	tca = ca_load_or_create(path("timing", NULL), CA_KEY_EC_P256, NULL, err);
	printf("# timing: load an existing CA: %.3f ms\n", (now_sec() - t0) * 1e3);
	ca_free(tca);

	t0 = now_sec();
	for (int i = 0; i < nmint; i++) {
		char host[64];
		snprintf(host, sizeof(host), "h%d.example.com", i);
		x = minter_mint(m, host, false, err);
		X509_free(x);
	}
	printf("# timing: mint a leaf (EC CA), average of %d: %.1f us\n", nmint, (now_sec() - t0) / nmint * 1e6);

	c = certcache_new(m, 1024);
	for (int i = 0; i < 1000; i++) {
		snprintf(hosts[i], sizeof(hosts[i]), "h%d.example.com", i);
		X509_free(certcache_get(c, hosts[i], false, err));
	}
	t0 = now_sec();
	for (int i = 0; i < nhit; i++)
		X509_free(certcache_get(c, hosts[i % 1000], false, err));
	printf("# timing: cache hit (1000 entries, get + X509_free), average of %d: %.0f ns\n",
	       nhit, (now_sec() - t0) / nhit * 1e9);
	certcache_free(c);
	(void)ca;
}

int main(void)
{
	char err[256];
	struct ca *ca;
	struct minter *m;
	double rsa_create_s = 0;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_ca_create_and_reload();
	test_ca_errors();

	ca = ca_load_or_create(path("a/state", NULL), CA_KEY_EC_P256, NULL, err);
	m = ca ? minter_new(ca, err) : NULL;
	if (ok(ca && m, "CA and minter for leaf tests: %s", m ? "ok" : err)) {
		test_leaves(ca, m);
		test_leaf_inputs(ca, m);
		test_cache(ca, m);
		test_tls(ca, m, "EC CA");
	}
	test_rsa(&rsa_create_s);
	if (ca && m)
		timings(ca, m, rsa_create_s);
	minter_free(m);
	minter_free(NULL);
	ca_free(ca);

	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return done_testing();
}
