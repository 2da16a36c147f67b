/* control.c -- the control API on a unix socket: PUT/GET/DELETE
 * /v1/sandboxes/{name}, GET /v1/sandboxes, GET /v1/health; requests parsed
 * by httpmsg (strict llhttp), bodies capped and wiped, the peer's uid from
 * SO_PEERCRED in every audit event; the sandboxes themselves are
 * generation.c's (through server.h) */
#include "control.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "alloc.h"
#include "audit.h"
#include "config.h"
#include "envvars.h"
#include "generation.h"
#include "httpmsg.h"
#include "metrics.h"
#include "pattern.h"
#include "policy.h"
#include "sandboxes.h"
#include "secrets.h"
#include "server.h"

#define HEAD_CAP 16384
#define MAX_CONNS 64
#define TIMEOUT_S 10
#define PREFIX "/v1/sandboxes"

struct creq;

struct control {
	struct server *srv;
	char *path;                 /* the socket file (NULL: TCP) */
	unsigned char token[32];    /* SHA-256 of the bearer token every request needs */
	bool has_token;
	char *ca_pem;               /* egressd's CA certificate (PEM) */
	char bundle[4200];          /* STATE_DIR/ca-bundle.pem */
	char truststore[4200];      /* STATE_DIR/ca-truststore.p12 (Java) */
	unsigned char phkey[PLACEHOLDER_KEYLEN];
	control_amend_fn amend;
	void *amend_ctx;
	struct event_base *base;
	struct evconnlistener *ls;
	struct event *stop;         /* on wake_fd */
	int wake_fd;
	struct creq *reqs;          /* open control connections */
	int nreqs;
	pthread_t thread;
	bool running;
};

/* One control connection: one request, one answer, then close. */
struct creq {
	struct control *c;
	struct bufferevent *bev;
	struct httpmsg *msg;
	char *body;                 /* wiped and freed with the request */
	size_t blen;
	bool too_big;               /* the body passed CONTROL_BODY_MAX */
	bool answered;
	long uid;                   /* the peer's (SO_PEERCRED), -1 over TCP */
	struct creq *prev, *next;
};

static void creq_free(struct creq *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		r->c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->c->nreqs--;
	bufferevent_free(r->bev);
	httpmsg_free(r->msg);
	if (r->body) {
		xwipe(r->body, CONTROL_BODY_MAX);
		free(r->body);
	}
	free(r);
}

static const char *status_text(int code)
{
	switch (code) {
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 401: return "Unauthorized";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	}
	return "Internal Server Error";
}

/* Answers with the JSON value v (taken) and closes after writing. */
static void reply(struct creq *r, int code, json_t *v, const char *extra)
{
	struct evbuffer *out = bufferevent_get_output(r->bev);
	char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
	size_t n = body ? strlen(body) : 0;

	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
			    code, status_text(code), n + 1, extra ? extra : "");
	if (body)
		evbuffer_add(out, body, n);
	evbuffer_add(out, "\n", 1);
	free(body);
	json_decref(v);
	r->answered = true;
	metrics_control_request(server_metrics(r->c->srv), code);
}

/* {"error": msg, "path": where} (where may be NULL). */
static void reply_error(struct creq *r, int code, const char *msg, const char *where,
			const char *extra)
{
	json_t *v = json_pack("{s:s}", "error", msg);

	if (where && *where)
		json_object_set_new(v, "path", json_string(where));
	reply(r, code, v, extra);
}

/* An audit event for a change (or a refused one) by the peer. */
static void log_change(const struct creq *r, const char *event, const char *name, int code,
		       const char *error, long open, bool created)
{
	struct jsonw w;

	if (!audit_begin(&w, error ? AUDIT_WARN : AUDIT_INFO, event, 0))
		return;
	jsonw_str(&w, "sandbox", name);
	jsonw_int(&w, "uid", r->uid);
	jsonw_int(&w, "status", code);
	if (error)
		jsonw_str(&w, "error", error);
	else if (open >= 0)
		jsonw_int(&w, "closing", open);
	else
		jsonw_bool(&w, "created", created);
	audit_emit(&w);
}

/* ---- answers ---- */

static void add_info(void *ctx, const char *name, const char *info, unsigned long long conns)
{
	json_t *v = json_loads(info, 0, NULL), *arr = ctx;

	if (!v)
		v = json_object();
	json_object_set_new(v, "name", json_string(name));
	json_object_set_new(v, "connections", json_integer((json_int_t)conns));
	if (json_is_array(arr))
		json_array_append_new(arr, v);
	else
		json_object_update(arr, v), json_decref(v);
}

static void get_list(struct creq *r)
{
	json_t *arr = json_array();

	gentable_api_each(server_gentable(r->c->srv), add_info, arr);
	reply(r, 200, json_pack("{s:o}", "sandboxes", arr), NULL);
}

static void get_one(struct creq *r, const char *name)
{
	json_t *obj = json_object();

	if (!gentable_api_get(server_gentable(r->c->srv), name, add_info, obj)) {
		json_decref(obj);
		reply_error(r, 404, "no sandbox of that name was created through the API", NULL,
			    NULL);
		return;
	}
	reply(r, 200, obj, NULL);
}

static void health(struct creq *r)
{
	size_t nfile, napi;

	gentable_counts(server_gentable(r->c->srv), &nfile, &napi);
	reply(r, 200, json_pack("{s:b,s:I,s:I}", "ok", 1, "sandboxes_file", (json_int_t)nfile,
				"sandboxes_api", (json_int_t)napi), NULL);
}

static void delete_one(struct creq *r, const char *name)
{
	long open = 0;

	if (server_sandbox_delete(r->c->srv, name, &open) < 0) {
		reply_error(r, 404, "no sandbox of that name was created through the API", NULL,
			    NULL);
		return;
	}
	audit_say(AUDIT_INFO, "control: sandbox %s deleted (uid %ld); closing its %ld open "
			      "connection(s)", name, r->uid, open);
	log_change(r, "sandbox-delete", name, 200, NULL, open, false);
	reply(r, 200, json_pack("{s:s,s:I}", "deleted", name, "closing", (json_int_t)open), NULL);
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
		log_change(r, "sandbox-put", name, 400, err, -1, false);
		reply_error(r, 400, err, where, NULL);
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
		log_change(r, "sandbox-put", name, rc == -2 ? 409 : 400, err, -1, false);
		reply_error(r, rc == -2 ? 409 : 400, err, NULL, NULL);
		return;
	}
	audit_say(AUDIT_INFO, "control: sandbox %s %s (uid %ld)", name,
		  created ? "created" : "replaced", r->uid);
	log_change(r, "sandbox-put", name, created ? 201 : 200, NULL, -1, created);
	reply(r, created ? 201 : 200,
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

/* Does the request carry the bearer token? Compared as SHA-256 digests
 * with CRYPTO_memcmp: the time taken says nothing about the token. */
static bool authorized(const struct creq *r)
{
	unsigned char d[32];
	unsigned int dl = 0;
	const char *v;
	size_t vn;
	bool ok;

	if (!r->c->has_token)
		return true;
	if (httpmsg_header_find(r->msg, "authorization", &v, &vn) != 1 || vn < 7 ||
	    strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	if (!EVP_Digest(v + 7, vn - 7, d, &dl, EVP_sha256(), NULL) || dl != sizeof(d))
		return false;
	ok = CRYPTO_memcmp(d, r->c->token, sizeof(d)) == 0;
	OPENSSL_cleanse(d, sizeof(d));
	return ok;
}

static void route(struct creq *r)
{
	const char *m = httpmsg_method(r->msg);
	size_t n;
	const char *t = httpmsg_target(r->msg, &n);
	char name[SBX_NAME_MAX + 1];

	if (!authorized(r)) {
		log_change(r, "control-refused", "", 401, "no or wrong bearer token", -1, false);
		reply_error(r, 401, "a bearer token is required (Authorization: Bearer TOKEN)", NULL,
			    "WWW-Authenticate: Bearer\r\n");
		return;
	}
	if (n == 10 && memcmp(t, "/v1/health", 10) == 0) {
		if (strcmp(m, "GET") == 0)
			health(r);
		else
			reply_error(r, 405, "only GET", NULL, "Allow: GET\r\n");
	} else if (n == sizeof(PREFIX) - 1 && memcmp(t, PREFIX, n) == 0) {
		if (strcmp(m, "GET") == 0)
			get_list(r);
		else
			reply_error(r, 405, "only GET", NULL, "Allow: GET\r\n");
	} else if (n > sizeof(PREFIX) && memcmp(t, PREFIX "/", sizeof(PREFIX)) == 0) {
		if (!path_name(t, n, name))
			reply_error(r, 400, "invalid sandbox name (1 to 64 of A-Z a-z 0-9 _ - .)",
				    "name", NULL);
		else if (strcmp(m, "PUT") == 0)
			r->too_big ? reply_error(r, 413, "body too large", NULL, NULL)
				   : put_one(r, name);
		else if (strcmp(m, "GET") == 0)
			get_one(r, name);
		else if (strcmp(m, "DELETE") == 0)
			delete_one(r, name);
		else
			reply_error(r, 405, "only PUT, GET and DELETE", NULL,
				    "Allow: PUT, GET, DELETE\r\n");
	} else {
		reply_error(r, 404, "not found (try /v1/sandboxes or /v1/health)", NULL, NULL);
	}
}

/* ---- the connection ---- */

static void on_body(void *ctx, const char *p, size_t n)
{
	struct creq *r = ctx;

	if (r->too_big || r->blen + n > CONTROL_BODY_MAX) {
		r->too_big = true;
		return;
	}
	if (!r->body)
		r->body = xmalloc(CONTROL_BODY_MAX);
	memcpy(r->body + r->blen, p, n);
	r->blen += n;
}

/* At the head: a body announced over the cap gets 413 at once; a client
 * waiting for 100 Continue gets it. false when answered. */
static bool on_head(struct creq *r)
{
	const char *v;
	size_t vn;
	unsigned long long cl = 0;

	if (!authorized(r)) {
		route(r); /* answers 401 */
		return false;
	}
	if (httpmsg_header_find(r->msg, "content-length", &v, &vn) == 1) {
		for (size_t i = 0; i < vn && cl <= CONTROL_BODY_MAX; i++)
			cl = cl * 10 + (unsigned)(v[i] - '0'); /* llhttp checked the digits */
		if (cl > CONTROL_BODY_MAX) {
			reply_error(r, 413, "body too large", NULL, NULL);
			return false;
		}
	}
	if (httpmsg_header_find(r->msg, "expect", &v, &vn) == 1 && vn == 12 &&
	    strncasecmp(v, "100-continue", 12) == 0)
		evbuffer_add_printf(bufferevent_get_output(r->bev), "HTTP/1.1 100 Continue\r\n\r\n");
	httpmsg_resume(r->msg);
	return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct creq *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (r->answered) { /* the rest of a refused body: read and dropped */
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (!r->answered && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t used = 0;
		enum httpmsg_status st;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		st = httpmsg_feed(r->msg, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (st == HTTPMSG_NEED_MORE)
			continue;
		if (st == HTTPMSG_UPGRADE) {
			reply_error(r, 400, "no upgrade or CONNECT here", NULL, NULL);
			break;
		}
		if (st == HTTPMSG_ERROR) {
			int code = httpmsg_error_status(r->msg);
			reply_error(r, code, httpmsg_error(r->msg), NULL, NULL);
		} else if (st == HTTPMSG_HEAD && httpmsg_has_body(r->msg)) {
			if (!on_head(r))
				break;
		} else { /* a head without a body, or the whole request */
			route(r);
		}
	}
}

/* Answered and written: our side is shut down, and the connection is freed
 * when the client closes its side (or at the timeout). Until then what it
 * still sends is read and dropped, so a client answered early (413 at the
 * head) reads the answer instead of a reset. */
static void on_write(struct bufferevent *bev, void *arg)
{
	struct creq *r = arg;

	if (r->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	creq_free(arg); /* EOF, error or timeout */
}

static long peer_uid(evutil_socket_t fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 || ss.ss_family != AF_UNIX)
		return -1; /* TCP: no uid to know */
	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 ? (long)cr.uid : -1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct control *c = arg;
	struct timeval tv = { TIMEOUT_S, 0 };
	struct creq *r;

	(void)l;
	(void)sa;
	(void)len;
	if (c->nreqs >= MAX_CONNS) {
		evutil_closesocket(fd);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->uid = peer_uid(fd);
	r->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!r->bev) {
		evutil_closesocket(fd);
		free(r);
		return;
	}
	r->msg = httpmsg_new(HTTPMSG_REQUEST, HEAD_CAP);
	httpmsg_set_body_sink(r->msg, on_body, r);
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	c->nreqs++;
	bufferevent_setcb(r->bev, on_read, on_write, on_event, r);
	bufferevent_set_timeouts(r->bev, &tv, &tv);
	bufferevent_enable(r->bev, EV_READ | EV_WRITE);
	/* the socket is 0600: only its owner (root) connects; anyone else
	 * who got hold of a descriptor is refused all the same */
	if (c->path && r->uid != 0 && r->uid != (long)geteuid()) {
		log_change(r, "control-refused", "", 403, "peer is not root", -1, false);
		reply_error(r, 403, "only root may use the control socket", NULL, NULL);
	}
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	fprintf(stderr, "egressd: control accept: %s\n", strerror(errno));
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* ---- setup ---- */

/* Reads a whole small text file; NULL if it cannot. */
static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;

	if (!f)
		return NULL;
	buf = xmalloc(65536);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A unix socket at path, mode 0600; a stale socket file there (nobody
 * listening) is replaced, anything else is an error. */
static evutil_socket_t bind_unix(const char *path, char *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	evutil_socket_t fd = -1;
	struct stat st;
	mode_t old;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, CONTROL_ERRLEN, "--control unix:%.100s: path too long", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		evutil_socket_t probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0;
		if (probe >= 0)
			close(probe);
		if (!S_ISSOCK(st.st_mode) || live) {
			snprintf(err, CONTROL_ERRLEN, "--control unix:%.100s: %s", path,
				 live ? "another process is listening there"
				      : "exists and is not a socket");
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	old = umask(0177); /* no window in which the socket is open to others */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		umask(old);
		goto fail;
	}
	umask(old);
	if (chmod(path, 0600) != 0 || listen(fd, 64) != 0)
		goto fail;
	return fd;
fail:
	snprintf(err, CONTROL_ERRLEN, "--control unix:%.100s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* "IP:PORT" (port 0: the kernel picks one): a TCP listener, only on
 * loopback unless a token is required. */
static evutil_socket_t bind_tcp(const char *spec, bool token, struct ipaddr *a, uint16_t *port,
				char *err)
{
	struct sockaddr_storage ss;
	struct target t;
	char perr[PATTERN_ERRLEN];
	size_t n = strlen(spec);
	bool any = n > 2 && strcmp(spec + n - 2, ":0") == 0;
	socklen_t len;
	int one = 1;
	evutil_socket_t fd;

	if (!target_parse_authority(spec, any ? n - 2 : n, any ? 1 : 0, &t, perr) || !t.is_ip) {
		snprintf(err, CONTROL_ERRLEN, "invalid --control \"%.100s\" (want unix:PATH or "
					      "IP:PORT)", spec);
		return -1;
	}
	if (!token) {
		snprintf(err, CONTROL_ERRLEN, "--control %.100s: a TCP control API needs "
					      "--control-token-file (only the unix socket is guarded "
					      "by its file mode)", spec);
		return -1;
	}
	*a = t.ip;
	len = addr_to_sockaddr(a, any ? 0 : t.port, (struct sockaddr *)&ss);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0)
		goto fail;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    !addr_from_sockaddr((struct sockaddr *)&ss, a, port))
		goto fail;
	return fd;
fail:
	snprintf(err, CONTROL_ERRLEN, "--control %.100s: %s", spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* The token file: its first line, at least 16 bytes; kept as a digest. */
static bool load_token(struct control *c, const char *path, char *err)
{
	char *text = read_text(path);
	size_t n = text ? strcspn(text, "\r\n") : 0;
	unsigned int dl = 0;
	bool ok = false;

	if (!text)
		snprintf(err, CONTROL_ERRLEN, "--control-token-file %.100s: %s", path, strerror(errno));
	else if (n < 16)
		snprintf(err, CONTROL_ERRLEN, "--control-token-file %.100s: the token must be at "
					      "least 16 characters", path);
	else
		ok = EVP_Digest(text, n, c->token, &dl, EVP_sha256(), NULL) && dl == 32;
	if (text) {
		OPENSSL_cleanse(text, 65536);
		free(text);
	}
	c->has_token = ok;
	return ok;
}

static void count_sandboxes(void *ctx, size_t *nfile, size_t *napi)
{
	gentable_counts(server_gentable(ctx), nfile, napi);
}

struct control *control_new(struct server *s, const char *spec, const char *token_file,
			    const char *state_dir, control_amend_fn amend, void *amend_ctx,
			    char *err)
{
	struct control *c = xcalloc(1, sizeof(*c));
	char path[4200], e[SECRETS_ERRLEN];
	bool unix_sock = strncmp(spec, "unix:", 5) == 0;
	struct ipaddr a;
	uint16_t port = 0;
	evutil_socket_t fd;

	c->srv = s;
	c->wake_fd = -1;
	c->amend = amend;
	c->amend_ctx = amend_ctx;
	if (unix_sock && !spec[5]) {
		snprintf(err, CONTROL_ERRLEN, "invalid --control \"%.100s\" (want unix:PATH or "
					      "IP:PORT)", spec);
		goto fail;
	}
	if (token_file && !load_token(c, token_file, err))
		goto fail;
	snprintf(path, sizeof(path), "%s/ca.crt", state_dir);
	c->ca_pem = read_text(path);
	snprintf(c->bundle, sizeof(c->bundle), "%s/ca-bundle.pem", state_dir);
	snprintf(c->truststore, sizeof(c->truststore), "%s/ca-truststore.p12", state_dir);
	if (!c->ca_pem || placeholder_key_load(state_dir, c->phkey, e) < 0) {
		snprintf(err, CONTROL_ERRLEN, "--control: cannot read the CA or placeholder key "
					      "in %.100s", state_dir);
		goto fail;
	}
	fd = unix_sock ? bind_unix(spec + 5, err) : bind_tcp(spec, c->has_token, &a, &port, err);
	if (fd < 0)
		goto fail;
	if (unix_sock)
		c->path = xstrdup(spec + 5);
	else
		server_set_control_addr(s, &a, port);
	c->base = event_base_new();
	c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->stop = c->base && c->wake_fd >= 0
			  ? event_new(c->base, c->wake_fd, EV_READ, on_stop, c->base)
			  : NULL;
	c->ls = c->base ? evconnlistener_new(c->base, on_accept, c, LEV_OPT_CLOSE_ON_FREE |
					     LEV_OPT_CLOSE_ON_EXEC, -1, fd)
			: NULL;
	if (!c->ls)
		close(fd);
	if (!c->stop || !c->ls || event_add(c->stop, NULL) != 0) {
		snprintf(err, CONTROL_ERRLEN, "cannot create the control listener");
		goto fail;
	}
	evconnlistener_set_error_cb(c->ls, on_accept_error);
	metrics_count_sandboxes(server_metrics(s), count_sandboxes, s);
	return c;
fail:
	control_free(c);
	return NULL;
}

static void *control_main(void *arg)
{
	struct control *c = arg;

	event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

void control_start(struct control *c)
{
	if (c->running)
		return;
	if (pthread_create(&c->thread, NULL, control_main, c) != 0) {
		fprintf(stderr, "egressd: cannot start the control thread: %s\n", strerror(errno));
		return;
	}
	c->running = true;
}

void control_stop(struct control *c)
{
	if (!c || !c->running)
		return;
	if (eventfd_write(c->wake_fd, 1) != 0)
		abort(); /* cannot fail on a valid eventfd below its maximum */
	pthread_join(c->thread, NULL);
	c->running = false;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	control_stop(c);
	while (c->reqs)
		creq_free(c->reqs);
	if (c->ls)
		evconnlistener_free(c->ls);
	if (c->path)
		unlink(c->path);
	if (c->stop)
		event_free(c->stop);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	if (c->base)
		event_base_free(c->base);
	xwipe(c->phkey, sizeof(c->phkey));
	xwipe(c->token, sizeof(c->token));
	free(c->path);
	free(c->ca_pem);
	free(c);
}
