/* dnsmsg.c -- strict DNS query parsing and reply building (RFC 1035 wire
 * format) for the jail's resolver; no I/O, every read bounds-checked */
#include "dnsmsg.h"

#include <string.h>

#define HDR_LEN 12
#define WIRE_NAME_MAX 255 /* RFC 1035 2.3.4: octets incl. length bytes and root */
#define TEXT_NAME_MAX 253 /* the same name written with dots, no trailing dot */
#define QUESTION_MAX (WIRE_NAME_MAX + 4)

#define RCODE_FORMERR 1
#define RCODE_NOTIMP 4

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A name byte we accept: letters, digits, '-' and '_' (SRV-style labels). */
static bool name_byte_ok(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Reads the question at pkt[HDR_LEN..n). Returns the question's length when it
 * is complete, uncompressed and at most WIRE_NAME_MAX bytes of name, else 0.
 * *valid tells whether the name is also acceptable (non-empty, allowed bytes,
 * at most TEXT_NAME_MAX characters); the lower-cased name goes to name only
 * then. */
static size_t read_question(const uint8_t *pkt, size_t n, char *name, uint16_t *qtype,
			    uint16_t *qclass, bool *valid)
{
	size_t off = HDR_LEN, tlen = 0;
	bool good = true;
	char text[DNSMSG_NAME_MAX];

	for (;;) {
		uint8_t len;

		if (off >= n || off - HDR_LEN >= WIRE_NAME_MAX)
			return 0;
		len = pkt[off++];
		if (len == 0)
			break;
		if (len > 63) /* 0xC0 compression pointer, 0x40/0x80 extended types */
			return 0;
		if (len > n - off || off - HDR_LEN + len >= WIRE_NAME_MAX)
			return 0;
		/* text form: a dot between labels; wire length <= 255 keeps it < 254 */
		if (tlen)
			text[tlen++] = '.';
		for (size_t i = 0; i < len; i++) {
			uint8_t c = pkt[off + i];

			if (!name_byte_ok(c))
				good = false;
			text[tlen++] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
		}
		off += len;
	}
	if (n - off < 4)
		return 0;
	if (tlen == 0 || tlen > TEXT_NAME_MAX)
		good = false;
	text[tlen] = '\0';
	*qtype = get16(pkt + off);
	*qclass = get16(pkt + off + 2);
	*valid = good;
	if (good)
		memcpy(name, text, tlen + 1);
	return off + 4 - HDR_LEN;
}

/* Returns 0 (q filled, *rcode 0); -1 (no answer; nothing written); -2 with
 * *rcode FORMERR or NOTIMP, q->id and q->rd set, q->name empty, and
 * q->question_len (with qtype, qclass) set only when the question section was
 * structurally readable so the error reply can echo it, else 0. */
int dnsmsg_parse_query(const uint8_t *pkt, size_t n, struct dns_query *q, int *rcode)
{
	struct dns_query t;
	uint8_t flags = 0;
	bool valid = false;
	int rc = -1;

	memset(&t, 0, sizeof(t));
	if (!pkt || n < HDR_LEN)
		goto out;
	flags = pkt[2];
	if (flags & 0x80) /* QR: a response; never answer one (no reflection loops) */
		goto out;
	t.id = get16(pkt);
	t.rd = flags & 0x01;
	rc = -2;
	*rcode = RCODE_NOTIMP;
	if ((flags >> 3 & 0x0f) != 0) /* OPCODE other than QUERY */
		goto out;
	*rcode = RCODE_FORMERR;
	if (get16(pkt + 4) != 1)
		goto out;
	t.question_len = read_question(pkt, n, t.name, &t.qtype, &t.qclass, &valid);
	if (t.question_len == 0 || !valid || (flags & 0x02)) /* TC: a query is never truncated */
		goto out;
	*rcode = 0;
	rc = 0;
out:
	if (rc == -2)
		t.name[0] = '\0';
	if (rc != -1)
		*q = t;
	return rc;
}

long dnsmsg_build_reply(const uint8_t *pkt, const struct dns_query *q, const uint8_t *addr4,
			uint32_t ttl, int rcode, uint8_t *out, size_t cap)
{
	size_t qlen = q->question_len, len;
	bool answer = addr4 && qlen && q->qtype == 1;
	uint8_t opcode = pkt[2] & 0x78; /* echoed (NOTIMP for another opcode) */

	if (qlen > QUESTION_MAX || rcode < 0 || rcode > 15)
		return -1;
	len = HDR_LEN + qlen + (answer ? 16 : 0);
	if (len > cap)
		return -1;
	put16(out, q->id);
	out[2] = (uint8_t)(0x80 | opcode | 0x04 | (q->rd ? 0x01 : 0)); /* QR, AA, RD */
	out[3] = (uint8_t)rcode;                                       /* RA=0, Z=0 */
	put16(out + 4, qlen ? 1 : 0);
	put16(out + 6, answer ? 1 : 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	memcpy(out + HDR_LEN, pkt + HDR_LEN, qlen);
	if (answer) {
		uint8_t *a = out + HDR_LEN + qlen;

		put16(a, 0xc00c); /* the name in the question */
		put16(a + 2, 1);  /* TYPE A */
		put16(a + 4, 1);  /* CLASS IN */
		put32(a + 6, ttl);
		put16(a + 10, 4);
		memcpy(a + 12, addr4, 4);
	}
	return (long)len;
}
