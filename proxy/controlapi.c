/* controlapi.c -- the control API's endpoints: PUT/GET/DELETE
 * /v1/sandboxes/{name}, GET /v1/sandboxes, GET /v1/health; a sandbox is
 * loaded as the file loader would (config_load_sandbox), added through the
 * server (generation.c's registry), and answered with its environment */
#include "control_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "audit.h"
#include "config.h"
#include "envvars.h"
#include "generation.h"
#include "httpmsg.h"
#include "policy.h"
#include "sandboxes.h"
#include "server.h"

#define PREFIX "/v1/sandboxes"


/* What the table's lock is held for: copies of each sandbox's name, info
 * and counter; parsed into JSON once the lock is released. */
struct copies {
	struct copy {
		char *name, *info;
		unsigned long long conns;
	} *v;
	size_t n, cap;
};

static void copy_info(void *ctx, const char *name, const char *info, unsigned long long conns)
{
	struct copies *c = ctx;

	if (c->n == c->cap)
		c->v = xrealloc(c->v, (c->cap = c->cap ? 2 * c->cap : 64) * sizeof(*c->v));
	c->v[c->n].name = xstrdup(name);
	c->v[c->n].info = xstrdup(info);
	c->v[c->n++].conns = conns;
}

/* The copies as JSON objects (definition, "name", "connections"); frees them. */
static json_t *to_json(struct copies *c)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < c->n; i++) {
		json_t *v = json_loads(c->v[i].info, 0, NULL);
		if (!v)
			v = json_object();
		json_object_set_new(v, "name", json_string(c->v[i].name));
		json_object_set_new(v, "connections", json_integer((json_int_t)c->v[i].conns));
		json_array_append_new(arr, v);
		free(c->v[i].name);
		free(c->v[i].info);
	}
	free(c->v);
	return arr;
}

static void get_list(struct creq *r)
{
	struct copies c = { 0 };

	gentable_api_each(server_gentable(r->c->srv), copy_info, &c);
	control_reply(r, 200, json_pack("{s:o}", "sandboxes", to_json(&c)), NULL);
}

static void get_one(struct creq *r, const char *name)
{
	struct copies c = { 0 };
	json_t *arr;

	if (!gentable_api_get(server_gentable(r->c->srv), name, copy_info, &c)) {
		control_reply_error(r, 404, "no sandbox of that name was created through the API", NULL,
				    NULL);
		return;
	}
	arr = to_json(&c);
	control_reply(r, 200, json_incref(json_array_get(arr, 0)), NULL);
	json_decref(arr);
}

static void health(struct creq *r)
{
	size_t nfile, napi;

	gentable_counts(server_gentable(r->c->srv), &nfile, &napi);
	control_reply(r, 200, json_pack("{s:b,s:I,s:I}", "ok", 1, "sandboxes_file", (json_int_t)nfile,
				"sandboxes_api", (json_int_t)napi), NULL);
}

static void delete_one(struct creq *r, const char *name)
{
	long open = 0;

	if (server_sandbox_delete(r->c->srv, name, &open) < 0) {
		control_reply_error(r, 404, "no sandbox of that name was created through the API", NULL,
				    NULL);
		return;
	}
	audit_say(AUDIT_INFO, "control: sandbox %s deleted (uid %ld); closing its %ld open "
			      "connection(s)", name, r->uid, open);
	control_log_change(r, "sandbox-delete", name, 200, NULL, open, false);
	control_reply(r, 200, json_pack("{s:s,s:I}", "deleted", name, "closing", (json_int_t)open), NULL);
}

/* The body as GET shows it: without any secret's "value", with the
 * sandbox's environment (env, borrowed). */
static char *definition(const char *body, size_t len, json_t *env)
{
	json_t *v = json_loadb(body, len, 0, NULL), *secrets, *sec;
	const char *k;
	char *s;

	if (!v)
		v = json_object();
	secrets = json_object_get(v, "secrets");
	json_object_foreach(secrets, k, sec)
		json_object_del(sec, "value");
	json_object_set(v, "env", env);
	s = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	return s;
}

static void env_add(void *ctx, const char *name, const char *value)
{
	json_object_set_new(ctx, name, json_string(value));
}

/* The proxy URL a sandbox uses: its first listener, else egressd's first. */
static void proxy_url(const struct control *c, const struct sbtable *t, char *url, size_t cap)
{
	char buf[ADDR_STRLEN];
	struct ipaddr a;
	uint16_t port;

	if (sbx_listen_count(t, 0) > 0)
		sbx_listen(t, 0, 0, &a, &port);
	else if (!server_listen_addr(c->srv, 0, &a, &port))
		a.family = 0;
	if (!a.family) {
		snprintf(url, cap, "http://127.0.0.1:3128");
		return;
	}
	addr_format(&a, buf);
	snprintf(url, cap, a.family == 6 ? "http://[%s]:%u" : "http://%s:%u", buf, port);
}

static void put_one(struct creq *r, const char *name)
{
	char err[CONFIG_ERRLEN], where[CONFIG_WHERELEN], url[300];
	struct control *c = r->c;
	struct sbtable *t;
	json_t *env;
	char *info;
	bool created = false;
	int rc;

	t = config_load_sandbox(name, r->body ? r->body : "", r->blen, err, where);
	if (t && c->amend && !c->amend(c->amend_ctx, sbx_policy(t, 0), err)) {
		sbx_free(t);
		t = NULL;
		where[0] = '\0';
	}
	if (!t) {
		control_log_change(r, "sandbox-put", name, 400, err, -1, false);
		control_reply_error(r, 400, err, where, NULL);
		return;
	}
	env = json_object();
	proxy_url(c, t, url, sizeof(url));
	envvars_each(sbx_policy(t, 0), c->phkey, url, c->bundle, c->truststore, env_add, env);
	info = definition(r->body, r->blen, env);
	rc = server_sandbox_put(c->srv, t, info, &created, err); /* takes t */
	free(info);
	if (rc < 0) {
		json_decref(env);
		control_log_change(r, "sandbox-put", name, rc == -2 ? 409 : 400, err, -1, false);
		control_reply_error(r, rc == -2 ? 409 : 400, err, NULL, NULL);
		return;
	}
	audit_say(AUDIT_INFO, "control: sandbox %s %s (uid %ld)", name,
		  created ? "created" : "replaced", r->uid);
	control_log_change(r, "sandbox-put", name, created ? 201 : 200, NULL, -1, created);
	control_reply(r, created ? 201 : 200,
	      json_pack("{s:s,s:o,s:s}", "name", name, "env", env, "ca", c->ca_pem), NULL);
}

/* The name after /v1/sandboxes/, copied into name (SBX_NAME_MAX + 1). */
static bool path_name(const char *t, size_t n, char *name)
{
	size_t p = sizeof(PREFIX); /* the prefix and its '/' */

	if (n <= p || memcmp(t, PREFIX "/", p) != 0 || n - p > SBX_NAME_MAX)
		return false;
	memcpy(name, t + p, n - p);
	name[n - p] = '\0';
	for (const char *s = name; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return false;
	return true;
}

void controlapi_route(struct creq *r)
{
	const char *m = httpmsg_method(r->msg);
	size_t n;
	const char *t = httpmsg_target(r->msg, &n);
	char name[SBX_NAME_MAX + 1];

	if (n == 10 && memcmp(t, "/v1/health", 10) == 0) {
		if (strcmp(m, "GET") == 0)
			health(r);
		else
			control_reply_error(r, 405, "only GET", NULL, "Allow: GET\r\n");
	} else if (n == sizeof(PREFIX) - 1 && memcmp(t, PREFIX, n) == 0) {
		if (strcmp(m, "GET") == 0)
			get_list(r);
		else
			control_reply_error(r, 405, "only GET", NULL, "Allow: GET\r\n");
	} else if (n > sizeof(PREFIX) && memcmp(t, PREFIX "/", sizeof(PREFIX)) == 0) {
		if (!path_name(t, n, name))
			control_reply_error(r, 400, "invalid sandbox name (1 to 64 of A-Z a-z 0-9 _ - .)",
					    "name", NULL);
		else if (strcmp(m, "PUT") == 0)
			r->too_big ? control_reply_error(r, 413, "body too large", NULL, NULL)
				   : put_one(r, name);
		else if (strcmp(m, "GET") == 0)
			get_one(r, name);
		else if (strcmp(m, "DELETE") == 0)
			delete_one(r, name);
		else
			control_reply_error(r, 405, "only PUT, GET and DELETE", NULL,
					    "Allow: PUT, GET, DELETE\r\n");
	} else {
		control_reply_error(r, 404, "not found (try /v1/sandboxes or /v1/health)", NULL, NULL);
	}
}
