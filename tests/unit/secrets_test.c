/* secrets_test.c -- unit tests for secrets.c: the placeholder key file,
 * placeholder derivation, loading values from literal/env/file, load errors
 * (which must never show the value), the approved-hosts mask and the cache
 * of objects derived from (set, mask) */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "policy.h"
#include "secrets.h"
#include "tap.h"

static const unsigned char fixed_key[PLACEHOLDER_KEYLEN] = "0123456789abcdef0123456789abcde";
static char tmpdir[256];

static void write_file(const char *path, const char *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, n) != (ssize_t)n)
		printf("# cannot write %s\n", path);
	if (fd >= 0)
		close(fd);
}

static bool is_placeholder(const char *s)
{
	if (strlen(s) != PLACEHOLDER_LEN || strncmp(s, "egressd-ph-", 11) != 0)
		return false;
	for (size_t i = 11; i < PLACEHOLDER_LEN; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return false;
	return true;
}

static void test_key(void)
{
	unsigned char k1[PLACEHOLDER_KEYLEN], k2[PLACEHOLDER_KEYLEN], k3[PLACEHOLDER_KEYLEN];
	char d1[300], d2[300], path[400], err[SECRETS_ERRLEN];
	char a[PLACEHOLDER_LEN + 1], b[PLACEHOLDER_LEN + 1], c[PLACEHOLDER_LEN + 1];
	struct stat st;

	snprintf(d1, sizeof(d1), "%s/state1", tmpdir);
	snprintf(d2, sizeof(d2), "%s/state2", tmpdir);
	ok(placeholder_key_load(d1, k1, err) == 0, "key created in a missing state dir");
	ok(stat(d1, &st) == 0 && (st.st_mode & 07777) == 0700, "state dir created 0700");
	snprintf(path, sizeof(path), "%s/placeholder.key", d1);
	ok(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_size == 32,
	   "key file is 32 bytes, mode 0600");
	ok(placeholder_key_load(d1, k2, err) == 0 && memcmp(k1, k2, sizeof(k1)) == 0,
	   "second load reads the same key");
	ok(placeholder_key_load(d2, k3, err) == 0 && memcmp(k1, k3, sizeof(k1)) != 0,
	   "another state dir gets another key");

	placeholder_make(k1, "", "OPENAI_API_KEY", a);
	placeholder_make(k2, "", "OPENAI_API_KEY", b);
	ok(is_placeholder(a), "placeholder format: prefix + 32 lower-case hex (%s)", a);
	is_str(a, b, "placeholder stable across loads of the same key dir");
	placeholder_make(k3, "", "OPENAI_API_KEY", c);
	ok(strcmp(a, c) != 0, "placeholder differs across key dirs");
	placeholder_make(k1, "", "GITHUB_TOKEN", c);
	ok(strcmp(a, c) != 0 && is_placeholder(c), "placeholder differs across names");
	placeholder_make(k1, "sb-a", "OPENAI_API_KEY", b);
	placeholder_make(k1, "sb-b", "OPENAI_API_KEY", c);
	ok(is_placeholder(b) && strcmp(a, b) != 0 && strcmp(b, c) != 0,
	   "a sandbox's placeholder differs from the unscoped one and another sandbox's");
	placeholder_make(k1, "sb", "aOPENAI_API_KEY", c);
	placeholder_make(k1, "sba", "OPENAI_API_KEY", b);
	ok(strcmp(b, c) != 0, "scope and name do not run together (sb+aX vs sba+X)");

	ok(chmod(d2, 0770) == 0 && placeholder_key_load(d2, k3, err) == -1 &&
	   strstr(err, "writable"), "group-writable state dir refused: %s", err);
	ok(chmod(d2, 0707) == 0 && placeholder_key_load(d2, k3, err) == -1,
	   "world-writable state dir refused");
	chmod(d2, 0700);
	snprintf(path, sizeof(path), "%s/placeholder.key", d2);
	write_file(path, "short", 5);
	ok(placeholder_key_load(d2, k3, err) == -1 && strstr(err, "5 bytes"),
	   "truncated key file refused: %s", err);
	snprintf(path, sizeof(path), "%s/afile", tmpdir);
	write_file(path, "x", 1);
	ok(placeholder_key_load(path, k3, err) == -1 && strstr(err, "not a directory"),
	   "state dir that is a file refused");
}

/* Loads a policy with one secret; returns the set or NULL with err. */
static struct secretset *load_one(enum secret_source src, const char *arg, char *err)
{
	struct policy *p = policy_new();
	struct secretset *s = NULL;

	if (policy_add_secret(p, "TOKEN", "api.example.com", src, arg, err))
		s = secretset_load(p, fixed_key, err);
	policy_unref(p);
	return s;
}

static void check_value(enum secret_source src, const char *arg, const char *want,
			const char *what)
{
	char err[SECRETS_ERRLEN] = "";
	struct secretset *s = load_one(src, arg, err);
	size_t len = 0;
	const char *v = s ? secretset_value(s, 0, &len) : NULL;

	ok(v && len == strlen(want) && strcmp(v, want) == 0, "value from %s", what);
	if (!s)
		printf("#   error: %s\n", err);
	secretset_free(s);
}

/* Loading must fail with an error naming TOKEN and never containing secret. */
static void check_error(enum secret_source src, const char *arg, const char *secret,
			const char *want, const char *what)
{
	char err[SECRETS_ERRLEN] = "";
	struct secretset *s = load_one(src, arg, err);

	ok(!s && strstr(err, "TOKEN") && strstr(err, want) &&
	   (!secret || !strstr(err, secret)), "error: %s (%s)", what, err);
	secretset_free(s);
}

static void test_load(void)
{
	char path[400], err[SECRETS_ERRLEN], big[70000], ph[PLACEHOLDER_LEN + 1];
	struct policy *p;
	struct secretset *s;

	check_value(SECRET_VALUE, "sk-literal", "sk-literal", "a literal");
	setenv("EGRESSD_TEST_TOKEN", "sk-from-env", 1);
	check_value(SECRET_FROM_ENV, "EGRESSD_TEST_TOKEN", "sk-from-env", "the environment");
	snprintf(path, sizeof(path), "%s/v1", tmpdir);
	write_file(path, "sk-file\n", 8);
	check_value(SECRET_FROM_FILE, path, "sk-file", "a file with a newline");
	write_file(path, "sk-file\r\n", 9);
	check_value(SECRET_FROM_FILE, path, "sk-file", "a file with CRLF");
	write_file(path, "sk-file", 7);
	check_value(SECRET_FROM_FILE, path, "sk-file", "a file without newline");
	write_file(path, "sk-file\n\n", 9);
	check_error(SECRET_FROM_FILE, path, "sk-file", "CR, LF",
		    "only one trailing newline dropped");

	unsetenv("EGRESSD_TEST_MISSING");
	check_error(SECRET_FROM_ENV, "EGRESSD_TEST_MISSING", NULL, "EGRESSD_TEST_MISSING",
		    "missing env var");
	setenv("EGRESSD_TEST_EMPTY", "", 1);
	check_error(SECRET_FROM_ENV, "EGRESSD_TEST_EMPTY", NULL, "empty", "empty env var");
	setenv("EGRESSD_TEST_LF", "sk-top\nsecret", 1);
	check_error(SECRET_FROM_ENV, "EGRESSD_TEST_LF", "sk-top", "CR, LF", "LF in value");
	check_error(SECRET_VALUE, "sk-cr\rvalue", "sk-cr", "CR, LF", "CR in value");
	snprintf(path, sizeof(path), "%s/v-empty", tmpdir);
	write_file(path, "\n", 1);
	check_error(SECRET_FROM_FILE, path, NULL, "empty", "file with only a newline");
	snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
	check_error(SECRET_FROM_FILE, path, NULL, "No such file", "unreadable file");
	check_error(SECRET_FROM_FILE, tmpdir, NULL, "regular file", "a directory as file");
	memset(big, 'k', sizeof(big));
	snprintf(path, sizeof(path), "%s/v-big", tmpdir);
	write_file(path, big, sizeof(big));
	check_error(SECRET_FROM_FILE, path, "kkkkkkkk", "larger than", "file over 64 KiB");
	write_file(path, big, 65536);
	check_value(SECRET_FROM_FILE, path, (big[65536] = '\0', big), "a 64 KiB file");

	placeholder_make(fixed_key, "", "TOKEN", ph);
	for (char *c = ph + 11; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 32);
	snprintf(big, sizeof(big), "x%sy", ph);
	check_error(SECRET_VALUE, big, ph, "contains a placeholder",
		    "value containing a placeholder (any case)");

	p = policy_new();
	for (int i = 0; i < SECRETS_MAX + 1; i++) {
		char name[32];
		snprintf(name, sizeof(name), "S%d", i);
		policy_add_secret(p, name, "h.test", SECRET_VALUE, "sk-many", err);
	}
	s = secretset_load(p, fixed_key, err);
	ok(!s && strstr(err, "65 secrets") && !strstr(err, "sk-many"),
	   "more than 64 secrets refused: %s", err);
	secretset_free(s);
	policy_unref(p);
}

static struct target tgt(const char *host)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	memset(&t, 0, sizeof(t));
	if (!target_from_host(host, strlen(host), 443, &t, err))
		printf("# bad target %s: %s\n", host, err);
	return t;
}

static void test_set(void)
{
	struct policy *p = policy_new();
	char err[SECRETS_ERRLEN], ph[PLACEHOLDER_LEN + 1];
	struct secretset *s;
	struct target t;
	size_t len;

	policy_add_secret(p, "A", "api.example.com", SECRET_VALUE, "va", err);
	policy_add_secret(p, "B", "*.github.com,github.com", SECRET_VALUE, "vb", err);
	policy_add_secret(p, "C", "*.example.com:8443", SECRET_VALUE, "vc", err);
	s = secretset_load(p, fixed_key, err);
	ok(s && secretset_count(s) == 3, "three secrets loaded");
	if (!s) {
		policy_unref(p);
		return;
	}
	is_str(secretset_name(s, 1), "B", "name by index");
	placeholder_make(fixed_key, "", "B", ph);
	is_str(secretset_placeholder(s, 1), ph, "placeholder by index");
	ok(strcmp(secretset_value(s, 2, &len), "vc") == 0 && len == 2, "value by index");
	ok(!CRYPTO_secure_malloc_initialized(),
	   "OpenSSL's small secure heap is not switched on (it would starve TLS under load)");
	ok(secretset_name(s, 3) == NULL && secretset_value(s, 3, &len) == NULL,
	   "out of range: NULL");

	t = tgt("api.example.com");
	ok(secretset_approved(s, p, &t) == 1, "exact host approves A only");
	t = tgt("api.github.com");
	ok(secretset_approved(s, p, &t) == 2, "wildcard approves B");
	t = tgt("github.com");
	ok(secretset_approved(s, p, &t) == 2, "second host of B");
	t = tgt("deep.api.github.com");
	ok(secretset_approved(s, p, &t) == 2, "wildcard matches any depth");
	t = tgt("example.com");
	ok(secretset_approved(s, p, &t) == 0, "wildcard does not match the apex");
	t = tgt("api.example.com");
	t.port = 8443;
	ok(secretset_approved(s, p, &t) == 5, "port-bound wildcard + exact host on 8443");
	t = tgt("evil.test");
	ok(secretset_approved(s, p, &t) == 0, "other host approves nothing");
	secretset_free(s);
	secretset_free(NULL);
	policy_unref(p);
}

/* The fixed forms: which exist (16-character rule, base64url only when it
 * differs) and what they are replaced by. */
static void test_forms(void)
{
	struct policy *p = policy_new();
	char err[SECRETS_ERRLEN], hex[2 * PLACEHOLDER_LEN + 1];
	struct secretset *s;
	const char *rep, *f;
	size_t len, rl;

	policy_add_secret(p, "SHORT", "h.test", SECRET_VALUE, "<</?\?>>", err);  /* 7 bytes */
	policy_add_secret(p, "EIGHT", "h.test", SECRET_VALUE, "<</?\?>>~", err); /* 8 bytes */
	policy_add_secret(p, "PLAIN", "h.test", SECRET_VALUE, "abcdefghijklmnop", err);
	s = secretset_load(p, fixed_key, err);
	if (!ok(s != NULL, "set with form test values loaded")) {
		policy_unref(p);
		return;
	}
	ok(!secretset_form(s, 0, 7, &len, &rep, &rl) && !secretset_form(s, 0, 1, &len, &rep, &rl),
	   "7-byte value: hex (14) and base64 (8) under 16 characters: absent");
	f = secretset_form(s, 1, 7, &len, &rep, &rl);
	ok(f && len == 16 && memcmp(f, "3c3c2f3f3f3e3e7e", 16) == 0, "8-byte value: hex lower-case");
	for (size_t i = 0; i < PLACEHOLDER_LEN; i++)
		sprintf(hex + 2 * i, "%02x", (unsigned char)secretset_placeholder(s, 1)[i]);
	ok(f && rl == 2 * PLACEHOLDER_LEN && memcmp(rep, hex, rl) == 0,
	   "hex replaced by the placeholder's hex");
	f = secretset_form(s, 1, 8, &len, &rep, &rl);
	ok(f && len == 16 && memcmp(f, "3C3C2F3F3F3E3E7E", 16) == 0, "8-byte value: hex upper-case");
	ok(secretset_form(s, 2, 1, &len, &rep, &rl) && !secretset_form(s, 2, 4, &len, &rep, &rl),
	   "base64url equal to base64 (no + or /): left out");
	policy_add_secret(p, "URL", "h.test", SECRET_VALUE, "?\?\?>>>?\?\?>>>?\?\?>>>", err);
	secretset_free(s);
	s = secretset_load(p, fixed_key, err);
	f = s ? secretset_form(s, 3, 4, &len, &rep, &rl) : NULL;
	ok(f && len == 24 && memcmp(f, "Pz8_Pj4-Pz8_Pj4-Pz8_Pj4-", 24) == 0,
	   "base64url core of (? ? ? > > >) x 3: - and _");
	{
		size_t l1, r1;
		const char *rep1;
		ok(f && secretset_form(s, 3, 1, &l1, &rep1, &r1) && r1 == rl &&
			   memcmp(rep1, rep, rl) == 0 && !memchr(rep, '+', rl) && !memchr(rep, '/', rl),
		   "the placeholder's base64 and base64url are the same");
	}
	secretset_free(s);
	policy_unref(p);
}

static int built, dropped;

static void *cache_build(const struct secretset *s, uint64_t mask)
{
	uint64_t *o = malloc(sizeof(*o));

	(void)s;
	built++;
	*o = mask;
	return o;
}

static void cache_drop(void *o)
{
	dropped++;
	free(o);
}

static void other_kind(void *o)
{
	free(o);
}

static void test_cache(void)
{
	struct policy *p = policy_new();
	char err[SECRETS_ERRLEN];
	struct secretset *s;
	uint64_t *a, *b;
	bool full_ok = true;

	policy_add_secret(p, "A", "h.test", SECRET_VALUE, "alpha", err);
	s = secretset_load(p, fixed_key, err);
	if (!ok(s != NULL, "set for the cache loaded")) {
		policy_unref(p);
		return;
	}
	a = secretset_cache(s, 1, cache_drop, cache_build);
	b = secretset_cache(s, 1, cache_drop, cache_build);
	ok(a && a == b && *a == 1 && built == 1, "built once per mask, then the cached one");
	b = secretset_cache(s, 1, other_kind, cache_build);
	ok(b && b != a && built == 2, "another kind: an entry of its own");
	for (uint64_t m = 2; m < SECRETSET_CACHE_MAX; m++) /* 2 entries so far */
		full_ok = full_ok && secretset_cache(s, m, cache_drop, cache_build);
	ok(full_ok && !secretset_cache(s, 1000, cache_drop, cache_build) &&
		   built == SECRETSET_CACHE_MAX && secretset_cache(s, 2, cache_drop, cache_build),
	   "full at %d: NULL for a new mask (not built), cached ones still found",
	   SECRETSET_CACHE_MAX);
	secretset_free(s);
	ok(dropped == SECRETSET_CACHE_MAX - 1, "freeing the set drops every cached object");
	policy_unref(p);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/secrets_test.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_key();
	test_load();
	test_set();
	test_forms();
	test_cache();
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	return done_testing();
}
