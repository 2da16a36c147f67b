/* sandboxenv.c -- what a sandbox needs to use egressd: `egressd env` (the
 * placeholders, proxy and CA bundle variables), `egressd ca`, the bundle file */
#include "sandboxenv.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "ca.h"
#include "envvars.h"
#include "jsonw.h"
#include "policy.h"
#include "secrets.h"

const char *sandboxenv_default_state_dir(void)
{
	static char buf[4096];
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (geteuid() == 0)
		return "/var/lib/egressd";
	if (xdg && xdg[0] == '/')
		snprintf(buf, sizeof(buf), "%s/egressd", xdg);
	else if (home && home[0] == '/')
		snprintf(buf, sizeof(buf), "%s/.local/state/egressd", home);
	else
		return "/var/lib/egressd";
	return buf;
}

/* Appends the file at path to f; a missing system bundle is not an error. */
static int append_file(FILE *f, const char *path, int required)
{
	char buf[16384];
	size_t n;
	FILE *in = fopen(path, "rb");

	if (!in) {
		if (required)
			fprintf(stderr, "egressd: cannot read %s: %s\n", path, strerror(errno));
		return required ? -1 : 0;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		fwrite(buf, 1, n, f);
	fclose(in);
	fputc('\n', f);
	return 0;
}

/* Java's mark of a trusted certificate entry in a PKCS#12 keystore (what
 * keytool writes): without it Java ignores a certificate-only bag. */
#define JAVA_TRUST_OID "2.16.840.1.113894.746875.1.1"
#define ANY_EKU_OID "2.5.29.37.0"

/* Adds x as a trusted certificate bag (Java's attribute, a friendly name). */
static int add_trusted(STACK_OF(PKCS12_SAFEBAG) *bags, X509 *x, int n)
{
	PKCS12_SAFEBAG *bag = PKCS12_SAFEBAG_create_cert(x);
	ASN1_OBJECT *eku = OBJ_txt2obj(ANY_EKU_OID, 1);
	char alias[32];
	int ok;

	snprintf(alias, sizeof(alias), "egressd-%d", n);
	ok = bag && eku && PKCS12_add_friendlyname_asc(bag, alias, -1) &&
	     PKCS12_add1_attr_by_txt(bag, JAVA_TRUST_OID, V_ASN1_OBJECT, (unsigned char *)eku, -1) &&
	     sk_PKCS12_SAFEBAG_push(bags, bag);
	ASN1_OBJECT_free(eku);
	if (!ok)
		PKCS12_SAFEBAG_free(bag);
	return ok ? 0 : -1;
}

/* Adds each certificate of the PEM file path (missing: nothing). */
static int add_pem_file(STACK_OF(PKCS12_SAFEBAG) *bags, const char *path, int *n)
{
	FILE *f = fopen(path, "rb");
	X509 *x;
	int rc = 0;

	if (!f)
		return 0;
	while (rc == 0 && (x = PEM_read_X509(f, NULL, NULL, NULL))) {
		rc = add_trusted(bags, x, (*n)++);
		X509_free(x);
	}
	ERR_clear_error(); /* the end of the file reads as an error */
	fclose(f);
	return rc;
}

/* STATE_DIR/ca-truststore.p12: the bundle's certificates as a Java
 * truststore (PKCS#12, password SANDBOXENV_TRUSTSTORE_PASSWORD: it guards
 * nothing secret, Java wants one), written to tmp then renamed. */
static int write_truststore(const char *state_dir, const struct ca *ca, const char *upstream_ca)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = sk_PKCS12_SAFEBAG_new_null();
	STACK_OF(PKCS7) *safes = sk_PKCS7_new_null();
	PKCS7 *p7 = NULL;
	PKCS12 *p12 = NULL;
	char path[4200], tmp[4300];
	FILE *f = NULL;
	int n = 0, rc = -1, fd;

	snprintf(path, sizeof(path), "%s/ca-truststore.p12", state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	if (!bags || !safes || add_trusted(bags, ca_cert(ca), n++) < 0 ||
	    add_pem_file(bags, X509_get_default_cert_file(), &n) < 0 ||
	    (upstream_ca && add_pem_file(bags, upstream_ca, &n) < 0) ||
	    !(p7 = PKCS12_pack_p7data(bags)) || !sk_PKCS7_push(safes, p7))
		goto out;
	p7 = NULL; /* safes owns it */
	if (!(p12 = PKCS12_add_safes(safes, 0)) ||
	    !PKCS12_set_mac(p12, SANDBOXENV_TRUSTSTORE_PASSWORD, -1, NULL, 0, 10000, NULL))
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "wb"))) {
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (i2d_PKCS12_fp(f, p12) && fflush(f) == 0 && fsync(fileno(f)) == 0 &&
	    rename(tmp, path) == 0)
		rc = 0;
out:
	if (rc)
		fprintf(stderr, "egressd: cannot write the Java truststore %s\n", path);
	if (f)
		fclose(f);
	if (rc)
		unlink(tmp);
	PKCS12_free(p12);
	PKCS7_free(p7);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	return rc;
}

int sandboxenv_write_bundle(const char *state_dir, const char *upstream_ca)
{
	char path[4200], tmp[4300], err[CA_ERRLEN];
	int created, fd, rc = -1;
	struct ca *ca = ca_load_or_create(state_dir, CA_KEY_EC_P256, &created, err);
	FILE *f = NULL;

	if (!ca) {
		fprintf(stderr, "egressd: %s\n", err);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/ca-bundle.pem", state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		fprintf(stderr, "egressd: cannot write %s: %s\n", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (append_file(f, X509_get_default_cert_file(), 0) < 0 || ca_write_pem(ca, f) < 0 ||
	    (upstream_ca && append_file(f, upstream_ca, 1) < 0))
		goto out;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "egressd: cannot write %s: %s\n", path, strerror(errno));
		goto out;
	}
	rc = write_truststore(state_dir, ca, upstream_ca);
out:
	if (f)
		fclose(f);
	if (rc)
		unlink(tmp);
	ca_free(ca);
	return rc;
}

/* VALUE needs no quoting in a shell or a dotenv file. */
static bool plain(const char *val)
{
	return strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			   "-_./:[]@%+,=") == strlen(val);
}

void sandboxenv_put_sh(const char *name, const char *val)
{
	if (plain(val)) {
		printf("%s=%s\n", name, val);
		return;
	}
	printf("%s='", name);
	for (; *val; val++)
		if (*val == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*val);
	printf("'\n");
}

static void put_var(void *ctx, const char *name, const char *value)
{
	(void)ctx;
	sandboxenv_put_sh(name, value);
}

/* NAME=VALUE, double-quoted (\" \\ \$ escaped) unless plain: dotenv files. */
static void put_dotenv(void *ctx, const char *name, const char *val)
{
	(void)ctx;
	if (plain(val)) {
		printf("%s=%s\n", name, val);
		return;
	}
	printf("%s=\"", name);
	for (; *val; val++) {
		if (*val == '"' || *val == '\\' || *val == '$')
			putchar('\\');
		putchar(*val);
	}
	printf("\"\n");
}

/* "NAME": "VALUE" members of one JSON object (ctx: the count so far). */
static void put_json(void *ctx, const char *name, const char *val)
{
	char buf[8192];
	int *n = ctx;

	printf("%s\n  \"%s\": \"", (*n)++ ? "," : "{", name);
	if (jsonw_escape(buf, sizeof(buf), val, strlen(val)) >= 0)
		fputs(buf, stdout);
	putchar('"');
}

int sandboxenv_cmd_env(const struct policy *p, const char *state_dir, const char *listen,
		       const char *upstream_ca, const char *format)
{
	unsigned char key[PLACEHOLDER_KEYLEN];
	char err[SECRETS_ERRLEN], url[300], bundle[4200], trust[4200];
	envvars_fn fn = put_var;
	int n = 0;

	if (format && !strcmp(format, "dotenv"))
		fn = put_dotenv;
	else if (format && !strcmp(format, "json"))
		fn = put_json;
	else if (format && strcmp(format, "sh")) {
		fprintf(stderr, "egressd: invalid --format \"%s\" (want sh, dotenv or json)\n", format);
		return 2;
	}

	if (placeholder_key_load(state_dir, key, err) < 0) {
		fprintf(stderr, "egressd: %s\n", err);
		return 1;
	}
	/* the bundle serve wrote may hold its --upstream-ca anchors: without
	 * --upstream-ca here, an existing bundle is left as it is */
	snprintf(bundle, sizeof(bundle), "%s/ca-bundle.pem", state_dir);
	snprintf(trust, sizeof(trust), "%s/ca-truststore.p12", state_dir);
	if ((upstream_ca || access(bundle, F_OK) != 0 || access(trust, F_OK) != 0) &&
	    sandboxenv_write_bundle(state_dir, upstream_ca) < 0) {
		OPENSSL_cleanse(key, sizeof(key));
		return 1;
	}
	snprintf(url, sizeof(url), "http://%s", listen);
	envvars_each(p, key, url, bundle, trust, fn, &n);
	OPENSSL_cleanse(key, sizeof(key));
	if (fn == put_json)
		printf("%s}\n", n ? "\n" : "{");
	return 0;
}

int sandboxenv_cmd_ca(int argc, char **argv, const char *state_dir, const char *keytype)
{
	char err[CA_ERRLEN];
	int created = 0, rc = 0;
	enum ca_keytype kt = keytype && !strcmp(keytype, "rsa") ? CA_KEY_RSA_2048 : CA_KEY_EC_P256;
	struct ca *ca;

	if (argc != 1 || (strcmp(argv[0], "init") && strcmp(argv[0], "show"))) {
		fprintf(stderr, "egressd: usage: egressd ca init|show [--state-dir DIR] [--ca-key ec|rsa]\n");
		return 2;
	}
	ca = ca_load_or_create(state_dir, kt, &created, err);
	if (!ca) {
		fprintf(stderr, "egressd: %s\n", err);
		return 1;
	}
	if (!strcmp(argv[0], "init"))
		printf("%s CA: %s\n", created ? "created" : "existing", ca_cert_path(ca));
	else if (ca_write_pem(ca, stdout) < 0)
		rc = 1;
	ca_free(ca);
	return rc;
}
