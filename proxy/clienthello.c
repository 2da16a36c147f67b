/* clienthello.c -- finds the SNI and the ALPN offer in a TLS ClientHello
 * (possibly split over records and reads) without consuming it: a pure
 * parser, no I/O */
#include "clienthello.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define REC_HDR 5                  /* type, version (2), length (2) */
#define REC_MAX (16384 + 256)      /* largest record length accepted */
#define HS_HDR 4                   /* msg_type, length (3) */
#define CT_HANDSHAKE 22            /* TLS content type */
#define HT_CLIENT_HELLO 1          /* TLS handshake type */
#define EXT_SERVER_NAME 0          /* extension type of server_name */
#define EXT_ALPN 16                /* extension type of application_layer_protocol_negotiation */
#define SNI_HOST_NAME 0            /* name_type of host_name */
#define SNI_MAX 255                /* longest host name accepted */
#define STEP_OK (-1)               /* internal: a step succeeded, carry on */

/* A bounds-checked cursor over a byte range. */
struct rd {
	const unsigned char *p;
	size_t len; /* bytes in p */
	size_t off; /* next byte to read */
};

static size_t rd_left(const struct rd *r)
{
	return r->len - r->off;
}

/* Reads a big-endian integer of w bytes (1..3) into *v; 0 if short. */
static int rd_uint(struct rd *r, size_t w, size_t *v)
{
	size_t x = 0;

	if (rd_left(r) < w)
		return 0;
	for (size_t i = 0; i < w; i++)
		x = (x << 8) | r->p[r->off++];
	*v = x;
	return 1;
}

/* Reads a vector with a w-byte length prefix into *sub; 0 if short. */
static int rd_vec(struct rd *r, size_t w, struct rd *sub)
{
	size_t n;

	if (!rd_uint(r, w, &n) || rd_left(r) < n)
		return 0;
	sub->p = r->p + r->off;
	sub->len = n;
	sub->off = 0;
	r->off += n;
	return 1;
}

static int rd_skip(struct rd *r, size_t n)
{
	if (rd_left(r) < n)
		return 0;
	r->off += n;
	return 1;
}

/* Checks the record header bytes present at data[off..n); the header is
 * complete when STEP_OK is returned and *rlen holds the record length. */
static int record_header(const unsigned char *data, size_t n, size_t off, size_t *rlen)
{
	size_t len;

	if (data[off] != CT_HANDSHAKE)
		return off == 0 ? CH_NOT_TLS : CH_ERROR;
	if (n - off > 1 && data[off + 1] != 3)
		return CH_ERROR;
	if (n - off < REC_HDR)
		return CH_NEED_MORE;
	len = (size_t)data[off + 3] << 8 | data[off + 4];
	if (len == 0 || len > REC_MAX)
		return CH_ERROR;
	*rlen = len;
	return STEP_OK;
}

/* Total size of the handshake message once its header is in msg[0..have),
 * 0 while unknown; SIZE_MAX if it is not a ClientHello or could not fit,
 * with one record header, in CLIENTHELLO_MAX bytes of input. */
static size_t message_size(const unsigned char *msg, size_t have)
{
	size_t body;

	if (have >= 1 && msg[0] != HT_CLIENT_HELLO)
		return SIZE_MAX;
	if (have < HS_HDR)
		return 0;
	body = (size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3];
	return body > CLIENTHELLO_MAX - REC_HDR - HS_HDR ? SIZE_MAX : HS_HDR + body;
}

/* Appends handshake bytes from frag[0..flen) to msg until the message is
 * whole; STEP_OK once complete (*have == its size), CH_NEED_MORE or CH_ERROR. */
static int absorb(unsigned char *msg, size_t *have, const unsigned char *frag, size_t flen)
{
	size_t want, take;

	while (flen > 0) {
		want = message_size(msg, *have);
		if (want == SIZE_MAX)
			return CH_ERROR;
		want = want ? want - *have : HS_HDR - *have;
		take = flen < want ? flen : want;
		memcpy(msg + *have, frag, take);
		*have += take;
		frag += take;
		flen -= take;
		want = message_size(msg, *have);
		if (want == SIZE_MAX)
			return CH_ERROR;
		if (want == *have)
			return STEP_OK;
	}
	return CH_NEED_MORE;
}

/* Walks the records in data[0..n), reassembling the first handshake message
 * into msg (CLIENTHELLO_MAX bytes). STEP_OK when *msg_len bytes are whole.
 * The hello must end within the first CLIENTHELLO_MAX bytes of input. */
static int reassemble(const unsigned char *data, size_t n, unsigned char *msg, size_t *msg_len)
{
	size_t off = 0, have = 0, rlen = 0, avail;
	int r = CH_NEED_MORE;

	if (n > CLIENTHELLO_MAX)
		n = CLIENTHELLO_MAX;
	while (off < n) {
		r = record_header(data, n, off, &rlen);
		if (r != STEP_OK)
			break;
		avail = n - off - REC_HDR;
		r = absorb(msg, &have, data + off + REC_HDR, avail < rlen ? avail : rlen);
		if (r != CH_NEED_MORE || avail < rlen)
			break;
		off += REC_HDR + rlen;
	}
	if (r == STEP_OK)
		*msg_len = have;
	else if (r == CH_NEED_MORE && n >= CLIENTHELLO_MAX)
		r = CH_ERROR;
	return r;
}

/* A host name is 1..SNI_MAX printable, non-space ASCII bytes. */
static int host_name_ok(const struct rd *name)
{
	if (name->len == 0 || name->len > SNI_MAX)
		return 0;
	for (size_t i = 0; i < name->len; i++)
		if (name->p[i] < 0x21 || name->p[i] > 0x7e)
			return 0;
	return 1;
}

/* Parses server_name extension data: exactly one entry, a valid host_name
 * (as OpenSSL accepts it). Points *name at it; 0 if malformed. */
static int parse_server_name(struct rd ext, struct rd *name)
{
	struct rd list;
	size_t type;

	if (!rd_vec(&ext, 2, &list) || rd_left(&ext) != 0)
		return 0;
	if (!rd_uint(&list, 1, &type) || type != SNI_HOST_NAME)
		return 0;
	if (!rd_vec(&list, 2, name) || rd_left(&list) != 0)
		return 0;
	return host_name_ok(name);
}

/* What parse_hello found. */
struct hello {
	struct rd name;       /* the SNI host name (len 0: none) */
	struct ch_alpn alpn;  /* the ALPN offer */
};

/* Appends the wire form of proto (plen bytes) to a's offer unless it is
 * there already (a client may repeat a name). */
static void offer_add(struct ch_alpn *a, const char *proto, size_t plen)
{
	for (size_t i = 0; i < a->offer_len; i += 1 + a->offer[i])
		if (a->offer[i] == plen && memcmp(a->offer + i + 1, proto, plen) == 0)
			return;
	if (a->offer_len + 1 + plen > sizeof(a->offer))
		return; /* cannot happen: each of the two names is added once */
	a->offer[a->offer_len] = (unsigned char)plen;
	memcpy(a->offer + a->offer_len + 1, proto, plen);
	a->offer_len += 1 + plen;
}

static bool is_proto(const struct rd *name, const char *proto)
{
	size_t plen = strlen(proto);

	return name->len == plen && memcmp(name->p, proto, plen) == 0;
}

/* Parses ALPN extension data (RFC 7301 3.1): a non-empty list of non-empty
 * names, nothing after it. Fills *a; 0 if malformed. */
static int parse_alpn(struct rd ext, struct ch_alpn *a)
{
	struct rd list, name;

	memset(a, 0, sizeof(*a));
	a->present = true;
	if (!rd_vec(&ext, 2, &list) || rd_left(&ext) != 0 || list.len == 0)
		return 0;
	while (rd_left(&list) > 0) {
		if (!rd_vec(&list, 1, &name) || name.len == 0)
			return 0;
		a->names++;
		if (is_proto(&name, "h2"))
			offer_add(a, "h2", 2);
		else if (is_proto(&name, "http/1.1"))
			offer_add(a, "http/1.1", 8);
	}
	return 1;
}

/* Walks the extensions block into *h (name len 0 if no server_name; alpn
 * not present if none). Returns 0 on a malformed or duplicated extension. */
static int parse_extensions(struct rd exts, struct hello *h)
{
	unsigned char seen[65536 / 8];
	size_t type;
	struct rd data;

	memset(seen, 0, sizeof(seen));
	while (rd_left(&exts) > 0) {
		if (!rd_uint(&exts, 2, &type) || !rd_vec(&exts, 2, &data))
			return 0;
		if (seen[type / 8] & (1u << (type % 8)))
			return 0;
		seen[type / 8] |= (unsigned char)(1u << (type % 8));
		if (type == EXT_SERVER_NAME && !parse_server_name(data, &h->name))
			return 0;
		if (type == EXT_ALPN && !parse_alpn(data, &h->alpn))
			return 0;
	}
	return 1;
}

/* Parses a whole ClientHello message (header included) into *h. */
static int parse_hello(const unsigned char *msg, size_t len, struct hello *h)
{
	struct rd r = { msg, len, HS_HDR }, v;
	size_t version;

	memset(h, 0, sizeof(*h));
	if (!rd_uint(&r, 2, &version) || version >> 8 != 3 || !rd_skip(&r, 32))
		return 0;
	if (!rd_vec(&r, 1, &v) || v.len > 32)                    /* session_id */
		return 0;
	if (!rd_vec(&r, 2, &v) || v.len < 2 || v.len % 2 != 0)   /* cipher_suites */
		return 0;
	if (!rd_vec(&r, 1, &v) || v.len < 1)                     /* compression */
		return 0;
	if (rd_left(&r) == 0)                                    /* no extensions */
		return 1;
	if (!rd_vec(&r, 2, &v) || rd_left(&r) != 0)
		return 0;
	return parse_extensions(v, h);
}

enum ch_result clienthello_parse(const unsigned char *data, size_t n, char *sni, size_t sni_cap,
				 struct ch_alpn *alpn)
{
	unsigned char msg[CLIENTHELLO_MAX];
	size_t msg_len = 0;
	struct hello h;
	int r;

	r = reassemble(data, n, msg, &msg_len);
	if (r != STEP_OK)
		goto out;
	r = CH_ERROR;
	if (!parse_hello(msg, msg_len, &h))
		goto out;
	if (h.name.len > 0) {
		if (!sni || h.name.len >= sni_cap)
			goto out;
		memcpy(sni, h.name.p, h.name.len);
		sni[h.name.len] = '\0';
	}
	if (alpn)
		*alpn = h.alpn;
	r = h.name.len > 0 ? CH_SNI : CH_NO_SNI;
out:
	return (enum ch_result)r;
}

const char *clienthello_result_str(enum ch_result r)
{
	switch (r) {
	case CH_NEED_MORE:
		return "need-more";
	case CH_SNI:
		return "sni";
	case CH_NO_SNI:
		return "no-sni";
	case CH_NOT_TLS:
		return "not-tls";
	case CH_ERROR:
		return "error";
	}
	return "unknown";
}
