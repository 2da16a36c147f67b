/* dnsresp.c -- the jail's DNS responder on UDP: synthetic A records for names
 * the policy could allow, empty answers for other types, NXDOMAIN for the
 * rest; answers only from its own table, never forwards a query */
#include "dnsresp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "alloc.h"
#include "audit.h"
#include "dnsmsg.h"
#include "fakeip.h"

#define QUERY_MAX 1232   /* larger datagrams are dropped (EDNS-padded queries fit) */
#define REPLY_MAX 512    /* a reply is at most 12 + 259 + 16 bytes */
#define READS_PER_WAKE 64 /* datagrams handled per callback before yielding */
#define ANSWER_TTL 5

#define QTYPE_A 1
#define QCLASS_IN 1
#define QCLASS_ANY 255

enum { RC_NOERROR = 0, RC_FORMERR = 1, RC_SERVFAIL = 2, RC_NXDOMAIN = 3, RC_NOTIMP = 4,
       RC_REFUSED = 5 };

struct dnsresp {
	struct event_base *base; /* borrowed */
	evutil_socket_t fd;
	struct event *ev;        /* EV_READ|EV_PERSIST on fd */
	struct fakeip *fake;     /* borrowed */
	dnsresp_allow_fn allow;
	void *ctx;               /* borrowed, passed to allow */
};

static const char *rcode_name(int rcode)
{
	static const char *const names[] = { "NOERROR", "FORMERR", "SERVFAIL",
					     "NXDOMAIN", "NOTIMP", "REFUSED" };

	return rcode >= 0 && rcode < (int)(sizeof(names) / sizeof(names[0])) ? names[rcode]
									     : "OTHER";
}

/* One audit line: answer is the address given (NULL if none), rcode < 0
 * when the query was dropped unanswered. */
static void log_query(const struct sockaddr *from, const struct dns_query *q, int rcode,
		      const struct ipaddr *answer)
{
	struct jsonw w;
	struct ipaddr a;
	uint16_t port = 0;
	char buf[ADDR_STRLEN], client[ADDR_STRLEN + 8];

	/* an answer (or an empty NOERROR for AAAA) is routine; a name refused
	 * or a malformed query is a warning */
	if (!audit_begin(&w, answer || rcode == 0 ? AUDIT_INFO : AUDIT_WARN, "dns", 0))
		return;
	client[0] = '\0';
	if (addr_from_sockaddr(from, &a, &port))
		snprintf(client, sizeof(client), a.family == 6 ? "[%s]:%u" : "%s:%u",
			 addr_format(&a, buf), port);
	jsonw_str(&w, "client", client);
	if (q && q->name[0])
		jsonw_str(&w, "name", q->name);
	if (q && q->question_len)
		jsonw_int(&w, "qtype", q->qtype);
	if (answer)
		jsonw_str(&w, "answer", addr_format(answer, buf));
	else if (rcode >= 0)
		jsonw_str(&w, "rcode", rcode_name(rcode));
	else
		jsonw_str(&w, "error", "malformed");
	audit_emit(&w);
}

/* Decides the answer to one well-formed query: *rcode, and *addr filled
 * (returns true) when an A record is due. */
static bool decide(struct dnsresp *d, const struct dns_query *q, int *rcode, struct ipaddr *addr)
{
	*rcode = RC_NOERROR;
	if (q->qclass != QCLASS_IN && q->qclass != QCLASS_ANY) {
		*rcode = RC_REFUSED;
		return false;
	}
	if (!d->allow(d->ctx, q->name)) {
		*rcode = RC_NXDOMAIN;
		return false;
	}
	if (q->qtype != QTYPE_A)
		return false; /* AAAA and the rest: NOERROR, no records */
	if (!fakeip_addr_for(d->fake, q->name, addr) || addr->family != 4) {
		*rcode = RC_SERVFAIL;
		return false;
	}
	return true;
}

static void handle(struct dnsresp *d, const uint8_t *pkt, size_t n, const struct sockaddr *from,
		   socklen_t fromlen)
{
	struct dns_query q;
	struct ipaddr addr;
	uint8_t reply[REPLY_MAX];
	int rcode = RC_FORMERR, rc;
	bool answer = false;
	long len;

	rc = dnsmsg_parse_query(pkt, n, &q, &rcode);
	if (rc == -1) {
		log_query(from, NULL, -1, NULL);
		return;
	}
	if (rc == 0)
		answer = decide(d, &q, &rcode, &addr);
	len = dnsmsg_build_reply(pkt, &q, answer ? addr.b : NULL, ANSWER_TTL, rcode, reply,
				 sizeof(reply));
	log_query(from, &q, rcode, answer ? &addr : NULL);
	if (len < 0)
		return;
	/* a full socket buffer drops the reply, as UDP would; the client retries */
	(void)sendto(d->fd, reply, (size_t)len, MSG_DONTWAIT, from, fromlen);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct dnsresp *d = arg;
	uint8_t buf[QUERY_MAX];

	(void)what;
	for (int i = 0; i < READS_PER_WAKE; i++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT,
				     (struct sockaddr *)&from, &fromlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break; /* EAGAIN, or an ICMP error queued from an earlier send */
		}
		if ((size_t)n > sizeof(buf)) {
			log_query((struct sockaddr *)&from, NULL, -1, NULL);
			continue;
		}
		handle(d, buf, (size_t)n, (struct sockaddr *)&from, fromlen);
	}
}

struct dnsresp *dnsresp_new(struct event_base *base, const struct ipaddr *addr, uint16_t port,
			    struct fakeip *fake, dnsresp_allow_fn allow, void *ctx,
			    uint16_t *bound_port, char *err)
{
	struct dnsresp *d = NULL, *ret = NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct ipaddr got;
	uint16_t gport = 0;
	char buf[ADDR_STRLEN];

	if (!base || !addr || (addr->family != 4 && addr->family != 6) || !fake || !allow) {
		snprintf(err, 256, "dns responder: bad arguments");
		goto out;
	}
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->fake = fake;
	d->allow = allow;
	d->ctx = ctx;
	d->fd = socket(addr->family == 6 ? AF_INET6 : AF_INET,
		       SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->fd < 0) {
		snprintf(err, 256, "dns responder: socket: %s", strerror(errno));
		goto out;
	}
	memset(&ss, 0, sizeof(ss));
	sl = addr_to_sockaddr(addr, port, (struct sockaddr *)&ss);
	if (bind(d->fd, (struct sockaddr *)&ss, sl) != 0) {
		snprintf(err, 256, "dns responder: bind %s%s%s:%u: %s",
			 addr->family == 6 ? "[" : "", addr_format(addr, buf),
			 addr->family == 6 ? "]" : "", port, strerror(errno));
		goto out;
	}
	sl = sizeof(ss);
	if (getsockname(d->fd, (struct sockaddr *)&ss, &sl) != 0 ||
	    !addr_from_sockaddr((struct sockaddr *)&ss, &got, &gport)) {
		snprintf(err, 256, "dns responder: getsockname: %s", strerror(errno));
		goto out;
	}
	d->ev = event_new(base, d->fd, EV_READ | EV_PERSIST, on_read, d);
	if (!d->ev || event_add(d->ev, NULL) != 0) {
		snprintf(err, 256, "dns responder: cannot register the socket with libevent");
		goto out;
	}
	if (bound_port)
		*bound_port = gport;
	ret = d;
	d = NULL;
out:
	dnsresp_free(d);
	return ret;
}

void dnsresp_free(struct dnsresp *d)
{
	if (!d)
		return;
	if (d->ev)
		event_free(d->ev);
	d->ev = NULL;
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}
