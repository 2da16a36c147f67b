/* dnsmsg.h -- parsing DNS queries and building answers for the jail's
 * resolver (a pure parser: no I/O) */
#ifndef EGRESSD_DNSMSG_H
#define EGRESSD_DNSMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNSMSG_NAME_MAX 254

struct dns_query {
	uint16_t id;
	uint16_t qtype;   /* 1 A, 28 AAAA, ... */
	uint16_t qclass;  /* 1 IN */
	bool rd;          /* recursion desired (echoed) */
	char name[DNSMSG_NAME_MAX]; /* lower-case, no trailing dot, printable ASCII only */
	size_t question_len; /* bytes of the question section (for echoing it) */
};

/* Parses a query: header with QR=0, OPCODE=0, QDCOUNT=1, no compression in the
 * question, labels 1..63 bytes of [A-Za-z0-9_-], total name <= 253. Extra
 * sections (EDNS OPT) are ignored. Returns 0, or -1 (malformed: no answer),
 * or -2 (well-formed but unsupported: answer FORMERR/NOTIMP via rcode). */
int dnsmsg_parse_query(const uint8_t *pkt, size_t n, struct dns_query *q, int *rcode);

/* Builds the reply to q in out (cap bytes): the question echoed, and either
 * one A record (addr4, TTL ttl) when addr4 is non-NULL and qtype is A, or no
 * answer with rcode (0 NOERROR empty, 3 NXDOMAIN, 5 REFUSED...). Returns the
 * length, or -1 if it does not fit. pkt is the original query (for the
 * question bytes). */
long dnsmsg_build_reply(const uint8_t *pkt, const struct dns_query *q, const uint8_t *addr4,
			uint32_t ttl, int rcode, uint8_t *out, size_t cap);

#endif
