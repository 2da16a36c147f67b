/* policy.h -- one immutable, reference-counted policy: allowNet, denyNet,
 * intercept, allow-private ranges, name pins, secrets and request rules, and
 * the decisions */
#ifndef EGRESSD_POLICY_H
#define EGRESSD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "pattern.h"
#include "reason.h"
#include "rules.h"

struct policy;

enum secret_source {
	SECRET_VALUE,    /* "value": literal in the policy */
	SECRET_FROM_ENV, /* "valueFromEnv" / --secret NAME=...: egressd's env var */
	SECRET_FROM_FILE /* "valueFromFile": path */
};

/* Creates an empty policy: allowNet absent (unrestricted), nothing else.
 * Reference count 1; release with policy_unref. */
struct policy *policy_new(void);
void policy_ref(struct policy *p);   /* atomic; safe across threads */
void policy_unref(struct policy *p); /* frees at zero; NULL is a no-op */

/* Builders, used only before the policy is shared. Each returns true, or false
 * with a message in err (PATTERN_ERRLEN bytes) and the policy unchanged. */
/* Makes allowNet present (possibly empty = deny all), then adds csv. */
bool policy_add_allow(struct policy *p, const char *csv, char *err);
bool policy_add_deny(struct policy *p, const char *csv, char *err);
bool policy_add_intercept(struct policy *p, const char *csv, char *err);
/* A CIDR or single address ("10.0.0.0/8", "[fd00::]/8" or "fd00::/8", "10.1.2.3"). */
bool policy_add_allow_private(struct policy *p, const char *cidr, char *err);
/* "HOST:PORT:ADDR" as curl's --resolve (ADDR may be bracketed IPv6). */
bool policy_add_pin(struct policy *p, const char *spec, char *err);
/* Adds a secret; hosts_csv non-empty; name must be [A-Za-z_][A-Za-z0-9_]*
 * and unique. source_arg is the literal value, env var name or file path
 * (copied; a literal value is wiped when the policy is freed). */
bool policy_add_secret(struct policy *p, const char *name, const char *hosts_csv,
		       enum secret_source src, const char *source_arg, char *err);
/* Same, with the hosts already parsed (ownership of hosts taken even on error). */
bool policy_add_secret_list(struct policy *p, const char *name, struct patlist *hosts,
			    enum secret_source src, const char *source_arg, char *err);
/* Sets where secret name is injected besides header values (injspec.h);
 * takes ownership of spec, even on error (an unknown secret). A spec set
 * twice replaces the first. */
struct injspec;
bool policy_set_secret_inject(struct policy *p, const char *name, struct injspec *spec,
			      char *err);
/* Request rules ("rules" + "rulesDefault"): takes ownership of rs, even on
 * error. False (rs freed) if the policy already has rules: one policy file
 * defines them, so a rule's index means one thing. */
bool policy_set_rules(struct policy *p, struct ruleset *rs, char *err);

/* The sandbox the policy belongs to ("" for a single-tenant daemon): it
 * scopes the placeholders and names the sandbox in the log. Copied. */
void policy_set_scope(struct policy *p, const char *sandbox);
const char *policy_scope(const struct policy *p);

/* A policy that refuses every target with reason r (for connections no
 * sandbox claims): policy_check_target says r, nothing is intercepted. */
void policy_set_refuse_all(struct policy *p, enum reason r);

/* Learn mode (--learn): a target that allowNet alone would refuse is
 * allowed instead, with rule POLICY_LEARN_RULE, so an observer can record
 * it. denyNet, refuse_all and the address guard (policy_check_addr: private
 * ranges, deny IP patterns) are unchanged: learning never opens them. */
#define POLICY_LEARN_RULE "(learn)" /* no pattern has this text */
void policy_set_learn(struct policy *p, bool on);
bool policy_learning(const struct policy *p);

/* The decision on a target, by name (or IP) alone. */
struct decision {
	bool allow;
	enum reason reason; /* REASON_NONE if allowed */
	const char *rule;   /* deciding pattern text (borrowed from the policy),
			       or NULL: unrestricted / no pattern matched */
};
void policy_check_target(const struct policy *p, const struct target *t, struct decision *d);

/* The address guard for one resolved (or literal) address of an allowed
 * target: REASON_NONE if egressd may connect to it; REASON_DENIED if a deny
 * IP/CIDR pattern names it; REASON_PRIVATE_ADDRESS if it is special-purpose
 * and neither an allowNet IP/CIDR pattern nor --allow-private names it. */
enum reason policy_check_addr(const struct policy *p, const struct ipaddr *a, uint16_t port);

/* Could name be allowed on some port (the jail resolver answers it)? */
bool policy_could_allow_name(const struct policy *p, const char *name);

/* Pinned address for host:port (from --resolve), or false. */
bool policy_pin_lookup(const struct policy *p, const char *host, uint16_t port,
		       struct ipaddr *out);

/* Does the target get intercepted (a secret's hosts, --intercept or a
 * request rule's host match)? */
bool policy_intercepts(const struct policy *p, const struct target *t);

/* Request rules for one request to the (allowed) target t; see
 * ruleset_check. False: no rule names t, the request is not subject to rules. */
bool policy_check_request(const struct policy *p, const struct target *t, const char *method,
			  const char *rtarget, size_t rlen, struct rule_verdict *v);
/* The policy's rules (borrowed), or NULL if it has none. */
const struct ruleset *policy_rules(const struct policy *p);

/* Secrets, for `check` and the interception layer. Borrowed pointers. */
size_t policy_secret_count(const struct policy *p);
const char *policy_secret_name(const struct policy *p, size_t i);
const struct patlist *policy_secret_hosts(const struct policy *p, size_t i);
enum secret_source policy_secret_source(const struct policy *p, size_t i);
const char *policy_secret_source_arg(const struct policy *p, size_t i);
/* Where secret i is injected besides headers (borrowed); NULL: headers only. */
const struct injspec *policy_secret_inject(const struct policy *p, size_t i);

bool policy_allow_present(const struct policy *p);
/* Can the policy intercept anything besides secrets' hosts (--intercept /
 * "intercept" patterns, or request rules)? Then egressd needs its CA. */
bool policy_intercept_present(const struct policy *p);
/* Is some host intercepted (secrets, intercept patterns or request rules),
 * so the CA and TLS contexts are needed? */
bool policy_needs_interception(const struct policy *p);

#endif
