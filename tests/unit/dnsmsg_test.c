/* dnsmsg_test.c -- unit tests for the DNS query parser and reply builder
 * (proxy/dnsmsg.c) with hand-built packets, and the UDP responder
 * (proxy/dnsresp.c) end to end on 127.0.0.1 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "audit.h"
#include "dnsmsg.h"
#include "dnsresp.h"
#include "fakeip.h"
#include "tap.h"

/* ---- building queries ---- */

struct qspec {
	uint16_t id;
	uint8_t flags2, flags3; /* header bytes 2 and 3 */
	uint16_t qdcount, arcount;
	const char *name;       /* dotted; each label written as is */
	uint16_t qtype, qclass;
	bool edns;              /* append an OPT record (and count it) */
};

static size_t put_name(uint8_t *p, const char *name)
{
	size_t n = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);

		p[n++] = (uint8_t)len;
		memcpy(p + n, name, len);
		n += len;
		name += len + (dot ? 1 : 0);
	}
	p[n++] = 0;
	return n;
}

static size_t build_query(uint8_t *p, const struct qspec *s)
{
	size_t n = 12;
	static const uint8_t opt[] = { 0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0 };

	p[0] = (uint8_t)(s->id >> 8), p[1] = (uint8_t)s->id;
	p[2] = s->flags2, p[3] = s->flags3;
	p[4] = (uint8_t)(s->qdcount >> 8), p[5] = (uint8_t)s->qdcount;
	p[6] = p[7] = p[8] = p[9] = 0;
	p[10] = 0, p[11] = (uint8_t)(s->arcount + (s->edns ? 1 : 0));
	n += put_name(p + n, s->name);
	p[n++] = (uint8_t)(s->qtype >> 8), p[n++] = (uint8_t)s->qtype;
	p[n++] = (uint8_t)(s->qclass >> 8), p[n++] = (uint8_t)s->qclass;
	if (s->edns) {
		memcpy(p + n, opt, sizeof(opt));
		n += sizeof(opt);
	}
	return n;
}

static size_t simple_query(uint8_t *p, uint16_t id, const char *name, uint16_t qtype)
{
	struct qspec s = { id, 0x01, 0x00, 1, 0, name, qtype, 1, false };

	return build_query(p, &s);
}

/* ---- a tiny reply reader ---- */

struct reply {
	uint16_t id, flags, qd, an, ns, ar;
	char qname[256];
	uint16_t qtype, qclass;
	uint16_t atype, aclass, rdlen;
	uint32_t ttl;
	uint8_t rdata[16];
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Returns true when the reply is well-formed, fully consumed, and has at
 * most one question and one answer whose name is a pointer to offset 12. */
static bool read_reply(const uint8_t *p, size_t n, struct reply *r)
{
	size_t off = 12, t = 0;

	memset(r, 0, sizeof(*r));
	if (n < 12)
		return false;
	r->id = rd16(p), r->flags = rd16(p + 2), r->qd = rd16(p + 4);
	r->an = rd16(p + 6), r->ns = rd16(p + 8), r->ar = rd16(p + 10);
	if (r->qd > 1 || r->an > 1 || r->ns || r->ar)
		return false;
	if (r->qd) {
		for (;;) {
			uint8_t len;

			if (off >= n)
				return false;
			len = p[off++];
			if (!len)
				break;
			if (len > 63 || off + len > n || t + len + 2 > sizeof(r->qname))
				return false;
			if (t)
				r->qname[t++] = '.';
			memcpy(r->qname + t, p + off, len);
			t += len, off += len;
		}
		if (off + 4 > n)
			return false;
		r->qtype = rd16(p + off), r->qclass = rd16(p + off + 2);
		off += 4;
	}
	if (r->an) {
		if (off + 12 > n || rd16(p + off) != 0xc00c)
			return false;
		r->atype = rd16(p + off + 2), r->aclass = rd16(p + off + 4);
		r->ttl = (uint32_t)rd16(p + off + 6) << 16 | rd16(p + off + 8);
		r->rdlen = rd16(p + off + 10);
		off += 12;
		if (r->rdlen > sizeof(r->rdata) || off + r->rdlen > n)
			return false;
		memcpy(r->rdata, p + off, r->rdlen);
		off += r->rdlen;
	}
	return off == n;
}

/* ---- parser ---- */

static void test_parse_valid(void)
{
	uint8_t p[600];
	struct dns_query q;
	int rcode = -7;
	size_t n = simple_query(p, 0xbeef, "example.com", 1);

	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "A query parses");
	ok(rcode == 0, "rcode 0");
	ok(q.id == 0xbeef, "id");
	ok(q.qtype == 1 && q.qclass == 1, "qtype A, class IN");
	ok(q.rd, "RD seen");
	is_str(q.name, "example.com", "name");
	ok(q.question_len == 17, "question length 17 (got %zu)", q.question_len);

	n = simple_query(p, 1, "WWW.Example.COM", 28);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0 && q.qtype == 28, "AAAA query parses");
	is_str(q.name, "www.example.com", "name lower-cased");

	struct qspec s = { 7, 0x00, 0x20, 1, 0, "api.ok.test", 1, 1, true };
	n = build_query(p, &s);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "query with an EDNS OPT record parses");
	ok(!q.rd, "RD clear seen");
	is_str(q.name, "api.ok.test", "EDNS query name");
	ok(q.question_len == 17, "EDNS not part of the question");

	n = simple_query(p, 2, "_dmarc.my-host_1.example", 16);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "underscore and hyphen accepted");
	is_str(q.name, "_dmarc.my-host_1.example", "name with _ and -");

	n = simple_query(p, 3, "a", 1);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "single-label name");
	is_str(q.name, "a", "single label");

	/* 63.63.63.61 = 253 characters, 255 bytes on the wire */
	char name[300];
	memset(name, 'a', sizeof(name));
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	n = simple_query(p, 4, name, 1);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "253-character name accepted");
	ok(strlen(q.name) == 253 && strcmp(q.name, name) == 0, "253-character name copied");

	/* trailing bytes after the sections are ignored */
	n = simple_query(p, 5, "x.y", 1);
	p[n++] = 0xff;
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "trailing byte ignored");
}

/* Expects rc and rcode; for -2 also whether the question is kept for echo. */
static void expect(const uint8_t *p, size_t n, int want_rc, int want_rcode, bool echo,
		   const char *what)
{
	struct dns_query q;
	int rcode = -7;
	int rc;

	memset(&q, 0x5a, sizeof(q));
	rc = dnsmsg_parse_query(p, n, &q, &rcode);
	if (!ok(rc == want_rc, "%s: returns %d", what, want_rc)) {
		printf("#   got %d\n", rc);
		return;
	}
	if (rc == -1) {
		ok(rcode == -7 && q.id == 0x5a5a, "%s: nothing written", what);
		return;
	}
	if (rc == 0) {
		ok(rcode == 0 && q.name[0] != '\0' && q.question_len != 0, "%s: rcode 0, name", what);
		return;
	}
	ok(rcode == want_rcode && q.name[0] == '\0' && (q.question_len != 0) == echo,
	   "%s: rcode %d, name empty, question %s", what, want_rcode, echo ? "kept" : "dropped");
}

static void test_parse_malformed(void)
{
	uint8_t p[600], good[600];
	size_t n, gn;
	char name[300];

	gn = simple_query(good, 9, "www.example.com", 1);

	expect(good, 0, -1, 0, false, "empty datagram");
	expect(good, 11, -1, 0, false, "11 bytes");
	memcpy(p, good, gn), p[2] |= 0x80;
	expect(p, gn, -1, 0, false, "QR=1 (a response)");
	memcpy(p, good, gn), p[2] |= 2 << 3;
	expect(p, gn, -2, 4, false, "opcode STATUS");
	memcpy(p, good, gn), p[2] |= 5 << 3;
	expect(p, gn, -2, 4, false, "opcode UPDATE");
	memcpy(p, good, gn), p[2] |= 0x02;
	expect(p, gn, -2, 1, true, "TC set");
	memcpy(p, good, gn), p[5] = 0;
	expect(p, gn, -2, 1, false, "QDCOUNT 0");
	memcpy(p, good, gn), p[5] = 2;
	expect(p, gn, -2, 1, false, "QDCOUNT 2");
	memcpy(p, good, gn), p[4] = 1;
	expect(p, gn, -2, 1, false, "QDCOUNT 257");

	/* truncated at every length */
	for (size_t k = 0; k < gn; k++) {
		struct dns_query q;
		int rcode = -7, rc = dnsmsg_parse_query(good, k, &q, &rcode);
		bool want = k < 12 ? rc == -1 : rc == -2 && rcode == 1 && q.question_len == 0;

		if (!want) {
			ok(0, "truncated at %zu: rc %d rcode %d", k, rc, rcode);
			break;
		}
	}
	ok(1, "truncated at every length 0..%zu: -1 below 12 bytes, FORMERR after", gn - 1);

	/* a compression pointer in place of the name, and after a label */
	memcpy(p, good, 12);
	n = 12;
	p[n++] = 0xc0, p[n++] = 0x0c, p[n++] = 0, p[n++] = 1, p[n++] = 0, p[n++] = 1;
	expect(p, n, -2, 1, false, "compression pointer as name");
	memcpy(p, good, 12);
	n = 12;
	p[n++] = 3, memcpy(p + n, "www", 3), n += 3;
	p[n++] = 0xc0, p[n++] = 0x0c, p[n++] = 0, p[n++] = 1, p[n++] = 0, p[n++] = 1;
	expect(p, n, -2, 1, false, "compression pointer after a label");
	memcpy(p, good, 12);
	n = 12;
	p[n++] = 0x41, memset(p + n, 'a', 1), n += 1, p[n++] = 0;
	p[n++] = 0, p[n++] = 1, p[n++] = 0, p[n++] = 1;
	expect(p, n, -2, 1, false, "extended label type 0x40");

	/* a 64-byte label */
	memset(name, 'b', 64);
	strcpy(name + 64, ".com");
	n = simple_query(p, 1, name, 1);
	expect(p, n, -2, 1, false, "64-byte label");
	/* 63-byte label is fine */
	n = simple_query(p, 1, name + 1, 1);
	expect(p, n, 0, 0, true, "63-byte label");

	/* 254 characters (256 bytes on the wire) */
	memset(name, 'a', sizeof(name));
	name[63] = name[127] = name[191] = '.';
	name[254] = '\0';
	n = simple_query(p, 1, name, 1);
	expect(p, n, -2, 1, false, "254-character name");
	/* many short labels: 128 x "a." is 256 wire bytes */
	for (int i = 0; i < 128; i++)
		name[2 * i] = 'a', name[2 * i + 1] = '.';
	name[255] = '\0';
	n = simple_query(p, 1, name, 1);
	expect(p, n, -2, 1, false, "128 one-byte labels");
	name[253] = '\0'; /* 127 labels: 254 wire bytes + root */
	n = simple_query(p, 1, name, 1);
	expect(p, n, 0, 0, true, "127 one-byte labels");

	/* bytes outside [A-Za-z0-9_-]: the question is readable, so echoed */
	n = simple_query(p, 1, "exa mple.com", 1);
	expect(p, n, -2, 1, true, "space in a label");
	n = simple_query(p, 1, "a*.com", 1);
	expect(p, n, -2, 1, true, "asterisk in a label");
	n = simple_query(p, 1, "caf\xc3\xa9.com", 1);
	expect(p, n, -2, 1, true, "UTF-8 in a label");
	memcpy(p, good, gn);
	p[12 + 2] = '.'; /* the "www" label becomes "w.w" */
	expect(p, gn, -2, 1, true, "dot inside a label");
	memcpy(p, good, gn);
	p[13] = 0; /* NUL byte in a label */
	expect(p, gn, -2, 1, true, "NUL inside a label");
	n = simple_query(p, 1, "", 2);
	expect(p, n, -2, 1, true, "root name");
}

/* ---- reply building ---- */

static void test_build(void)
{
	uint8_t p[600], out[600];
	struct dns_query q;
	struct reply r;
	int rcode;
	size_t n = simple_query(p, 0x1234, "Api.Example.com", 1);
	static const uint8_t addr[4] = { 198, 18, 0, 1 };
	long len;

	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "query for the reply parses");
	len = dnsmsg_build_reply(p, &q, addr, 5, 0, out, sizeof(out));
	ok(len == 12 + 21 + 16, "A reply length %ld", len);
	{
		uint8_t want[12 + 21 + 16] = {
			0x12, 0x34, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0,
			3, 'A', 'p', 'i', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
			0, 1, 0, 1,
			0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 198, 18, 0, 1,
		};
		ok(len == (long)sizeof(want) && memcmp(out, want, sizeof(want)) == 0,
		   "A reply byte by byte (question echoed with its case)");
	}
	ok(read_reply(out, (size_t)len, &r), "A reply reads back");
	ok(r.id == 0x1234 && r.qd == 1 && r.an == 1, "id, one question, one answer");
	ok((r.flags & 0x8000) && (r.flags & 0x0400) && (r.flags & 0x0100) && !(r.flags & 0x0080) &&
		   (r.flags & 0x000f) == 0 && !(r.flags & 0x7800) && !(r.flags & 0x0200),
	   "QR, AA, RD echoed, RA clear, TC clear, opcode 0, NOERROR");
	is_str(r.qname, "Api.Example.com", "question name");
	ok(r.atype == 1 && r.aclass == 1 && r.ttl == 5 && r.rdlen == 4 &&
		   memcmp(r.rdata, addr, 4) == 0,
	   "answer A IN TTL 5 198.18.0.1");
	ok(dnsmsg_build_reply(p, &q, addr, 5, 0, out, (size_t)len) == len, "exact capacity fits");
	ok(dnsmsg_build_reply(p, &q, addr, 5, 0, out, (size_t)len - 1) == -1, "one short: -1");
	ok(dnsmsg_build_reply(p, &q, addr, 0x01020304, 0, out, sizeof(out)) == len &&
		   out[12 + 21 + 6] == 1 && out[12 + 21 + 9] == 4,
	   "TTL big-endian");

	len = dnsmsg_build_reply(p, &q, NULL, 5, 3, out, sizeof(out));
	ok(len == 12 + 21 && read_reply(out, (size_t)len, &r), "NXDOMAIN reply reads back");
	ok(r.an == 0 && r.qd == 1 && (r.flags & 0xf) == 3 && (r.flags & 0x8400) == 0x8400,
	   "NXDOMAIN: no answer, rcode 3, QR AA");

	/* AAAA: an address is never put in an AAAA answer */
	n = simple_query(p, 0x4321, "x.ok.test", 28);
	p[2] = 0; /* RD clear */
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "AAAA parses");
	len = dnsmsg_build_reply(p, &q, addr, 5, 0, out, sizeof(out));
	ok(len == 12 + (long)q.question_len && read_reply(out, (size_t)len, &r) && r.an == 0 &&
		   r.qtype == 28 && (r.flags & 0xf) == 0,
	   "AAAA: NOERROR, empty");
	ok(!(r.flags & 0x0100), "RD clear echoed");

	/* EDNS in the query: the reply carries the question only */
	struct qspec s = { 77, 0x01, 0, 1, 0, "e.ok.test", 1, 1, true };
	n = build_query(p, &s);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == 0, "EDNS query parses");
	len = dnsmsg_build_reply(p, &q, addr, 5, 0, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.ar == 0 && r.an == 1,
	   "EDNS query: reply without OPT, one answer");

	/* error replies */
	n = simple_query(p, 0x55aa, "www.example.com", 1);
	p[5] = 2;
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == -2 && rcode == 1, "QDCOUNT 2: FORMERR");
	len = dnsmsg_build_reply(p, &q, addr, 5, rcode, out, sizeof(out));
	ok(len == 12 && read_reply(out, 12, &r) && r.id == 0x55aa && r.qd == 0 && r.an == 0 &&
		   (r.flags & 0xf) == 1,
	   "FORMERR without a question, no answer even with an address");
	n = simple_query(p, 0x55ab, "www.example.com", 1);
	p[2] |= 4 << 3;
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == -2 && rcode == 4, "opcode 4: NOTIMP");
	len = dnsmsg_build_reply(p, &q, NULL, 5, rcode, out, sizeof(out));
	ok(len == 12 && read_reply(out, 12, &r) && ((r.flags >> 11) & 0xf) == 4 &&
		   (r.flags & 0xf) == 4,
	   "NOTIMP echoes the opcode");
	n = simple_query(p, 0x55ac, "bad*.example", 1);
	ok(dnsmsg_parse_query(p, n, &q, &rcode) == -2, "bad name: -2");
	len = dnsmsg_build_reply(p, &q, NULL, 5, rcode, out, sizeof(out));
	ok(len > 12 && read_reply(out, (size_t)len, &r) && r.qd == 1 &&
		   strcmp(r.qname, "bad*.example") == 0 && (r.flags & 0xf) == 1,
	   "bad name: FORMERR echoes the question");
	ok(dnsmsg_build_reply(p, &q, NULL, 5, 16, out, sizeof(out)) == -1, "rcode 16 refused");
}

/* ---- the responder, end to end ---- */

static bool allow_ok_test(void *ctx, const char *name)
{
	size_t n = strlen(name);

	(*(int *)ctx)++;
	return n > 8 && strcmp(name + n - 8, ".ok.test") == 0;
}

/* Sends pkt to port; runs the loop until a reply arrives (or ~1 s passes).
 * Returns the reply length, or -1. */
static long exchange(struct event_base *base, int cfd, uint16_t port, const uint8_t *pkt,
		     size_t n, uint8_t *out, size_t cap)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (n && sendto(cfd, pkt, n, 0, (struct sockaddr *)&sin, sizeof(sin)) != (ssize_t)n)
		return -1;
	for (int i = 0; i < 1000; i++) {
		ssize_t k;

		event_base_loop(base, EVLOOP_NONBLOCK);
		k = recv(cfd, out, cap, MSG_DONTWAIT);
		if (k >= 0)
			return (long)k;
		usleep(1000);
	}
	return -1;
}

static void test_responder(void)
{
	char logpath[] = "/tmp/dnsmsg_test.XXXXXX";
	int logfd = mkstemp(logpath);
	struct event_base *base = event_base_new();
	struct fakeip *fake = fakeip_new(16);
	struct ipaddr lo = { 4, { 127, 0, 0, 1 } }, a;
	struct dnsresp *d;
	uint16_t port = 0;
	int calls = 0, cfd;
	char err[256] = "", name[64];
	uint8_t p[2048], out[600];
	struct reply r;
	long len;
	size_t n;

	ok(logfd >= 0 && audit_open(logpath) == 0, "audit log opened");
	d = dnsresp_new(base, &lo, 0, fake, allow_ok_test, &calls, &port, err);
	if (!ok(d != NULL && port != 0, "responder bound on 127.0.0.1:%u", port)) {
		printf("# %s\n", err);
		goto out;
	}
	cfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	n = simple_query(p, 101, "Api.OK.test", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r), "A reply received");
	ok(r.id == 101 && r.an == 1 && r.atype == 1 && r.ttl == 5 && (r.flags & 0xf) == 0,
	   "A answer, TTL 5");
	a.family = 4;
	memcpy(a.b, r.rdata, 4);
	ok(fakeip_in_range(&a), "address in 198.18.0.0/15");
	ok(fakeip_name_for(fake, &a, name, sizeof(name)) && strcmp(name, "api.ok.test") == 0,
	   "address maps back to the lower-cased name");
	is_str(r.qname, "Api.OK.test", "question echoed");

	n = simple_query(p, 102, "api.ok.test", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.an == 1 && memcmp(r.rdata, a.b, 4) == 0,
	   "same name, same address");

	n = simple_query(p, 103, "api.ok.test", 28);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 103 && r.an == 0 &&
		   (r.flags & 0xf) == 0,
	   "AAAA: NOERROR, empty");

	n = simple_query(p, 104, "api.ok.test", 16);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 104 && r.an == 0 &&
		   (r.flags & 0xf) == 0,
	   "TXT for an allowed name: NOERROR, empty");

	n = simple_query(p, 105, "evil.example", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 105 && r.an == 0 &&
		   (r.flags & 0xf) == 3,
	   "denied name: NXDOMAIN");

	n = simple_query(p, 106, "ok.test", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 106 && (r.flags & 0xf) == 3,
	   "ok.test itself: NXDOMAIN");

	{
		struct qspec s = { 107, 0x01, 0, 1, 0, "v.ok.test", 16, 3, false }; /* CHAOS */
		n = build_query(p, &s);
		len = exchange(base, cfd, port, p, n, out, sizeof(out));
		ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 107 && (r.flags & 0xf) == 5,
		   "class CH: REFUSED");
	}

	n = simple_query(p, 108, "bad*.ok.test", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 108 && (r.flags & 0xf) == 1 &&
		   r.an == 0,
	   "bad name: FORMERR");

	/* garbage, a response and an oversized datagram get no reply: the next
	 * reply received is the one to the query sent after them */
	{
		struct sockaddr_in sin;
		static const uint8_t junk[] = "GET / HTTP/1.1\r\n";

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sendto(cfd, junk, 5, 0, (struct sockaddr *)&sin, sizeof(sin));
		n = simple_query(p, 109, "api.ok.test", 1);
		p[2] |= 0x80;
		sendto(cfd, p, n, 0, (struct sockaddr *)&sin, sizeof(sin));
		memset(p + n, 0, sizeof(p) - n);
		sendto(cfd, p, 1500, 0, (struct sockaddr *)&sin, sizeof(sin));
		n = simple_query(p, 110, "api.ok.test", 1);
		p[11] = 0;
		memset(p + n, 0xee, 1300 - n); /* trailing junk beyond the cap */
		p[2] &= 0x7f;
		sendto(cfd, p, 1300, 0, (struct sockaddr *)&sin, sizeof(sin));
	}
	n = simple_query(p, 111, "z.ok.test", 1);
	len = exchange(base, cfd, port, p, n, out, sizeof(out));
	ok(len > 0 && read_reply(out, (size_t)len, &r) && r.id == 111 && r.an == 1,
	   "garbage, a response and oversized datagrams: no reply");
	ok(memcmp(r.rdata, a.b, 4) != 0, "another name, another address");
	ok(calls == 7, "allow called once per well-formed IN query (%d)", calls);

	close(cfd);
	audit_close();
	{
		FILE *f = fopen(logpath, "r");
		char line[4096];
		int lines = 0, a_ok = 0, nx = 0, bad = 0;

		while (f && fgets(line, sizeof(line), f)) {
			lines++;
			if (!strstr(line, "\"event\":\"dns\"") || !strstr(line, "\"client\":\"127.0.0.1:"))
				continue;
			if (strstr(line, "\"name\":\"api.ok.test\"") && strstr(line, "\"qtype\":1") &&
			    strstr(line, "\"answer\":\"198.18.0.1\""))
				a_ok++;
			if (strstr(line, "\"name\":\"evil.example\"") &&
			    strstr(line, "\"rcode\":\"NXDOMAIN\""))
				nx++;
			if (strstr(line, "\"error\":\"malformed\""))
				bad++;
		}
		if (f)
			fclose(f);
		ok(lines == 13, "one audit line per datagram (%d)", lines);
		ok(a_ok == 2, "A answers logged with name, qtype and address (%d)", a_ok);
		ok(nx == 1, "NXDOMAIN logged with the rcode");
		ok(bad == 4, "dropped datagrams logged as malformed (%d)", bad);
	}
out:
	if (logfd >= 0) {
		close(logfd);
		unlink(logpath);
	}
	dnsresp_free(d);
	fakeip_free(fake);
	event_base_free(base);
}

static void test_responder_errors(void)
{
	struct event_base *base = event_base_new();
	struct fakeip *fake = fakeip_new(4);
	struct ipaddr lo = { 4, { 127, 0, 0, 1 } }, bad = { 5, { 0 } };
	struct dnsresp *d, *d2;
	uint16_t port = 0, port2 = 0;
	char err[256] = "";
	int calls = 0;

	d = dnsresp_new(base, &lo, 0, fake, allow_ok_test, &calls, &port, err);
	ok(d != NULL, "first responder");
	d2 = dnsresp_new(base, &lo, port, fake, allow_ok_test, &calls, &port2, err);
	ok(d2 == NULL && strstr(err, "bind 127.0.0.1:") && strstr(err, "in use"),
	   "port in use: error names the address (%s)", err);
	ok(port2 == 0, "bound_port untouched on failure");
	ok(dnsresp_new(base, &bad, 0, fake, allow_ok_test, &calls, &port2, err) == NULL,
	   "bad family refused");
	dnsresp_free(d);
	dnsresp_free(NULL);
	fakeip_free(fake);
	event_base_free(base);
}

int main(void)
{
	test_parse_valid();
	test_parse_malformed();
	test_build();
	test_responder();
	test_responder_errors();
	return done_testing();
}
