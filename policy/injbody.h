/* injbody.h -- a request body held under a bound so the placeholders in
 * its named form fields or JSON members can be replaced before it is sent
 * (with a recomputed Content-Length) */
#ifndef EGRESSD_INJBODY_H
#define EGRESSD_INJBODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "injspec.h"

struct obuf;
struct policy;
struct secretset;

#define INJBODY_MAX (1024 * 1024) /* bytes of a body held for rewriting */

/* The kind of body a Content-Type value announces: INJ_FORM for
 * application/x-www-form-urlencoded, INJ_JSON for application/json or any
 * type/subtype+json (media type compared case-insensitively, parameters
 * ignored); else INJ_HEADER (not rewritten). */
enum injwhere injbody_kind(const char *ctype, size_t n);

struct injbody;

/* A new holder for a body of kind (INJ_FORM or INJ_JSON), up to max bytes;
 * expect: the body's announced length (room made at once), 0 if unknown.
 * Free with injbody_free (wipes; NULL: no-op). */
struct injbody *injbody_new(enum injwhere kind, size_t max, size_t expect);
void injbody_free(struct injbody *b);

/* Appends p[0..n) (body bytes as they arrive, in any pieces). Returns false
 * once the body is over the bound (then nothing more is kept). */
bool injbody_feed(struct injbody *b, const char *p, size_t n);
bool injbody_over(const struct injbody *b);
enum injwhere injbody_kind_of(const struct injbody *b); /* INJ_FORM or INJ_JSON */
size_t injbody_len(const struct injbody *b);

/* Appends the whole body to out, rewritten (injparam_rewrite for a form,
 * injjson_rewrite for JSON; a JSON body that does not parse is appended
 * unchanged). *used gets the secrets injected. false: out's cap. */
bool injbody_finish(struct injbody *b, const struct policy *p, const struct secretset *s,
		    uint64_t mask, struct obuf *out, uint64_t *used);

#endif
