/* prefixbio.h -- bytes read from a socket before an SSL took it over (a
 * peeked ClientHello) served to OpenSSL first: a filter BIO pushed in front
 * of the SSL's socket BIO on the read side, reading through once they are
 * served. */
#ifndef EGRESSD_PREFIXBIO_H
#define EGRESSD_PREFIXBIO_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Puts a copy of the n > 0 bytes at p in front of ssl's read side. ssl's
 * read and write BIOs must be one socket BIO and its handshake not begun.
 * 0, or -1 (nothing changed). */
int prefixbio_push(SSL *ssl, const void *p, size_t n);

#endif
