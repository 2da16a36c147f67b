/* secform.h -- the forms a secret's value takes in a reply (raw, base64,
 * base64url, hex, JSON-escaped, percent-encoded) and matching one of them at
 * a position of a text; shared by the one-shot and the streaming redactor */
#ifndef EGRESSD_SECFORM_H
#define EGRESSD_SECFORM_H

#include <stdbool.h>
#include <stddef.h>

#include "secrets.h"

enum secform_kind {
	SECFORM_FIXED, /* exactly the bytes v */
	SECFORM_JSON,  /* the value in a JSON string: each character raw or escaped */
	SECFORM_PCT,   /* the value percent-encoded: each byte raw or %XX, '+' for space */
};

#define SECFORM_MAX (SECRET_FORMS + 2) /* forms per secret */
#define SECFORM_MORE ((size_t)-1)      /* secform_match: undecided, more text needed */

struct secform {
	enum secform_kind kind;
	const char *v;   /* FIXED: the form; JSON, PCT: the value (borrowed, secure memory) */
	size_t len;      /* bytes at v */
	size_t maxlen;   /* longest text a match can span */
	const char *rep; /* replacement: the placeholder in the same form (borrowed) */
	size_t replen;
	size_t idx;      /* secret index * SECFORM_MAX + form: ties go to the lowest */
};

/* Fills out with the forms of secret i of s (borrowed from s, valid while s
 * lives): the fixed forms of secretset_form, then JSON and percent, whose
 * replacement is the placeholder itself (its characters [a-z0-9-] are left
 * alone by every JSON and URL encoder). Returns how many. */
size_t secform_get(const struct secretset *s, size_t i, struct secform out[SECFORM_MAX]);

/* The bytes a match of f can begin with, into first; returns how many (1..3). */
size_t secform_first(const struct secform *f, unsigned char first[3]);

/* The bytes that can follow first (one of secform_first's) in a match of
 * f, into second; returns how many (1..4), 0 if any byte can (or none need). */
size_t secform_second(const struct secform *f, unsigned char first, unsigned char second[4]);

/* Length of the match of f at the start of t[0..n): 0 if none, SECFORM_MORE
 * if t ends before that is decided (never when final). A JSON match accepts
 * each character of the value raw (but a backslash), as a short escape (\/,
 * \", \\, \t...) or as \uXXXX (either case; a surrogate pair above U+FFFF); a
 * percent match each byte raw (but '%'), as %XX (either case) or, for a
 * space, '+'. Reads t in order and only as far as needed, so the answer for
 * a prefix, once not SECFORM_MORE, is the answer for any longer text. */
size_t secform_match(const struct secform *f, const char *t, size_t n, bool final);

#endif
