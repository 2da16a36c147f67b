/* inject.h -- placeholder substitution in request header values (raw and
 * inside Authorization: Basic), leak detection in header values, paths and
 * queries (raw, percent-encoded, Basic), and redaction of one-shot strings */
#ifndef EGRESSD_INJECT_H
#define EGRESSD_INJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct secretset;

/* A growable output buffer with a hard cap; wiped when freed because it may
 * hold secret values. */
struct obuf {
	char *p;
	size_t len, cap, max;
};
void obuf_init(struct obuf *b, size_t max);
void obuf_dispose(struct obuf *b); /* wipes, frees */
bool obuf_add(struct obuf *b, const char *s, size_t n); /* false: over max */
/* Grows b to hold n bytes in all (at most max) without copying later; a
 * size hint: never fails. */
void obuf_reserve(struct obuf *b, size_t n);

/* Appends to out the header value val with every placeholder of a secret in
 * approved replaced by its value. If the header is Authorization (name, case-
 * insensitive) or Proxy-Authorization and the value is "Basic <b64>", the
 * base64 is decoded, substituted and re-encoded too (a payload that is not
 * valid base64 gets only the raw substitution). *used gets the bits of the
 * secrets injected. Returns false only if out's cap was hit. */
bool inject_header(const struct secretset *s, uint64_t approved, const char *name, size_t nlen,
		   const char *val, size_t vlen, struct obuf *out, uint64_t *used);

/* Returns the bits of secrets NOT in approved whose placeholder appears in
 * text: raw, after percent-decoding (repeated until stable, at most 3 rounds),
 * or (when basic is true, i.e. an Authorization value "Basic ...") inside
 * the decoded credentials. Case-insensitive on the hex and %XX. */
uint64_t inject_scan_leaks(const struct secretset *s, uint64_t approved, const char *text,
			   size_t n, bool basic);

/* Appends text to out with every real value of a secret in mask replaced by
 * that secret's placeholder (response header values). Returns false on cap. */
bool redact_string(const struct secretset *s, uint64_t mask, const char *text, size_t n,
		   struct obuf *out);

#endif
