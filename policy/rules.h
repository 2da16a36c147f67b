/* rules.h -- request rules: per-host method and path (PCRE2) rules evaluated
 * on every parsed request, first match wins, with a configurable default; and
 * the path normaliser they match on */
#ifndef EGRESSD_RULES_H
#define EGRESSD_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "pattern.h"

#define RULES_ERRLEN 512
/* pcre2 limits for one match: backtracking points, interpreter depth and heap
 * (KiB). An unanchored pattern is tried at every start position, and PCRE2
 * applies match_limit per position, so its limit is also scaled down to
 * budget / (path length + 1), never below RULES_MATCH_FLOOR, with a budget
 * of RULES_MATCH_BUDGET_JIT (JIT-compiled, ~4 ns a step) or
 * RULES_MATCH_BUDGET (interpreter, ~70 ns a step): the work for one request
 * stays bounded (tens of ms) however long the path. */
#define RULES_MATCH_LIMIT 100000
#define RULES_MATCH_BUDGET_JIT 10000000
#define RULES_MATCH_BUDGET 2000000
#define RULES_MATCH_FLOOR 100
#define RULES_DEPTH_LIMIT 5000
#define RULES_HEAP_LIMIT_KIB 8192

struct ruleset;

/* How a request to a host named by some rule was decided. */
enum rule_how {
	RULE_BY_RULE,     /* rule `index` matched (host, method and path) */
	RULE_BY_DEFAULT,  /* no rule matched: rulesDefault */
	RULE_AMBIGUOUS,   /* the path is ambiguous (why): refused */
	RULE_MATCH_ERROR, /* rule `index`'s path pattern hit a match limit (or
			     another match error): refused, fail closed */
};

struct rule_verdict {
	bool allow;
	enum rule_how how;
	size_t index;    /* the deciding rule, for RULE_BY_RULE / RULE_MATCH_ERROR */
	const char *why; /* RULE_AMBIGUOUS: static text ("dot-segment", ...) */
};

/* An empty ruleset whose default is deny. Free with ruleset_free (NULL: no-op). */
struct ruleset *ruleset_new(void);
void ruleset_free(struct ruleset *rs);

/* Appends a rule. hosts: at least one allowNet pattern; ownership moves to
 * the ruleset even on error. methods: nmethods HTTP method tokens (copied;
 * 0 = any method). path: a PCRE2 pattern of plen bytes (NULL = any path),
 * compiled now (JIT when available), matched on bytes, unanchored unless it
 * says ^ / $. Returns true, or false with err (RULES_ERRLEN) naming what is
 * wrong (for a pattern, PCRE2's message and the offset); rs unchanged. */
bool ruleset_add(struct ruleset *rs, struct patlist *hosts, const char *const *methods,
		 size_t nmethods, const char *path, size_t plen, bool allow, char *err);
/* rulesDefault: what a request to a host some rule names gets when no rule matches. */
void ruleset_set_default(struct ruleset *rs, bool allow);
bool ruleset_default(const struct ruleset *rs);
size_t ruleset_len(const struct ruleset *rs);

/* Does any rule's host pattern match t (then t's requests are subject to
 * rules, and t is intercepted)? */
bool ruleset_names_host(const struct ruleset *rs, const struct target *t);

/* Decides one request: method as received, target its request-target
 * (origin-form, or absolute-form, which is reduced to its path) of tlen
 * bytes. Returns false if no rule names t (the request is not subject to
 * rules, v untouched), else true with the verdict in v. Thread-safe and
 * lock-free: rs is read-only; per-thread match data is made on first use.
 * NULL rs: false. */
bool ruleset_check(const struct ruleset *rs, const struct target *t, const char *method,
		   const char *target, size_t tlen, struct rule_verdict *v);

/* Is m (n bytes) an HTTP method token (RFC 9110 tchar, 1-32 bytes) without
 * lower-case letters? */
bool rules_method_valid(const char *m, size_t n);

/* The path rules match on: target (origin- or absolute-form, n bytes) without
 * scheme, authority and query; percent-escapes of unreserved characters
 * decoded, other escapes' hex upper-cased. out must have room for n + 1 bytes
 * (the result is never longer than the input; NUL-terminated); *outlen its
 * length. Returns NULL, or (path ambiguous: refused) a static string saying
 * why: not starting with '/', a dot-segment, an empty segment ("//"), a
 * backslash, an encoded '/' or '\', NUL or control bytes (raw or encoded),
 * a '#', a malformed escape. */
const char *rules_normalize_path(const char *target, size_t n, char *out, size_t *outlen);

/* The end of a refusal's one-line body for a refusing verdict v, as HTTP/1
 * and HTTP/2 requests get it: " refused by rule 2 (rule-denied)", " refused
 * by rulesDefault: no rule matches (rule-denied)", " refused: ambiguous path:
 * WHY (rule-denied)", " refused: rule N's path pattern hit the match limit
 * (rule-denied)". NUL-terminated in out[0..n), cut if longer. */
void rules_verdict_text(const struct rule_verdict *v, char *out, size_t n);

#endif
