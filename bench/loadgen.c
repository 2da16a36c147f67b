/* loadgen.c -- HTTP/1.1-over-TLS load generator for bench/run.sh: keep-alive, new
 * connection per request, bulk download, bulk upload and idle connections, directly or through an
 * HTTP CONNECT proxy. libevent (one event_base per thread) + OpenSSL (one shared SSL_CTX).
 *
 * Output: one JSON line on stdout. For --mode idle a first line is printed once every
 * connection is set up (CONNECT, handshake, one GET answered); the connections are then
 * held until stdin reaches EOF (or --hold seconds), and a second line follows. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { M_KA, M_NEW, M_BULK, M_IDLE, M_UPLOAD };
enum state { ST_TCP, ST_PXW, ST_PXR, ST_HS, ST_SEND, ST_BODY, ST_RECV, ST_IDLE };
enum body { B_HEAD, B_CL, B_CHSIZE, B_CHEXT, B_CHDATA, B_CHDATACR, B_CHDATALF, B_TRAILER,
	    B_TRAILER_LF, B_DONE };

#define HDR_CAP 16384
#define RBUF 65536

struct opts {
	enum mode mode;
	const char *host;	/* SNI, certificate name and Host header */
	int port;		/* target port (Host header, CONNECT default) */
	const char *addr;	/* direct: address to connect to */
	const char *proxy;	/* "IP:PORT" of the CONNECT proxy, or NULL for direct */
	const char *connect_to;	/* CONNECT authority (default host:port) */
	const char *path;
	const char *cafile;
	int conns, threads, reuse, max_inflight;
	double duration, warmup, hold;
	long long upload;	/* upload: request body bytes */
	char extra[4096];	/* extra request header lines, each ending in CRLF */
};

struct worker;

struct conn {
	struct worker *w;
	int fd;
	SSL *ssl;
	struct event *ev;
	short evmask;		/* what ev currently waits for */
	enum state st;
	double t_start;		/* start of the current request (or connection, --mode new) */
	size_t woff;		/* bytes of the CONNECT request sent */
	char pbuf[2048];	/* proxy reply head */
	size_t plen;
	char hdr[HDR_CAP];	/* response head being read */
	size_t hlen;
	enum body bst;
	int status, chunked, close_after;
	long long left;		/* body bytes left (Content-Length or current chunk) */
	int counted;		/* idle: this connection's setup has been counted */
	long long body_left;	/* upload: request body bytes still to send */
};

struct worker {
	pthread_t th;
	struct event_base *base;
	struct event *tick;
	int nconns;		/* connections this worker runs */
	int started, inflight;	/* idle mode: set-ups started / in progress */
	SSL_SESSION *sess;	/* last session, when --reuse */
	uint64_t reqs_win, reqs_all, errors, bytes_win, bytes_all, lost;
	uint32_t *lat;		/* microseconds, requests completed in the window */
	size_t nlat, caplat;
	unsigned char *rbuf;
};

static struct opts o = { .mode = M_KA, .host = "localhost", .port = 443, .addr = "127.0.0.1",
			 .path = "/", .conns = 1, .threads = 2, .max_inflight = 256,
			 .duration = 5, .warmup = 0.5, .hold = 600, .upload = 64LL << 20 };
static unsigned char body[65536];	/* upload: sent again and again */
static SSL_CTX *ctx;
static struct sockaddr_in dst;
static char req[8192], connect_req[1024];
static size_t req_len, connect_len;
static double t0, t_win, t_end;
static atomic_int stop;
static atomic_int idle_ok, idle_fail;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
	fprintf(stderr, "loadgen: %s\n", msg);
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

static void conn_start(struct worker *w, double t_start);
static void on_event(evutil_socket_t fd, short what, void *arg);

/* Make c's event wait for `what` (EV_READ or EV_WRITE). */
static void want(struct conn *c, short what)
{
	if (c->evmask == what)
		return;
	if (c->evmask)
		event_del(c->ev);
	event_assign(c->ev, c->w->base, c->fd, what | EV_PERSIST, on_event, c);
	if (event_add(c->ev, NULL) != 0)
		die("event_add failed");
	c->evmask = what;
}

static void conn_close(struct conn *c)
{
	if (c->evmask)
		event_del(c->ev);
	event_free(c->ev);
	if (c->ssl) {
		if (c->st == ST_SEND || c->st == ST_RECV || c->st == ST_IDLE)
			SSL_shutdown(c->ssl);	/* one close_notify, no wait */
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (!atomic_load(&stop))
		conn_start(w, now());
}

static void idle_next(struct worker *w)
{
	while (w->started < w->nconns && w->inflight < o.max_inflight / o.threads + 1) {
		w->started++;
		w->inflight++;
		conn_start(w, now());
	}
}

/* A connection failed: count it, and replace it (after 10 ms, so a refusing peer is not
 * hammered) unless the run is over. */
static void conn_fail(struct conn *c)
{
	struct worker *w = c->w;
	int was_idle = c->st == ST_IDLE;
	conn_close(c);
	if (o.mode == M_IDLE) {
		if (was_idle) {
			w->lost++;
		} else {
			w->errors++;
			w->inflight--;
			atomic_fetch_add(&idle_fail, 1);
			idle_next(w);
		}
		return;
	}
	w->errors++;
	if (!atomic_load(&stop)) {
		struct timeval tv = { 0, 10000 };
		event_base_once(w->base, -1, EV_TIMEOUT, restart_cb, w, &tv);
	}
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct conn *c = SSL_get_app_data(ssl);
	if (!c)
		return 0;
	SSL_SESSION_free(c->w->sess);
	c->w->sess = sess;
	return 1;	/* we keep the reference */
}

static void request_begin(struct conn *c)
{
	c->st = ST_SEND;
	c->hlen = 0;
	c->bst = B_HEAD;
	c->status = 0;
	c->chunked = 0;
	c->close_after = 0;
	c->left = 0;
}

/* Parse the response head in c->hdr; 0 ok, -1 malformed. */
static int parse_head(struct conn *c, size_t hend)
{
	const char *p = c->hdr, *end = c->hdr + hend;
	if (hend < 12 || memcmp(p, "HTTP/1.", 7) != 0)
		return -1;
	c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	c->left = -1;
	if (p[7] == '0')
		c->close_after = 1;
	while ((p = memchr(p, '\n', end - p)) != NULL && ++p < end) {
		const char *eol = memchr(p, '\r', end - p);
		size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
		if (n > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			const char *v = p + 15;
			long long x = 0;
			while (v < p + n && *v == ' ')
				v++;
			if (v == p + n)
				return -1;
			for (; v < p + n && *v >= '0' && *v <= '9'; v++)
				x = x * 10 + (*v - '0');
			c->left = x;
		} else if (n > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
			c->chunked = memmem(p, n, "chunked", 7) != NULL;
		} else if (n > 11 && strncasecmp(p, "connection:", 11) == 0) {
			if (memmem(p, n, "close", 5))
				c->close_after = 1;
		}
	}
	if (c->chunked)
		c->bst = B_CHSIZE, c->left = 0;
	else if (c->left >= 0)
		c->bst = c->left ? B_CL : B_DONE;
	else
		return -1;	/* close-delimited bodies are not expected from the peers here */
	if (c->status == 204 || c->status == 304)
		c->bst = B_DONE;
	return 0;
}

static int hexval(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Feed n bytes of response; returns 1 complete (all bytes consumed), 0 need more, -1 error. */
static int parse(struct conn *c, const unsigned char *b, size_t n)
{
	size_t i = 0;
	if (c->bst == B_HEAD) {
		size_t take = n < HDR_CAP - c->hlen ? n : HDR_CAP - c->hlen;
		size_t from = c->hlen > 3 ? c->hlen - 3 : 0;
		char *e;
		memcpy(c->hdr + c->hlen, b, take);
		c->hlen += take;
		e = memmem(c->hdr + from, c->hlen - from, "\r\n\r\n", 4);
		if (!e)
			return c->hlen == HDR_CAP ? -1 : 0;
		size_t hend = e + 4 - c->hdr;
		i = take - (c->hlen - hend);	/* bytes of b that were head */
		if (parse_head(c, hend) < 0)
			return -1;
	}
	while (i < n && c->bst != B_DONE) {
		unsigned char ch = b[i];
		switch (c->bst) {
		case B_CL:
		case B_CHDATA: {
			size_t k = n - i < (size_t)c->left ? n - i : (size_t)c->left;
			i += k;
			c->left -= k;
			if (c->left == 0)
				c->bst = c->bst == B_CL ? B_DONE : B_CHDATACR;
			break;
		}
		case B_CHSIZE:
			i++;
			if (hexval(ch) >= 0)
				c->left = c->left * 16 + hexval(ch);
			else if (ch == '\n')
				c->bst = c->left ? B_CHDATA : B_TRAILER;
			else if (ch == ';' || ch == ' ' || ch == '\t')
				c->bst = B_CHEXT;
			else if (ch != '\r')
				return -1;
			break;
		case B_CHEXT:
			i++;
			if (ch == '\n')
				c->bst = c->left ? B_CHDATA : B_TRAILER;
			break;
		case B_CHDATACR:
			i++;
			if (ch != '\r')
				return -1;
			c->bst = B_CHDATALF;
			break;
		case B_CHDATALF:
			i++;
			if (ch != '\n')
				return -1;
			c->bst = B_CHSIZE;
			c->left = 0;
			break;
		case B_TRAILER:	/* at the start of a trailer line */
			i++;
			if (ch == '\r')
				break;
			c->bst = ch == '\n' ? B_DONE : B_TRAILER_LF;
			break;
		case B_TRAILER_LF:
			i++;
			if (ch == '\n')
				c->bst = B_TRAILER;
			break;
		default:
			return -1;
		}
	}
	if (c->bst != B_DONE)
		return 0;
	return i == n ? 1 : -1;	/* nothing may follow: we never pipeline */
}

static void record(struct worker *w, double t_done, double lat)
{
	w->reqs_all++;
	if (t_done < t_win || t_done > t_end)
		return;
	w->reqs_win++;
	if (w->nlat == w->caplat) {
		w->caplat = w->caplat ? w->caplat * 2 : 65536;
		w->lat = xrealloc(w->lat, w->caplat * sizeof(*w->lat));
	}
	w->lat[w->nlat++] = (uint32_t)(lat * 1e6 + 0.5);
}

/* A complete response arrived; returns 1 if c is still alive and should go on. */
static int on_response(struct conn *c)
{
	struct worker *w = c->w;
	double t = now();
	if (c->status < 200 || c->status > 299)
		w->errors++;
	if (o.mode == M_IDLE) {
		c->st = ST_IDLE;
		c->counted = 1;
		w->inflight--;
		atomic_fetch_add(&idle_ok, 1);
		idle_next(w);
		want(c, EV_READ);
		return 0;
	}
	record(w, t, t - c->t_start);
	if (atomic_load(&stop)) {
		conn_close(c);
		return 0;
	}
	if (o.mode == M_NEW || c->close_after) {
		conn_close(c);
		conn_start(w, t);
		return 0;
	}
	c->t_start = t;
	request_begin(c);
	return 1;
}

/* After SSL_read/SSL_write returned r <= 0: waits for what TLS wants, or
 * fails the connection. */
static void wait_or_fail(struct conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		want(c, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
		return;
	}
	ERR_clear_error();
	conn_fail(c);
}

/* Payload bytes (received; sent, for upload): all, and those in the measured
 * window (reported for bulk and upload only). */
static void count_bytes(struct worker *w, int n)
{
	double t = now();
	w->bytes_all += n;
	if (t >= t_win && t <= t_end)
		w->bytes_win += n;
}

static void drive(struct conn *c)
{
	struct worker *w = c->w;
	for (;;) {
		switch (c->st) {
		case ST_TCP: {
			int err = 0;
			socklen_t len = sizeof(err);
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
				conn_fail(c);
				return;
			}
			c->st = o.proxy ? ST_PXW : ST_HS;
			break;
		}
		case ST_PXW: {
			ssize_t k = send(c->fd, connect_req + c->woff, connect_len - c->woff, MSG_NOSIGNAL);
			if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
				want(c, EV_WRITE);
				return;
			}
			if (k <= 0) {
				conn_fail(c);
				return;
			}
			c->woff += k;
			if (c->woff == connect_len)
				c->st = ST_PXR;
			break;
		}
		case ST_PXR: {
			ssize_t k = recv(c->fd, c->pbuf + c->plen, sizeof(c->pbuf) - 1 - c->plen, 0);
			char *e;
			if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
				want(c, EV_READ);
				return;
			}
			if (k <= 0) {
				conn_fail(c);
				return;
			}
			c->plen += k;
			c->pbuf[c->plen] = 0;
			e = strstr(c->pbuf, "\r\n\r\n");
			if (!e) {
				if (c->plen == sizeof(c->pbuf) - 1) {
					conn_fail(c);
					return;
				}
				break;
			}
			/* "HTTP/1.x 200"; nothing may follow the head before our ClientHello */
			if (c->plen < 12 || memcmp(c->pbuf + 9, "200", 3) != 0 ||
			    (size_t)(e + 4 - c->pbuf) != c->plen) {
				conn_fail(c);
				return;
			}
			c->st = ST_HS;
			break;
		}
		case ST_HS: {
			int r, e;
			if (!c->ssl) {
				c->ssl = SSL_new(ctx);
				if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
				    !SSL_set_tlsext_host_name(c->ssl, o.host) ||
				    !SSL_set1_host(c->ssl, o.host))
					die("SSL_new/SSL_set_fd/SNI failed");
				SSL_set_app_data(c->ssl, c);
				if (o.reuse && w->sess)
					SSL_set_session(c->ssl, w->sess);
			}
			r = SSL_connect(c->ssl);
			if (r == 1) {
				request_begin(c);
				if (o.mode != M_NEW)
					c->t_start = now();
				break;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ) {
				want(c, EV_READ);
				return;
			}
			if (e == SSL_ERROR_WANT_WRITE) {
				want(c, EV_WRITE);
				return;
			}
			if (w->errors < 3) {
				char buf[256];
				ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
				fprintf(stderr, "loadgen: TLS handshake failed: %s\n", buf);
			}
			ERR_clear_error();
			conn_fail(c);
			return;
		}
		case ST_SEND: {
			int r = SSL_write(c->ssl, req, (int)req_len);
			if (r > 0) {
				c->st = o.mode == M_UPLOAD ? ST_BODY : ST_RECV;
				c->body_left = o.upload;
				break;
			}
			wait_or_fail(c, r);
			return;
		}
		case ST_BODY: {
			int n = c->body_left < (long long)sizeof(body) ? (int)c->body_left : (int)sizeof(body);
			int r = n ? SSL_write(c->ssl, body, n) : 0;
			if (n && r <= 0) {
				wait_or_fail(c, r);
				return;
			}
			c->body_left -= r;
			count_bytes(w, r);
			if (!c->body_left)
				c->st = ST_RECV;
			break;
		}
		case ST_RECV: {
			int r = SSL_read(c->ssl, w->rbuf, RBUF), p;
			if (r > 0) {
				if (o.mode != M_UPLOAD)
					count_bytes(w, r);
				p = parse(c, w->rbuf, r);
				if (p < 0) {
					conn_fail(c);
					return;
				}
				if (p == 1 && !on_response(c))
					return;
				break;
			}
			wait_or_fail(c, r);
			return;
		}
		case ST_IDLE: {
			int r = SSL_read(c->ssl, w->rbuf, RBUF);
			if (r > 0)
				break;	/* unexpected bytes; ignore */
			if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
				return;
			ERR_clear_error();
			conn_fail(c);	/* the proxy closed an idle connection */
			return;
		}
		}
	}
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	drive(arg);
}

static void conn_start(struct worker *w, double t_start)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;
	if (!c)
		die("out of memory");
	c->w = w;
	c->t_start = t_start;
	c->st = ST_TCP;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->ev = event_new(w->base, -1, 0, on_event, c);
	if (!c->ev)
		die("event_new failed");
	if (c->fd < 0) {
		if (w->errors < 3)
			perror("loadgen: socket");
		conn_fail(c);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 && errno != EINPROGRESS) {
		conn_fail(c);
		return;
	}
	want(c, EV_WRITE);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (o.mode != M_IDLE && now() >= t_end)
		atomic_store(&stop, 1);
	if (atomic_load(&stop))
		event_base_loopbreak(w->base);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, 20000 };
	w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
	if (!w->tick || event_add(w->tick, &tv) != 0)
		die("tick timer failed");
	if (o.mode == M_IDLE)
		idle_next(w);
	else
		for (int i = 0; i < w->nconns; i++)
			conn_start(w, now());
	event_base_dispatch(w->base);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
	size_t i;
	if (!n)
		return 0;
	i = (size_t)ceil(p * n);
	i = i ? i - 1 : 0;
	return v[i < n ? i : n - 1] / 1000.0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen --host NAME --port N [--addr IP] [--proxy IP:PORT [--connect-to H:P]]\n"
		"               [--mode ka|new|bulk|upload|idle] [-c CONNS] [-t THREADS] [-d SECONDS]\n"
		"               [--warmup S] [--path P] [--cafile PEM] [--reuse] [-H 'Name: value']\n"
		"               [--max-inflight N] [--hold S] [--upload-bytes N]\n"
		"  ka: keep-alive requests; new: new connection + full handshake per request\n"
		"  (--reuse resumes sessions); bulk: download PATH repeatedly on each connection;\n"
		"  upload: PUT N bytes (default 64 MiB) to PATH repeatedly on each connection;\n"
		"  idle: set up CONNS connections (one GET each), print, hold until stdin EOF.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "addr", 1, 0, 'a' },
		{ "proxy", 1, 0, 'x' }, { "connect-to", 1, 0, 'C' }, { "mode", 1, 0, 'm' },
		{ "conns", 1, 0, 'c' }, { "threads", 1, 0, 't' }, { "duration", 1, 0, 'd' },
		{ "warmup", 1, 0, 'w' }, { "path", 1, 0, 'P' }, { "cafile", 1, 0, 'A' },
		{ "reuse", 0, 0, 'r' }, { "header", 1, 0, 'H' }, { "max-inflight", 1, 0, 'I' },
		{ "hold", 1, 0, 'o' }, { "upload-bytes", 1, 0, 'u' }, { 0, 0, 0, 0 } };
	struct worker *ws;
	char authority[512];
	struct rlimit rl;
	int ch;
	size_t xl = 0;

	while ((ch = getopt_long(argc, argv, "c:t:d:H:", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = (int)strtol(optarg, NULL, 10); break;
		case 'a': o.addr = optarg; break;
		case 'x': o.proxy = optarg; break;
		case 'C': o.connect_to = optarg; break;
		case 'm':
			if (!strcmp(optarg, "ka")) o.mode = M_KA;
			else if (!strcmp(optarg, "new")) o.mode = M_NEW;
			else if (!strcmp(optarg, "bulk")) o.mode = M_BULK;
			else if (!strcmp(optarg, "idle")) o.mode = M_IDLE;
			else if (!strcmp(optarg, "upload")) o.mode = M_UPLOAD;
			else usage();
			break;
		case 'c': o.conns = (int)strtol(optarg, NULL, 10); break;
		case 't': o.threads = (int)strtol(optarg, NULL, 10); break;
		case 'd': o.duration = strtod(optarg, NULL); break;
		case 'w': o.warmup = strtod(optarg, NULL); break;
		case 'P': o.path = optarg; break;
		case 'A': o.cafile = optarg; break;
		case 'r': o.reuse = 1; break;
		case 'I': o.max_inflight = (int)strtol(optarg, NULL, 10); break;
		case 'o': o.hold = strtod(optarg, NULL); break;
		case 'u': o.upload = strtoll(optarg, NULL, 10); break;
		case 'H': {
			size_t n = strlen(optarg);
			if (xl + n + 3 > sizeof(o.extra))
				die("too many headers");
			memcpy(o.extra + xl, optarg, n);
			memcpy(o.extra + xl + n, "\r\n", 3);
			xl += n + 2;
			break;
		}
		default: usage();
		}
	}
	if (o.conns < 1 || o.threads < 1 || o.port < 1 || o.port > 65535 || o.duration <= 0 ||
	    o.upload < 0)
		usage();
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (unsigned char)(i * 2654435761u >> 13);
	if (o.threads > o.conns)
		o.threads = o.conns;
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* where the TCP connections go */
	{
		const char *a = o.addr;
		int port = o.port;
		char ip[64];
		if (o.proxy) {
			const char *colon = strrchr(o.proxy, ':');
			size_t n = colon ? (size_t)(colon - o.proxy) : 0;
			if (!colon || n >= sizeof(ip))
				usage();
			memcpy(ip, o.proxy, n);
			ip[n] = 0;
			a = ip;
			port = (int)strtol(colon + 1, NULL, 10);
		}
		memset(&dst, 0, sizeof(dst));
		dst.sin_family = AF_INET;
		dst.sin_port = htons(port);
		if (inet_pton(AF_INET, a, &dst.sin_addr) != 1)
			die("address must be an IPv4 literal");
	}
	if (o.port == 443)
		snprintf(authority, sizeof(authority), "%s", o.host);
	else
		snprintf(authority, sizeof(authority), "%s:%d", o.host, o.port);
	if (o.mode == M_UPLOAD)
		req_len = snprintf(req, sizeof(req), "PUT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: egressd-bench\r\n"
				   "Content-Length: %lld\r\n%s\r\n", o.path, authority, o.upload, o.extra);
	else
		req_len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: egressd-bench\r\n%s\r\n",
				   o.path, authority, o.extra);
	if (req_len >= sizeof(req))
		die("request too long");
	connect_len = snprintf(connect_req, sizeof(connect_req), "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
			       o.connect_to ? o.connect_to : o.host, o.port, o.connect_to ? o.connect_to : o.host, o.port);
	if (o.connect_to && strchr(o.connect_to, ':'))	/* full authority given */
		connect_len = snprintf(connect_req, sizeof(connect_req), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n",
				       o.connect_to, o.connect_to);

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_read_ahead(ctx, 1);
	if (o.cafile ? !SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) : !SSL_CTX_set_default_verify_paths(ctx))
		die("cannot load CA file");
	if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9) != 0)
		die("ALPN");
	if (o.reuse) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	}

	ws = calloc(o.threads, sizeof(*ws));
	if (!ws)
		die("out of memory");
	t0 = now();
	t_win = t0 + (o.mode == M_IDLE ? 0 : o.warmup);
	t_end = o.mode == M_IDLE ? 1e300 : t_win + o.duration;
	for (int i = 0; i < o.threads; i++) {
		ws[i].nconns = o.conns / o.threads + (i < o.conns % o.threads);
		ws[i].base = event_base_new();
		ws[i].rbuf = malloc(RBUF);
		if (!ws[i].base || !ws[i].rbuf)
			die("event_base_new failed");
		if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i]) != 0)
			die("pthread_create failed");
	}

	if (o.mode == M_IDLE) {
		double t_setup;
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		char sink[256];
		while (atomic_load(&idle_ok) + atomic_load(&idle_fail) < o.conns && now() - t0 < o.hold)
			usleep(20000);
		t_setup = now() - t0;
		printf("{\"mode\":\"idle\",\"conns\":%d,\"established\":%d,\"errors\":%d,\"setup_s\":%.3f}\n",
		       o.conns, atomic_load(&idle_ok), atomic_load(&idle_fail), t_setup);
		fflush(stdout);
		/* hold until stdin reaches EOF or --hold runs out */
		while (now() - t0 < o.hold) {
			int r = poll(&pfd, 1, 100);
			if (r > 0 && read(0, sink, sizeof(sink)) <= 0)
				break;
		}
		atomic_store(&stop, 1);
	}
	for (int i = 0; i < o.threads; i++)
		pthread_join(ws[i].th, NULL);

	{
		uint64_t reqs = 0, all = 0, errs = 0, bytes = 0, ball = 0, lost = 0;
		size_t n = 0;
		uint32_t *lat;
		double win = o.duration;
		for (int i = 0; i < o.threads; i++) {
			reqs += ws[i].reqs_win;
			all += ws[i].reqs_all;
			errs += ws[i].errors;
			bytes += ws[i].bytes_win;
			ball += ws[i].bytes_all;
			lost += ws[i].lost;
			n += ws[i].nlat;
		}
		lat = malloc((n ? n : 1) * sizeof(*lat));
		if (!lat)
			die("out of memory");
		n = 0;
		for (int i = 0; i < o.threads; i++) {
			if (ws[i].nlat)
				memcpy(lat + n, ws[i].lat, ws[i].nlat * sizeof(*lat));
			n += ws[i].nlat;
		}
		qsort(lat, n, sizeof(*lat), cmp_u32);
		if (o.mode == M_IDLE) {
			printf("{\"mode\":\"idle\",\"lost\":%llu,\"errors\":%llu}\n",
			       (unsigned long long)lost, (unsigned long long)errs);
		} else {
			if (o.mode != M_BULK && o.mode != M_UPLOAD)
				bytes = 0;
			printf("{\"mode\":\"%s\",\"conns\":%d,\"threads\":%d,\"duration\":%.3f,"
			       "\"requests\":%llu,\"requests_total\":%llu,\"errors\":%llu,\"rps\":%.1f,"
			       "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"mb_s\":%.1f,\"bytes_total\":%llu}\n",
			       o.mode == M_KA ? "ka" : o.mode == M_NEW ? "new" :
			       o.mode == M_BULK ? "bulk" : "upload", o.conns, o.threads, win,
			       (unsigned long long)reqs, (unsigned long long)all, (unsigned long long)errs,
			       reqs / win, pct(lat, n, 0.50), pct(lat, n, 0.99), pct(lat, n, 0.999),
			       bytes / win / 1e6, (unsigned long long)ball);
		}
		free(lat);
	}
	return 0;
}
