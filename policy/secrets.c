/* secrets.c -- the placeholder key in the state dir, placeholders derived from
 * it, the secret values resolved once into locked, wiped-on-free memory, and
 * a small cache of objects derived from them (the redactor's plans) */
#include "secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "alloc.h"
#include "errmsg.h"
#include "policy.h"

#define SECRET_FILE_MAX (64 * 1024) /* largest valueFromFile, after which: error */
#define KEY_FILE "placeholder.key"
#define FORM_MIN 16 /* shortest encoded form redacted (characters) */

/* Sanitizer and fuzz builds keep values in plain malloc so ASan sees every
 * byte of them (STYLE 16: a plain-malloc mode for any custom allocator). */
#if defined(__SANITIZE_ADDRESS__) || defined(EGRESSD_FUZZ)
#define SECURE_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECURE_PLAIN 1
#endif
#endif
#ifndef SECURE_PLAIN
#define SECURE_PLAIN 0
#endif

struct sentry {
	char *name;                           /* owned copy */
	char placeholder[PLACEHOLDER_LEN + 1];
	char *value;                          /* secure memory, NUL-terminated */
	size_t len;                           /* value length */
	size_t alloc;                         /* bytes allocated at value */
	char *form[SECRET_FORMS - 1];         /* encoded forms 1.. (secure memory) or NULL */
	size_t formlen[SECRET_FORMS - 1], formalloc[SECRET_FORMS - 1];
	char rep[SECRET_FORMS - 1][2 * PLACEHOLDER_LEN + 1]; /* the placeholder's same form */
	size_t replen[SECRET_FORMS - 1];
};

/* Objects derived from (set, mask), e.g. the redactor's plans (secretset_cache). */
struct sscache {
	pthread_mutex_t lock;
	size_t n; /* entries used (under lock) */
	struct {
		void (*kind)(void *); /* the user's drop function (tells users apart) */
		uint64_t mask;
		void *obj;            /* one reference, dropped with the set */
	} e[SECRETSET_CACHE_MAX];
};

struct secretset {
	size_t n;
	struct sentry *e;       /* n entries, in the policy's order (bit i = entry i) */
	struct sscache *cache;  /* owned; mutable behind a const set (thread-safe) */
};

#define seterr(err, ...) errmsg_set((err), SECRETS_ERRLEN, __VA_ARGS__)

/* ---- secure memory ---- */

/* Secret values live in whole pages of their own, mlock'ed (so they are not
 * swapped out) and MADV_DONTDUMP (not in core dumps), wiped before free.
 * Not OpenSSL's secure heap: CRYPTO_secure_malloc_init() makes OpenSSL put
 * its own key material there too, and a small heap (mlock limits keep it
 * small) then runs out under load: TLS handshakes fail with internal_error
 * past about a thousand open intercepted connections. */
static size_t page_size(void)
{
	long pg = sysconf(_SC_PAGESIZE);

	return pg > 0 ? (size_t)pg : 4096;
}

/* Small values share locked slabs: a page per value (and per encoded
 * form) made one mapping each, and with thousands of sandboxes created at
 * runtime (the control API) the process ran out of mappings
 * (vm.max_map_count) near 7,000 of them. A slab chunk is one mapping,
 * locked and kept out of core dumps once; its blocks are wiped on free and
 * reused by size class, never returned (and never unlocked). */
#define SLAB_CHUNK ((size_t)256 << 10)
#define SLAB_MIN 64
#define SLAB_CLASSES 7 /* 64, 128, ... 4096 bytes */
#define SLAB_MAX (SLAB_MIN << (SLAB_CLASSES - 1))

static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static void *slab_free[SLAB_CLASSES]; /* free blocks, linked through their first bytes */
static char *slab_cur;                /* the chunk being carved */
static size_t slab_left;

/* Page-aligned, locked, not dumped; aborts on OOM like xmalloc. */
static void *locked_pages(size_t len)
{
	void *p;

	if (posix_memalign(&p, page_size(), len) != 0) {
		fprintf(stderr, "egressd: out of memory allocating %zu bytes\n", len);
		abort();
	}
	/* mlock may fail under RLIMIT_MEMLOCK, the value is then only wiped */
	(void)mlock(p, len);
	(void)madvise(p, len, MADV_DONTDUMP);
	return p;
}

static char *slab_alloc(size_t n, size_t *alloc)
{
	size_t size = SLAB_MIN;
	int cls = 0;
	void *p;

	while (size < n) {
		size <<= 1;
		cls++;
	}
	pthread_mutex_lock(&slab_lock);
	if ((p = slab_free[cls])) {
		memcpy(&slab_free[cls], p, sizeof(void *));
	} else {
		if (slab_left < size) {
			slab_cur = locked_pages(SLAB_CHUNK);
			slab_left = SLAB_CHUNK;
		}
		p = slab_cur;
		slab_cur += size;
		slab_left -= size;
	}
	pthread_mutex_unlock(&slab_lock);
	*alloc = size;
	return p;
}

/* Returns n bytes of memory for a secret; *alloc gets the size to pass back
 * to secure_free. Aborts on OOM like xmalloc. */
static char *secure_alloc(size_t n, size_t *alloc)
{
	if (SECURE_PLAIN) {
		*alloc = n;
		return xmalloc(n);
	}
	if (n <= SLAB_MAX)
		return slab_alloc(n, alloc);
	/* whole pages so munlock on free never unlocks a neighbour */
	*alloc = (n + page_size() - 1) / page_size() * page_size();
	return locked_pages(*alloc);
}

static void secure_free(char *p, size_t alloc)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, alloc);
	if (SECURE_PLAIN) {
		free(p);
	} else if (alloc <= SLAB_MAX) {
		int cls = 0;
		while ((size_t)SLAB_MIN << cls < alloc)
			cls++;
		pthread_mutex_lock(&slab_lock);
		memcpy(p, &slab_free[cls], sizeof(void *));
		slab_free[cls] = p;
		pthread_mutex_unlock(&slab_lock);
	} else {
		(void)madvise(p, alloc, MADV_DODUMP);
		(void)munlock(p, alloc);
		free(p);
	}
}

/* ---- placeholder key ---- */

static int read_full(int fd, unsigned char *buf, size_t n, size_t *got)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = read(fd, buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		off += (size_t)r;
	}
	*got = off;
	return 0;
}

static int write_full(int fd, const unsigned char *buf, size_t n)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = write(fd, buf + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* Creates dir 0700 if missing; refuses a non-directory or a group/world-
 * writable one. */
static int state_dir_check(const char *dir, char *err)
{
	struct stat st;

	if (stat(dir, &st) != 0) {
		if (errno != ENOENT || (mkdir(dir, 0700) != 0 && errno != EEXIST) ||
		    stat(dir, &st) != 0) {
			seterr(err, "state dir %s: %s", dir, strerror(errno));
			return -1;
		}
	}
	if (!S_ISDIR(st.st_mode)) {
		seterr(err, "state dir %s: not a directory", dir);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		seterr(err, "state dir %s: group- or world-writable (mode %04o); chmod 700 it",
		       dir, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/* Reads an existing key file: a regular file of exactly PLACEHOLDER_KEYLEN
 * bytes. Returns 0, 1 if it does not exist, -1 with err. */
static int key_read(const char *path, unsigned char key[PLACEHOLDER_KEYLEN], char *err)
{
	unsigned char buf[PLACEHOLDER_KEYLEN + 1];
	struct stat st;
	size_t got = 0;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		seterr(err, "placeholder key %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		seterr(err, "placeholder key %s: not a regular file", path);
		goto out;
	}
	if (read_full(fd, buf, sizeof(buf), &got) != 0) {
		seterr(err, "placeholder key %s: %s", path, strerror(errno));
		goto out;
	}
	if (got != PLACEHOLDER_KEYLEN) {
		seterr(err, "placeholder key %s: %zu bytes, want %d (delete it to make a new one,"
		       " which changes every placeholder)", path, got, PLACEHOLDER_KEYLEN);
		goto out;
	}
	memcpy(key, buf, PLACEHOLDER_KEYLEN);
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return rc;
}

/* Writes a new random key to a temporary file (O_EXCL, 0600, fsync) and moves
 * it into place without replacing a key another process put there first.
 * Returns 0 (key written), 1 (lost the race: read the existing one), -1. */
static int key_create(const char *dir, const char *path, unsigned char key[PLACEHOLDER_KEYLEN],
		      char *err)
{
	unsigned char buf[PLACEHOLDER_KEYLEN], nonce[8];
	char tmp[4096];
	int fd = -1, dfd = -1, rc = -1;
	bool made = false;

	if (RAND_priv_bytes(buf, sizeof(buf)) != 1 || RAND_bytes(nonce, sizeof(nonce)) != 1) {
		seterr(err, "placeholder key: random generator failed");
		goto out;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.%02x%02x%02x%02x", dir, KEY_FILE,
			     (long)getpid(), nonce[0], nonce[1], nonce[2], nonce[3]) >= sizeof(tmp)) {
		seterr(err, "state dir path too long");
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		seterr(err, "placeholder key %s: %s", tmp, strerror(errno));
		goto out;
	}
	made = true;
	if (fchmod(fd, 0600) != 0 || write_full(fd, buf, sizeof(buf)) != 0 || fsync(fd) != 0) {
		seterr(err, "placeholder key %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		seterr(err, "placeholder key %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	/* rename, but never over a key that a concurrent start just wrote (that
	 * would give the two processes different placeholders) */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
		if (errno == EEXIST) {
			rc = 1;
			goto out;
		}
		if ((errno != EINVAL && errno != ENOSYS) || link(tmp, path) != 0) {
			if (errno == EEXIST)
				rc = 1;
			else
				seterr(err, "placeholder key %s: %s", path, strerror(errno));
			goto out;
		}
		(void)unlink(tmp);
	}
	made = false;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	memcpy(key, buf, PLACEHOLDER_KEYLEN);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (made)
		(void)unlink(tmp);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

int placeholder_key_load(const char *state_dir, unsigned char key[PLACEHOLDER_KEYLEN], char *err)
{
	char path[4096];
	int rc;

	if (state_dir_check(state_dir, err) != 0)
		return -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", state_dir, KEY_FILE) >= sizeof(path)) {
		seterr(err, "state dir path too long");
		return -1;
	}
	rc = key_read(path, key, err);
	if (rc != 1)
		return rc;
	rc = key_create(state_dir, path, key, err);
	if (rc == 1) /* another process created it meanwhile */
		rc = key_read(path, key, err) == 0 ? 0 : -1;
	return rc;
}

void placeholder_make(const unsigned char key[PLACEHOLDER_KEYLEN], const char *scope,
		      const char *name, char out[PLACEHOLDER_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE], msg[2 * 256 + 2];
	unsigned int mdlen = 0;
	size_t plen = strlen(PLACEHOLDER_PREFIX);
	int mlen;

	/* the name alone when single-tenant; "sandbox\nname" per sandbox */
	mlen = snprintf((char *)msg, sizeof(msg), "%.255s%s%.255s", scope, *scope ? "\n" : "", name);
	if (mlen < 0 || !HMAC(EVP_sha256(), key, PLACEHOLDER_KEYLEN, msg, (size_t)mlen, md, &mdlen) ||
	    mdlen < (PLACEHOLDER_LEN - plen) / 2) {
		/* cannot happen with a working libcrypto; a wrong placeholder would be worse */
		fprintf(stderr, "egressd: HMAC-SHA256 failed\n");
		abort();
	}
	memcpy(out, PLACEHOLDER_PREFIX, plen);
	for (size_t i = 0; i < (PLACEHOLDER_LEN - plen) / 2; i++) {
		out[plen + 2 * i] = hex[md[i] >> 4];
		out[plen + 2 * i + 1] = hex[md[i] & 15];
	}
	out[PLACEHOLDER_LEN] = '\0';
}

/* ---- the secret set ---- */

/* Reads path (at most SECRET_FILE_MAX bytes, one trailing "\n" or "\r\n"
 * dropped) into a new heap buffer; the caller wipes and frees it. */
static char *file_read(const char *name, const char *path, size_t *len, char *err)
{
	char *buf = NULL, *res = NULL;
	struct stat st;
	size_t got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		seterr(err, "secret %s: valueFromFile %s: %s", name, path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		seterr(err, "secret %s: valueFromFile %s: not a regular file", name, path);
		goto out;
	}
	buf = xmalloc(SECRET_FILE_MAX + 1);
	if (read_full(fd, (unsigned char *)buf, SECRET_FILE_MAX + 1, &got) != 0) {
		seterr(err, "secret %s: valueFromFile %s: %s", name, path, strerror(errno));
		goto out;
	}
	if (got > SECRET_FILE_MAX) {
		seterr(err, "secret %s: valueFromFile %s: larger than %d bytes", name, path,
		       SECRET_FILE_MAX);
		goto out;
	}
	if (got > 0 && buf[got - 1] == '\n') {
		got--;
		if (got > 0 && buf[got - 1] == '\r')
			got--;
	}
	*len = got;
	res = buf;
	buf = NULL;
out:
	if (buf) {
		OPENSSL_cleanse(buf, SECRET_FILE_MAX + 1);
		free(buf);
	}
	close(fd);
	return res;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* Does v contain, in any case, the placeholder of some entry of s? */
static bool contains_placeholder(const struct secretset *s, const char *v, size_t n)
{
	for (size_t i = 0; i + PLACEHOLDER_LEN <= n; i++) {
		if (lower((unsigned char)v[i]) != 'e')
			continue;
		for (size_t k = 0; k < s->n; k++) {
			size_t j = 0;
			while (j < PLACEHOLDER_LEN &&
			       lower((unsigned char)v[i + j]) == s->e[k].placeholder[j])
				j++;
			if (j == PLACEHOLDER_LEN)
				return true;
		}
	}
	return false;
}

static void make_forms(struct sentry *e);

struct secretset *secretset_load(const struct policy *p,
				 const unsigned char key[PLACEHOLDER_KEYLEN], char *err)
{
	struct secretset *s = NULL, *res = NULL;
	size_t n = policy_secret_count(p);

	if (n > SECRETS_MAX) {
		seterr(err, "%zu secrets: at most %d are supported", n, SECRETS_MAX);
		goto out;
	}
	s = xcalloc(1, sizeof(*s));
	s->e = xcalloc(n ? n : 1, sizeof(*s->e));
	s->n = n;
	s->cache = xcalloc(1, sizeof(*s->cache));
	pthread_mutex_init(&s->cache->lock, NULL);
	for (size_t i = 0; i < n; i++) {
		s->e[i].name = xstrdup(policy_secret_name(p, i));
		placeholder_make(key, policy_scope(p), s->e[i].name, s->e[i].placeholder);
	}
	for (size_t i = 0; i < n; i++) {
		struct sentry *e = &s->e[i];
		const char *arg = policy_secret_source_arg(p, i), *src = NULL;
		char *filebuf = NULL;
		size_t len = 0;

		switch (policy_secret_source(p, i)) {
		case SECRET_VALUE:
			src = arg;
			len = strlen(arg);
			break;
		case SECRET_FROM_ENV:
			/* copied straight from the environment into secure memory:
			 * there is no intermediate copy to wipe */
			src = getenv(arg);
			if (!src) {
				seterr(err, "secret %s: environment variable %s is not set",
				       e->name, arg);
				goto out;
			}
			len = strlen(src);
			break;
		case SECRET_FROM_FILE:
			filebuf = file_read(e->name, arg, &len, err);
			if (!filebuf)
				goto out;
			src = filebuf;
			break;
		}
		if (len == 0) {
			seterr(err, "secret %s: the value is empty", e->name);
		} else if (memchr(src, '\r', len) || memchr(src, '\n', len) ||
			   memchr(src, '\0', len)) {
			seterr(err, "secret %s: the value contains CR, LF or NUL", e->name);
			len = 0;
		} else if (contains_placeholder(s, src, len)) {
			seterr(err, "secret %s: the value contains a placeholder", e->name);
			len = 0;
		} else {
			e->value = secure_alloc(len + 1, &e->alloc);
			memcpy(e->value, src, len);
			e->value[len] = '\0';
			e->len = len;
			make_forms(e);
		}
		if (filebuf) {
			OPENSSL_cleanse(filebuf, SECRET_FILE_MAX + 1);
			free(filebuf);
		}
		if (len == 0)
			goto out;
	}
	res = s;
	s = NULL;
out:
	secretset_free(s);
	return res;
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Whole 3-byte groups of in (n a multiple of 3) in the alphabet tab. */
static size_t b64_encode(const unsigned char *in, size_t n, const char *tab, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i + 3 <= n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	return o;
}

static size_t hex_encode(const unsigned char *in, size_t n, const char *tab, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = tab[in[i] >> 4];
		out[2 * i + 1] = tab[in[i] & 15];
	}
	return 2 * n;
}

/* Form j (1..) of e: base64 (j 1..3) or base64url (4..6) cores at the three
 * alignments (a value starting a bytes before a 3-byte group boundary), hex
 * in lower (7) or upper (8) case. Encodes len bytes of src into out (room for
 * 2 * len + 4); returns the length, 0 if the form is too short. */
static size_t encode_form(size_t j, const char *src, size_t len, char *out)
{
	size_t a, m;

	if (j >= 7)
		return hex_encode((const unsigned char *)src, len,
				  j == 7 ? "0123456789abcdef" : "0123456789ABCDEF", out);
	a = (3 - (j - 1) % 3) % 3;
	m = len > a ? (len - a) / 3 : 0;
	return b64_encode((const unsigned char *)src + a, 3 * m, j <= 3 ? b64_std : b64_url, out);
}

/* The encoded forms of e's value and of its placeholder. A form under
 * FORM_MIN characters is too short to be specific and left out, and so is a
 * base64url core equal to the base64 one (no '+' or '/' in it). The
 * placeholder ([a-z0-9-]) has no 6-bit group of 62 or 63, so its base64 and
 * base64url encodings are the same. */
static void make_forms(struct sentry *e)
{
	for (size_t j = 1; j < SECRET_FORMS; j++) {
		size_t k = j - 1, n;
		char *f = secure_alloc(2 * e->len + 5, &e->formalloc[k]);

		n = encode_form(j, e->value, e->len, f);
		f[n] = '\0';
		if (n < FORM_MIN || (j >= 4 && j <= 6 && e->form[k - 3] &&
				     strcmp(f, e->form[k - 3]) == 0)) {
			secure_free(f, e->formalloc[k]);
			continue;
		}
		e->form[k] = f;
		e->formlen[k] = n;
		e->replen[k] = encode_form(j, e->placeholder, PLACEHOLDER_LEN, e->rep[k]);
	}
}

const char *secretset_form(const struct secretset *s, size_t i, size_t j, size_t *len,
			   const char **rep, size_t *replen)
{
	const struct sentry *e;

	*len = *replen = 0;
	*rep = NULL;
	if (!s || i >= s->n || j >= SECRET_FORMS)
		return NULL;
	e = &s->e[i];
	if (j == 0) {
		*len = e->len;
		*rep = e->placeholder;
		*replen = PLACEHOLDER_LEN;
		return e->value;
	}
	if (!e->form[j - 1])
		return NULL;
	*len = e->formlen[j - 1];
	*rep = e->rep[j - 1];
	*replen = e->replen[j - 1];
	return e->form[j - 1];
}

void *secretset_cache(const struct secretset *s, uint64_t mask, void (*kind)(void *),
		      void *(*build)(const struct secretset *s, uint64_t mask))
{
	struct sscache *c = s ? s->cache : NULL;
	void *obj = NULL;

	if (!c)
		return NULL;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++) {
		if (c->e[i].kind == kind && c->e[i].mask == mask) {
			obj = c->e[i].obj;
			goto out;
		}
	}
	if (c->n == SECRETSET_CACHE_MAX)
		goto out;
	/* built under the lock: once per (kind, mask), and no thread waits long */
	obj = build(s, mask);
	c->e[c->n].kind = kind;
	c->e[c->n].mask = mask;
	c->e[c->n].obj = obj;
	c->n++;
out:
	pthread_mutex_unlock(&c->lock);
	return obj;
}

static void cache_free(struct sscache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		c->e[i].kind(c->e[i].obj);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void secretset_free(struct secretset *s)
{
	if (!s)
		return;
	/* first: the cached objects may borrow the values */
	cache_free(s->cache);
	s->cache = NULL;
	for (size_t i = 0; i < s->n; i++) {
		for (size_t k = 0; k < SECRET_FORMS - 1; k++)
			secure_free(s->e[i].form[k], s->e[i].formalloc[k]);
		secure_free(s->e[i].value, s->e[i].alloc);
		s->e[i].value = NULL;
		free(s->e[i].name);
		s->e[i].name = NULL;
	}
	free(s->e);
	s->e = NULL;
	free(s);
}

size_t secretset_count(const struct secretset *s)
{
	return s ? s->n : 0;
}

const char *secretset_name(const struct secretset *s, size_t i)
{
	return s && i < s->n ? s->e[i].name : NULL;
}

const char *secretset_placeholder(const struct secretset *s, size_t i)
{
	return s && i < s->n ? s->e[i].placeholder : NULL;
}

const char *secretset_value(const struct secretset *s, size_t i, size_t *len)
{
	if (!s || i >= s->n) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = s->e[i].len;
	return s->e[i].value;
}

uint64_t secretset_approved(const struct secretset *s, const struct policy *p,
			    const struct target *t)
{
	uint64_t m = 0;

	for (size_t i = 0; s && i < s->n && i < policy_secret_count(p); i++) {
		const struct patlist *h = policy_secret_hosts(p, i);
		if (h && patlist_match_target(h, t))
			m |= (uint64_t)1 << i;
	}
	return m;
}
