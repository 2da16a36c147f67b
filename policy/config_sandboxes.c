/* config_sandboxes.c -- the main policy file's "sandboxes": each sandbox's
 * source and listen selectors and its policy, inline or in a file of its own */
#include "config_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "policy.h"
#include "rules.h"
#include "sandboxes.h"

/* A sandbox selector ("source" or "listen" entry) for config_each_string. */
struct selector {
	int sb;
	bool (*add)(struct sbtable *, int, const char *, char *);
};

static bool add_selector(struct loader *L, const char *s, size_t n, void *arg)
{
	const struct selector *sel = arg;
	char where[WHERE_LEN], e[SBX_ERRLEN];

	(void)n;
	return sel->add(L->sbt, sel->sb, s, e) ||
	       config_fail(L, false, "%s: %s", config_path_str(L, where), e);
}

static bool is_selector_key(const char *key)
{
	return strcmp(key, "source") == 0 || strcmp(key, "listen") == 0;
}

/* A sandbox entry's "source" (addresses or CIDRs) or "listen" (IP:PORT
 * listeners) into sandbox sb: the file's sandboxes and the API's alike. */
static bool load_selectors(struct loader *L, int sb, const char *key, const json_t *v)
{
	if (strcmp(key, "source") == 0)
		return config_each_string(L, v, "an address or CIDR", add_selector,
					  &(struct selector){ sb, sbx_add_source });
	return config_each_string(L, v, "an IP:PORT listener", add_selector,
				  &(struct selector){ sb, sbx_add_listen });
}

/* A sandbox's policy file, relative to the main file's directory. */
static bool load_policy_file(struct loader *L, int sb, const char *file, struct policy *p)
{
	char path[4096], e[CONFIG_ERRLEN], where[WHERE_LEN];
	const char *slash = strrchr(L->name, '/');
	struct stat st;

	if (file[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", file);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - L->name), L->name, file);
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
		snprintf(e, sizeof(e), "%.400s: not a regular file", path);
	else if (config_load_file(p, path, e))
		return true;
	if (L->tolerant) {
		sbx_set_error(L->sbt, sb, e);
		return true;
	}
	return config_fail(L, false, "%s: %s", config_path_str(L, where), e);
}

/* An inline policy object at the current path, loaded into p (NULL:
 * validated only) by a loader of its own, so its rules are its own. */
static bool load_inline(struct loader *L, const json_t *v, struct policy *p)
{
	struct loader S = *L;
	struct policy *scratch = p ? NULL : policy_new();
	bool ok;

	S.p = p ? p : scratch;
	S.sbt = NULL; /* no sandboxes inside a sandbox */
	S.has_sandboxes = false;
	S.rules = NULL;
	S.apply = false;
	ok = config_load_root(&S, v);
	if (ok && p) {
		S.apply = true;
		ok = config_load_root(&S, v);
	}
	if (ok && p && S.rules) {
		struct ruleset *rs = S.rules;
		S.rules = NULL; /* p owns it now */
		ok = policy_set_rules(p, rs, L->err);
	}
	ruleset_free(S.rules);
	policy_unref(scratch);
	return ok;
}

/* "policy": an inline object (the keys of a policy file) or a file name. */
static bool load_sandbox_policy(struct loader *L, int sb, const json_t *v)
{
	char where[WHERE_LEN];
	struct sbtable *sbt = L->sbt;
	struct policy *p;
	bool ok;

	if (!json_is_object(v) && !json_is_string(v))
		return config_fail(L, false, "%s must be a policy object or a policy file name, "
					     "not %s", config_path_str(L, where),
				   config_type_name(v));
	if (!L->apply) /* a file is read in the apply pass */
		return json_is_string(v) || load_inline(L, v, NULL);
	p = policy_new();
	policy_set_scope(p, sbx_name(sbt, (size_t)sb));
	ok = json_is_string(v) ? load_policy_file(L, sb, json_string_value(v), p)
			       : load_inline(L, v, p);
	if (ok && !sbx_error(sbt, (size_t)sb))
		sbx_set_policy(sbt, sb, p);
	policy_unref(p);
	return ok;
}

/* One entry of "sandboxes"; the current path is sandboxes.NAME. */
static bool load_sandbox(struct loader *L, const char *name, const json_t *obj)
{
	char where[WHERE_LEN], q[QUOTE_LEN], e[SBX_ERRLEN];
	const json_t *v, *pol = NULL;
	const char *key;
	int sb;

	if ((sb = sbx_add(L->sbt, name, e)) < 0)
		return config_fail(L, true, "%s", e);
	if (!json_is_object(obj))
		return config_fail(L, false, "%s must be an object with source, listen and policy, "
					     "not %s", config_path_str(L, where),
				   config_type_name(obj));
	json_object_foreach((json_t *)obj, key, v) {
		bool ok;
		config_push_key(L, key);
		if (is_selector_key(key))
			ok = load_selectors(L, sb, key, v);
		else if (strcmp(key, "policy") == 0)
			ok = load_sandbox_policy(L, sb, pol = v);
		else
			ok = config_fail(L, true, "unknown key %s in a sandbox (expected source, "
						  "listen or policy)",
					 config_quote(key, strlen(key), q, sizeof(q)));
		if (!ok)
			return false;
		L->depth--;
	}
	if (!pol)
		return config_fail(L, false, "%s has no \"policy\"", config_path_str(L, where));
	return true;
}

bool config_load_sandboxes(struct loader *L, const json_t *obj)
{
	char where[WHERE_LEN], e[SBX_ERRLEN];
	const char *name;
	const json_t *v;

	if (!L->sbt)
		return config_fail(L, true, "\"sandboxes\" belongs at the top level of the main "
					    "policy file, not inside a sandbox's policy");
	if (!json_is_object(obj) || json_object_size(obj) == 0)
		return config_fail(L, false, "%s must be a non-empty object mapping names to "
					     "sandboxes, not %s", config_path_str(L, where),
				   config_type_name(obj));
	json_object_foreach((json_t *)obj, name, v) {
		config_push_key(L, name);
		if (!load_sandbox(L, name, v))
			return false;
		L->depth--;
	}
	if (!sbx_validate(L->sbt, e))
		return config_fail(L, true, "%s", e);
	return true;
}

/* The keys of a policy, as config_load_root takes them. */
static bool is_policy_key(const char *key)
{
	static const char *const keys[] = { "allowNet", "denyNet", "intercept", "secrets",
					    "rules", "rulesDefault" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/* The body's keys: selectors into sandbox sb, policy keys into pol. */
static bool split_entry(struct loader *L, int sb, const json_t *root, json_t *pol)
{
	char q[QUOTE_LEN];
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)root, key, v) {
		bool ok = true;
		config_push_key(L, key);
		if (is_selector_key(key))
			ok = load_selectors(L, sb, key, v);
		else if (is_policy_key(key))
			json_object_set(pol, key, v);
		else
			ok = config_fail(L, true, "unknown key %s (expected source, listen, allowNet, "
						  "denyNet, intercept, secrets, rules or "
						  "rulesDefault)",
					 config_quote(key, strlen(key), q, sizeof(q)));
		if (!ok)
			return false;
		L->depth--;
	}
	return true;
}

struct sbtable *config_load_sandbox(const char *name, const char *text, size_t len, char *err,
				    char *where)
{
	struct loader L = { .name = "body", .text = text, .len = len, .err = err,
			    .errpath = where, .apply = true };
	char e[SBX_ERRLEN];
	json_t *root, *pol = NULL;
	struct sbtable *t = NULL;
	bool ok = false;
	int sb;

	where[0] = '\0';
	root = config_parse_json(L.name, text, len, err);
	if (!root) {
		/* jansson quotes the text near a syntax error: it may be a value */
		char *near = strstr(err, " near ");
		if (near)
			*near = '\0';
		goto out;
	}
	if (!json_is_object(root)) {
		config_fail(&L, false, "a sandbox must be a JSON object, not %s",
			    config_type_name(root));
		goto out;
	}
	L.sbt = t = sbx_new();
	if ((sb = sbx_add(t, name, e)) < 0) {
		snprintf(err, CONFIG_ERRLEN, "%s", e);
		goto out;
	}
	pol = json_object();
	if (!split_entry(&L, sb, root, pol) || !load_sandbox_policy(&L, sb, pol))
		goto out;
	if (!sbx_validate(t, e)) {
		where[0] = '\0';
		snprintf(err, CONFIG_ERRLEN, "%s", e);
		goto out;
	}
	ok = true;
out:
	json_decref(pol);
	json_decref(root);
	if (!ok) {
		sbx_free(t);
		t = NULL;
	}
	return t;
}
