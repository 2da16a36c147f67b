/* obsreport.c -- the observer's rows written out: the report as a table or
 * JSON, and the learned policy (the -c files' keys plus one allowNet
 * pattern per destination used, wildcards by registrable domain) */
#include "obsreport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "alloc.h"
#include "audit.h"
#include "observe.h"
#include "pattern.h"
#include "psl.h"

/* ---- the report ---- */

/* "HOST:PORT", prefixed "SANDBOX/" on a daemon with several sandboxes. */
static void dest_text(const struct obs_row *r, char *buf, size_t cap)
{
	int k = r->sandbox[0] ? snprintf(buf, cap, "%s/", r->sandbox) : 0;

	if (r->proto == OBS_DNS_ONLY || r->decision == OBS_OTHER)
		snprintf(buf + k, cap - (size_t)k, "%s", r->host);
	else
		snprintf(buf + k, cap - (size_t)k, strchr(r->host, ':') ? "[%s]:%u" : "%s:%u",
			 r->host, r->port);
}

static void write_table(FILE *f, const struct obs_row *rows, size_t n, uint64_t overflow,
			size_t limit)
{
	size_t dests = 0, refused = 0, learned = 0, dns = 0, w = 11;
	char d[400];

	for (size_t i = 0; i < n; i++) {
		dest_text(&rows[i], d, sizeof(d));
		w = strlen(d) > w ? strlen(d) : w;
		dns += rows[i].proto == OBS_DNS_ONLY;
		if (rows[i].proto == OBS_DNS_ONLY || rows[i].decision == OBS_OTHER)
			continue;
		dests++;
		refused += rows[i].decision == OBS_DENY;
		learned += rows[i].decision == OBS_LEARNED;
	}
	fprintf(f, "egressd report: %zu destinations (%zu refused, %zu learned), "
		   "%zu names looked up but never connected to\n", dests, refused, learned, dns);
	if (overflow)
		fprintf(f, "warning: more than %zu destinations or names: %llu connections and "
			   "lookups past the limit are counted in %s\n", limit,
			(unsigned long long)overflow, OBS_OTHER_HOST);
	fprintf(f, "%-8s  %-*s  %-11s %6s %6s %12s %12s  %-24s %s\n", "DECISION", (int)w,
		"DESTINATION", "PROTOCOL", "CONNS", "REQS", "BYTES_UP", "BYTES_DOWN",
		"REASON/RULE", "SECRETS");
	for (size_t i = 0; i < n; i++) {
		const struct obs_row *r = &rows[i];
		char reqs[48];
		if (r->proto == OBS_DNS_ONLY)
			continue;
		dest_text(r, d, sizeof(d));
		snprintf(reqs, sizeof(reqs), "%llu", (unsigned long long)r->requests);
		fprintf(f, "%-8s  %-*s  %-11s %6llu %6s %12llu %12llu  %-24s %s\n",
			observe_decision_name(r->decision), (int)w, d,
			r->decision == OBS_OTHER ? "-" : observe_proto_name(r->proto),
			(unsigned long long)r->conns, reqs, (unsigned long long)r->bytes_up,
			(unsigned long long)r->bytes_down, r->why[0] ? r->why : "-",
			r->secrets[0] ? r->secrets : "-");
	}
	if (!dns)
		return;
	fprintf(f, "names looked up, never connected to:\n%-*s  %7s  %s\n", (int)w, "NAME",
		"QUERIES", "ANSWER");
	for (size_t i = 0; i < n; i++)
		if (rows[i].proto == OBS_DNS_ONLY)
			fprintf(f, "%-*s  %7llu  %s\n", (int)w, rows[i].host,
				(unsigned long long)rows[i].queries, rows[i].why);
}

static json_t *secrets_array(const char *list)
{
	json_t *a = json_array();

	for (const char *s = list; *s;) {
		size_t k = strcspn(s, ",");
		json_array_append_new(a, json_stringn(s, k));
		s += k;
		if (*s)
			s++;
	}
	return a;
}

static json_t *row_json(const struct obs_row *r)
{
	json_t *j = json_object();

	if (r->proto == OBS_DNS_ONLY) {
		json_object_set_new(j, "name", json_string(r->host));
		json_object_set_new(j, "queries", json_integer((json_int_t)r->queries));
		json_object_set_new(j, "answer", json_string(r->why));
		return j;
	}
	if (r->sandbox[0])
		json_object_set_new(j, "sandbox", json_string(r->sandbox));
	json_object_set_new(j, "host", json_string(r->host));
	json_object_set_new(j, "port", json_integer(r->port));
	json_object_set_new(j, "protocol", json_string(r->decision == OBS_OTHER ? "-"
							: observe_proto_name(r->proto)));
	json_object_set_new(j, "decision", json_string(observe_decision_name(r->decision)));
	if (r->decision == OBS_DENY || r->decision == OBS_LEARNED)
		json_object_set_new(j, "reason", json_string(r->why));
	else if (r->decision == OBS_ALLOW)
		json_object_set_new(j, "rule", json_string(r->why));
	json_object_set_new(j, "connections", json_integer((json_int_t)r->conns));
	json_object_set_new(j, "requests", json_integer((json_int_t)r->requests));
	json_object_set_new(j, "requests_refused", json_integer((json_int_t)r->requests_refused));
	json_object_set_new(j, "bytes_up", json_integer((json_int_t)r->bytes_up));
	json_object_set_new(j, "bytes_down", json_integer((json_int_t)r->bytes_down));
	json_object_set_new(j, "secrets", secrets_array(r->secrets));
	if (r->decision == OBS_OTHER) /* lookups of names past the limit */
		json_object_set_new(j, "queries", json_integer((json_int_t)r->queries));
	return j;
}

static void write_json(FILE *f, const struct obs_row *rows, size_t n, uint64_t overflow,
		       size_t limit)
{
	json_t *root = json_object(), *dests = json_array(), *dns = json_array();
	char *s;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(rows[i].proto == OBS_DNS_ONLY ? dns : dests,
				      row_json(&rows[i]));
	json_object_set_new(root, "destinations", dests);
	json_object_set_new(root, "dns_only", dns);
	json_object_set_new(root, "limit", json_integer((json_int_t)limit));
	json_object_set_new(root, "overflow", json_integer((json_int_t)overflow));
	s = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
	if (s)
		fprintf(f, "%s\n", s);
	free(s);
	json_decref(root);
}

void obsreport_write(struct observe *o, FILE *f, bool json)
{
	size_t n;
	struct obs_row *rows = observe_rows(o, &n);

	if (json)
		write_json(f, rows, n, observe_overflow(o), observe_limit(o));
	else
		write_table(f, rows, n, observe_overflow(o), observe_limit(o));
	fflush(f);
	free(rows);
}

/* ---- the learned policy ---- */

/* A destination sandbox (NULL: any) used: allowed or learned. */
static bool used_by(const struct obs_row *r, const char *sandbox)
{
	return r->proto != OBS_DNS_ONLY && (r->decision == OBS_ALLOW || r->decision == OBS_LEARNED) &&
	       (r->conns || r->requests) && (!sandbox || !strcmp(r->sandbox, sandbox));
}

static void add_unique(json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return;
	json_array_append_new(a, json_string(s));
}

/* 0 when the pattern needs no port (443 and 80: the usual web ports). */
static unsigned port_of(const struct obs_row *r)
{
	return r->port == 443 || r->port == 80 ? 0 : r->port;
}

static void add_pattern(json_t *a, const char *host, bool v6, unsigned port)
{
	char p[300];

	if (port)
		snprintf(p, sizeof(p), v6 ? "[%s]:%u" : "%s:%u", host, port);
	else
		snprintf(p, sizeof(p), v6 ? "[%s]" : "%s", host);
	add_unique(a, p);
}

/* How many distinct names strictly under reg sandbox sb used on port. */
static size_t names_under(const struct obs_row *rows, size_t n, const char *sb,
			  const struct psl *psl, const char *reg, unsigned port)
{
	size_t count = 0;
	char r2[256];

	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		if (!used_by(&rows[i], sb) || port_of(&rows[i]) != port || !strcmp(rows[i].host, reg) ||
		    !psl_registrable(psl, rows[i].host, r2, sizeof(r2)) || strcmp(r2, reg))
			continue;
		for (size_t k = 0; k < i && !seen; k++)
			seen = used_by(&rows[k], sb) && port_of(&rows[k]) == port &&
			       !strcmp(rows[k].host, rows[i].host);
		count += !seen;
	}
	return count;
}

/* One pattern per destination sandbox sb (NULL: any) used, into allow. */
static void add_learned(json_t *allow, const struct obs_row *rows, size_t n, const char *sb,
			const struct psl *psl)
{
	for (size_t i = 0; i < n; i++) {
		const struct obs_row *r = &rows[i];
		struct target t;
		char err[PATTERN_ERRLEN], reg[256], wild[260];

		if (!used_by(r, sb) || !target_from_host(r->host, strlen(r->host), r->port, &t, err))
			continue;
		if (t.is_ip) {
			add_pattern(allow, t.host, t.ip.family == 6, port_of(r));
		} else if (psl && psl_registrable(psl, t.host, reg, sizeof(reg)) &&
			   strcmp(t.host, reg) && names_under(rows, n, sb, psl, reg, port_of(r)) >= 2) {
			snprintf(wild, sizeof(wild), "*.%s", reg);
			add_pattern(allow, wild, false, port_of(r));
		} else {
			add_pattern(allow, t.host, false, port_of(r));
		}
	}
}

static void note_dropped(char **dropped, const char *name)
{
	size_t have = *dropped ? strlen(*dropped) : 0;

	*dropped = xrealloc(*dropped, have + strlen(name) + 2);
	snprintf(*dropped + have, strlen(name) + 2, "%s%s", have ? "," : "", name);
}

/* The JSON object in path (a -c file, or a sandbox's policy file). */
static json_t *load_object(const char *path, char *err)
{
	json_error_t jerr;
	json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

	if (!c || !json_is_object(c)) {
		snprintf(err, 256, "%.90s: %.150s", path, c ? "not a JSON object" : jerr.text);
		json_decref(c);
		return NULL;
	}
	return c;
}

/* The keys of policy object c into root. */
static void merge_policy(json_t *root, json_t *c, char **dropped)
{
	json_t *val;
	const char *key;

	json_object_foreach(c, key, val) {
		if (json_is_array(val) && (!strcmp(key, "allowNet") || !strcmp(key, "denyNet") ||
					   !strcmp(key, "intercept"))) {
			json_t *a = json_object_get(root, key), *v;
			size_t i;
			if (!json_is_array(a)) {
				a = json_array();
				json_object_set_new(root, key, a);
			}
			json_array_foreach(val, i, v)
				if (json_is_string(v))
					add_unique(a, json_string_value(v));
		} else if (!strcmp(key, "secrets") && json_is_object(val)) {
			json_t *s = json_object_get(root, key), *e;
			const char *name;
			if (!json_is_object(s)) {
				s = json_object();
				json_object_set_new(root, key, s);
			}
			json_object_foreach(val, name, e) {
				if (json_object_get(e, "value"))
					note_dropped(dropped, name); /* never a value in the file */
				else
					json_object_set(s, name, e);
			}
		} else {
			json_object_set(root, key, val);
		}
	}
}

/* root's allowNet array (made if absent). */
static json_t *allow_of(json_t *root)
{
	json_t *allow = json_object_get(root, "allowNet");

	if (!json_is_array(allow)) {
		allow = json_array();
		json_object_set_new(root, "allowNet", allow);
	}
	return allow;
}

/* A sandbox entry's policy as one inline object: its file (relative to the
 * sandboxes file's directory) or its object. */
static json_t *sandbox_policy(json_t *entry, const char *main_path, char **dropped, char *err)
{
	json_t *src = json_object_get(entry, "policy"), *pol = json_object(), *f;
	const char *name = json_string_value(src), *slash = strrchr(main_path, '/');
	char path[4200];

	if (json_is_object(src)) {
		merge_policy(pol, src, dropped);
	} else if (name) {
		if (name[0] == '/' || !slash)
			snprintf(path, sizeof(path), "%s", name);
		else
			snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - main_path), main_path,
				 name);
		if (!(f = load_object(path, err))) {
			json_decref(pol);
			return NULL;
		}
		merge_policy(pol, f, dropped);
		json_decref(f);
	}
	return pol;
}

/* A sandboxes file: every entry kept, its policy written inline with what
 * that sandbox used added to its allowNet. A sandbox not in the file (made
 * through the control API) is said in the log, not written. */
static bool learn_sandboxes(json_t *out, json_t *file, const char *path, const struct obs_row *rows,
			    size_t n, const struct psl *psl, char **dropped, char *err)
{
	json_t *sbs = json_object_get(file, "sandboxes"), *res = json_object(), *e;
	const char *name;

	json_object_set_new(out, "sandboxes", res);
	json_object_foreach(sbs, name, e) {
		json_t *entry = json_is_object(e) ? json_copy(e) : json_object();
		json_t *pol = sandbox_policy(e, path, dropped, err);
		if (!pol) {
			json_decref(entry);
			return false;
		}
		add_learned(allow_of(pol), rows, n, name, psl);
		json_object_set_new(entry, "policy", pol);
		json_object_set_new(res, name, entry);
	}
	for (size_t i = 0; i < n; i++)
		if (used_by(&rows[i], NULL) && rows[i].sandbox[0] &&
		    !json_object_get(sbs, rows[i].sandbox))
			audit_msg(AUDIT_WARN, "learn", "learn: sandbox %s is not in %s (made through "
				  "the control API?): its destination %s:%u is not written",
				  rows[i].sandbox, path, rows[i].host, rows[i].port);
	return true;
}

/* A single -c file with "sandboxes", or NULL. */
static json_t *sandboxes_file(const char *const *configs, char *err, bool *failed)
{
	json_t *f;

	*failed = false;
	if (!configs || !configs[0] || configs[1])
		return NULL;
	if (!(f = load_object(configs[0], err))) {
		*failed = true;
		return NULL;
	}
	if (json_is_object(json_object_get(f, "sandboxes")))
		return f;
	json_decref(f);
	return NULL;
}

/* The -c files' keys plus what was used, into root. */
static bool learn_policy(json_t *root, const char *const *configs, const struct obs_row *rows,
			 size_t n, const struct psl *psl, char **dropped, char *err)
{
	for (const char *const *c = configs; c && *c; c++) {
		json_t *f = load_object(*c, err);
		if (!f)
			return false;
		merge_policy(root, f, dropped);
		json_decref(f);
	}
	add_learned(allow_of(root), rows, n, NULL, psl);
	return true;
}

char *obsreport_learned(struct observe *o, const struct psl *psl, const char *const *configs,
			char **dropped, char *err)
{
	json_t *root = json_object(), *sbf;
	size_t n;
	struct obs_row *rows = observe_rows(o, &n);
	char *out = NULL, *s;
	bool failed, ok;

	*dropped = NULL;
	sbf = sandboxes_file(configs, err, &failed);
	if (failed)
		goto out;
	ok = sbf ? learn_sandboxes(root, sbf, configs[0], rows, n, psl, dropped, err)
		 : learn_policy(root, configs, rows, n, psl, dropped, err);
	if (!ok)
		goto out;
	s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!s) {
		snprintf(err, 256, "cannot format the policy");
		goto out;
	}
	out = xmalloc(strlen(s) + 2);
	snprintf(out, strlen(s) + 2, "%s\n", s);
	free(s);
out:
	if (!out) {
		free(*dropped);
		*dropped = NULL;
	}
	free(rows);
	json_decref(sbf);
	json_decref(root);
	return out;
}

/* ---- writing both ---- */

static struct psl *the_psl;
static bool psl_tried;

static int write_report(struct observe *o, const struct obsreport_opts *opts)
{
	FILE *f = opts->report_path ? fopen(opts->report_path, "we") : stderr;

	if (!f) {
		audit_msg(AUDIT_ERROR, "error", "report: cannot write %s: %s", opts->report_path,
			  strerror(errno));
		return -1;
	}
	obsreport_write(o, f, opts->json);
	if (f != stderr && fclose(f) != 0) {
		audit_msg(AUDIT_ERROR, "error", "report: cannot write %s: %s", opts->report_path,
			  strerror(errno));
		return -1;
	}
	return 0;
}

/* text into path, through path.tmp and rename. */
static int write_file(const char *path, const char *text)
{
	char tmp[4200];
	FILE *f;
	int rc = -1;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -1;
	if (fputs(text, f) >= 0 && fchmod(fileno(f), 0644) == 0 && fflush(f) == 0)
		rc = 0;
	if (fclose(f) != 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -1;
	if (rc != 0) {
		int saved = errno;
		unlink(tmp);
		errno = saved;
	}
	return rc;
}

static int write_learned(struct observe *o, const struct obsreport_opts *opts)
{
	char err[256] = "", *dropped = NULL, *text;
	int rc = 0;

	if (!psl_tried) {
		char e[PSL_ERRLEN];
		psl_tried = true;
		if (!(the_psl = psl_load(PSL_DEFAULT_PATH, e)))
			audit_msg(AUDIT_WARN, "learn", "learn: no Public Suffix List (%s): exact "
				  "names only, no *. wildcards proposed", e);
	}
	if (observe_overflow(o))
		audit_msg(AUDIT_WARN, "learn", "learn: more than %zu destinations: those counted "
			  "in %s are not in %s", observe_limit(o), OBS_OTHER_HOST, opts->learn_path);
	text = obsreport_learned(o, the_psl, opts->configs, &dropped, err);
	if (!text) {
		audit_msg(AUDIT_ERROR, "error", "learn: %s", err);
		return -1;
	}
	if (dropped)
		audit_msg(AUDIT_WARN, "learn", "learn: secrets with an inline \"value\" are not "
			  "written: %s", dropped);
	if (write_file(opts->learn_path, text) < 0) {
		audit_msg(AUDIT_ERROR, "error", "learn: cannot write %s: %s", opts->learn_path,
			  strerror(errno));
		rc = -1;
	} else {
		audit_msg(AUDIT_INFO, "learn", "learn: policy written to %s", opts->learn_path);
	}
	free(dropped);
	free(text);
	return rc;
}

int obsreport_finish(struct observe *o, const struct obsreport_opts *opts)
{
	int rc = 0;

	if (!o)
		return 0;
	if (opts->report && write_report(o, opts) < 0)
		rc = -1;
	if (opts->learn_path && write_learned(o, opts) < 0)
		rc = -1;
	return rc;
}

void obsreport_cleanup(void)
{
	psl_free(the_psl);
	the_psl = NULL;
	psl_tried = false;
}
