/* injspec.h -- where a secret may be injected besides header values: named
 * query parameters, named form fields, JSON members by path (opt-in, per
 * secret), and the names of those places in the log */
#ifndef EGRESSD_INJSPEC_H
#define EGRESSD_INJSPEC_H

#include <stdbool.h>
#include <stddef.h>

enum injwhere {
	INJ_HEADER, /* header values: always, for every secret */
	INJ_QUERY,  /* the value of a named query parameter */
	INJ_FORM,   /* the value of a named field of an x-www-form-urlencoded body */
	INJ_JSON,   /* a string at a member path of a JSON body ("$.a.b") */
	INJ_NWHERE
};

#define INJSPEC_NAMES_MAX 16  /* names per place */
#define INJSPEC_NAME_MAX 128  /* bytes of a name or path */
#define INJSPEC_ERRLEN 256

struct injspec;

/* A new, empty spec (headers only); free with injspec_free (NULL: no-op). */
struct injspec *injspec_new(void);
void injspec_free(struct injspec *s);

/* Adds a name for w (INJ_QUERY, INJ_FORM: a parameter name as it reads
 * once percent-decoded, 1..INJSPEC_NAME_MAX bytes, no NUL; INJ_JSON: "$."
 * followed by one or more member names separated by '.', each non-empty
 * and without '.', '[', ']', '*' or NUL). Returns false with err
 * (INJSPEC_ERRLEN bytes) for a bad name, a duplicate or too many. */
bool injspec_add(struct injspec *s, enum injwhere w, const char *name, size_t n, char *err);

/* Adds the places of a command-line spec "query:key,form:client_secret,
 * json:$.a.b" (comma-separated PLACE:NAME items). false with err. */
bool injspec_add_csv(struct injspec *s, const char *csv, char *err);

/* Does s name any place of kind w? NULL s: no. */
bool injspec_wants(const struct injspec *s, enum injwhere w);

/* Does s name name[0..n) for w? For INJ_JSON, name is a member path
 * without the "$." ("a.b"). NULL s: no. */
bool injspec_names(const struct injspec *s, enum injwhere w, const char *name, size_t n);

/* "header", "query", "form", "json" (static). */
const char *injspec_where_str(enum injwhere w);

#endif
