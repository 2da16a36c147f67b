/* observe.c -- counters per destination and per DNS name, fed by audit
 * event lines: a connection is counted where its connect event puts it,
 * moved when a request shows it is plain HTTP or a refuse event refuses
 * it, and its close adds the bytes its requests did not */
#include "observe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "alloc.h"
#include "audit.h"
#include "policy.h"

#define LIVE_BUCKETS 1024
#define LIVE_MAX 200000 /* connections followed at once; more are not followed */

/* A connection between its connect and close events. */
struct live {
	unsigned long long id;
	int row;               /* where it is counted */
	uint64_t up, down;     /* bytes its requests already added */
	struct live *next;
};

struct dnsname {
	char name[256];
	uint64_t queries;
	bool answered;         /* some query got an address */
	char rcode[16];        /* the last refusal's rcode, "" if none */
};

struct observe {
	pthread_mutex_t lock;
	size_t max;            /* destinations (and names) tracked */
	struct obs_row *rows;  /* max + 1: the last one is _other */
	size_t nrows;
	int *index;            /* hash of the rows' keys: row + 1, 0 = free */
	size_t icap;
	bool other_used;
	struct dnsname *dns;   /* max */
	size_t ndns;
	int *dindex;           /* hash of the names: dns + 1 */
	uint64_t overflow;     /* connections and queries counted in _other */
	bool warn_due;         /* the limit was just reached: say so once */
	bool warned;
	struct live *live[LIVE_BUCKETS];
	size_t nlive;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 1099511628211ULL;
	return h;
}

static size_t pow2_at_least(size_t n)
{
	size_t c = 16;

	while (c < n)
		c *= 2;
	return c;
}

struct observe *observe_new(size_t max_rows)
{
	struct observe *o = xcalloc(1, sizeof(*o));

	o->max = max_rows ? max_rows : 1;
	pthread_mutex_init(&o->lock, NULL);
	o->rows = xcalloc(o->max + 1, sizeof(*o->rows));
	o->icap = pow2_at_least(o->max * 2);
	o->index = xcalloc(o->icap, sizeof(int));
	o->dns = xcalloc(o->max, sizeof(*o->dns));
	o->dindex = xcalloc(o->icap, sizeof(int));
	snprintf(o->rows[o->max].host, sizeof(o->rows[o->max].host), "%s", OBS_OTHER_HOST);
	o->rows[o->max].decision = OBS_OTHER;
	return o;
}

void observe_free(struct observe *o)
{
	if (!o)
		return;
	for (size_t b = 0; b < LIVE_BUCKETS; b++) {
		while (o->live[b]) {
			struct live *l = o->live[b];
			o->live[b] = l->next;
			free(l);
		}
	}
	free(o->rows);
	free(o->index);
	free(o->dns);
	free(o->dindex);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* ---- destinations ---- */

/* A row's key: where (sandbox, host, port) and how (protocol, decision, why). */
struct rkey {
	const char *sandbox, *host;
	uint16_t port;
	enum obs_proto p;
	enum obs_decision d;
	const char *why;
};

static uint64_t row_hash(const struct rkey *k)
{
	uint64_t h = 1469598103934665603ULL;
	unsigned n[3] = { k->port, (unsigned)k->p, (unsigned)k->d };

	h = fnv(h, k->sandbox, strlen(k->sandbox) + 1);
	h = fnv(h, k->host, strlen(k->host) + 1);
	h = fnv(h, n, sizeof(n));
	return fnv(h, k->why, strlen(k->why));
}

static bool row_is(const struct obs_row *r, const struct rkey *k)
{
	return r->port == k->port && r->proto == k->p && r->decision == k->d &&
	       !strcmp(r->host, k->host) && !strcmp(r->why, k->why) && !strcmp(r->sandbox, k->sandbox);
}

/* The row of key k, made if need be; past the limit, _other. */
static int row_find(struct observe *o, const struct rkey *k)
{
	size_t i = (size_t)row_hash(k) & (o->icap - 1);
	struct obs_row *r;

	for (; o->index[i]; i = (i + 1) & (o->icap - 1))
		if (row_is(&o->rows[o->index[i] - 1], k))
			return o->index[i] - 1;
	if (o->nrows == o->max) {
		o->overflow++;
		o->other_used = true;
		o->warn_due = !o->warned;
		return (int)o->max;
	}
	r = &o->rows[o->nrows];
	snprintf(r->sandbox, sizeof(r->sandbox), "%s", k->sandbox);
	snprintf(r->host, sizeof(r->host), "%s", k->host);
	r->port = k->port;
	r->proto = k->p;
	r->decision = k->d;
	snprintf(r->why, sizeof(r->why), "%s", k->why);
	o->index[i] = (int)++o->nrows;
	return (int)o->nrows - 1;
}

static struct live *live_get(struct observe *o, unsigned long long id, bool make)
{
	struct live **b = &o->live[id % LIVE_BUCKETS], *l;

	for (l = *b; l; l = l->next)
		if (l->id == id)
			return l;
	if (!make || o->nlive >= LIVE_MAX)
		return NULL;
	l = xcalloc(1, sizeof(*l));
	l->id = id;
	l->row = -1;
	l->next = *b;
	*b = l;
	o->nlive++;
	return l;
}

static void live_drop(struct observe *o, unsigned long long id)
{
	for (struct live **p = &o->live[id % LIVE_BUCKETS]; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			struct live *l = *p;
			*p = l->next;
			free(l);
			o->nlive--;
			return;
		}
	}
}

/* Counts connection l at row (once per row: plain HTTP logs a connect per
 * request). */
static void live_count(struct observe *o, struct live *l, int row)
{
	if (l->row == row)
		return;
	o->rows[row].conns++;
	l->row = row;
}

/* Moves l's connection to the row of the same sandbox, host and port with
 * another protocol, decision or why. */
static void live_move(struct observe *o, struct live *l, enum obs_proto p, enum obs_decision d,
		      const char *why)
{
	struct obs_row *r = &o->rows[l->row];
	char host[sizeof(r->host)], sandbox[sizeof(r->sandbox)], w[sizeof(r->why)];
	struct rkey k = { sandbox, host, r->port, p, d, w };
	int to;

	if (l->row == (int)o->max)
		return; /* _other stays _other */
	/* copies: row_find may write a new row, and why may be a row's */
	snprintf(host, sizeof(host), "%s", r->host);
	snprintf(sandbox, sizeof(sandbox), "%s", r->sandbox);
	snprintf(w, sizeof(w), "%s", why);
	to = row_find(o, &k);
	if (to == l->row)
		return;
	if (o->rows[l->row].conns)
		o->rows[l->row].conns--;
	o->rows[to].conns++;
	l->row = to;
}

static const char *str(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "";
}

static uint64_t num(json_t *j, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(j, key));
	return v > 0 ? (uint64_t)v : 0;
}

static void on_connect(struct observe *o, json_t *j, unsigned long long id)
{
	const char *rule = str(j, "rule"), *mode = str(j, "mode");
	bool allow = !strcmp(str(j, "decision"), "allow");
	enum obs_proto p = json_is_true(json_object_get(j, "intercept")) ? OBS_INTERCEPTED
			   : !strcmp(mode, "http")                         ? OBS_HTTP
									   : OBS_TUNNEL;
	enum obs_decision d = !allow ? OBS_DENY
			      : !strcmp(rule, POLICY_LEARN_RULE) ? OBS_LEARNED : OBS_ALLOW;
	struct rkey k = { str(j, "sandbox"), str(j, "host"), (uint16_t)num(j, "port"), p, d,
			  !allow ? str(j, "reason") : d == OBS_LEARNED ? "not-allowed" : rule };
	int row = row_find(o, &k);
	struct live *l = live_get(o, id, true);

	if (l)
		live_count(o, l, row);
	else
		o->rows[row].conns++;
}

/* Is n one of the comma-separated names of list? */
static bool has_name(const char *list, const char *n)
{
	size_t nl = strlen(n);

	for (const char *s = list; *s;) {
		size_t k = strcspn(s, ",");
		if (k == nl && !strncmp(s, n, nl))
			return true;
		s += k;
		if (*s)
			s++;
	}
	return false;
}

static void add_secrets(struct obs_row *r, json_t *names)
{
	size_t i;
	json_t *v;

	json_array_foreach(names, i, v) {
		const char *n = json_string_value(v);
		size_t have = strlen(r->secrets);

		if (!n || has_name(r->secrets, n) || have + strlen(n) + 2 > sizeof(r->secrets))
			continue;
		snprintf(r->secrets + have, sizeof(r->secrets) - have, "%s%s", have ? "," : "", n);
	}
}

static void on_request(struct observe *o, json_t *j, unsigned long long id)
{
	struct live *l = live_get(o, id, false);
	bool refused = !strcmp(str(j, "decision"), "deny");
	uint64_t up = num(j, "bytes_up"), down = num(j, "bytes_down");
	struct obs_row *r;
	int row;

	if (l && l->row >= 0) {
		/* a transparent connection whose requests egressd reads in
		 * the clear without intercepting: plain HTTP */
		if (o->rows[l->row].proto == OBS_TUNNEL)
			live_move(o, l, OBS_HTTP, o->rows[l->row].decision, o->rows[l->row].why);
		row = l->row;
		l->up += up;
		l->down += down;
	} else {
		struct rkey k = { str(j, "sandbox"), str(j, "host"), (uint16_t)num(j, "port"),
				  OBS_HTTP, refused ? OBS_DENY : OBS_ALLOW,
				  refused ? str(j, "reason") : "*" };
		row = row_find(o, &k);
	}
	r = &o->rows[row];
	r->requests++;
	r->requests_refused += refused;
	r->bytes_up += up;
	r->bytes_down += down;
	add_secrets(r, json_object_get(j, "secrets"));
}

static void on_refuse(struct observe *o, json_t *j, unsigned long long id)
{
	struct live *l = live_get(o, id, false);
	const char *reason = str(j, "reason");

	if (!l || l->row < 0)
		return;
	if (!strcmp(reason, "unredactable-encoding")) { /* one reply, not the connection */
		o->rows[l->row].requests_refused++;
		return;
	}
	live_move(o, l, o->rows[l->row].proto, OBS_DENY, reason);
}

static void on_close(struct observe *o, json_t *j, unsigned long long id)
{
	struct live *l = live_get(o, id, false);
	uint64_t up = num(j, "bytes_up"), down = num(j, "bytes_down");

	if (!l)
		return;
	if (l->row >= 0) {
		o->rows[l->row].bytes_up += up > l->up ? up - l->up : 0;
		o->rows[l->row].bytes_down += down > l->down ? down - l->down : 0;
	}
	live_drop(o, id);
}

/* ---- DNS names ---- */

static void on_dns(struct observe *o, json_t *j)
{
	const char *name = str(j, "name"), *rcode = str(j, "rcode");
	size_t i = (size_t)fnv(1469598103934665603ULL, name, strlen(name)) & (o->icap - 1);
	struct dnsname *d = NULL;

	if (!*name)
		return;
	for (; o->dindex[i]; i = (i + 1) & (o->icap - 1))
		if (!strcmp(o->dns[o->dindex[i] - 1].name, name)) {
			d = &o->dns[o->dindex[i] - 1];
			break;
		}
	if (!d && o->ndns == o->max) {
		o->overflow++;
		o->other_used = true;
		o->warn_due = !o->warned;
		o->rows[o->max].queries++;
		return;
	}
	if (!d) {
		d = &o->dns[o->ndns];
		snprintf(d->name, sizeof(d->name), "%s", name);
		o->dindex[i] = (int)++o->ndns;
	}
	d->queries++;
	if (json_object_get(j, "answer"))
		d->answered = true;
	else if (*rcode && strcmp(rcode, "NOERROR"))
		snprintf(d->rcode, sizeof(d->rcode), "%s", rcode);
}

void observe_event(void *arg, const char *line, size_t len)
{
	static const char *const wanted[] = { "\"event\":\"connect\"", "\"event\":\"request\"",
					      "\"event\":\"refuse\"", "\"event\":\"close\"",
					      "\"event\":\"dns\"" };
	struct observe *o = arg;
	json_t *j = NULL;
	const char *ev;
	unsigned long long id;
	bool known = false, warn;

	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
		known |= memmem(line, len, wanted[i], strlen(wanted[i])) != NULL;
	if (!known || !(j = json_loadb(line, len, 0, NULL)))
		return;
	ev = str(j, "event");
	id = (unsigned long long)num(j, "id");
	pthread_mutex_lock(&o->lock);
	if (!strcmp(ev, "connect"))
		on_connect(o, j, id);
	else if (!strcmp(ev, "request"))
		on_request(o, j, id);
	else if (!strcmp(ev, "refuse"))
		on_refuse(o, j, id);
	else if (!strcmp(ev, "close"))
		on_close(o, j, id);
	else if (!strcmp(ev, "dns"))
		on_dns(o, j);
	warn = o->warn_due;
	o->warn_due = false;
	o->warned |= warn;
	pthread_mutex_unlock(&o->lock);
	json_decref(j);
	if (warn) /* outside the lock: this line comes back through the sink */
		audit_msg(AUDIT_WARN, "report-limit",
			  "report: more than %zu destinations; the rest are counted in %s", o->max,
			  OBS_OTHER_HOST);
}

void observe_attach(struct observe *o)
{
	audit_set_sink(o ? observe_event : NULL, o);
}

/* ---- the snapshot ---- */

static int row_cmp(const void *a, const void *b)
{
	const struct obs_row *x = a, *y = b;
	int c;

	if (x->proto == OBS_DNS_ONLY || y->proto == OBS_DNS_ONLY) {
		if ((x->proto == OBS_DNS_ONLY) != (y->proto == OBS_DNS_ONLY))
			return x->proto == OBS_DNS_ONLY ? 1 : -1;
	} else if (x->decision != y->decision) {
		return (int)x->decision - (int)y->decision;
	}
	if ((c = strcmp(x->sandbox, y->sandbox)) || (c = strcmp(x->host, y->host)))
		return c;
	if (x->port != y->port)
		return (int)x->port - (int)y->port;
	return (int)x->proto - (int)y->proto;
}

static bool connected(const struct observe *o, const char *name)
{
	for (size_t i = 0; i < o->nrows; i++)
		if (o->rows[i].conns && !strcmp(o->rows[i].host, name))
			return true;
	return false;
}

struct obs_row *observe_rows(struct observe *o, size_t *n)
{
	struct obs_row *out;
	size_t k = 0;

	pthread_mutex_lock(&o->lock);
	out = xcalloc(o->nrows + o->ndns + 1, sizeof(*out));
	for (size_t i = 0; i < o->nrows; i++)
		if (o->rows[i].conns || o->rows[i].requests)
			out[k++] = o->rows[i];
	if (o->other_used)
		out[k++] = o->rows[o->max];
	for (size_t i = 0; i < o->ndns; i++) {
		const struct dnsname *d = &o->dns[i];
		struct obs_row *r;
		if (connected(o, d->name))
			continue;
		r = &out[k++];
		snprintf(r->host, sizeof(r->host), "%s", d->name);
		r->proto = OBS_DNS_ONLY;
		r->decision = d->answered ? OBS_ALLOW : d->rcode[0] ? OBS_DENY : OBS_ALLOW;
		snprintf(r->why, sizeof(r->why), "%s", d->answered ? "answered"
						      : d->rcode[0] ? d->rcode : "no-address");
		r->queries = d->queries;
	}
	pthread_mutex_unlock(&o->lock);
	qsort(out, k, sizeof(*out), row_cmp);
	*n = k;
	return out;
}

uint64_t observe_overflow(struct observe *o)
{
	uint64_t v;

	pthread_mutex_lock(&o->lock);
	v = o->overflow;
	pthread_mutex_unlock(&o->lock);
	return v;
}

size_t observe_limit(const struct observe *o)
{
	return o->max;
}

const char *observe_proto_name(enum obs_proto p)
{
	static const char *const n[] = { "tunnel", "intercepted", "http", "dns-only" };
	return p <= OBS_DNS_ONLY ? n[p] : "?";
}

const char *observe_decision_name(enum obs_decision d)
{
	static const char *const n[] = { "deny", "learned", "allow", "other" };
	return d <= OBS_OTHER ? n[d] : "?";
}
