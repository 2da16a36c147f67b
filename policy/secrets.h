/* secrets.h -- placeholders (HMAC of the secret's name under a key kept in the
 * state dir) and the secret values, resolved once into locked memory */
#ifndef EGRESSD_SECRETS_H
#define EGRESSD_SECRETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct policy;
struct target;

#define PLACEHOLDER_PREFIX "egressd-ph-"
#define PLACEHOLDER_LEN 43 /* prefix (11) + 32 lower-case hex */
#define SECRETS_MAX 64     /* secrets per policy (masks are uint64_t) */
#define SECRETS_ERRLEN 512
#define PLACEHOLDER_KEYLEN 32

/* Loads the placeholder key from STATE_DIR/placeholder.key, creating it
 * (32 random bytes, mode 0600, atomically) if absent; state_dir is created
 * 0700 if missing. Returns 0 or -1 with err. */
int placeholder_key_load(const char *state_dir, unsigned char key[PLACEHOLDER_KEYLEN], char *err);

/* out = "egressd-ph-" + first 32 hex of HMAC-SHA256(key, name), or of
 * HMAC-SHA256(key, scope "\n" name) for a named sandbox's secret (so the
 * same secret name has a different placeholder in each sandbox);
 * NUL-terminated. scope is "" when single-tenant. */
void placeholder_make(const unsigned char key[PLACEHOLDER_KEYLEN], const char *scope,
		      const char *name, char out[PLACEHOLDER_LEN + 1]);

struct secretset;

/* Resolves every secret of p (value, valueFromEnv, valueFromFile — a file's
 * one trailing newline is dropped) into secure memory (OPENSSL_secure_malloc
 * or mlock'ed, wiped on free) and derives the placeholders with key. Empty
 * values, unset env vars, unreadable files, more than SECRETS_MAX secrets, a
 * value containing CR/LF/NUL, or a value that contains a placeholder are
 * errors naming the secret (never its value). Returns NULL with err. */
struct secretset *secretset_load(const struct policy *p,
				 const unsigned char key[PLACEHOLDER_KEYLEN], char *err);
void secretset_free(struct secretset *s); /* wipes values, drops the cache; NULL: no-op */

size_t secretset_count(const struct secretset *s);
const char *secretset_name(const struct secretset *s, size_t i);        /* borrowed */
const char *secretset_placeholder(const struct secretset *s, size_t i); /* borrowed */
/* The real value (borrowed, secure memory; never log it). */
const char *secretset_value(const struct secretset *s, size_t i, size_t *len);
/* Fixed forms of a secret that replies are scrubbed of: j = 0 is the value
 * itself (replaced by the placeholder); j = 1..3 are the base64 encodings of
 * the value's bytes at each of the three 3-byte alignments, whole groups only
 * (so they appear verbatim inside the base64 of any text holding the value,
 * e.g. an echoed "Authorization: Basic"), j = 4..6 the same in base64url
 * (absent when equal to base64), j = 7 and 8 hex in lower and upper case; each
 * replaced by the placeholder's encoding of the same kind. An encoded form too
 * short to be specific (under 16 characters) is absent: NULL. Borrowed, secure
 * memory. (JSON-escaped and percent-encoded forms: secform.h.) */
#define SECRET_FORMS 9
const char *secretset_form(const struct secretset *s, size_t i, size_t j, size_t *len,
			   const char **rep, size_t *replen);

/* Objects derived from the set and a mask of its secrets, built once and
 * shared read-only by every thread (the redactor's match plan: redact.c), so
 * connections approved for the same secrets do not each build their own.
 * The cache is the set's one mutable part (mutex-protected); it holds at
 * most SECRETSET_CACHE_MAX objects and calls drop(obj) on each when the set
 * is freed. kind tells users of the cache apart (the plan's drop function).
 * Returns the object cached for (kind, mask), else builds one with
 * build(s, mask) under the lock and caches it; NULL when the cache is full
 * (the caller then builds an object of its own), or s is NULL. Borrowed:
 * valid while s lives (take a reference to keep it longer). */
#define SECRETSET_CACHE_MAX 64
void *secretset_cache(const struct secretset *s, uint64_t mask, void (*kind)(void *),
		      void *(*build)(const struct secretset *s, uint64_t mask));

/* Bit i set if secret i's hosts match t (policy p must be the one loaded from). */
uint64_t secretset_approved(const struct secretset *s, const struct policy *p,
			    const struct target *t);

#endif
