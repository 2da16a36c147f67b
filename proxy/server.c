/* server.c -- listeners, worker threads (one event loop + resolver each, all
 * accepting on one shared listening socket), signals, shutdown; the sandboxes and
 * their policies are generation.c's */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>

#include "alloc.h"
#include "audit.h"
#include "ca.h"
#include "dnsresp.h"
#include "elapsed.h"
#include "fakeip.h"
#include "generation.h"
#include "metrics.h"
#include "mint.h"
#include "pipepool.h"
#include "secrets.h"
#include "tls.h"
#include "closeq.h"
#include "conn.h"
#include "explicit.h"
#include "pattern.h"
#include "policy.h"
#include "sandboxes.h"
#include "version.h"

#define MAX_LOCAL_ADDRS 64
#define MAX_THREADS 64

struct wstate {
	struct worker w;
	struct evconnlistener *ls[SERVER_MAX_LISTENERS];
	struct event *resume; /* re-enables listeners after EMFILE */
	struct event *stop;   /* on wake_fd: drain, then stop */
	int wake_fd;          /* eventfd the signal thread writes to (-1: none) */
	struct event *drain;  /* periodic check while draining */
	struct timeval drain_start;
	pthread_t thread;
};

struct server {
	struct server_opts o;
	struct gentable *gens;        /* the sandboxes and their current generations */
	unsigned char phkey[PLACEHOLDER_KEYLEN]; /* placeholder key (interception only) */
	struct listen_addr la[SERVER_MAX_LISTENERS];
	int nla;
	struct ipaddr local[MAX_LOCAL_ADDRS]; /* this host's interface addresses */
	int nlocal;
	struct wstate *ws;
	int nthreads;
	atomic_ullong next_id;
	atomic_int signals;           /* SIGTERM/SIGINT received */
	struct event_base *main_base; /* waits for signals */
	struct ca *ca;                /* interception: NULL when not needed */
	struct minter *minter;
	struct tls *tls;
	struct fakeip *fake;          /* jail resolver's synthetic addresses, or NULL */
	struct dnsresp *dns;          /* the jail's DNS responder (on worker 0), or NULL */
	uint16_t dns_port;
	struct metrics *metrics;      /* counters of every worker; scrape listener if --metrics */
	struct listen_addr mla;       /* the metrics listener (port 0: none) */
	struct listen_addr cla;       /* the control API's TCP listener (port 0: none) */
};

static bool parse_ipport(const char *spec, struct ipaddr *a, uint16_t *port);

struct fakeip *server_fakeip(struct server *s)
{
	return s->fake;
}

uint16_t server_listen_port(const struct server *s, int i)
{
	return i >= 0 && i < s->nla ? s->la[i].port : 0;
}

uint16_t server_dns_port(const struct server *s)
{
	return s->dns_port;
}

uint16_t server_metrics_port(const struct server *s)
{
	return s->mla.port;
}

/* The jail resolver's question: could this name be allowed on some port? */
static bool dns_allow(void *ctx, const char *name)
{
	struct server *s = ctx;
	struct policy *p = server_policy(s);
	bool ok = policy_could_allow_name(p, name);

	policy_unref(p);
	return ok;
}

static int setup_dns_responder(struct server *s, char *err)
{
	struct ipaddr a;
	uint16_t port;

	if (!s->o.dns_listen)
		return 0;
	if (!parse_ipport(s->o.dns_listen, &a, &port)) {
		snprintf(err, 256, "invalid DNS listen address \"%s\"", s->o.dns_listen);
		return -1;
	}
	s->fake = fakeip_new(65536);
	for (int i = 0; i < s->nthreads; i++)
		s->ws[i].w.fakeip = s->fake;
	s->dns = dnsresp_new(s->ws[0].w.base, &a, port, s->fake, dns_allow, s, &s->dns_port, err);
	return s->dns ? 0 : -1;
}

struct tls *server_tls(struct server *s)
{
	return s->tls;
}

struct gen *server_acquire(struct server *s, int li, const struct ipaddr *client)
{
	return gentable_acquire(s->gens, li >= 0 && li < s->nla ? &s->la[li] : NULL, client);
}

const struct secretset *server_secrets(struct server *s)
{
	return gentable_secrets(s->gens);
}

int server_reload(struct server *s, struct sbtable *t, char *err)
{
	return gentable_reload(s->gens, t, s->la, s->nla, err);
}

/* Loads the CA, leaf minter, TLS contexts and secret values when the policy
 * has secrets, intercept patterns or request rules. */
static int setup_interception(struct server *s, const struct sbtable *t, char *err)
{
	char e[SECRETS_ERRLEN];
	int created = 0;

	if (sbx_needs_interception(t)) {
		s->ca = ca_load_or_create(s->o.state_dir, CA_KEY_EC_P256, &created, err);
		if (!s->ca)
			return -1;
		if (created)
			audit_msg(AUDIT_INFO, "ca", "created a new CA in %s", s->o.state_dir);
		s->minter = minter_new(s->ca, err);
		if (!s->minter)
			return -1;
		s->tls = tls_new(s->ca, s->minter, s->o.upstream_ca, err);
		if (!s->tls)
			return -1;
		if (placeholder_key_load(s->o.state_dir, s->phkey, e) < 0) {
			snprintf(err, 256, "%.250s", e);
			return -1;
		}
	}
	return 0;
}

struct policy *server_policy(struct server *s)
{
	return gentable_policy(s->gens);
}

const struct server_opts *server_opts(const struct server *s)
{
	return &s->o;
}

unsigned long long server_next_id(struct server *s)
{
	return atomic_fetch_add(&s->next_id, 1) + 1;
}

static bool is_unspecified(const struct ipaddr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->b, zero, a->family == 4 ? 4 : 16) == 0;
}

static bool is_local(const struct server *s, const struct ipaddr *a)
{
	if (is_unspecified(a) || (a->family == 4 && a->b[0] == 127))
		return true;
	for (int i = 0; i < s->nlocal; i++)
		if (addr_equal(&s->local[i], a))
			return true;
	return false;
}

/* Does a:port reach listener l? */
static bool reaches(const struct server *s, const struct listen_addr *l, const struct ipaddr *a,
		    uint16_t port)
{
	if (l->port == 0 || l->port != port)
		return false;
	if (addr_equal(&l->a, a) || is_unspecified(a))
		return true;
	return is_unspecified(&l->a) && is_local(s, a);
}

bool server_is_self(const struct server *s, const struct ipaddr *a, uint16_t port)
{
	for (int i = 0; i < s->nla; i++)
		if (reaches(s, &s->la[i], a, port))
			return true;
	return reaches(s, &s->mla, a, port) || reaches(s, &s->cla, a, port);
}

static void load_local_addrs(struct server *s)
{
	struct ifaddrs *ifs, *i;

	if (getifaddrs(&ifs) != 0)
		return;
	for (i = ifs; i && s->nlocal < MAX_LOCAL_ADDRS; i = i->ifa_next)
		if (i->ifa_addr && addr_from_sockaddr(i->ifa_addr, &s->local[s->nlocal], NULL))
			s->nlocal++;
	freeifaddrs(ifs);
}

/* Binds one listening socket; port 0 is replaced by the chosen port. */
static evutil_socket_t bind_one(struct listen_addr *l, char *err)
{
	struct sockaddr_storage ss;
	socklen_t len = addr_to_sockaddr(&l->a, l->port, (struct sockaddr *)&ss);
	int one = 1;
	evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->a.family == 6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4096) != 0)
		goto fail;
	len = sizeof(ss);
	if (l->port == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		addr_from_sockaddr((struct sockaddr *)&ss, &l->a, &l->port);
	return fd;
fail:
	snprintf(err, 256, "cannot listen: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void on_stop(evutil_socket_t fd, short what, void *arg);

/* Which of the worker's listeners l is (the sandbox may depend on it). */
static int listener_index(const struct worker *w, const struct evconnlistener *l)
{
	const struct wstate *ws = (const struct wstate *)w;

	for (int i = 0; i < SERVER_MAX_LISTENERS; i++)
		if (ws->ls[i] == l)
			return i;
	return -1;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int len, void *arg)
{
	(void)len;
	explicit_accept(arg, fd, sa, listener_index(arg, l));
}

static void on_accept_transparent(struct evconnlistener *l, evutil_socket_t fd,
				  struct sockaddr *sa, int len, void *arg)
{
	(void)len;
	transparent_accept(arg, fd, sa, listener_index(arg, l));
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct wstate *ws = arg;
	(void)fd;
	(void)what;
	for (int i = 0; i < SERVER_MAX_LISTENERS && ws->ls[i]; i++)
		evconnlistener_enable(ws->ls[i]);
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS...): pause accepting for 100 ms
 * instead of spinning on a listener that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct wstate *ws = arg;
	struct timeval tv = { 0, 100000 };
	int e = errno;
	char buf[128];

	(void)l;
	audit_msg(AUDIT_ERROR, "error", "accept: %s; pausing accepts for 100 ms",
		  strerror_r(e, buf, sizeof(buf)));
	for (int i = 0; i < SERVER_MAX_LISTENERS && ws->ls[i]; i++)
		evconnlistener_disable(ws->ls[i]);
	event_add(ws->resume, &tv);
}

static int setup_dns(struct server *s, struct worker *w, char *err)
{
	int flags = s->o.dns ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS;

	w->dns = evdns_base_new(w->base, flags | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!w->dns) {
		snprintf(err, 256, "cannot initialise the resolver (check /etc/resolv.conf)");
		return -1;
	}
	if (s->o.dns) {
		evdns_base_resolv_conf_parse(w->dns, DNS_OPTION_SEARCH | DNS_OPTION_MISC |
					     DNS_OPTION_HOSTSFILE, "/etc/resolv.conf");
		evdns_base_clear_nameservers_and_suspend(w->dns);
		if (evdns_base_nameserver_ip_add(w->dns, s->o.dns) != 0) {
			snprintf(err, 256, "invalid --dns address \"%s\"", s->o.dns);
			return -1;
		}
		evdns_base_resume(w->dns);
	}
	evdns_base_set_option(w->dns, "timeout:", "3");
	evdns_base_set_option(w->dns, "attempts:", "2");
	return 0;
}

/* What the connections ask the server (worker.h). */
static const struct worker_host worker_host = {
	.acquire = server_acquire,
	.next_id = server_next_id,
	.is_self = server_is_self,
};

static int setup_worker(struct server *s, struct wstate *ws, evutil_socket_t *fds, char *err)
{
	struct event_config *cfg = event_config_new();

	ws->w.srv = s;
	ws->w.host = &worker_host;
	ws->w.opts = &s->o;
	ws->w.tls = s->tls;
	ws->w.mx = metrics_worker(s->metrics, (int)(ws - s->ws));
	/* each base is used by its own thread only (the signal thread wakes the
	 * workers through wake_fd): no locking */
	if (cfg && event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK) == 0 &&
	    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) == 0)
		ws->w.base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!ws->w.base) {
		snprintf(err, 256, "cannot create an event loop");
		return -1;
	}
	if (setup_dns(s, &ws->w, err) < 0)
		return -1;
	ws->resume = evtimer_new(ws->w.base, on_resume, ws);
	ws->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ws->wake_fd < 0) {
		snprintf(err, 256, "eventfd: %s", strerror(errno));
		return -1;
	}
	ws->stop = event_new(ws->w.base, ws->wake_fd, EV_READ | EV_PERSIST, on_stop, ws);
	if (!ws->stop || event_add(ws->stop, NULL) != 0) {
		snprintf(err, 256, "cannot create an event");
		return -1;
	}
	if (s->minter)
		ws->w.certs = certcache_new(s->minter, 1024);
	ws->w.pipes = pipepool_new(4);
	ws->w.stage = evbuffer_new();
	if (!ws->w.stage) {
		snprintf(err, 256, "cannot create a buffer");
		return -1;
	}
	ws->w.closing = conn_closeq_new(ws->w.base);
	if (!ws->w.closing) {
		snprintf(err, 256, "cannot create an event");
		return -1;
	}
	for (int i = 0; i < s->nla; i++) {
		ws->ls[i] = evconnlistener_new(ws->w.base,
					       s->la[i].transparent ? on_accept_transparent : on_accept, &ws->w,
					       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fds[i]);
		if (!ws->ls[i]) {
			snprintf(err, 256, "cannot create a listener");
			return -1;
		}
		evconnlistener_set_error_cb(ws->ls[i], on_accept_error);
		fds[i] = -1;
	}
	return 0;
}

/* "IP:PORT" (IPv6 bracketed); port 0 asks the kernel for a free one. */
static bool parse_ipport(const char *spec, struct ipaddr *a, uint16_t *port)
{
	struct target t;
	char perr[PATTERN_ERRLEN];
	size_t n = strlen(spec);
	bool any = n > 2 && strcmp(spec + n - 2, ":0") == 0;

	if (!target_parse_authority(spec, any ? n - 2 : n, any ? 1 : 0, &t, perr) || !t.is_ip)
		return false;
	*a = t.ip;
	*port = any ? 0 : t.port;
	return true;
}

static int parse_listen(const char *spec, struct listen_addr *l, char *err)
{
	if (!parse_ipport(spec, &l->a, &l->port)) {
		snprintf(err, 256, "invalid listen address \"%s\" (want IP:PORT, e.g. 127.0.0.1:3128)",
			 spec);
		return -1;
	}
	return 0;
}

/* One listening socket per address, shared by every worker (each gets a
 * dup): no SO_REUSEPORT, so a second egressd on the same port fails loudly
 * instead of silently taking half the connections. */
static int bind_all(struct server *s, char *err)
{
	evutil_socket_t base_fds[SERVER_MAX_LISTENERS], fds[SERVER_MAX_LISTENERS];
	int rc = -1, nbound = 0;

	for (int i = 0; i < s->nla; i++, nbound++) {
		base_fds[i] = bind_one(&s->la[i], err);
		if (base_fds[i] < 0)
			goto out;
	}
	for (int t = 0; t < s->nthreads; t++) {
		for (int i = 0; i < s->nla; i++) {
			fds[i] = fcntl(base_fds[i], F_DUPFD_CLOEXEC, 0);
			if (fds[i] < 0) {
				snprintf(err, 256, "dup: %s", strerror(errno));
				while (i-- > 0)
					close(fds[i]);
				goto out;
			}
		}
		if (setup_worker(s, &s->ws[t], fds, err) < 0)
			goto out;
		s->ws[t].w.index = (unsigned)t;
	}
	rc = 0;
out:
	for (int i = 0; i < nbound; i++)
		close(base_fds[i]);
	return rc;
}

/* --metrics ADDR:PORT: bound now, so a bad address or a port in use stops
 * egressd at startup like a bad --listen. */
static int setup_metrics(struct server *s, char *err)
{
	char e[METRICS_ERRLEN];

	if (!s->o.metrics)
		return 0;
	if (!parse_ipport(s->o.metrics, &s->mla.a, &s->mla.port)) {
		snprintf(err, 256, "invalid --metrics address \"%s\" (want IP:PORT, e.g. 127.0.0.1:9090)",
			 s->o.metrics);
		return -1;
	}
	if (metrics_listen(s->metrics, &s->mla.a, s->mla.port, &s->mla.port, e) < 0) {
		s->mla.port = 0;
		snprintf(err, 256, "--metrics %.60s: %.180s", s->o.metrics, e);
		return -1;
	}
	return 0;
}

struct server *server_new(const struct server_opts *o, struct sbtable *t, char *err)
{
	struct server *s = xcalloc(1, sizeof(*s));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	s->o = *o;
	s->nthreads = o->threads > 0 ? o->threads : (cores > 0 ? (int)cores : 1);
	if (s->nthreads > MAX_THREADS)
		s->nthreads = MAX_THREADS;
	s->ws = xcalloc((size_t)s->nthreads, sizeof(*s->ws));
	s->metrics = metrics_new(s->nthreads, EGRESSD_VERSION);
	for (int i = 0; i < s->nthreads; i++)
		s->ws[i].wake_fd = -1;
	load_local_addrs(s);
	if (setup_interception(s, t, err) < 0)
		goto fail;
	s->gens = gentable_new(s->metrics, s->tls ? s->phkey : NULL);
	for (int i = 0; i < o->nlisten; i++)
		if (parse_listen(o->listen[i], &s->la[s->nla++], err) < 0)
			goto fail;
	for (int i = 0; i < o->ntransparent && s->nla < SERVER_MAX_LISTENERS; i++) {
		s->la[s->nla].transparent = true;
		if (parse_listen(o->transparent[i], &s->la[s->nla++], err) < 0)
			goto fail;
	}
	rc = gentable_install(s->gens, t, s->la, s->nla, err);
	t = NULL; /* the table's now, even on failure */
	if (rc < 0 || setup_metrics(s, err) < 0 || bind_all(s, err) < 0 ||
	    setup_dns_responder(s, err) < 0)
		goto fail;
	return s;
fail:
	sbx_free(t);
	server_free(s);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct wstate *ws = arg;
	event_base_loop(ws->w.base, EVLOOP_NO_EXIT_ON_EMPTY);
	conn_close_all(&ws->w);
	return NULL;
}

/* While draining: stop when the worker has no connection left, or when the
 * drain timeout (or a second signal) says so. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct wstate *ws = arg;
	struct server *s = ws->w.srv;
	long ms;

	(void)fd;
	(void)what;
	ms = elapsed_ms(&ws->drain_start);
	conn_close_idle(&ws->w);
	if (!ws->w.conns || atomic_load(&s->signals) > 1 || ms >= 1000L * s->o.drain_timeout_s)
		event_base_loopbreak(ws->w.base);
}

/* In the worker's own thread: stop accepting, close idle connections, and
 * let the others finish. An event (not loopbreak from the signal thread)
 * so a signal that comes before the loop runs is not lost. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct wstate *ws = arg;
	struct timeval tick = { 0, 50000 };
	uint64_t n;
	long closed;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		fprintf(stderr, "egressd: eventfd read: %s\n", strerror(errno));
	closed = conn_close_revoked(&ws->w); /* a sandbox deleted through the control API */
	if (closed > 0)
		audit_say(AUDIT_INFO, "closed %ld connection(s) of a deleted sandbox", closed);
	if (!atomic_load(&ws->w.srv->signals))
		return; /* woken only for that */
	if (!ws->drain_start.tv_sec) {
		/* close (not just disable) the listeners: a listening socket would
		 * keep completing handshakes into its backlog */
		for (int i = 0; i < SERVER_MAX_LISTENERS && ws->ls[i]; i++) {
			evconnlistener_free(ws->ls[i]);
			ws->ls[i] = NULL;
		}
		event_del(ws->resume);
		evutil_gettimeofday(&ws->drain_start, NULL);
		ws->drain = event_new(ws->w.base, -1, EV_PERSIST, on_drain, ws);
		event_add(ws->drain, &tick);
	}
	on_drain(-1, 0, ws);
}

/* From any thread: runs on_stop in worker ws's own thread. */
static void wake(struct wstate *ws)
{
	uint64_t one = 1;

	if (ws->wake_fd >= 0 && write(ws->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fprintf(stderr, "egressd: eventfd write: %s\n", strerror(errno));
}

/* ---- sandboxes created at runtime (control.c; generation.h says how) ---- */

int server_sandbox_put(struct server *s, struct sbtable *t, const char *info, bool *created,
		       char *err)
{
	return gentable_put(s->gens, t, s->la, s->nla, info, created, err);
}

int server_sandbox_delete(struct server *s, const char *name, long *open)
{
	int rc = gentable_delete(s->gens, name, open);

	for (int i = 0; rc == 0 && i < s->nthreads; i++)
		wake(&s->ws[i]); /* each worker closes the sandbox's connections */
	return rc;
}

bool server_listen_addr(const struct server *s, int i, struct ipaddr *a, uint16_t *port)
{
	if (i < 0 || i >= s->nla)
		return false;
	*a = s->la[i].a;
	*port = s->la[i].port;
	return true;
}

void server_set_control_addr(struct server *s, const struct ipaddr *a, uint16_t port)
{
	s->cla.a = *a;
	s->cla.port = port;
}

struct gentable *server_gentable(struct server *s)
{
	return s->gens;
}

struct metrics *server_metrics(struct server *s)
{
	return s->metrics;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* SIGHUP: the log file reopened (logrotate renamed it), then a new policy,
 * or the old one kept with the reason logged. */
static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	char err[256] = "no reload source", ebuf[128];
	struct sbtable *t;
	int rc;
	bool okay;
	struct jsonw w;

	(void)sig;
	(void)what;
	if (audit_reopen() < 0)
		audit_msg(AUDIT_ERROR, "error", "SIGHUP: cannot reopen the log, still writing the old file: %s",
			  strerror_r(errno, ebuf, sizeof(ebuf)));
	t = s->o.reload ? s->o.reload(s->o.reload_ctx, err) : NULL;
	rc = t ? server_reload(s, t, err) : -1;
	okay = rc == 0;
	metrics_reload(s->metrics, okay);
	if (okay)
		audit_say(AUDIT_INFO, "SIGHUP: policy reloaded");
	else if (rc == 1)
		audit_say(AUDIT_ERROR, "SIGHUP: reloaded, except: %s", err);
	else
		audit_say(AUDIT_ERROR, "SIGHUP: reload refused, keeping the current policy: %s", err);
	if (audit_begin(&w, okay ? AUDIT_INFO : AUDIT_ERROR, "reload", 0)) {
		jsonw_bool(&w, "ok", okay);
		if (!okay)
			jsonw_str(&w, "error", err);
		audit_emit(&w);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	int n = atomic_fetch_add(&s->signals, 1) + 1;

	(void)what;
	if (n == 1)
		audit_msg(AUDIT_INFO, "drain", "signal %d, draining (up to %u s; again to stop now)",
			  (int)sig, s->o.drain_timeout_s);
	else
		audit_msg(AUDIT_INFO, "drain", "signal %d, stopping now", (int)sig);
	for (int i = 0; i < s->nthreads; i++)
		wake(&s->ws[i]);
}

/* "start" (version, pid, threads) and one "listen" line per listener. */
static void log_start(const struct server *s)
{
	struct jsonw w;
	char buf[ADDR_STRLEN], at[ADDR_STRLEN + 8];

	if (audit_begin(&w, AUDIT_INFO, "start", 0)) {
		jsonw_str(&w, "version", EGRESSD_VERSION);
		jsonw_int(&w, "pid", (long long)getpid());
		jsonw_int(&w, "threads", s->nthreads);
		jsonw_str(&w, "msg", "started");
		audit_emit(&w);
	}
	for (int i = 0; i < s->nla; i++) {
		const struct listen_addr *l = &s->la[i];

		snprintf(at, sizeof(at), l->a.family == 6 ? "[%s]:%u" : "%s:%u",
			 addr_format(&l->a, buf), l->port);
		audit_say(AUDIT_INFO, "listening%s on %s (%d threads)",
			  l->transparent ? " (transparent)" : "", at, s->nthreads);
		if (!audit_begin(&w, AUDIT_INFO, "listen", 0))
			continue;
		jsonw_str(&w, "addr", at);
		jsonw_str(&w, "mode", l->transparent ? "transparent" : "explicit");
		audit_emit(&w);
	}
	if (s->mla.port) {
		snprintf(at, sizeof(at), s->mla.a.family == 6 ? "[%s]:%u" : "%s:%u",
			 addr_format(&s->mla.a, buf), s->mla.port);
		audit_say(AUDIT_INFO, "metrics on http://%s/metrics", at);
		if (audit_begin(&w, AUDIT_INFO, "listen", 0)) {
			jsonw_str(&w, "addr", at);
			jsonw_str(&w, "mode", "metrics");
			audit_emit(&w);
		}
	}
}

int server_run(struct server *s)
{
	struct event_base *main_base = event_base_new();
	struct event *sigterm, *sigint, *sighup, *tick;
	struct timeval tv = { 0, 100000 };

	if (!main_base)
		return 1;
	s->main_base = main_base;
	signal(SIGPIPE, SIG_IGN);
	sigterm = evsignal_new(main_base, SIGTERM, on_signal, s);
	sigint = evsignal_new(main_base, SIGINT, on_signal, s);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	sighup = evsignal_new(main_base, SIGHUP, on_sighup, s);
	event_add(sighup, NULL);
	log_start(s);
	server_start(s);
	/* the main thread only forwards signals; it ends when the workers have
	 * (the tick bounds each wait so a finished drain is noticed) */
	tick = event_new(main_base, -1, EV_PERSIST, on_tick, NULL);
	event_add(tick, &tv);
	for (int i = 0; i < s->nthreads; i++) {
		while (pthread_tryjoin_np(s->ws[i].thread, NULL) != 0)
			event_base_loop(main_base, EVLOOP_ONCE);
	}
	metrics_stop(s->metrics); /* scrapes are answered until the workers are done */
	event_free(tick);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_base_free(main_base);
	audit_msg(AUDIT_INFO, "stop", "stopped");
	return 0;
}

void server_start(struct server *s)
{
	signal(SIGPIPE, SIG_IGN);
	metrics_start(s->metrics);
	for (int i = 0; i < s->nthreads; i++)
		pthread_create(&s->ws[i].thread, NULL, worker_main, &s->ws[i]);
}

void server_stop(struct server *s)
{
	atomic_store(&s->signals, 2); /* no drain */
	for (int i = 0; i < s->nthreads; i++)
		wake(&s->ws[i]);
	for (int i = 0; i < s->nthreads; i++)
		pthread_join(s->ws[i].thread, NULL);
	metrics_stop(s->metrics);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	dnsresp_free(s->dns); /* before the loop it lives on */
	for (int t = 0; t < s->nthreads; t++) {
		struct wstate *ws = &s->ws[t];
		for (int i = 0; i < SERVER_MAX_LISTENERS; i++)
			if (ws->ls[i])
				evconnlistener_free(ws->ls[i]);
		if (ws->resume)
			event_free(ws->resume);
		if (ws->stop)
			event_free(ws->stop);
		if (ws->wake_fd >= 0)
			close(ws->wake_fd);
		if (ws->drain)
			event_free(ws->drain);
		if (ws->w.dns)
			evdns_base_free(ws->w.dns, 1);
		closeq_free(ws->w.closing); /* after DNS: a cancelled lookup queues */
		if (ws->w.base)
			event_base_free(ws->w.base);
		certcache_free(ws->w.certs);
		pipepool_free(ws->w.pipes);
		if (ws->w.stage)
			evbuffer_free(ws->w.stage);
	}
	fakeip_free(s->fake);
	gentable_free(s->gens);
	metrics_free(s->metrics);
	OPENSSL_cleanse(s->phkey, sizeof(s->phkey));
	tls_free(s->tls);
	minter_free(s->minter);
	ca_free(s->ca);
	free(s->ws);
	free(s);
}
