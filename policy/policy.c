/* policy.c -- one immutable, reference-counted policy (allowNet, denyNet,
 * intercept, allow-private ranges, name pins, secrets, request rules) and its
 * decisions */
#include "policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "errmsg.h"
#include "injspec.h"

#define SECRET_NAME_MAX 255 /* longest secret (environment variable) name */

struct cidr {
	struct ipaddr net;
	unsigned prefix; /* in bits of net's family */
};

struct pin {
	char host[HOST_MAX + 1]; /* normalised as target_from_host does */
	uint16_t port;
	struct ipaddr addr;
};

struct secret {
	char *name;
	struct patlist *hosts;  /* owned; never empty */
	enum secret_source src;
	char *arg;              /* value, env var name or path; wiped on free */
	size_t arg_len;
	struct injspec *inject; /* owned; NULL: header values only */
};

struct policy {
	atomic_int refs;
	bool allow_present;         /* false: unrestricted */
	struct patlist *allow;      /* owned; in the order given */
	struct patlist *deny;       /* owned */
	struct patlist *intercept;  /* owned */
	struct cidr *priv;          /* --allow-private ranges */
	size_t npriv;
	struct pin *pins;           /* --resolve pins */
	size_t npins;
	struct secret *secrets;
	size_t nsecrets;
	char scope[65];             /* sandbox name, "" if single-tenant */
	enum reason refuse_all;     /* REASON_NONE, or every target is refused so */
	bool learn;                 /* --learn: allowNet's refusals become allows */
	struct ruleset *rules;      /* owned; NULL: no "rules" / "rulesDefault" */
};

#define seterr(err, ...) errmsg_set((err), PATTERN_ERRLEN, __VA_ARGS__)

struct policy *policy_new(void)
{
	struct policy *p = xcalloc(1, sizeof(*p));

	atomic_init(&p->refs, 1);
	p->allow = patlist_new();
	p->deny = patlist_new();
	p->intercept = patlist_new();
	return p;
}

void policy_ref(struct policy *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

static void secret_dispose(struct secret *s)
{
	free(s->name);
	s->name = NULL;
	patlist_free(s->hosts);
	s->hosts = NULL;
	injspec_free(s->inject);
	s->inject = NULL;
	if (s->arg) {
		xwipe(s->arg, s->arg_len);
		free(s->arg);
		s->arg = NULL;
	}
}

void policy_unref(struct policy *p)
{
	if (!p)
		return;
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	patlist_free(p->allow);
	patlist_free(p->deny);
	patlist_free(p->intercept);
	free(p->priv);
	free(p->pins);
	for (size_t i = 0; i < p->nsecrets; i++)
		secret_dispose(&p->secrets[i]);
	free(p->secrets);
	ruleset_free(p->rules);
	free(p);
}

bool policy_add_allow(struct policy *p, const char *csv, char *err)
{
	if (!patlist_add_csv(p->allow, csv, err))
		return false;
	p->allow_present = true;
	return true;
}

bool policy_add_deny(struct policy *p, const char *csv, char *err)
{
	return patlist_add_csv(p->deny, csv, err);
}

bool policy_add_intercept(struct policy *p, const char *csv, char *err)
{
	return patlist_add_csv(p->intercept, csv, err);
}

/* Parses a port: 1-5 ASCII digits with a value of 1..65535. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* Parses an address, IPv6 bracketed or not; *was_v6 tells which syntax. */
static bool parse_any_addr(const char *s, size_t n, struct ipaddr *out, bool *was_v6)
{
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		*was_v6 = true;
		return addr_parse_ipv6(s + 1, n - 2, out);
	}
	*was_v6 = memchr(s, ':', n) != NULL;
	return *was_v6 ? addr_parse_ipv6(s, n, out) : addr_parse_ipv4(s, n, out);
}

bool policy_add_allow_private(struct policy *p, const char *cidr, char *err)
{
	struct cidr c;
	char why[128];

	if (!addr_parse_cidr(cidr, strlen(cidr), &c.net, &c.prefix, why, sizeof(why))) {
		seterr(err, "--allow-private \"%.64s\": %s", cidr, why);
		return false;
	}
	p->priv = xrealloc(p->priv, (p->npriv + 1) * sizeof(*p->priv));
	p->priv[p->npriv++] = c;
	return true;
}

/* "HOST:PORT:ADDR": HOST a name (or a bracketed IPv6), ADDR IPv4 or IPv6,
 * the latter optionally bracketed. One address per pin. */
bool policy_add_pin(struct policy *p, const char *spec, char *err)
{
	size_t n = strlen(spec);
	const char *host = spec, *rest, *colon;
	size_t hn;
	uint16_t port;
	struct pin pin;
	struct target t;
	bool v6, ok = false;
	char perr[PATTERN_ERRLEN];

	if (spec[0] == '[') {
		const char *close = memchr(spec, ']', n);
		if (!close || close[1] != ':') {
			seterr(err, "--resolve \"%.64s\": expected HOST:PORT:ADDR", spec);
			goto out;
		}
		host = spec + 1;
		hn = (size_t)(close - host);
		rest = close + 2;
	} else {
		colon = memchr(spec, ':', n);
		if (!colon) {
			seterr(err, "--resolve \"%.64s\": expected HOST:PORT:ADDR", spec);
			goto out;
		}
		hn = (size_t)(colon - spec);
		rest = colon + 1;
	}
	colon = strchr(rest, ':');
	if (!colon) {
		seterr(err, "--resolve \"%.64s\": expected HOST:PORT:ADDR", spec);
		goto out;
	}
	if (!parse_port(rest, (size_t)(colon - rest), &port)) {
		seterr(err, "--resolve \"%.64s\": invalid port", spec);
		goto out;
	}
	rest = colon + 1;
	if (hn == 0 || !target_from_host(host, hn, port, &t, perr)) {
		seterr(err, "--resolve \"%.64s\": invalid host%s%s", spec, hn ? ": " : "",
		       hn ? perr : "");
		goto out;
	}
	if (*rest == '\0' || strchr(rest, ',') ||
	    !parse_any_addr(rest, strlen(rest), &pin.addr, &v6)) {
		seterr(err, "--resolve \"%.64s\": invalid address (one IPv4 or IPv6 address)",
		       spec);
		goto out;
	}
	memcpy(pin.host, t.host, sizeof(pin.host));
	pin.port = port;
	for (size_t i = 0; i < p->npins; i++)
		if (p->pins[i].port == port && strcmp(p->pins[i].host, pin.host) == 0) {
			seterr(err, "--resolve \"%.64s\": %s:%u is already pinned", spec,
			       pin.host, (unsigned)port);
			goto out;
		}
	p->pins = xrealloc(p->pins, (p->npins + 1) * sizeof(*p->pins));
	p->pins[p->npins++] = pin;
	ok = true;
out:
	return ok;
}

static bool valid_secret_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SECRET_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && (i == 0 || c < '0' || c > '9'))
			return false;
	}
	return true;
}

static const struct secret *find_secret(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < p->nsecrets; i++)
		if (strcmp(p->secrets[i].name, name) == 0)
			return &p->secrets[i];
	return NULL;
}

bool policy_add_secret_list(struct policy *p, const char *name, struct patlist *hosts,
			    enum secret_source src, const char *source_arg, char *err)
{
	struct secret *s;
	bool ok = false;

	if (!name || !valid_secret_name(name)) {
		seterr(err, "secret name \"%.64s\" is not a valid environment variable name "
			    "([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", name ? name : "",
		       SECRET_NAME_MAX);
		goto out;
	}
	if (find_secret(p, name)) {
		seterr(err, "secret %s is defined twice", name);
		goto out;
	}
	if (!hosts || patlist_len(hosts) == 0) {
		seterr(err, "secret %s has no hosts", name);
		goto out;
	}
	if (src != SECRET_VALUE && src != SECRET_FROM_ENV && src != SECRET_FROM_FILE) {
		seterr(err, "secret %s: unknown value source", name);
		goto out;
	}
	if (!source_arg || !*source_arg) {
		seterr(err, "secret %s: empty %s", name,
		       src == SECRET_VALUE ? "value" : src == SECRET_FROM_ENV ?
		       "environment variable name" : "file path");
		goto out;
	}
	p->secrets = xrealloc(p->secrets, (p->nsecrets + 1) * sizeof(*p->secrets));
	s = &p->secrets[p->nsecrets++];
	s->name = xstrdup(name);
	s->hosts = hosts;
	hosts = NULL;
	s->src = src;
	s->arg_len = strlen(source_arg);
	s->arg = xstrndup(source_arg, s->arg_len);
	s->inject = NULL;
	ok = true;
out:
	patlist_free(hosts);
	return ok;
}

bool policy_add_secret(struct policy *p, const char *name, const char *hosts_csv,
		       enum secret_source src, const char *source_arg, char *err)
{
	struct patlist *hosts = patlist_new();

	if (!patlist_add_csv(hosts, hosts_csv ? hosts_csv : "", err)) {
		patlist_free(hosts);
		return false;
	}
	return policy_add_secret_list(p, name, hosts, src, source_arg, err);
}

bool policy_set_secret_inject(struct policy *p, const char *name, struct injspec *spec,
			      char *err)
{
	struct secret *s = (struct secret *)find_secret(p, name);

	if (!s) {
		seterr(err, "secret %.64s is not defined", name);
		injspec_free(spec);
		return false;
	}
	injspec_free(s->inject);
	s->inject = spec;
	return true;
}

const struct injspec *policy_secret_inject(const struct policy *p, size_t i)
{
	return i < p->nsecrets ? p->secrets[i].inject : NULL;
}

void policy_set_scope(struct policy *p, const char *sandbox)
{
	snprintf(p->scope, sizeof(p->scope), "%s", sandbox);
}

const char *policy_scope(const struct policy *p)
{
	return p->scope;
}

void policy_set_learn(struct policy *p, bool on)
{
	p->learn = on;
}

bool policy_learning(const struct policy *p)
{
	return p->learn;
}

void policy_set_refuse_all(struct policy *p, enum reason r)
{
	p->refuse_all = r;
	p->allow_present = true;
}

bool policy_set_rules(struct policy *p, struct ruleset *rs, char *err)
{
	if (p->rules) {
		seterr(err, "request rules are already defined (by an earlier policy file)");
		ruleset_free(rs);
		return false;
	}
	p->rules = rs;
	return true;
}

const struct ruleset *policy_rules(const struct policy *p)
{
	return p->rules;
}

bool policy_check_request(const struct policy *p, const struct target *t, const char *method,
			  const char *rtarget, size_t rlen, struct rule_verdict *v)
{
	return ruleset_check(p->rules, t, method, rtarget, rlen, v);
}

void policy_check_target(const struct policy *p, const struct target *t, struct decision *d)
{
	const struct pattern *m;

	if (p->refuse_all != REASON_NONE) {
		d->allow = false;
		d->reason = p->refuse_all;
		d->rule = NULL;
	} else if ((m = patlist_match_target(p->deny, t))) {
		d->allow = false;
		d->reason = REASON_DENIED;
		d->rule = pattern_text(m);
	} else if (!p->allow_present) {
		d->allow = true;
		d->reason = REASON_NONE;
		d->rule = NULL;
	} else if ((m = patlist_match_target(p->allow, t))) {
		d->allow = true;
		d->reason = REASON_NONE;
		d->rule = pattern_text(m);
	} else if (p->learn) {
		/* learning: what allowNet would refuse is let through, and the
		 * rule says so (denyNet and refuse_all above still refuse) */
		d->allow = true;
		d->reason = REASON_NONE;
		d->rule = POLICY_LEARN_RULE;
	} else {
		d->allow = false;
		d->reason = REASON_NOT_ALLOWED;
		d->rule = NULL;
	}
}

enum reason policy_check_addr(const struct policy *p, const struct ipaddr *a, uint16_t port)
{
	if (patlist_match_addr(p->deny, a, port))
		return REASON_DENIED;
	if (!addr_is_special(a))
		return REASON_NONE;
	if (patlist_match_addr(p->allow, a, port))
		return REASON_NONE;
	for (size_t i = 0; i < p->npriv; i++)
		if (p->priv[i].net.family == a->family &&
		    addr_in_cidr(a, &p->priv[i].net, p->priv[i].prefix))
			return REASON_NONE;
	return REASON_PRIVATE_ADDRESS;
}

bool policy_pin_lookup(const struct policy *p, const char *host, uint16_t port,
		       struct ipaddr *out)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	if (p->npins == 0 || port == 0 || !target_from_host(host, strlen(host), port, &t, err))
		return false;
	for (size_t i = 0; i < p->npins; i++)
		if (p->pins[i].port == port && strcmp(p->pins[i].host, t.host) == 0) {
			*out = p->pins[i].addr;
			return true;
		}
	return false;
}

bool policy_intercepts(const struct policy *p, const struct target *t)
{
	if (patlist_match_target(p->intercept, t) || ruleset_names_host(p->rules, t))
		return true;
	for (size_t i = 0; i < p->nsecrets; i++)
		if (patlist_match_target(p->secrets[i].hosts, t))
			return true;
	return false;
}

size_t policy_secret_count(const struct policy *p)
{
	return p->nsecrets;
}

const char *policy_secret_name(const struct policy *p, size_t i)
{
	return i < p->nsecrets ? p->secrets[i].name : NULL;
}

const struct patlist *policy_secret_hosts(const struct policy *p, size_t i)
{
	return i < p->nsecrets ? p->secrets[i].hosts : NULL;
}

enum secret_source policy_secret_source(const struct policy *p, size_t i)
{
	return i < p->nsecrets ? p->secrets[i].src : SECRET_VALUE;
}

const char *policy_secret_source_arg(const struct policy *p, size_t i)
{
	return i < p->nsecrets ? p->secrets[i].arg : NULL;
}

bool policy_allow_present(const struct policy *p)
{
	return p->allow_present;
}

bool policy_needs_interception(const struct policy *p)
{
	return p->nsecrets > 0 || policy_intercept_present(p);
}

bool policy_intercept_present(const struct policy *p)
{
	return patlist_len(p->intercept) > 0 || ruleset_len(p->rules) > 0;
}

bool policy_could_allow_name(const struct policy *p, const char *name)
{
	struct target t;
	char err[PATTERN_ERRLEN];

	if (!target_from_host(name, strlen(name), 1, &t, err) || t.is_ip)
		return false;
	/* a deny pattern for every port refuses the name outright */
	for (size_t i = 0; i < patlist_len(p->deny); i++) {
		const struct pattern *d = patlist_get(p->deny, i);
		t.port = 1;
		if (!pattern_port(d) && pattern_match_target(d, &t))
			return false;
	}
	if (!p->allow_present || (p->learn && p->refuse_all == REASON_NONE))
		return true;
	for (size_t i = 0; i < patlist_len(p->allow); i++) {
		const struct pattern *a = patlist_get(p->allow, i);
		struct decision d;
		t.port = pattern_port(a) ? pattern_port(a) : 1;
		if (!pattern_match_target(a, &t))
			continue;
		policy_check_target(p, &t, &d);
		if (d.allow)
			return true;
	}
	return false;
}
