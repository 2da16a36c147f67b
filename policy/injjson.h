/* injjson.h -- placeholder substitution in the string values of a JSON
 * document at member paths a secret's spec names ("$.a.b") */
#ifndef EGRESSD_INJJSON_H
#define EGRESSD_INJJSON_H

#include <stddef.h>
#include <stdint.h>

struct obuf;
struct policy;
struct secretset;

#define INJJSON_DEPTH_MAX 64 /* nesting a document may have to be rewritten */

enum injjson_result {
	INJJSON_OK,      /* out has the document, rewritten where named */
	INJJSON_NOT_JSON, /* not one JSON value (or nested deeper): out as before */
	INJJSON_CAP,     /* out's cap was hit: out as before */
};

/* Appends to out the JSON text t[0..n) with, in every string value whose
 * member path from the root (objects only: no path reaches into an array;
 * member names compared unescaped) the spec of a secret i in mask names for
 * INJ_JSON, every placeholder of secret i -- raw or with any characters
 * escaped (\uXXXX, either case) -- replaced by the secret's value as a
 * JSON string's content (", \ and control characters escaped, the rest raw).
 * Everything else is copied byte for byte (whitespace, number spellings,
 * member names, other strings). *used gets the bits of the secrets
 * injected (only on INJJSON_OK). s was loaded from p. */
enum injjson_result injjson_rewrite(const struct policy *p, const struct secretset *s,
				    uint64_t mask, const char *t, size_t n, struct obuf *out,
				    uint64_t *used);

#endif
