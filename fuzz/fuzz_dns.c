/* fuzz_dns.c -- libFuzzer harness for the jail's DNS messages (dnsmsg.c):
 * any parsed query gets a reply that reads back as the same question */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t addr[4] = { 198, 18, 0, 1 };
	struct dns_query q, r;
	uint8_t out[600];
	int rcode = -1, rc2 = -1, rc = dnsmsg_parse_query(data, size, &q, &rcode);
	long len;

	if (rc == -1)
		return 0;
	if ((rc != 0 && rc != -2) || (rc == 0) != (rcode == 0) || q.question_len > size - 12 ||
	    q.question_len > 259 || (rc == 0 && (q.name[0] == '\0' || strlen(q.name) > 253)))
		abort();
	for (const char *c = q.name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '_' || *c == '.'))
			abort();
	len = dnsmsg_build_reply(data, &q, size % 2 ? addr : NULL, 5, rc ? rcode : 3, out,
				 sizeof(out));
	if (len != (long)(12 + q.question_len + (size % 2 && q.qtype == 1 && q.question_len ? 16 : 0)))
		abort();
	if (dnsmsg_parse_query(out, (size_t)len, &r, &rc2) != -1) /* QR=1: never answered */
		abort();
	if (rc == 0) { /* the reply's question, sent as a query, is the same question */
		out[2] &= 0x7f;
		if (dnsmsg_parse_query(out, (size_t)len, &r, &rc2) != 0 || r.id != q.id ||
		    r.qtype != q.qtype || r.qclass != q.qclass || r.rd != q.rd ||
		    strcmp(r.name, q.name) != 0 || r.question_len != q.question_len)
			abort();
	}
	if (dnsmsg_build_reply(data, &q, addr, 5, 0, out, 11) != -1)
		abort();
	return 0;
}
