/* clienthello.h -- reads the SNI from a TLS ClientHello without consuming it;
 * handles a ClientHello split across TCP segments and TLS records */
#ifndef EGRESSD_CLIENTHELLO_H
#define EGRESSD_CLIENTHELLO_H

#include <stddef.h>

#define CLIENTHELLO_MAX 65536 /* give up (CH_ERROR) if the hello needs more */

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
 * Pure function: no I/O, no allocation beyond a bounded stack buffer. */
enum ch_result clienthello_parse(const unsigned char *data, size_t n, char *sni, size_t sni_cap);

/* Human-readable name of a result ("need-more", "sni", ...). */
const char *clienthello_result_str(enum ch_result r);

#endif
