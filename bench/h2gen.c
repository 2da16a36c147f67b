/* h2gen.c -- HTTP/2 load generator for bench/run.sh: one TLS connection (ALPN h2 only),
 * -m concurrent streams of GET kept in flight for -d seconds, directly or through an HTTP
 * CONNECT proxy (which h2load cannot use). nghttp2 for framing and HPACK, OpenSSL, blocking
 * I/O on one thread: the frames a loop turn produced go out in one SSL_write, then one
 * blocking read (with read-ahead) and the records it brought are fed to the session.
 *
 * Output: one JSON line on stdout, the same fields as loadgen's (requests/s in the measured
 * window, p50/p99/p99.9 latency from a stream's submission to its close, errors = streams
 * that did not end in 2xx or were reset; requests_total and bytes_total include the
 * warm-up, for CPU per request). Exit 0, or 1 when the connection could not be set up or
 * broke. */
#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_STREAMS 1024
#define MAX_HEADERS 16
#define RBUF 65536

struct opts {
	const char *host;	/* SNI, certificate name and :authority */
	int port;		/* target port (:authority, CONNECT default) */
	const char *addr;	/* direct: address to connect to */
	const char *proxy;	/* "IP:PORT" of the CONNECT proxy, or NULL for direct */
	const char *connect_to;	/* CONNECT authority (default host:port) */
	const char *path;
	const char *cafile;
	int streams;		/* concurrent streams kept in flight */
	double duration, warmup;
	nghttp2_nv hdrs[MAX_HEADERS + 4];	/* pseudo-headers first, then -H ones */
	size_t nhdrs;
	char authority[300];
};

struct slot {			/* one stream in flight */
	double t0;		/* submitted at */
	int status;		/* :status, 0 until seen */
};

struct run {
	SSL *ssl;
	nghttp2_session *sess;
	struct slot slots[MAX_STREAMS];
	double t_win, t_end;	/* measured window: [t_win, t_end) */
	unsigned long long reqs, all, errs, bytes;
	float *lat;		/* latencies (ms) of the window's requests */
	size_t nlat, caplat;
	int failed;		/* a submission failed: stop */
};

static struct opts o = { .host = "localhost", .port = 443, .addr = "127.0.0.1", .path = "/",
			 .streams = 64, .duration = 5, .warmup = 0.5 };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg)
{
	fprintf(stderr, "h2gen: %s\n", msg);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void record(struct run *r, double t, double lat_ms)
{
	r->all++;
	if (t < r->t_win || t >= r->t_end)
		return;
	r->reqs++;
	if (r->nlat == r->caplat) {
		r->caplat = r->caplat ? r->caplat * 2 : 65536;
		r->lat = realloc(r->lat, r->caplat * sizeof(*r->lat));
		if (!r->lat)
			die("out of memory");
	}
	r->lat[r->nlat++] = (float)lat_ms;
}

/* Submits one GET on a free slot; 0, or -1 (then r->failed is set). */
static int submit(struct run *r, struct slot *s)
{
	s->t0 = now();
	s->status = 0;
	if (nghttp2_submit_request(r->sess, NULL, o.hdrs, o.nhdrs, NULL, s) < 0) {
		r->failed = 1;
		return -1;
	}
	return 0;
}

static int on_header(nghttp2_session *sess, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *arg)
{
	struct slot *s = nghttp2_session_get_stream_user_data(sess, f->hd.stream_id);

	if (s && f->hd.type == NGHTTP2_HEADERS && nlen == 7 && !memcmp(name, ":status", 7) && vlen == 3)
		s->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
	return 0;
}

static int on_data(nghttp2_session *sess, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *arg)
{
	((struct run *)arg)->bytes += len;
	return 0;
}

static int on_close(nghttp2_session *sess, int32_t id, uint32_t code, void *arg)
{
	struct run *r = arg;
	struct slot *s = nghttp2_session_get_stream_user_data(sess, id);
	double t = now();

	if (!s)
		return 0;
	if (code != NGHTTP2_NO_ERROR || s->status < 200 || s->status > 299) {
		if (r->errs++ < 3)
			fprintf(stderr, "h2gen: stream %d: status %d, error code %u\n", id, s->status, code);
	}
	record(r, t, (t - s->t0) * 1e3);
	if (t < r->t_end)
		submit(r, s);
	return 0;
}

/* CONNECT on fd and the proxy's 200 read, byte by byte: nothing of the TLS stream may be
 * read here. Exits on anything else. */
static void proxy_connect(int fd)
{
	const char *target = o.connect_to ? o.connect_to : o.authority;
	char req[1024], head[2048];
	size_t n = 0;

	if (strlen(target) > 300)
		die("CONNECT target too long");
	snprintf(req, sizeof(req), "CONNECT %.300s HTTP/1.1\r\nHost: %.300s\r\n\r\n", target, target);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		die("CONNECT not sent");
	while (n < sizeof(head) - 1 && !(n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4))) {
		if (read(fd, head + n, 1) != 1)
			die("proxy closed during CONNECT");
		n++;
	}
	head[n] = 0;
	if (strncmp(head, "HTTP/1.1 200", 12) && strncmp(head, "HTTP/1.0 200", 12)) {
		fprintf(stderr, "h2gen: CONNECT answered: %.*s\n", (int)strcspn(head, "\r\n"), head);
		exit(1);
	}
}

/* TCP to the proxy (then CONNECT) or to --addr:--port. Returns the fd; exits on failure. */
static int dial(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tmo = { .tv_sec = 10 };
	const char *at = o.proxy ? o.proxy : o.addr;
	const char *colon = strrchr(at, ':');
	char ip[64];
	int one = 1, fd;

	snprintf(ip, sizeof(ip), "%.*s", colon && o.proxy ? (int)(colon - at) : (int)strlen(at), at);
	sa.sin_port = htons(o.proxy ? (uint16_t)strtol(colon + 1, NULL, 10) : (uint16_t)o.port);
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		die("bad address");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect failed");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));	/* a stalled peer fails the run */
	if (o.proxy)
		proxy_connect(fd);
	return fd;
}

static SSL *tls_open(int fd)
{
	static const unsigned char alpn[] = "\x02h2";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const unsigned char *sel = NULL;
	unsigned int sel_len = 0;
	SSL *ssl;

	if (!ctx || SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) != 1)
		die("cannot load --cafile");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);	/* the SSL holds its own reference */
	if (!ssl || SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0 ||
	    SSL_set_tlsext_host_name(ssl, o.host) != 1 || SSL_set1_host(ssl, o.host) != 1 ||
	    SSL_set_fd(ssl, fd) != 1)
		die("SSL setup failed");
	SSL_set_read_ahead(ssl, 1);	/* one recv for many records, as h2load's reads */
	if (SSL_connect(ssl) != 1)
		die("TLS handshake failed");
	SSL_get0_alpn_selected(ssl, &sel, &sel_len);
	if (sel_len != 2 || memcmp(sel, "h2", 2))
		die("the server did not choose h2");
	return ssl;
}

/* Everything the session has to send, in one SSL_write. 0, or -1. */
static int flush(struct run *r)
{
	static uint8_t out[RBUF];
	size_t n = 0;

	for (;;) {
		const uint8_t *p;
		ssize_t k = nghttp2_session_mem_send(r->sess, &p);

		if (k < 0)
			return -1;
		if (k == 0 || n + (size_t)k > sizeof(out)) {
			if (n && SSL_write(r->ssl, out, (int)n) != (int)n)
				return -1;
			n = 0;
			if (k == 0)
				return 0;
		}
		if ((size_t)k > sizeof(out)) {
			if (SSL_write(r->ssl, p, (int)k) != (int)k)
				return -1;
			continue;
		}
		memcpy(out + n, p, (size_t)k);
		n += (size_t)k;
	}
}

static void session_open(struct run *r)
{
	nghttp2_session_callbacks *cb;
	nghttp2_settings_entry set[] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
					 { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20 } };

	if (nghttp2_session_callbacks_new(&cb) != 0)
		die("out of memory");
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	if (nghttp2_session_client_new(&r->sess, cb, r) != 0)
		die("nghttp2_session_client_new failed");
	nghttp2_session_callbacks_del(cb);
	if (nghttp2_submit_settings(r->sess, NGHTTP2_FLAG_NONE, set, 2) != 0 ||
	    nghttp2_session_set_local_window_size(r->sess, NGHTTP2_FLAG_NONE, 0, 16 << 20) != 0)
		die("SETTINGS not submitted");
}

/* The load loop; 0 when the window ended, -1 when the connection broke. */
static int drive(struct run *r)
{
	static uint8_t in[RBUF];

	for (int i = 0; i < o.streams; i++)
		if (submit(r, &r->slots[i]) < 0)
			return -1;
	while (now() < r->t_end) {
		if (flush(r) < 0 || r->failed)
			return -1;
		/* one blocking read, then every record read ahead with it, before the next flush */
		do {
			int n = SSL_read(r->ssl, in, sizeof(in));

			if (n <= 0 || nghttp2_session_mem_recv(r->sess, in, (size_t)n) != n)
				return -1;
		} while (SSL_has_pending(r->ssl));
	}
	return 0;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

static double pct(const float *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)n);

	if (!n)
		return 0;
	return v[i < n ? i : n - 1];
}

static void report(struct run *r)
{
	double win = r->t_end - r->t_win;

	qsort(r->lat, r->nlat, sizeof(*r->lat), cmp_float);
	printf("{\"mode\":\"h2\",\"conns\":1,\"streams\":%d,\"duration\":%.3f,\"requests\":%llu,"
	       "\"requests_total\":%llu,\"errors\":%llu,\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
	       "\"p999_ms\":%.3f,\"mb_s\":%.1f,\"bytes_total\":%llu}\n",
	       o.streams, win, r->reqs, r->all, r->errs, r->reqs / win, pct(r->lat, r->nlat, 0.50),
	       pct(r->lat, r->nlat, 0.99), pct(r->lat, r->nlat, 0.999), r->bytes / win / 1e6, r->bytes);
}

static void add_header(const char *name, const char *value, size_t nlen)
{
	nghttp2_nv *nv = &o.hdrs[o.nhdrs++];

	nv->name = (uint8_t *)name;
	nv->namelen = nlen;
	nv->value = (uint8_t *)value;
	nv->valuelen = strlen(value);
	nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* -H 'Name: value': the name lowercased in place (HTTP/2 field names are lowercase). */
static void add_extra(char *line)
{
	char *colon = strchr(line, ':');
	char *v;

	if (!colon || colon == line || o.nhdrs >= sizeof(o.hdrs) / sizeof(o.hdrs[0]))
		die("bad or too many -H");
	for (char *p = line; p < colon; p++)
		*p = (char)tolower((unsigned char)*p);
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	add_header(line, v, (size_t)(colon - line));
}

static void usage(void)
{
	fprintf(stderr, "usage: h2gen --host NAME --port N --cafile CA.pem [--addr IP | --proxy IP:PORT\n"
			"             [--connect-to HOST:PORT]] [-m STREAMS] [-d SECS] [--warmup SECS]\n"
			"             [--path /] [-H 'Name: value']...\n");
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, NULL, 'h' }, { "port", 1, NULL, 'p' }, { "addr", 1, NULL, 'a' },
		{ "proxy", 1, NULL, 'x' }, { "connect-to", 1, NULL, 'C' }, { "path", 1, NULL, 'P' },
		{ "cafile", 1, NULL, 'k' }, { "warmup", 1, NULL, 'w' }, { NULL, 0, NULL, 0 } };
	char *extra[MAX_HEADERS];
	int nextra = 0, ch;

	while ((ch = getopt_long(argc, argv, "m:d:H:", lo, NULL)) != -1) {
		switch (ch) {
		case 'h': o.host = optarg; break;
		case 'p': o.port = (int)strtol(optarg, NULL, 10); break;
		case 'a': o.addr = optarg; break;
		case 'x': o.proxy = optarg; break;
		case 'C': o.connect_to = optarg; break;
		case 'P': o.path = optarg; break;
		case 'k': o.cafile = optarg; break;
		case 'w': o.warmup = strtod(optarg, NULL); break;
		case 'm': o.streams = (int)strtol(optarg, NULL, 10); break;
		case 'd': o.duration = strtod(optarg, NULL); break;
		case 'H':
			if (nextra == MAX_HEADERS)
				usage();
			extra[nextra++] = optarg;
			break;
		default: usage();
		}
	}
	if (!o.cafile || o.streams < 1 || o.streams > MAX_STREAMS || o.duration <= 0 ||
	    (o.proxy && !strchr(o.proxy, ':')))
		usage();
	snprintf(o.authority, sizeof(o.authority), "%s:%d", o.host, o.port);
	add_header(":method", "GET", 7);
	add_header(":scheme", "https", 7);
	add_header(":authority", o.authority, 10);
	add_header(":path", o.path, 5);
	for (int i = 0; i < nextra; i++)
		add_extra(extra[i]);
}

int main(int argc, char **argv)
{
	static struct run r;
	int fd, rc;

	parse_args(argc, argv);
	fd = dial();
	r.ssl = tls_open(fd);
	session_open(&r);
	r.t_win = now() + o.warmup;
	r.t_end = r.t_win + o.duration;
	rc = drive(&r);
	if (rc < 0) {
		fprintf(stderr, "h2gen: connection broke after %llu requests\n", r.all);
		ERR_print_errors_fp(stderr);
	}
	report(&r);
	free(r.lat);
	nghttp2_session_del(r.sess);
	SSL_free(r.ssl);
	close(fd);
	return rc < 0 ? 1 : 0;
}
