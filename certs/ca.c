/* ca.c -- egressd's certificate authority: creation in the state dir, loading */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "errmsg.h"

#define CA_KEY_FILE "ca.key"
#define CA_CERT_FILE "ca.crt"
#define CA_VALID_DAYS 3650 /* ten years */

struct ca {
	X509 *cert;      /* self-signed CA certificate */
	EVP_PKEY *key;   /* its private key */
	char *cert_path; /* STATE_DIR/ca.crt */
};

/* ---- error helpers ---- */

#define seterr(err, ...) errmsg_set((err), CA_ERRLEN, __VA_ARGS__)
#define set_ossl_err(err, what) errmsg_ossl((err), CA_ERRLEN, (what))

/* ---- state dir ---- */

/* mkdir -p with mode 0700 for every component it creates. 0 or -1 (err set). */
static int mkdir_p(const char *dir, char *err)
{
	char *p = xstrdup(dir);
	int rc = -1;

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int e = errno;
			struct stat st;
			if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) { /* EACCES on an existing parent is fine */
				seterr(err, "cannot create state dir %s: %s", p, strerror(e));
				goto out;
			}
		}
		*s = c;
		if (c == '\0')
			break;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

/* Opens and locks state_dir after checking it is a directory owned by us and
 * not writable by group or others. Returns the fd or -1 (err set). */
static int open_state_dir(const char *dir, char *err)
{
	struct stat st;
	int fd = -1;

	if (!dir || !*dir) {
		seterr(err, "state dir: empty path");
		goto fail;
	}
	if (mkdir_p(dir, err) < 0)
		goto fail;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		seterr(err, "cannot open state dir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		seterr(err, "cannot stat state dir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		seterr(err, "state dir %s is owned by uid %u, not by the current user (uid %u); refusing to use it",
		       dir, (unsigned)st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		seterr(err, "state dir %s is writable by %s (mode %04o); refusing to use it (chmod 700 %s)",
		       dir, (st.st_mode & S_IWOTH) ? "others" : "its group",
		       (unsigned)(st.st_mode & 07777), dir);
		goto fail;
	}
	/* Serialises creation between processes sharing the state dir. */
	if (flock(fd, LOCK_EX) < 0) {
		seterr(err, "cannot lock state dir %s: %s", dir, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* 1 if name exists in dirfd, 0 if absent, -1 on another error (err set). */
static int file_exists(int dirfd, const char *dir, const char *name, char *err)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, 0) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	seterr(err, "cannot stat %s/%s: %s", dir, name, strerror(errno));
	return -1;
}

/* ---- loading ---- */

/* Never prompt for a passphrase: an encrypted CA key is an error. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/* Opens dir/name for reading as a FILE*, or NULL (err set). */
static FILE *open_read(int dirfd, const char *dir, const char *name, int extra_flags, char *err)
{
	struct stat st;
	FILE *f = NULL;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | extra_flags);

	if (fd < 0) {
		seterr(err, "cannot open %s/%s: %s", dir, name, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		seterr(err, "%s/%s is not a regular file", dir, name);
		goto out;
	}
	f = fdopen(fd, "r");
	if (!f)
		seterr(err, "cannot open %s/%s: %s", dir, name, strerror(errno));
	else
		fd = -1; /* owned by f */
out:
	if (fd >= 0)
		close(fd);
	return f;
}

/* Loads and cross-checks ca.key and ca.crt. 0 or -1 (err set). */
static int load_ca(struct ca *ca, int dirfd, const char *dir, char *err)
{
	char what[CA_ERRLEN];
	FILE *kf = NULL, *cf = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc = -1;

	kf = open_read(dirfd, dir, CA_KEY_FILE, O_NOFOLLOW, err);
	if (!kf)
		goto out;
	key = PEM_read_PrivateKey(kf, NULL, no_password, NULL);
	if (!key) {
		snprintf(what, sizeof(what), "cannot read private key %s/%s", dir, CA_KEY_FILE);
		set_ossl_err(err, what);
		goto out;
	}
	cf = open_read(dirfd, dir, CA_CERT_FILE, 0, err);
	if (!cf)
		goto out;
	cert = PEM_read_X509(cf, NULL, no_password, NULL);
	if (!cert) {
		snprintf(what, sizeof(what), "cannot read certificate %s/%s", dir, CA_CERT_FILE);
		set_ossl_err(err, what);
		goto out;
	}
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		seterr(err, "%s/%s and %s/%s do not match (the key is not the certificate's)",
		       dir, CA_KEY_FILE, dir, CA_CERT_FILE);
		goto out;
	}
	if (X509_check_ca(cert) < 1) {
		seterr(err, "%s/%s is not a CA certificate", dir, CA_CERT_FILE);
		goto out;
	}
	ca->key = key;
	ca->cert = cert;
	key = NULL;
	cert = NULL;
	rc = 0;
out:
	if (kf)
		fclose(kf);
	if (cf)
		fclose(cf);
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}

/* ---- creation ---- */

int ca_random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	int rc = -1;

	if (RAND_bytes(b, sizeof(b)) != 1)
		goto out;
	b[0] &= 0x7f; /* positive, and at most 16 bytes in DER */
	b[0] |= 0x40; /* never zero, always 16 bytes */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
		goto out;
	rc = 0;
out:
	BN_free(bn);
	return rc;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int rc = ext && X509_add_ext(x, ext, -1) == 1 ? 0 : -1;

	X509_EXTENSION_free(ext);
	return rc;
}

/* Generates the CA key and self-signed certificate into ca. 0 or -1 (err set). */
static int generate_ca(struct ca *ca, enum ca_keytype kt, char *err)
{
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	X509V3_CTX ctx;
	unsigned char rnd[4];
	char cn[64];
	int rc = -1;

	if (kt == CA_KEY_RSA_2048)
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	else
		key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key) {
		set_ossl_err(err, "CA key generation failed");
		goto out;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		set_ossl_err(err, "RAND_bytes");
		goto out;
	}
	snprintf(cn, sizeof(cn), "egressd CA %02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);

	x = X509_new();
	name = X509_NAME_new();
	if (!x || !name ||
	    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"egressd", -1, -1, 0) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_version(x, X509_VERSION_3) != 1 || ca_random_serial(x) < 0 ||
	    X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), CA_VALID_DAYS, 0, NULL) ||
	    X509_set_pubkey(x, key) != 1) {
		set_ossl_err(err, "building the CA certificate");
		goto out;
	}
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0) {
		set_ossl_err(err, "adding CA certificate extensions");
		goto out;
	}
	if (X509_sign(x, key, EVP_sha256()) <= 0) {
		set_ossl_err(err, "signing the CA certificate");
		goto out;
	}
	ca->key = key;
	ca->cert = x;
	key = NULL;
	x = NULL;
	rc = 0;
out:
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* Writes len bytes to dir/tmpname (created O_EXCL with mode), fsyncs it.
 * On error removes the temp file. 0 or -1 (err set). */
static int write_temp(int dirfd, const char *dir, const char *tmpname, mode_t mode,
		      const char *data, size_t len, char *err)
{
	int fd = openat(dirfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	int rc = -1;

	if (fd < 0) {
		seterr(err, "cannot create %s/%s: %s", dir, tmpname, strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) < 0) { /* the umask may have cut the mode */
		seterr(err, "chmod %s/%s: %s", dir, tmpname, strerror(errno));
		goto out;
	}
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			seterr(err, "write %s/%s: %s", dir, tmpname, strerror(errno));
			goto out;
		}
		data += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		seterr(err, "fsync %s/%s: %s", dir, tmpname, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (close(fd) < 0 && rc == 0) {
		seterr(err, "close %s/%s: %s", dir, tmpname, strerror(errno));
		rc = -1;
	}
	if (rc < 0)
		unlinkat(dirfd, tmpname, 0);
	return rc;
}

/* Writes the CA to the state dir: both files to temp names first, then
 * renamed into place (key first), then the directory fsynced. 0 or -1. */
static int save_ca(const struct ca *ca, int dirfd, const char *dir, char *err)
{
	BIO *kb = BIO_new(BIO_s_secmem()); /* wiped on free */
	BIO *cb = BIO_new(BIO_s_mem());
	char ktmp[64], ctmp[64];
	unsigned char rnd[4];
	char *kdata, *cdata;
	long klen, clen;
	bool ktmp_made = false, ctmp_made = false;
	int rc = -1;

	if (!kb || !cb || RAND_bytes(rnd, sizeof(rnd)) != 1) {
		set_ossl_err(err, "preparing CA files");
		goto out;
	}
	snprintf(ktmp, sizeof(ktmp), ".%s.%ld.%02x%02x%02x%02x.tmp", CA_KEY_FILE, (long)getpid(),
		 rnd[0], rnd[1], rnd[2], rnd[3]);
	snprintf(ctmp, sizeof(ctmp), ".%s.%ld.%02x%02x%02x%02x.tmp", CA_CERT_FILE, (long)getpid(),
		 rnd[0], rnd[1], rnd[2], rnd[3]);
	/* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"). */
	if (PEM_write_bio_PrivateKey(kb, ca->key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_bio_X509(cb, ca->cert) != 1) {
		set_ossl_err(err, "encoding the CA as PEM");
		goto out;
	}
	klen = BIO_get_mem_data(kb, &kdata);
	clen = BIO_get_mem_data(cb, &cdata);
	if (klen <= 0 || clen <= 0) {
		seterr(err, "encoding the CA as PEM: empty output");
		goto out;
	}
	if (write_temp(dirfd, dir, ktmp, 0600, kdata, (size_t)klen, err) < 0)
		goto out;
	ktmp_made = true;
	if (write_temp(dirfd, dir, ctmp, 0644, cdata, (size_t)clen, err) < 0)
		goto out;
	ctmp_made = true;
	if (renameat(dirfd, ktmp, dirfd, CA_KEY_FILE) < 0) {
		seterr(err, "rename %s/%s: %s", dir, CA_KEY_FILE, strerror(errno));
		goto out;
	}
	ktmp_made = false;
	if (renameat(dirfd, ctmp, dirfd, CA_CERT_FILE) < 0) {
		seterr(err, "rename %s/%s: %s (remove %s/%s before retrying)", dir, CA_CERT_FILE,
		       strerror(errno), dir, CA_KEY_FILE);
		goto out;
	}
	ctmp_made = false;
	if (fsync(dirfd) < 0) {
		seterr(err, "fsync %s: %s", dir, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (ktmp_made)
		unlinkat(dirfd, ktmp, 0);
	if (ctmp_made)
		unlinkat(dirfd, ctmp, 0);
	BIO_free(kb);
	BIO_free(cb);
	return rc;
}

/* ---- public ---- */

struct ca *ca_load_or_create(const char *state_dir, enum ca_keytype kt, int *created, char *err)
{
	struct ca *ca = xcalloc(1, sizeof(*ca));
	struct ca *ret = NULL;
	int dirfd = -1, have_key, have_cert, made = 0;
	size_t n;

	dirfd = open_state_dir(state_dir, err);
	if (dirfd < 0)
		goto out;
	have_key = file_exists(dirfd, state_dir, CA_KEY_FILE, err);
	if (have_key < 0)
		goto out;
	have_cert = file_exists(dirfd, state_dir, CA_CERT_FILE, err);
	if (have_cert < 0)
		goto out;
	if (have_key != have_cert) {
		seterr(err, "%s/%s exists but %s/%s is missing; restore it, or remove both to make a new CA",
		       state_dir, have_key ? CA_KEY_FILE : CA_CERT_FILE, state_dir,
		       have_key ? CA_CERT_FILE : CA_KEY_FILE);
		goto out;
	}
	if (have_key) {
		if (load_ca(ca, dirfd, state_dir, err) < 0)
			goto out;
	} else {
		if (generate_ca(ca, kt, err) < 0 || save_ca(ca, dirfd, state_dir, err) < 0)
			goto out;
		made = 1;
	}
	n = strlen(state_dir) + sizeof("/" CA_CERT_FILE);
	ca->cert_path = xmalloc(n);
	snprintf(ca->cert_path, n, "%s/%s", state_dir, CA_CERT_FILE);
	if (created)
		*created = made;
	ret = ca;
	ca = NULL;
out:
	if (dirfd >= 0)
		close(dirfd); /* also drops the lock */
	ca_free(ca);
	return ret;
}

void ca_free(struct ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	free(ca->cert_path);
	free(ca);
}

X509 *ca_cert(const struct ca *ca)
{
	return ca->cert;
}

EVP_PKEY *ca_key(const struct ca *ca)
{
	return ca->key;
}

int ca_write_pem(const struct ca *ca, FILE *f)
{
	return PEM_write_X509(f, ca->cert) == 1 && fflush(f) == 0 ? 0 : -1;
}

const char *ca_cert_path(const struct ca *ca)
{
	return ca->cert_path;
}
