/* generation.c -- the sandbox table and each sandbox's current generation
 * (policy + resolved secrets), handed to connections by reference and
 * swapped whole on reload */
#include "generation.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "audit.h"
#include "metrics.h"
#include "policy.h"
#include "sandboxes.h"
#include "secrets.h"

struct gen {
	atomic_int refs;
	struct policy *pol;      /* one reference */
	struct secretset *ss;    /* owned; NULL without interception */
	unsigned slot[SECRETS_MAX]; /* metrics slot of each secret (by name) */
	unsigned sb_slot;           /* metrics slot of its sandbox's name, or none */
};

struct gentable {
	struct sbtable *sbt;          /* the sandboxes (under pol_lock) */
	struct gen **gens;            /* each one's current generation, or NULL (under pol_lock) */
	struct gen *nobody;           /* for connections no sandbox claims */
	pthread_mutex_t pol_lock;
	struct metrics *mx;           /* borrowed: numbers secret and sandbox names */
	const unsigned char *phkey;   /* borrowed placeholder key; NULL: no interception */
};

static struct gen *gen_new(struct gentable *gt, struct policy *p, struct secretset *ss)
{
	struct gen *g = xcalloc(1, sizeof(*g));

	atomic_init(&g->refs, 1);
	policy_ref(p);
	g->pol = p;
	g->ss = ss;
	/* names are registered here, before the generation is published, so the
	 * request path only indexes */
	for (size_t i = 0; ss && i < secretset_count(ss) && i < SECRETS_MAX; i++)
		g->slot[i] = metrics_secret_slot(gt->mx, secretset_name(ss, i));
	g->sb_slot = *policy_scope(p) ? metrics_sandbox_slot(gt->mx, policy_scope(p))
				      : GEN_NO_SANDBOX;
	return g;
}

void gen_release(struct gen *g)
{
	if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	secretset_free(g->ss);
	policy_unref(g->pol);
	free(g);
}

struct policy *gen_policy(const struct gen *g)
{
	return g->pol;
}

const struct secretset *gen_secrets(const struct gen *g)
{
	return g->ss;
}

unsigned gen_sandbox_slot(const struct gen *g)
{
	return g->sb_slot;
}

unsigned gen_secret_slot(const struct gen *g, size_t i)
{
	return i < SECRETS_MAX ? g->slot[i] : METRICS_SECRET_NAMES;
}

/* The generation every connection no sandbox claims gets: refuses all. */
static struct gen *gen_nobody(struct gentable *gt)
{
	struct policy *p = policy_new();
	struct gen *g;

	policy_set_refuse_all(p, REASON_UNKNOWN_SOURCE);
	g = gen_new(gt, p, NULL);
	policy_unref(p);
	return g;
}

struct gentable *gentable_new(struct metrics *mx, const unsigned char *phkey)
{
	struct gentable *gt = xcalloc(1, sizeof(*gt));

	pthread_mutex_init(&gt->pol_lock, NULL);
	gt->mx = mx;
	gt->phkey = phkey;
	gt->nobody = gen_nobody(gt);
	return gt;
}

void gentable_free(struct gentable *gt)
{
	if (!gt)
		return;
	for (size_t i = 0; gt->sbt && i < sbx_count(gt->sbt); i++)
		gen_release(gt->gens[i]);
	free(gt->gens);
	sbx_free(gt->sbt);
	gen_release(gt->nobody);
	pthread_mutex_destroy(&gt->pol_lock);
	free(gt);
}

struct gen *gentable_acquire(struct gentable *gt, const struct listen_addr *l,
			     const struct ipaddr *client)
{
	struct gen *g = NULL;
	int i;

	pthread_mutex_lock(&gt->pol_lock);
	i = l ? sbx_match(gt->sbt, &l->a, l->port, client) : -1;
	if (i >= 0)
		g = gt->gens[i];
	if (!g)
		g = gt->nobody;
	atomic_fetch_add(&g->refs, 1);
	pthread_mutex_unlock(&gt->pol_lock);
	return g;
}

struct policy *gentable_policy(struct gentable *gt)
{
	struct policy *p;

	pthread_mutex_lock(&gt->pol_lock);
	p = gt->gens[0] ? gt->gens[0]->pol : gt->nobody->pol;
	policy_ref(p);
	pthread_mutex_unlock(&gt->pol_lock);
	return p;
}

const struct secretset *gentable_secrets(const struct gentable *gt)
{
	return gt->gens[0] ? gt->gens[0]->ss : NULL;
}

/* The secret values of p, or NULL with err; no secrets needed: *ss NULL. */
static int load_secrets(struct gentable *gt, const struct policy *p, struct secretset **ss,
			char *err)
{
	char e[SECRETS_ERRLEN];

	*ss = NULL;
	if (!gt->phkey)
		return 0;
	*ss = secretset_load(p, gt->phkey, e);
	if (!*ss) {
		snprintf(err, 256, "%.250s", e);
		return -1;
	}
	return 0;
}

/* The generation of sandbox i of t, or NULL with err. */
static struct gen *gen_load(struct gentable *gt, const struct sbtable *t, size_t i, char *err)
{
	struct policy *p = sbx_policy(t, i);
	struct secretset *ss;

	if (!p) {
		snprintf(err, 256, "%.250s", sbx_error(t, i));
		return NULL;
	}
	if (policy_needs_interception(p) && !gt->phkey) {
		snprintf(err, 256, "the new policy has secrets, intercept patterns or request rules "
				   "but egressd started without interception: restart it");
		return NULL;
	}
	if (load_secrets(gt, p, &ss, err) < 0)
		return NULL;
	return gen_new(gt, p, ss);
}

/* Every listener a sandbox names must be one of la[0..nla). */
static int check_listeners(const struct listen_addr *la, int nla, const struct sbtable *t,
			   char *err)
{
	for (size_t i = 0; i < sbx_count(t); i++) {
		for (size_t k = 0; k < sbx_listen_count(t, i); k++) {
			struct ipaddr a;
			uint16_t port;
			char buf[ADDR_STRLEN];
			int l;
			sbx_listen(t, i, k, &a, &port);
			for (l = 0; l < nla; l++)
				if (la[l].port == port && addr_equal(&la[l].a, &a))
					break;
			if (l == nla) {
				snprintf(err, 256, "sandbox \"%s\" names listener %s%s%s:%u, which is not "
					 "a --listen or --transparent address", sbx_name(t, i),
					 a.family == 6 ? "[" : "", addr_format(&a, buf),
					 a.family == 6 ? "]" : "", port);
				return -1;
			}
		}
	}
	return 0;
}

/* A sandbox whose new policy did not load (it keeps its current one). */
static void log_sandbox_reload(const char *name, const char *error)
{
	struct jsonw w;

	audit_say(AUDIT_ERROR, "sandbox %s: keeping its current policy: %s", name, error);
	if (!audit_begin(&w, AUDIT_ERROR, "reload", 0))
		return;
	jsonw_str(&w, "sandbox", name);
	jsonw_bool(&w, "ok", false);
	jsonw_str(&w, "error", error);
	audit_emit(&w);
}

/* Installs t (taken) with its generations; a named sandbox whose policy
 * does not load keeps the generation it had (if any). Returns how many failed. */
static int install(struct gentable *gt, struct sbtable *t, char *err)
{
	size_t n = sbx_count(t);
	struct gen **gens = xcalloc(n, sizeof(*gens)), **old_gens;
	struct sbtable *old;
	int failed = 0;

	for (size_t i = 0; i < n; i++) {
		char e[256];
		int o = gt->sbt ? sbx_find(gt->sbt, sbx_name(t, i)) : -1;
		gens[i] = gen_load(gt, t, i, e);
		if (gens[i])
			continue;
		failed++;
		snprintf(err, 256, "%s%s%.200s", sbx_name(t, i), *sbx_name(t, i) ? ": " : "", e);
		if (sbx_named(t) && gt->sbt) {
			log_sandbox_reload(sbx_name(t, i), e);
		}
		pthread_mutex_lock(&gt->pol_lock);
		if (o >= 0 && gt->gens[o]) { /* keep what it had */
			gens[i] = gt->gens[o];
			atomic_fetch_add(&gens[i]->refs, 1);
		}
		pthread_mutex_unlock(&gt->pol_lock);
	}
	pthread_mutex_lock(&gt->pol_lock);
	old = gt->sbt;
	old_gens = gt->gens;
	gt->sbt = t;
	gt->gens = gens;
	pthread_mutex_unlock(&gt->pol_lock);
	for (size_t i = 0; old && i < sbx_count(old); i++)
		gen_release(old_gens[i]); /* freed when its last connection ends */
	free(old_gens);
	sbx_free(old);
	return failed;
}

int gentable_install(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
		     int nla, char *err)
{
	if (check_listeners(la, nla, t, err) < 0) {
		sbx_free(t);
		return -1;
	}
	return install(gt, t, err) > 0 ? -1 : 0;
}

int gentable_reload(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
		    int nla, char *err)
{
	if (sbx_named(t) != sbx_named(gt->sbt)) {
		snprintf(err, 256, "switching between one policy and sandboxes needs a restart");
		goto refuse;
	}
	if (check_listeners(la, nla, t, err) < 0)
		goto refuse;
	if (!sbx_named(t)) {
		/* one policy: all or nothing */
		struct gen *g = gen_load(gt, t, 0, err);
		if (!g)
			goto refuse;
		gen_release(g);
	}
	return install(gt, t, err) == 0 ? 0 : 1;
refuse:
	sbx_free(t);
	return -1;
}
