/* config_rules.c -- the policy file's "rules" and "rulesDefault": request
 * rules (host patterns, methods, a path regex, allow/deny) checked with
 * positions and built into a ruleset */
#include "config_int.h"

#include <string.h>

#include "pattern.h"
#include "policy.h"
#include "rules.h"

static bool rule_host(struct loader *L, const char *s, size_t n, void *arg)
{
	char where[WHERE_LEN], q[QUOTE_LEN], perr[PATTERN_ERRLEN];
	struct pattern *pat;

	if (memchr(s, ',', n))
		return config_fail(L, false, "%s: %s: one pattern per string (no commas)",
				   config_path_str(L, where), config_quote(s, n, q, sizeof(q)));
	if (!(pat = pattern_parse(s, n, perr)))
		return config_fail(L, false, "%s: invalid pattern %s: %s",
				   config_path_str(L, where), config_quote(s, n, q, sizeof(q)),
				   perr);
	patlist_add(arg, pat);
	return true;
}

struct methods {
	const char *v[64];
	size_t n;
};

static bool rule_method(struct loader *L, const char *s, size_t n, void *arg)
{
	char where[WHERE_LEN], q[QUOTE_LEN];
	struct methods *m = arg;

	if (!rules_method_valid(s, n))
		return config_fail(L, false, "%s: invalid method %s (an HTTP method token, "
					     "compared case-sensitively: write it in upper case, "
					     "e.g. \"GET\")",
				   config_path_str(L, where), config_quote(s, n, q, sizeof(q)));
	if (m->n == sizeof(m->v) / sizeof(m->v[0]))
		return config_fail(L, false, "%s: more than %zu methods",
				   config_path_str(L, where), sizeof(m->v) / sizeof(m->v[0]));
	m->v[m->n++] = s;
	return true;
}

/* "allow" or "deny" at the current path into *allow. */
static bool action_value(struct loader *L, const json_t *v, bool *allow)
{
	char where[WHERE_LEN], q[QUOTE_LEN];
	const char *s = json_string_value(v);

	if (s && strcmp(s, "allow") == 0)
		*allow = true;
	else if (s && strcmp(s, "deny") == 0)
		*allow = false;
	else if (s)
		return config_fail(L, false, "%s: %s is not an action (expected \"allow\" or "
					     "\"deny\")", config_path_str(L, where),
				   config_quote(s, json_string_length(v), q, sizeof(q)));
	else
		return config_fail(L, false, "%s must be \"allow\" or \"deny\", not %s",
				   config_path_str(L, where), config_type_name(v));
	return true;
}

/* One entry of "rules"; the current path is rules[i]. */
static bool load_rule(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], q2[QUOTE_LEN], rerr[RULES_ERRLEN];
	struct patlist *hosts = patlist_new();
	struct methods m = { .n = 0 };
	const json_t *host_v = NULL, *path_v = NULL, *action_v = NULL, *v;
	const char *key;
	bool allow = false, ok = false;

	if (!json_is_object(obj)) {
		config_fail(L, false, "%s must be an object {\"host\": ..., \"action\": ...}, "
				      "not %s", config_path_str(L, where), config_type_name(obj));
		goto out;
	}
	json_object_foreach((json_t *)obj, key, v) {
		bool good = true;
		config_push_key(L, key);
		if (strcmp(key, "host") == 0) {
			host_v = v;
			good = config_each_string(L, v, "a pattern string", rule_host, hosts);
		} else if (strcmp(key, "method") == 0) {
			good = config_each_string(L, v, "a method string", rule_method, &m);
		} else if (strcmp(key, "path") == 0) {
			path_v = v;
			if (!json_is_string(v))
				good = config_fail(L, false, "%s must be a regular expression "
							     "string, not %s",
						   config_path_str(L, where), config_type_name(v));
		} else if (strcmp(key, "action") == 0) {
			action_v = v;
			good = action_value(L, v, &allow);
		} else {
			L->depth--; /* name the rule, point at the key */
			config_path_str(L, where);
			L->depth++;
			good = config_fail(L, true, "%s: unknown key %s (expected host, method, "
						    "path or action)",
					   where, config_quote(key, strlen(key), q, sizeof(q)));
		}
		if (!good)
			goto out;
		L->depth--;
	}
	if (!host_v) {
		config_fail(L, false, "%s: missing \"host\" (a rule needs at least one host "
				      "pattern)", config_path_str(L, where));
		goto out;
	}
	if (!action_v) {
		config_fail(L, false, "%s: missing \"action\" (\"allow\" or \"deny\")",
			    config_path_str(L, where));
		goto out;
	}
	ok = ruleset_add(L->rules, hosts, m.v, m.n, path_v ? json_string_value(path_v) : NULL,
			 path_v ? json_string_length(path_v) : 0, allow, rerr);
	hosts = NULL; /* the ruleset owns it now, even on error */
	if (!ok) {
		config_push_key(L, "path");
		config_fail(L, false, "%s %s: %s", config_path_str(L, where),
			    path_v ? config_quote(json_string_value(path_v),
						  json_string_length(path_v), q2, sizeof(q2))
				   : "", rerr);
	}
out:
	patlist_free(hosts);
	return ok;
}

bool config_load_rules(struct loader *L, const char *key, const json_t *v)
{
	char where[WHERE_LEN];
	const json_t *e;
	size_t i;
	bool allow;

	if (L->apply)
		return true;
	if (policy_rules(L->p))
		return config_fail(L, true, "%s: request rules are already defined by an earlier "
					    "policy file", key);
	if (!L->rules)
		L->rules = ruleset_new();
	if (strcmp(key, "rulesDefault") == 0) {
		if (!action_value(L, v, &allow))
			return false;
		ruleset_set_default(L->rules, allow);
		return true;
	}
	if (!json_is_array(v))
		return config_fail(L, false, "%s must be an array of rule objects, not %s",
				   config_path_str(L, where), config_type_name(v));
	json_array_foreach(v, i, e) {
		config_push_index(L, i);
		if (!load_rule(L, e))
			return false;
		L->depth--;
	}
	return true;
}
