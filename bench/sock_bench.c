/* sock_bench.c -- egressd's socket/TLS layer (proxy/sock.c) against
 * bufferevent_openssl (socket-based, no filter, no struct poking) in the same
 * TLS relay: client -> relay -> origin, small requests and responses.
 * The relay is the measured process; a forked child runs the clients and the
 * origin (both on proxy/sock.c, the same for either relay). Prints one JSON
 * line: relay CPU µs per request (getrusage of the relay process: one
 * thread), and for --mode idle the relay's malloc'd bytes (mallinfo2) and
 * RSS per idle connection. bench/sock_bench.sh interleaves the runs.
 * SOCK_BENCH_EVDEBUG=1: libevent's debug mode and log in the child. */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "ca.h"
#include "mint.h"
#include "sock.h"

#define HOST "api.bench.test"
#define REQ_LEN 120   /* a small GET with a few headers */
#define RESP_LEN 200  /* a small response: head and a 30-byte body */
#define HIWAT (64 * 1024)

static struct event_base *base;
static SSL_CTX *sctx, *cctx;
static struct sockaddr_in relay_addr, origin_addr;
static const char *mode = "ka";
static int conc = 1, idle_n = 1000;
static double duration = 3, warmup = 0.5;
static bool use_bev, keep_buffers, no_read_ahead;
static bool stopping; /* the child: the run is over (the relay may be gone) */
static size_t ossl_bytes; /* held by OpenSSL's allocations (the relay's) */

/* ---- common ---- */

/* --sites 1: live OpenSSL bytes per allocation site (file:line), in tables
 * of their own (mmap: outside what mallinfo2 counts) */
#define SITES 8192
#define LIVE (1u << 22)
struct site { const char *file; int line; long bytes, at_begin; };
struct live { void *p; int site; };
static struct site *sites;
static struct live *live;
static int nsites;

static int site_of(const char *file, int line)
{
	for (int i = 0; i < nsites; i++)
		if (sites[i].line == line && sites[i].file == file)
			return i;
	if (nsites == SITES)
		return 0;
	sites[nsites].file = file;
	sites[nsites].line = line;
	return nsites++;
}

static size_t slot(void *p)
{
	return ((uintptr_t)p >> 4) * 2654435761u % LIVE;
}

static void live_add(void *p, const char *file, int line)
{
	size_t i = slot(p);
	int st = site_of(file, line);

	while (live[i].p)
		i = (i + 1) % LIVE;
	live[i].p = p;
	live[i].site = st;
	sites[st].bytes += (long)malloc_usable_size(p);
}

static void live_del(void *p)
{
	size_t i = slot(p), j;

	while (live[i].p && live[i].p != p)
		i = (i + 1) % LIVE;
	if (!live[i].p)
		return;
	sites[live[i].site].bytes -= (long)malloc_usable_size(p);
	live[i].p = NULL;
	/* re-insert the rest of the cluster (linear probing delete) */
	for (j = (i + 1) % LIVE; live[j].p; j = (j + 1) % LIVE) {
		struct live e = live[j];
		size_t k = slot(e.p);
		live[j].p = NULL;
		while (live[k].p)
			k = (k + 1) % LIVE;
		live[k] = e;
	}
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	void *p = malloc(n);
	if (p)
		ossl_bytes += malloc_usable_size(p);
	if (p && live)
		live_add(p, file, line);
	return p;
}

static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q;

	if (p && live)
		live_del(p);
	q = realloc(p, n);
	if (q || n == 0)
		ossl_bytes += (q ? malloc_usable_size(q) : 0) - old;
	if (live && (q || (p && n != 0)))
		live_add(q ? q : p, file, line);
	return q;
}

static void ossl_free(void *p, const char *file, int line)
{
	if (p)
		ossl_bytes -= malloc_usable_size(p);
	if (p && live)
		live_del(p);
	free(p);
}

static int by_growth(const void *a, const void *b)
{
	long x = ((const struct site *)a)->bytes - ((const struct site *)a)->at_begin;
	long y = ((const struct site *)b)->bytes - ((const struct site *)b)->at_begin;
	return (y > x) - (y < x);
}

/* The sites that grew most between B and E, per connection, to stderr. */
static void sites_report(long conns)
{
	qsort(sites, nsites, sizeof(*sites), by_growth);
	for (int i = 0; i < nsites && i < 25; i++)
		fprintf(stderr, "%8.0f B/conn  %s:%d\n",
			(double)(sites[i].bytes - sites[i].at_begin) / conns,
			sites[i].file ? sites[i].file : "?", sites[i].line);
}

/* --keep-buffers: OpenSSL keeps its record buffers while idle */
static SSL *no_release(SSL *ssl)
{
	if (keep_buffers)
		SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
	return ssl;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int listener(struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = 0;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)a, sizeof(*a)) < 0 || listen(l, 4096) < 0 ||
	    getsockname(l, (struct sockaddr *)a, &len) < 0) {
		perror("listen");
		exit(1);
	}
	evutil_make_socket_nonblocking(l);
	return l;
}

/* A blocking connect (loopback: done within the call), then non-blocking;
 * -1 if refused (the run is over: the other process exits). */
static int dial(const struct sockaddr_in *a)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	return fd;
}

static SSL *client_ssl(void)
{
	SSL *ssl = SSL_new(cctx);
	SSL_set_tlsext_host_name(ssl, HOST);
	SSL_set1_host(ssl, HOST);
	return ssl;
}

/* ---- the relay on proxy/sock.c ---- */

struct rsock {
	struct sock *cl, *up;
};

static void rs_close(struct rsock *r)
{
	sock_free(r->cl);
	sock_free(r->up);
	free(r);
}

static void rs_forward(struct sock *from, struct sock *to)
{
	size_t n;
	const char *p = sock_data(from, &n);

	int above = sock_write(to, p, n); /* the stream's mark: HIWAT, its default */

	sock_consume(from, n);
	if (above)
		sock_read_stop(from);
}

static void rs_cl_read(struct sock *s, void *arg) { rs_forward(s, ((struct rsock *)arg)->up); }
static void rs_up_read(struct sock *s, void *arg) { rs_forward(s, ((struct rsock *)arg)->cl); }
static void rs_cl_drained(struct sock *s, void *arg) { sock_read_start(((struct rsock *)arg)->up); }
static void rs_up_drained(struct sock *s, void *arg) { sock_read_start(((struct rsock *)arg)->cl); }

static void rs_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	if (ev != SOCK_EV_CONNECTED)
		rs_close(arg);
}

static const struct sock_cbs rs_cl_cbs = { rs_cl_read, rs_cl_drained, rs_event };
static const struct sock_cbs rs_up_cbs = { rs_up_read, rs_up_drained, rs_event };

static void rs_accept(int fd)
{
	int ufd = dial(&origin_addr);
	struct rsock *r;

	if (ufd < 0) {
		close(fd);
		return;
	}
	r = calloc(1, sizeof(*r));
	r->cl = sock_new(base, fd, SSL_new(sctx), SOCK_TLS_SERVER, &rs_cl_cbs, r);
	r->up = sock_new(base, ufd, client_ssl(), SOCK_TLS_CLIENT, &rs_up_cbs, r);
	no_release(sock_ssl(r->cl)); /* sock_new set the mode */
	no_release(sock_ssl(r->up));
	if (no_read_ahead) { /* to tell the layer's gain from read-ahead's */
		SSL_set_read_ahead(sock_ssl(r->cl), 0);
		SSL_set_read_ahead(sock_ssl(r->up), 0);
	}
}

/* ---- the relay on bufferevent_openssl ---- */

struct rbev {
	struct bufferevent *cl, *up;
};

static void rb_close(struct rbev *r)
{
	bufferevent_free(r->cl); /* BEV_OPT_CLOSE_ON_FREE: the socket and the SSL */
	bufferevent_free(r->up);
	free(r);
}

static void rb_drained(struct bufferevent *bev, void *arg);

static void rb_read(struct bufferevent *bev, void *arg)
{
	struct rbev *r = arg;
	struct bufferevent *to = bev == r->cl ? r->up : r->cl;
	struct evbuffer *out = bufferevent_get_output(to);

	evbuffer_add_buffer(out, bufferevent_get_input(bev));
	if (evbuffer_get_length(out) >= HIWAT) { /* le-proxy's back-pressure */
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, HIWAT / 2, HIWAT);
		bufferevent_setcb(to, rb_read, rb_drained, NULL, r);
	}
}

static void rb_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		rb_close(arg);
}

static void rb_drained(struct bufferevent *bev, void *arg)
{
	struct rbev *r = arg;

	bufferevent_setcb(bev, rb_read, NULL, rb_event, r);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(bev == r->cl ? r->up : r->cl, EV_READ);
}

static void rb_accept(int fd)
{
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	int ufd = dial(&origin_addr);
	struct rbev *r;

	if (ufd < 0) {
		close(fd);
		return;
	}
	r = calloc(1, sizeof(*r));
	r->cl = bufferevent_openssl_socket_new(base, fd, no_release(SSL_new(sctx)),
					       BUFFEREVENT_SSL_ACCEPTING, opts);
	r->up = bufferevent_openssl_socket_new(base, ufd, no_release(client_ssl()),
					       BUFFEREVENT_SSL_CONNECTING, opts);
	bufferevent_openssl_set_allow_dirty_shutdown(r->cl, 1);
	bufferevent_openssl_set_allow_dirty_shutdown(r->up, 1);
	bufferevent_setcb(r->cl, rb_read, NULL, rb_event, r);
	bufferevent_setcb(r->up, rb_read, NULL, rb_event, r);
	bufferevent_enable(r->cl, EV_READ | EV_WRITE);
	bufferevent_enable(r->up, EV_READ | EV_WRITE);
}

/* ---- the relay process: accept, measure on the child's signals ---- */

static struct rusage ru0;
static size_t heap0, rss0, ossl0;
static double t0;

static size_t heap_now(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static size_t rss_now(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f && fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	if (f)
		fclose(f);
	return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static double cpu_us(const struct rusage *a, const struct rusage *b)
{
	return (b->ru_utime.tv_sec - a->ru_utime.tv_sec) * 1e6 + (b->ru_utime.tv_usec - a->ru_utime.tv_usec) +
	       (b->ru_stime.tv_sec - a->ru_stime.tv_sec) * 1e6 + (b->ru_stime.tv_usec - a->ru_stime.tv_usec);
}

static void on_accept(evutil_socket_t l, short what, void *arg)
{
	int fd, one = 1;

	while ((fd = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (use_bev)
			rb_accept(fd);
		else
			rs_accept(fd);
	}
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
	char line[128];
	ssize_t n = read(fd, line, sizeof(line) - 1);
	struct rusage ru;
	long reqs;

	if (n <= 0) {
		event_base_loopbreak(base);
		return;
	}
	line[n] = 0;
	if (line[0] == 'B') {
		getrusage(RUSAGE_SELF, &ru0);
		heap0 = heap_now();
		ossl0 = ossl_bytes;
		for (int i = 0; i < nsites; i++)
			sites[i].at_begin = sites[i].bytes;
		rss0 = rss_now();
		t0 = now();
	} else if (sscanf(line, "E %ld", &reqs) == 1) {
		double secs = now() - t0;
		getrusage(RUSAGE_SELF, &ru);
		printf("{\"impl\":\"%s%s%s\",\"mode\":\"%s\",\"c\":%d,\"pid\":%d,\"requests\":%ld,"
		       "\"secs\":%.3f,\"rps\":%.0f,\"relay_cpu_us_per_req\":%.2f",
		       use_bev ? "bufferevent_openssl" : "sock", keep_buffers ? "+keep-buffers" : "",
		       no_read_ahead ? "-no-read-ahead" : "", mode, conc, (int)getpid(), reqs, secs,
		       reqs / secs, reqs ? cpu_us(&ru0, &ru) / reqs : 0);
		if (strcmp(mode, "idle") == 0)
			printf(",\"heap_per_conn\":%.0f,\"openssl_per_conn\":%.0f,\"rss_per_conn\":%.0f",
			       ((double)heap_now() - heap0) / reqs, ((double)ossl_bytes - ossl0) / reqs,
			       ((double)rss_now() - rss0) / reqs);
		printf("}\n");
		fflush(stdout);
		if (live)
			sites_report(reqs);
		event_base_loopbreak(base);
	}
}

/* ---- the child: clients and the origin (on proxy/sock.c) ---- */

static int ctl_fd;
static long done_reqs, idle_ready;
static bool counting = false;

struct cl {
	struct sock *s;
	size_t got;
};

static void cl_start(void);

static void cl_read(struct sock *s, void *arg)
{
	struct cl *c = arg;
	size_t n;
	static const char req[REQ_LEN] = "GET / HTTP/1.1\r\nHost: " HOST "\r\n";

	sock_data(s, &n);
	sock_consume(s, n);
	c->got += n;
	if (c->got < RESP_LEN)
		return;
	c->got -= RESP_LEN;
	if (counting || strcmp(mode, "idle") == 0)
		done_reqs++;
	if (strcmp(mode, "idle") == 0) {
		if (++idle_ready == idle_n && dprintf(ctl_fd, "E %d\n", idle_n) < 0)
			exit(1);
		return; /* held open */
	}
	if (strcmp(mode, "new") == 0) {
		sock_free(s);
		free(c);
		if (!stopping)
			cl_start();
		return;
	}
	if (!stopping)
		sock_write(s, req, REQ_LEN);
}

static void cl_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	if (ev == SOCK_EV_CONNECTED)
		return;
	if (!stopping)
		fprintf(stderr, "client: %s\n", reason);
	sock_free(s);
	free(arg);
}

static void nop_drained(struct sock *s, void *arg) {}
static const struct sock_cbs cl_cbs = { cl_read, nop_drained, cl_event };

static void cl_start(void)
{
	static const char req[REQ_LEN] = "GET / HTTP/1.1\r\nHost: " HOST "\r\n";
	int fd = dial(&relay_addr);
	struct cl *c;

	if (fd < 0 && stopping)
		_exit(0);
	if (fd < 0) {
		perror("connect to the relay");
		exit(1);
	}
	c = calloc(1, sizeof(*c));
	c->s = sock_new(base, fd, client_ssl(), SOCK_TLS_CLIENT, &cl_cbs, c);
	sock_write(c->s, req, REQ_LEN);
}

struct org {
	size_t got;
};

static void org_read(struct sock *s, void *arg)
{
	struct org *o = arg;
	static const char resp[RESP_LEN] = "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n";
	size_t n;

	sock_data(s, &n);
	sock_consume(s, n);
	o->got += n;
	while (o->got >= REQ_LEN) {
		o->got -= REQ_LEN;
		sock_write(s, resp, RESP_LEN);
	}
}

static void org_event(struct sock *s, enum sock_event ev, const char *reason, void *arg)
{
	if (ev == SOCK_EV_CONNECTED)
		return;
	sock_free(s);
	free(arg);
}

static const struct sock_cbs org_cbs = { org_read, nop_drained, org_event };

static void org_accept(evutil_socket_t l, short what, void *arg)
{
	int fd, one = 1;

	while ((fd = accept4(l, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		sock_new(base, fd, SSL_new(sctx), SOCK_TLS_SERVER, &org_cbs, calloc(1, sizeof(struct org)));
	}
}

static void phase(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { (time_t)duration, (suseconds_t)((duration - (time_t)duration) * 1e6) };

	if (!counting) {
		counting = true;
		done_reqs = 0;
		if (dprintf(ctl_fd, "B\n") < 0)
			exit(1);
		evtimer_add(arg, &tv);
	} else {
		stopping = true;
		if (dprintf(ctl_fd, "E %ld\n", done_reqs) < 0)
			exit(1);
		event_base_loopbreak(base);
	}
}

static void child(int ol)
{
	struct event *oev, *t;
	struct timeval tv = { 0, (suseconds_t)(warmup * 1e6) };
	int n = strcmp(mode, "idle") == 0 ? idle_n : conc;

	if (getenv("SOCK_BENCH_EVDEBUG")) {
		event_enable_debug_mode();
		event_enable_debug_logging(EVENT_DBG_ALL);
	}
	base = event_base_new();
	oev = event_new(base, ol, EV_READ | EV_PERSIST, org_accept, NULL);
	event_add(oev, NULL);
	if (strcmp(mode, "idle") == 0) {
		if (dprintf(ctl_fd, "B\n") < 0)
			exit(1);
		usleep(100000);
	} else {
		t = evtimer_new(base, phase, event_self_cbarg());
		evtimer_add(t, &tv);
	}
	for (int i = 0; i < n; i++)
		cl_start();
	event_base_dispatch(base);
	_exit(0); /* the relay reads the ctl line; no teardown needed */
}

/* ---- setup ---- */

static void tls_setup(void)
{
	char dir[] = "/tmp/sock_bench.XXXXXX", err[256] = "", cmd[64];
	struct ca *ca = mkdtemp(dir) ? ca_load_or_create(dir, CA_KEY_EC_P256, NULL, err) : NULL;
	struct minter *m = ca ? minter_new(ca, err) : NULL;
	X509 *leaf = m ? minter_mint(m, HOST, false, err) : NULL;

	if (!leaf) {
		fprintf(stderr, "tls setup: %s\n", err);
		exit(1);
	}
	sctx = SSL_CTX_new(TLS_server_method());
	cctx = SSL_CTX_new(TLS_client_method());
	if (SSL_CTX_use_certificate(sctx, leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(sctx, minter_leaf_key(m)) != 1 ||
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca_cert(ca)) != 1)
		exit(1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	/* the same for both relays: released buffers, no tickets (every new
	 * connection is a full handshake). No read-ahead on the contexts:
	 * bufferevent_openssl polls only the socket, so records that read-ahead
	 * left inside the SSL (a request behind the client's Finished) are never
	 * read (libevent #854; egressd works around it in intercept.c) and the
	 * relay stalls; proxy/sock.c sets read-ahead on its own SSLs. */
	SSL_CTX_set_num_tickets(sctx, 0);
	SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
	X509_free(leaf);
	minter_free(m);
	ca_free(ca);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

int main(int argc, char **argv)
{
	int rl, ol, ctl[2], status;
	struct event *lev, *cev;
	pid_t pid;

	/* before anything allocates through OpenSSL */
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--impl"))
			use_bev = !strcmp(argv[i + 1], "bev");
		else if (!strcmp(argv[i], "--mode"))
			mode = argv[i + 1];
		else if (!strcmp(argv[i], "-c"))
			conc = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-d"))
			duration = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--idle"))
			idle_n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--no-read-ahead"))
			no_read_ahead = atoi(argv[i + 1]) != 0;
		else if (!strcmp(argv[i], "--sites") && atoi(argv[i + 1])) {
			sites = mmap(NULL, SITES * sizeof(*sites), PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			live = mmap(NULL, LIVE * sizeof(*live), PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (sites == MAP_FAILED || live == MAP_FAILED)
				return 1;
		} else if (!strcmp(argv[i], "--keep-buffers"))
			keep_buffers = atoi(argv[i + 1]) != 0;
	}
	/* idle only: the counting costs CPU */
	if (!strcmp(mode, "idle") && !CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free))
		fprintf(stderr, "cannot count OpenSSL's allocations\n");
	signal(SIGPIPE, SIG_IGN);
	tls_setup();
	rl = listener(&relay_addr);
	ol = listener(&origin_addr);
	if (pipe(ctl) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(rl);
		close(ctl[0]);
		ctl_fd = ctl[1];
		child(ol);
	}
	close(ol);
	close(ctl[1]);
	base = event_base_new();
	lev = event_new(base, rl, EV_READ | EV_PERSIST, on_accept, NULL);
	cev = event_new(base, ctl[0], EV_READ | EV_PERSIST, on_ctl, NULL);
	event_add(lev, NULL);
	event_add(cev, NULL);
	event_base_dispatch(base);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return 0;
}
