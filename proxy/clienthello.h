/* clienthello.h -- reads the SNI and the ALPN offer from a TLS ClientHello
 * without consuming it; handles a ClientHello split across TCP segments and
 * TLS records */
#ifndef EGRESSD_CLIENTHELLO_H
#define EGRESSD_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>

#define CLIENTHELLO_MAX 65536 /* give up (CH_ERROR) if the hello needs more */
#define CH_ALPN_CAP 12        /* "\x02h2\x08http/1.1": both protocols egressd relays */

/* The hello's ALPN extension (RFC 7301), reduced to the protocols egressd can
 * carry: h2 and http/1.1, each once, in the client's order, in wire form
 * (length-prefixed names, what SSL_set_alpn_protos takes). */
struct ch_alpn {
	bool present;                      /* the hello had an ALPN extension */
	unsigned names;                    /* protocol names in it (any, duplicates too) */
	unsigned char offer[CH_ALPN_CAP];  /* h2 / http/1.1 as offered */
	size_t offer_len;                  /* bytes in offer; 0: neither was offered */
};

enum ch_result {
	CH_NEED_MORE, /* a prefix of a plausible ClientHello: read more bytes */
	CH_SNI,       /* complete ClientHello with a host_name SNI (in sni) */
	CH_NO_SNI,    /* complete ClientHello without an SNI extension */
	CH_NOT_TLS,   /* the first bytes are not a TLS handshake record */
	CH_ERROR,     /* starts like TLS but is malformed (or larger than the cap) */
};

/* Parses data[0..n) (everything received so far, from the first byte).
 * On CH_SNI writes the server name, NUL-terminated, into sni (sni_cap bytes;
 * a name that does not fit, contains NUL/control bytes or is empty -> CH_ERROR).
 * On CH_SNI and CH_NO_SNI writes the ALPN offer into *alpn (NULL: not
 * wanted); a malformed ALPN extension (an empty list or name, bytes after the
 * list) is CH_ERROR, as a TLS server would refuse it.
 * Pure function: no I/O, no allocation beyond a bounded stack buffer. */
enum ch_result clienthello_parse(const unsigned char *data, size_t n, char *sni, size_t sni_cap,
				 struct ch_alpn *alpn);

/* Human-readable name of a result ("need-more", "sni", ...). */
const char *clienthello_result_str(enum ch_result r);

#endif
