/* sandboxes.c -- the table of sandboxes one daemon serves: names, selectors
 * (client source ranges, listeners), each sandbox's policy, and the lookup
 * that gives a connection its sandbox */
#include "sandboxes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "errmsg.h"
#include "pattern.h"
#include "policy.h"

struct range {
	struct ipaddr net;
	unsigned prefix;
};

struct endpoint {
	struct ipaddr a;
	uint16_t port;
};

struct sandbox {
	char name[SBX_NAME_MAX + 1];
	struct range *src;
	size_t nsrc;
	struct endpoint *ls;
	size_t nls;
	struct policy *pol; /* one reference, or NULL */
	char *error;        /* why pol is NULL */
};

struct sbtable {
	bool named;
	struct sandbox *sb;
	size_t n;
};

#define seterr(err, ...) errmsg_set((err), SBX_ERRLEN, __VA_ARGS__)

struct sbtable *sbx_new(void)
{
	struct sbtable *t = xcalloc(1, sizeof(*t));

	t->named = true;
	return t;
}

struct sbtable *sbx_single(struct policy *p)
{
	struct sbtable *t = xcalloc(1, sizeof(*t));

	t->sb = xcalloc(1, sizeof(*t->sb));
	t->n = 1;
	sbx_set_policy(t, 0, p);
	return t;
}

void sbx_free(struct sbtable *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->sb[i].src);
		free(t->sb[i].ls);
		free(t->sb[i].error);
		policy_unref(t->sb[i].pol);
	}
	free(t->sb);
	free(t);
}

bool sbx_named(const struct sbtable *t)
{
	return t->named;
}

bool sbx_needs_interception(const struct sbtable *t)
{
	return t->named || (t->n > 0 && t->sb[0].pol && policy_needs_interception(t->sb[0].pol));
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SBX_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return false;
	return true;
}

int sbx_add(struct sbtable *t, const char *name, char *err)
{
	struct sandbox *s;

	if (!valid_name(name)) {
		seterr(err, "invalid sandbox name \"%.80s\" (1 to %d of A-Z a-z 0-9 _ - .)", name,
		       SBX_NAME_MAX);
		return -1;
	}
	if (sbx_find(t, name) >= 0) {
		seterr(err, "duplicate sandbox name \"%s\"", name);
		return -1;
	}
	if (t->n == SBX_MAX) {
		seterr(err, "more than %d sandboxes", SBX_MAX);
		return -1;
	}
	t->sb = xrealloc(t->sb, (t->n + 1) * sizeof(*t->sb));
	s = &t->sb[t->n];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	return (int)t->n++;
}

bool sbx_add_source(struct sbtable *t, int i, const char *cidr, char *err)
{
	struct sandbox *s = &t->sb[i];
	struct range r;
	char why[128];

	if (!addr_parse_cidr(cidr, strlen(cidr), &r.net, &r.prefix, why, sizeof(why))) {
		seterr(err, "invalid source \"%.64s\": %s", cidr, why);
		return false;
	}
	s->src = xrealloc(s->src, (s->nsrc + 1) * sizeof(*s->src));
	s->src[s->nsrc++] = r;
	return true;
}

bool sbx_add_listen(struct sbtable *t, int i, const char *ipport, char *err)
{
	struct sandbox *s = &t->sb[i];
	struct target tg;
	char perr[PATTERN_ERRLEN];

	if (!target_parse_authority(ipport, strlen(ipport), 0, &tg, perr) || !tg.is_ip ||
	    tg.port == 0) {
		seterr(err, "invalid listen \"%.64s\" (want IP:PORT, one of egressd's listeners)",
		       ipport);
		return false;
	}
	s->ls = xrealloc(s->ls, (s->nls + 1) * sizeof(*s->ls));
	s->ls[s->nls].a = tg.ip;
	s->ls[s->nls++].port = tg.port;
	return true;
}

void sbx_set_policy(struct sbtable *t, int i, struct policy *p)
{
	policy_ref(p);
	policy_unref(t->sb[i].pol);
	t->sb[i].pol = p;
}

void sbx_set_error(struct sbtable *t, int i, const char *msg)
{
	free(t->sb[i].error);
	t->sb[i].error = xstrdup(msg);
	policy_unref(t->sb[i].pol);
	t->sb[i].pol = NULL;
}

/* Do two ranges share an address? (One contains the other's network.) */
static bool ranges_meet(const struct range *a, const struct range *b)
{
	unsigned pfx = a->prefix < b->prefix ? a->prefix : b->prefix;

	return a->net.family == b->net.family && addr_in_cidr(&a->net, &b->net, pfx) &&
	       addr_in_cidr(&b->net, &a->net, pfx);
}

static bool endpoints_meet(const struct sandbox *a, const struct sandbox *b)
{
	if (a->nls == 0 || b->nls == 0)
		return true;
	for (size_t i = 0; i < a->nls; i++)
		for (size_t k = 0; k < b->nls; k++)
			if (a->ls[i].port == b->ls[k].port && addr_equal(&a->ls[i].a, &b->ls[k].a))
				return true;
	return false;
}

static bool sources_meet(const struct sandbox *a, const struct sandbox *b)
{
	if (a->nsrc == 0 || b->nsrc == 0)
		return true;
	for (size_t i = 0; i < a->nsrc; i++)
		for (size_t k = 0; k < b->nsrc; k++)
			if (ranges_meet(&a->src[i], &b->src[k]))
				return true;
	return false;
}

bool sbx_validate(const struct sbtable *t, char *err)
{
	if (!t->named)
		return true;
	for (size_t i = 0; i < t->n; i++) {
		const struct sandbox *a = &t->sb[i];
		if (a->nsrc == 0 && a->nls == 0) {
			seterr(err, "sandbox \"%s\" has neither \"source\" nor \"listen\": "
				    "which connections are its?", a->name);
			return false;
		}
		for (size_t k = 0; k < i; k++) {
			const struct sandbox *b = &t->sb[k];
			if (endpoints_meet(a, b) && sources_meet(a, b)) {
				seterr(err, "sandboxes \"%s\" and \"%s\" can both claim one connection "
					    "(their sources and listeners overlap)", b->name, a->name);
				return false;
			}
		}
	}
	return true;
}

size_t sbx_count(const struct sbtable *t)
{
	return t->n;
}

const char *sbx_name(const struct sbtable *t, size_t i)
{
	return t->sb[i].name;
}

struct policy *sbx_policy(const struct sbtable *t, size_t i)
{
	return t->sb[i].pol;
}

const char *sbx_error(const struct sbtable *t, size_t i)
{
	return t->sb[i].error;
}

int sbx_find(const struct sbtable *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->sb[i].name, name) == 0)
			return (int)i;
	return -1;
}

size_t sbx_listen_count(const struct sbtable *t, size_t i)
{
	return t->sb[i].nls;
}

void sbx_listen(const struct sbtable *t, size_t i, size_t k, struct ipaddr *a, uint16_t *port)
{
	*a = t->sb[i].ls[k].a;
	*port = t->sb[i].ls[k].port;
}

bool sbx_meet(const struct sbtable *a, size_t i, const struct sbtable *b, size_t k)
{
	return endpoints_meet(&a->sb[i], &b->sb[k]) && sources_meet(&a->sb[i], &b->sb[k]);
}

size_t sbx_source_count(const struct sbtable *t, size_t i)
{
	return t->sb[i].nsrc;
}

void sbx_source(const struct sbtable *t, size_t i, size_t k, struct ipaddr *net,
		unsigned *prefix)
{
	*net = t->sb[i].src[k].net;
	*prefix = t->sb[i].src[k].prefix;
}

static bool claims(const struct sandbox *s, const struct ipaddr *la, uint16_t lport,
		   const struct ipaddr *client)
{
	bool ok = s->nls == 0;

	for (size_t i = 0; i < s->nls && !ok; i++)
		ok = s->ls[i].port == lport && addr_equal(&s->ls[i].a, la);
	if (!ok || s->nsrc == 0)
		return ok;
	for (size_t i = 0; i < s->nsrc; i++)
		if (s->src[i].net.family == client->family &&
		    addr_in_cidr(client, &s->src[i].net, s->src[i].prefix))
			return true;
	return false;
}

bool sbx_claims(const struct sbtable *t, size_t i, const struct ipaddr *la, uint16_t lport,
		const struct ipaddr *client)
{
	return claims(&t->sb[i], la, lport, client);
}

int sbx_match(const struct sbtable *t, const struct ipaddr *la, uint16_t lport,
	      const struct ipaddr *client)
{
	if (!t->named)
		return 0;
	for (size_t i = 0; i < t->n; i++)
		if (claims(&t->sb[i], la, lport, client))
			return (int)i;
	return -1;
}
