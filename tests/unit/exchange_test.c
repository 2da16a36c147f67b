/* exchange_test.c -- the exchange's lifecycle without a proxy process: a
 * connection-like owner reads requests from a socketpair through a
 * bufferevent on a real event_base, creates an exchange at a request's first
 * byte, begins it at its head, ends it after a response parsed by the
 * exchange's own parser, and holds none between requests; the `request`
 * lines it writes (complete, blocked, cut off) are read back from the log */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "audit.h"
#include "conn_int.h"
#include "exchange.h"
#include "httpmsg.h"
#include "metrics.h"
#include "policy.h"
#include "server.h"
#include "tap.h"

/* The owner: a struct conn as the engine's own, minus the proxy. */
struct owner {
	struct conn c;
	struct bufferevent *bev;
	int made, ended, alive, most_alive; /* exchanges created, ended, at once */
	int want;                           /* requests to answer before stopping */
	bool stop;
};

static struct exchange *ex_new(struct owner *o)
{
	o->made++;
	if (++o->alive > o->most_alive)
		o->most_alive = o->alive;
	return exchange_new();
}

static void ex_end(struct owner *o)
{
	exchange_free(o->c.ex);
	o->c.ex = NULL;
	o->ended++;
	o->alive--;
}

/* The upstream's reply, parsed by the exchange's response parser. */
static int respond(struct exchange *ex, const char *reply)
{
	size_t used = 0, n = strlen(reply);
	enum httpmsg_status s = httpmsg_feed(ex->resp, reply, n, &used);

	if (s == HTTPMSG_HEAD) {
		httpmsg_resume(ex->resp);
		s = httpmsg_feed(ex->resp, reply + used, n - used, &used);
	}
	ex->req_down = n;
	return s == HTTPMSG_DONE ? httpmsg_status_code(ex->resp) : -1;
}

/* Request bytes: head (exchange_begin), body, then the reply; as conn.c,
 * httpfwd.c and httpresp.c do, without the sockets upstream. */
static void on_read(struct bufferevent *bev, void *arg)
{
	struct owner *o = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!o->stop) {
		struct exchange *ex;
		size_t n = evbuffer_get_length(in), used = 0, tl;
		const char *data = n ? (const char *)evbuffer_pullup(in, -1) : "", *target;
		enum httpmsg_status s;

		/* a begun request is fed even with no input: a message that ends
		 * with its head completes on a zero-byte feed (httpfwd_pump) */
		if (n == 0 && !(o->c.ex && exchange_begun(o->c.ex)))
			return;
		if (!o->c.ex)
			o->c.ex = ex_new(o);
		ex = o->c.ex;
		s = httpmsg_feed(ex->req, data, n, &used);
		evbuffer_drain(in, used);
		ex->req_up += used;
		if (s == HTTPMSG_NEED_MORE)
			return;
		if (s == HTTPMSG_HEAD && !exchange_begun(ex)) {
			exchange_begin(ex, false);
			target = httpmsg_target(ex->req, &tl);
			exchange_set_path(ex, target, tl);
			httpmsg_resume(ex->req);
			o->c.st = ST_HTTP;
			continue;
		}
		if (s != HTTPMSG_DONE)
			break;
		if (strcmp(ex->method, "DELETE") == 0) { /* refused: no upstream */
			ex->discarding = true;
			ex->block_status = 403;
			ex->block_reason = REASON_RULE_DENIED;
			exchange_log(ex, &o->c, ex->block_status);
		} else {
			exchange_log(ex, &o->c, respond(ex, strcmp(ex->method, "HEAD") == 0 ?
				     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" :
				     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
		}
		exchange_log(ex, &o->c, 599); /* a second time: nothing */
		o->c.st = ST_HEAD;
		ex_end(o);
		if (--o->want == 0)
			o->stop = true;
	}
}

static json_t *lines[16];
static int nlines;

static void read_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[4096];

	nlines = 0;
	while (f && fgets(buf, sizeof(buf), f) && nlines < 16) {
		json_t *j = json_loads(buf, 0, NULL);
		if (j && strcmp(json_string_value(json_object_get(j, "event")), "request") == 0)
			lines[nlines++] = j;
		else
			json_decref(j);
	}
	if (f)
		fclose(f);
}

static const char *str(int i, const char *k)
{
	return i < nlines ? json_string_value(json_object_get(lines[i], k)) : NULL;
}

static long long num(int i, const char *k)
{
	return i < nlines ? json_integer_value(json_object_get(lines[i], k)) : -1;
}

static bool has(int i, const char *k)
{
	return i < nlines && json_object_get(lines[i], k) != NULL;
}

static void run_until(struct event_base *base, struct owner *o)
{
	for (int i = 0; i < 1000 && !o->stop; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

int main(void)
{
	static const char reqs[] =
		"GET /a HTTP/1.1\r\nHost: x.test\r\n\r\n"
		"POST /b?q=1 HTTP/1.1\r\nHost: x.test\r\nContent-Length: 3\r\n\r\nabc"
		"HEAD /c HTTP/1.1\r\nHost: x.test\r\n\r\n"
		"DELETE /d HTTP/1.1\r\nHost: x.test\r\n\r\n";
	static const char cut[] = "PUT /e HTTP/1.1\r\nHost: x.test\r\nContent-Length: 9\r\n\r\nabc";
	static const char partial[] = "GET /f HTTP/1.1\r\nHo";
	char logpath[] = "/tmp/exchange_test.XXXXXX";
	struct metrics *m = metrics_new(1, "test");
	struct worker w = { .mx = metrics_worker(m, 0) };
	struct event_base *base = event_base_new();
	struct owner *o = calloc(1, sizeof(*o));
	int sv[2], fd = mkstemp(logpath);
	char *text;
	size_t tlen;

	ok(fd >= 0 && audit_open(logpath) == 0, "log opened");
	ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	o->c.w = &w;
	o->c.pol = policy_new();
	o->c.id = 7;
	o->c.mode = MODE_HTTP;
	o->c.st = ST_HEAD;
	snprintf(o->c.t.host, sizeof(o->c.t.host), "x.test");
	o->c.t.port = 80;
	o->bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	bufferevent_setcb(o->bev, on_read, NULL, NULL, o);
	bufferevent_enable(o->bev, EV_READ);

	/* four pipelined requests, one write: one exchange after the other */
	o->want = 4;
	ok(write(sv[1], reqs, sizeof(reqs) - 1) == (ssize_t)sizeof(reqs) - 1, "requests sent");
	run_until(base, o);
	ok(o->made == 4 && o->ended == 4, "4 exchanges made and ended (%d, %d)", o->made, o->ended);
	ok(o->most_alive == 1, "one at a time (%d at most)", o->most_alive);
	ok(o->c.ex == NULL, "between requests the owner holds no exchange");
	ok(o->c.bytes_up == sizeof(reqs) - 1, "request bytes added to the owner's (%llu)",
	   (unsigned long long)o->c.bytes_up);

	/* a request whose body stops: the connection ends under it */
	o->stop = false;
	o->want = 1;
	ok(write(sv[1], cut, sizeof(cut) - 1) == (ssize_t)sizeof(cut) - 1, "cut request sent");
	for (int i = 0; i < 1000 && !(o->c.ex && exchange_begun(o->c.ex) &&
				    evbuffer_get_length(bufferevent_get_input(o->bev)) == 0); i++)
		event_base_loop(base, EVLOOP_ONCE);
	ok(o->c.ex && exchange_begun(o->c.ex) && !exchange_logged(o->c.ex), "cut request in flight");
	exchange_log_cut(o->c.ex, &o->c);
	ok(exchange_logged(o->c.ex), "logged once cut");
	exchange_log_cut(o->c.ex, &o->c); /* again (conn_close after conn_close_flushed) */
	ex_end(o);

	/* a head never completed: nothing to log when cut */
	ok(write(sv[1], partial, sizeof(partial) - 1) == (ssize_t)sizeof(partial) - 1, "partial head");
	for (int i = 0; i < 1000 && !o->c.ex; i++)
		event_base_loop(base, EVLOOP_ONCE);
	ok(o->c.ex && !exchange_begun(o->c.ex), "an exchange exists from the first byte, not begun");
	exchange_log_cut(o->c.ex, &o->c);
	ok(!exchange_logged(o->c.ex), "a request not begun is not logged");
	ex_end(o);
	audit_close();

	read_log(logpath);
	ok(nlines == 5, "5 request lines (%d)", nlines);
	is_str(str(0, "method"), "GET", "1st: method");
	is_str(str(0, "path"), "/a", "1st: path");
	ok(num(0, "status") == 200 && num(0, "id") == 7, "1st: status 200, connection id");
	ok(num(0, "bytes_up") == 33 && num(0, "bytes_down") == 40, "1st: its own byte counts (%lld, %lld)",
	   num(0, "bytes_up"), num(0, "bytes_down"));
	is_str(str(1, "path"), "/b?q=1", "2nd: path with query");
	ok(num(1, "bytes_up") == 60, "2nd: head and body counted (%lld)", num(1, "bytes_up"));
	is_str(str(2, "method"), "HEAD", "3rd: HEAD");
	ok(num(2, "status") == 200, "3rd: its reply has no body despite Content-Length (status %lld)",
	   num(2, "status"));
	is_str(str(3, "decision"), "deny", "4th: blocked");
	is_str(str(3, "reason"), "rule-denied", "4th: reason");
	ok(num(3, "status") == 403, "4th: the block's status");
	ok(!has(0, "incomplete") && !has(3, "incomplete"), "complete ones are not incomplete");
	is_str(str(4, "method"), "PUT", "cut: method");
	ok(has(4, "incomplete") && num(4, "status") == 0, "cut: incomplete, status 0 (no response)");
	ok(num(4, "bytes_up") == 55, "cut: the bytes that came (%lld)", num(4, "bytes_up"));

	text = metrics_render(m, &tlen);
	ok(text && strstr(text, "egressd_requests_total{mode=\"http\",proto=\"http1\"} 3"),
	   "3 answered requests metered (the blocked and the cut one are not)");
	free(text);

	for (int i = 0; i < nlines; i++)
		json_decref(lines[i]);
	bufferevent_free(o->bev);
	close(sv[1]);
	policy_unref(o->c.pol);
	free(o);
	event_base_free(base);
	metrics_free(m);
	unlink(logpath);
	close(fd);
	return done_testing();
}
