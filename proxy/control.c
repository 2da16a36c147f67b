/* control.c -- the control API's transport: a unix socket (0600) or a TCP
 * port with a bearer token, one request per connection parsed by httpmsg
 * (strict llhttp), bodies capped and wiped, the peer's uid from SO_PEERCRED
 * in every audit event, answers as JSON; the endpoints are controlapi.c's */
#include "control_int.h"

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
#include "generation.h"
#include "httpmsg.h"
#include "metrics.h"
#include "pattern.h"
#include "secrets.h"
#include "server.h"

#define HEAD_CAP 16384
#define MAX_CONNS 64
#define TIMEOUT_S 10

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
		xwipe(r->body, r->bcap);
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
void control_reply(struct creq *r, int code, json_t *v, const char *extra)
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
void control_reply_error(struct creq *r, int code, const char *msg, const char *where,
			const char *extra)
{
	json_t *v = json_pack("{s:s}", "error", msg);

	if (where && *where)
		json_object_set_new(v, "path", json_string(where));
	control_reply(r, code, v, extra);
}

/* An audit event for a change (or a refused one) by the peer. */
void control_log_change(const struct creq *r, const char *event, const char *name, int code,
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
	if (!authorized(r)) {
		control_log_change(r, "control-refused", "", 401, "no or wrong bearer token", -1,
				   false);
		control_reply_error(r, 401, "a bearer token is required (Authorization: Bearer "
					    "TOKEN)", NULL, "WWW-Authenticate: Bearer\r\n");
		return;
	}
	controlapi_route(r);
}

/* ---- the connection ---- */

static void on_body(void *ctx, const char *p, size_t n)
{
	struct creq *r = ctx;

	if (r->too_big || r->blen + n > CONTROL_BODY_MAX) {
		r->too_big = true;
		return;
	}
	if (r->blen + n > r->bcap) { /* grow by copying: no unwiped copy is left behind */
		size_t cap = r->bcap ? r->bcap : 4096;
		char *nb;
		while (cap < r->blen + n)
			cap *= 2;
		if (cap > CONTROL_BODY_MAX)
			cap = CONTROL_BODY_MAX;
		nb = xmalloc(cap);
		if (r->body) {
			memcpy(nb, r->body, r->blen);
			xwipe(r->body, r->bcap);
			free(r->body);
		}
		r->body = nb;
		r->bcap = cap;
	}
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
			control_reply_error(r, 413, "body too large", NULL, NULL);
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
			control_reply_error(r, 400, "no upgrade or CONNECT here", NULL, NULL);
			break;
		}
		if (st == HTTPMSG_ERROR) {
			int code = httpmsg_error_status(r->msg);
			control_reply_error(r, code, httpmsg_error(r->msg), NULL, NULL);
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
		control_log_change(r, "control-refused", "", 403, "peer is not root", -1, false);
		control_reply_error(r, 403, "only root may use the control socket", NULL, NULL);
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
