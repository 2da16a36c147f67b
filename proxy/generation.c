/* generation.c -- the sandbox table and each sandbox's current generation
 * (policy + resolved secrets), handed to connections by reference and
 * swapped whole on reload */
#include "generation.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "audit.h"
#include "metrics.h"
#include "policy.h"
#include "sandboxes.h"
#include "sbxreg.h"
#include "secrets.h"

/* One API sandbox from its creation to its deletion, across replacements:
 * its connections' generations point at it, so a DELETE reaches them all. */
struct life {
	atomic_int refs;
	atomic_bool revoked;     /* deleted: its connections are to be closed */
	atomic_ullong conns;     /* connections it claimed */
};

/* The registry's value for an API sandbox. */
struct apisb {
	struct gen *g;           /* current generation (one reference) */
	struct life *life;       /* one reference */
	char *info;              /* its definition as JSON, without secret values */
};

struct gen {
	atomic_int refs;
	struct policy *pol;      /* one reference */
	struct secretset *ss;    /* owned; NULL without interception */
	unsigned slot[SECRETS_MAX]; /* metrics slot of each secret (by name) */
	unsigned sb_slot;           /* metrics slot of its sandbox's name, or none */
	struct life *life;          /* API sandboxes: one reference; else NULL */
};

struct gentable {
	struct sbtable *sbt;          /* the sandboxes (under pol_lock) */
	struct gen **gens;            /* each one's current generation, or NULL (under pol_lock) */
	struct sbxreg *reg;           /* the API's sandboxes, values struct apisb (under pol_lock) */
	struct gen *nobody;           /* for connections no sandbox claims */
	pthread_mutex_t pol_lock;
	pthread_mutex_t write_lock;   /* one writer at a time: reload, put, delete */
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
	if (g->life && atomic_fetch_sub(&g->life->refs, 1) == 1)
		free(g->life);
	free(g);
}

bool gen_revoked(const struct gen *g)
{
	return g->life && atomic_load(&g->life->revoked);
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
	pthread_mutex_init(&gt->write_lock, NULL);
	gt->reg = sbxreg_new();
	gt->mx = mx;
	gt->phkey = phkey;
	gt->nobody = gen_nobody(gt);
	return gt;
}

static void apisb_free(void *val)
{
	struct apisb *a = val;

	gen_release(a->g);
	if (atomic_fetch_sub(&a->life->refs, 1) == 1)
		free(a->life);
	free(a->info);
	free(a);
}

void gentable_free(struct gentable *gt)
{
	if (!gt)
		return;
	sbxreg_free(gt->reg, apisb_free);
	for (size_t i = 0; gt->sbt && i < sbx_count(gt->sbt); i++)
		gen_release(gt->gens[i]);
	free(gt->gens);
	sbx_free(gt->sbt);
	gen_release(gt->nobody);
	pthread_mutex_destroy(&gt->pol_lock);
	pthread_mutex_destroy(&gt->write_lock);
	free(gt);
}

struct gen *gentable_acquire(struct gentable *gt, const struct listen_addr *l,
			     const struct ipaddr *client)
{
	struct gen *g = NULL;
	int i;

	pthread_mutex_lock(&gt->pol_lock);
	i = l ? sbx_match(gt->sbt, &l->a, l->port, client) : -1;
	if (i >= 0) {
		g = gt->gens[i];
	} else if (l) {
		struct apisb *a = sbxreg_match(gt->reg, &l->a, l->port, client);
		if (a) {
			g = a->g;
			atomic_fetch_add_explicit(&a->life->conns, 1, memory_order_relaxed);
		}
	}
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
	p = sbx_count(gt->sbt) && gt->gens[0] ? gt->gens[0]->pol : gt->nobody->pol;
	policy_ref(p);
	pthread_mutex_unlock(&gt->pol_lock);
	return p;
}

const struct secretset *gentable_secrets(const struct gentable *gt)
{
	return sbx_count(gt->sbt) && gt->gens[0] ? gt->gens[0]->ss : NULL;
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

static int reload_locked(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
			 int nla, char *err);

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

/* A sandbox of the file that an API sandbox conflicts with (by name or by
 * the connections both could claim): -1 with err. Under pol_lock. */
static int check_file_vs_api(struct gentable *gt, const struct sbtable *t, char *err)
{
	for (size_t i = 0; i < sbx_count(t); i++) {
		const char *other = sbxreg_get(gt->reg, sbx_name(t, i)) ? sbx_name(t, i)
					: sbxreg_conflict(gt->reg, t, i, NULL);
		if (other) {
			snprintf(err, 256, "sandbox \"%.64s\" of the file conflicts with \"%.64s\", "
				 "created through the control API (%s)", sbx_name(t, i), other,
				 strcmp(other, sbx_name(t, i)) ? "their sources and listeners overlap"
								: "same name");
			return -1;
		}
	}
	return 0;
}

int gentable_reload(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
		    int nla, char *err)
{
	int rc, conflict;

	pthread_mutex_lock(&gt->write_lock);
	pthread_mutex_lock(&gt->pol_lock);
	conflict = sbx_named(t) ? check_file_vs_api(gt, t, err) : 0;
	pthread_mutex_unlock(&gt->pol_lock);
	rc = conflict < 0 ? (sbx_free(t), -1) : reload_locked(gt, t, la, nla, err);
	pthread_mutex_unlock(&gt->write_lock);
	return rc;
}

/* gentable_reload, under write_lock. */
static int reload_locked(struct gentable *gt, struct sbtable *t, const struct listen_addr *la,
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

/* ---- sandboxes created at runtime (the control API) ---- */

/* The first conflict of t's sandbox with the file's sandboxes or the API's
 * (other than its own older self): -1 with err. Under pol_lock. */
static int check_api(struct gentable *gt, const struct sbtable *t, char *err)
{
	const char *name = sbx_name(t, 0), *other;

	if (sbx_find(gt->sbt, name) >= 0) {
		snprintf(err, 256, "a sandbox of the policy file is named \"%s\"", name);
		return -1;
	}
	for (size_t i = 0; i < sbx_count(gt->sbt); i++)
		if (sbx_meet(gt->sbt, i, t, 0)) {
			snprintf(err, 256, "\"%s\" and \"%s\" (of the policy file) can both claim one "
				 "connection (their sources and listeners overlap)", name,
				 sbx_name(gt->sbt, i));
			return -1;
		}
	if ((other = sbxreg_conflict(gt->reg, t, 0, name))) {
		snprintf(err, 256, "\"%s\" and \"%s\" can both claim one connection (their "
			 "sources and listeners overlap)", name, other);
		return -1;
	}
	return 0;
}

int gentable_put(struct gentable *gt, struct sbtable *t, const struct listen_addr *la, int nla,
		 const char *info, bool *created, char *err)
{
	struct gen *g = NULL, *old_gen = NULL;
	struct apisb *a;
	int rc = -1;

	pthread_mutex_lock(&gt->write_lock);
	if (!sbx_named(gt->sbt)) {
		snprintf(err, 256, "egressd runs one policy for every connection: sandboxes can "
				   "be added only without -c or with a sandboxes file");
		goto out;
	}
	if (check_listeners(la, nla, t, err) < 0 || !(g = gen_load(gt, t, 0, err)))
		goto out;
	pthread_mutex_lock(&gt->pol_lock);
	if (check_api(gt, t, err) < 0) {
		pthread_mutex_unlock(&gt->pol_lock);
		rc = -2;
		goto out;
	}
	a = sbxreg_get(gt->reg, sbx_name(t, 0));
	*created = !a;
	if (!a) {
		a = xcalloc(1, sizeof(*a));
		a->life = xcalloc(1, sizeof(*a->life));
		atomic_init(&a->life->refs, 1);
	}
	old_gen = a->g;
	g->life = a->life;
	atomic_fetch_add(&a->life->refs, 1);
	a->g = g;
	g = NULL;
	free(a->info);
	a->info = xstrdup(info);
	sbxreg_put(gt->reg, t, a);
	t = NULL;
	pthread_mutex_unlock(&gt->pol_lock);
	rc = 0;
out:
	pthread_mutex_unlock(&gt->write_lock);
	gen_release(old_gen); /* freed when its last connection ends */
	gen_release(g);
	sbx_free(t);
	return rc;
}

int gentable_delete(struct gentable *gt, const char *name, long *open)
{
	struct apisb *a;

	pthread_mutex_lock(&gt->write_lock);
	pthread_mutex_lock(&gt->pol_lock);
	a = sbxreg_remove(gt->reg, name);
	if (a) {
		atomic_store(&a->life->revoked, true);
		/* the current generation's references but the registry's are
		 * connections; each older generation still alive has one or more */
		*open = (long)atomic_load(&a->g->refs) - 1 + (atomic_load(&a->life->refs) - 2);
	}
	pthread_mutex_unlock(&gt->pol_lock);
	pthread_mutex_unlock(&gt->write_lock);
	if (!a)
		return -1;
	apisb_free(a);
	return 0;
}

struct each_ctx {
	gentable_info_fn fn;
	void *ctx;
};

static void each_one(void *arg, const char *name, void *val)
{
	struct each_ctx *e = arg;
	struct apisb *a = val;

	e->fn(e->ctx, name, a->info, atomic_load(&a->life->conns));
}

void gentable_api_each(struct gentable *gt, gentable_info_fn fn, void *ctx)
{
	struct each_ctx e = { fn, ctx };

	pthread_mutex_lock(&gt->pol_lock);
	sbxreg_each(gt->reg, each_one, &e);
	pthread_mutex_unlock(&gt->pol_lock);
}

bool gentable_api_get(struct gentable *gt, const char *name, gentable_info_fn fn, void *ctx)
{
	struct apisb *a;

	pthread_mutex_lock(&gt->pol_lock);
	a = sbxreg_get(gt->reg, name);
	if (a)
		fn(ctx, name, a->info, atomic_load(&a->life->conns));
	pthread_mutex_unlock(&gt->pol_lock);
	return a != NULL;
}

void gentable_counts(struct gentable *gt, size_t *nfile, size_t *napi)
{
	pthread_mutex_lock(&gt->pol_lock);
	*nfile = sbx_named(gt->sbt) ? sbx_count(gt->sbt) : 0;
	*napi = sbxreg_count(gt->reg);
	pthread_mutex_unlock(&gt->pol_lock);
}
