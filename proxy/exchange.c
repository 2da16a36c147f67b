/* exchange.c -- one request/response on a connection: its lifetime (new,
 * begin, free) and its `request` log line, complete or cut off */
#include "exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/buffer.h>

#include "alloc.h"
#include "audit.h"
#include "conn_int.h"
#include "contentdec.h"
#include "elapsed.h"
#include "generation.h"
#include "httpmsg.h"
#include "injbody.h"
#include "injspec.h"
#include "metrics.h"
#include "worker.h"

struct exinject *exchange_inject(struct exchange *ex)
{
	return &ex->inj;
}

struct exchange *exchange_new(void)
{
	struct exchange *ex = xcalloc(1, sizeof(*ex));

	ex->req = httpmsg_new(HTTPMSG_REQUEST, CONN_HEAD_CAP);
	return ex;
}

void exchange_free(struct exchange *ex)
{
	if (!ex)
		return;
	injbody_free(exchange_inject(ex)->body);
	httpmsg_free(ex->req);
	httpmsg_free(ex->resp);
	contentdec_free(ex->dec);
	if (ex->zin)
		evbuffer_free(ex->zin);
	free(ex->path);
	free(ex);
}

void exchange_begin(struct exchange *ex, bool redacting)
{
	snprintf(ex->method, sizeof(ex->method), "%s", httpmsg_method(ex->req));
	ex->begun = true;
	ex->redacting = redacting;
	gettimeofday(&ex->start, NULL);
	ex->resp = httpmsg_new(HTTPMSG_RESPONSE, CONN_HEAD_CAP);
	if (strcmp(ex->method, "HEAD") == 0)
		httpmsg_expect_no_body(ex->resp);
}

void exchange_set_path(struct exchange *ex, const char *path, size_t plen)
{
	free(ex->path);
	if (plen == 0)
		ex->path = xstrdup("/");
	else
		ex->path = xstrndup(path, plen > EXCHANGE_PATH_MAX ? EXCHANGE_PATH_MAX : plen);
}

bool exchange_begun(const struct exchange *ex)
{
	return ex->begun;
}

bool exchange_logged(const struct exchange *ex)
{
	return ex->logged;
}

size_t exchange_size(void)
{
	return sizeof(struct exchange);
}

/* A request answered by the upstream: its mode, latency and the secrets
 * injected into it (blocked requests are counted as refusals instead). */
static void meter(const struct exchange *ex, const struct conn *c)
{
	struct metrics_worker *mx = c->w->mx;

	if (!ex->cut) /* counts requests answered, duration to the end */
		metrics_request(mx, c->mode, MX_PROTO_HTTP1, elapsed_usec(&ex->start));
	for (uint64_t m = ex->injected; m; m &= m - 1)
		metrics_secret_injected(mx, gen_secret_slot(c->gen, (size_t)__builtin_ctzll(m)));
}

void exchange_log_verdict(struct jsonw *w, bool ruled, enum reason reason,
			  const struct rule_verdict *rv)
{
	if (ruled || reason != REASON_NONE)
		jsonw_str(w, "decision", reason == REASON_NONE ? "allow" : "deny");
	if (reason != REASON_NONE)
		jsonw_str(w, "reason", reason_str(reason));
	if (ruled && (rv->how == RULE_BY_RULE || rv->how == RULE_MATCH_ERROR))
		jsonw_int(w, "rule", (long long)rv->index);
	else if (ruled && rv->how == RULE_BY_DEFAULT)
		jsonw_str(w, "rule", "default");
	if (ruled && rv->how == RULE_AMBIGUOUS)
		jsonw_str(w, "detail", rv->why);
	else if (ruled && rv->how == RULE_MATCH_ERROR)
		jsonw_str(w, "detail", "the rule's path pattern hit the match limit");
}

/* "in": where the injected secrets went, e.g. ["header","query"]. */
static void log_in(struct jsonw *w, unsigned in)
{
	char list[64];
	size_t o = 0;

	list[o++] = '[';
	for (int k = 0; k < INJ_NWHERE; k++)
		if (in >> k & 1)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s\"%s\"", o > 1 ? "," : "",
					      injspec_where_str((enum injwhere)k));
	list[o++] = ']';
	list[o] = '\0';
	jsonw_raw(w, "in", list);
}

void exchange_log(struct exchange *ex, struct conn *c, int status)
{
	struct jsonw w;

	if (ex->logged)
		return;
	if (!ex->discarding)
		meter(ex, c);
	if (audit_begin(&w, ex->block_reason != REASON_NONE ? AUDIT_WARN : AUDIT_INFO, "request",
			c->id)) {
		if (*policy_scope(c->pol))
			jsonw_str(&w, "sandbox", policy_scope(c->pol));
		jsonw_str(&w, "method", ex->method);
		jsonw_str(&w, "host", c->t.host);
		jsonw_int(&w, "port", c->t.port);
		jsonw_str(&w, "path", ex->path);
		jsonw_int(&w, "status", status);
		exchange_log_verdict(&w, ex->ruled, ex->block_reason, &ex->rv);
		if (c->mode == MODE_INTERCEPT)
			audit_secrets(&w, c->ss, ex->injected);
		if (c->mode == MODE_INTERCEPT && ex->injected)
			log_in(&w, exchange_inject(ex)->in);
		if (ex->cut)
			jsonw_bool(&w, "incomplete", true);
		if (ex->up_h2)
			jsonw_str(&w, "upstream_proto", "h2");
		jsonw_int(&w, "bytes_up", (long long)ex->req_up);
		jsonw_int(&w, "bytes_down", (long long)ex->req_down);
		jsonw_int(&w, "ms", elapsed_ms(&ex->start));
		audit_emit(&w);
	}
	c->bytes_up += ex->req_up;
	c->bytes_down += ex->req_down;
	ex->req_up = ex->req_down = 0;
	ex->logged = true;
}

void exchange_log_cut(struct exchange *ex, struct conn *c)
{
	if (!ex->begun || ex->logged)
		return;
	ex->cut = true;
	exchange_log(ex, c, ex->discarding ? ex->block_status : httpmsg_status_code(ex->resp));
}
