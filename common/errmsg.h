/* errmsg.h -- filling caller-supplied error buffers: formatted messages and
 * the first error of OpenSSL's queue, plus tiny text helpers shared by parsers */
#ifndef EGRESSD_ERRMSG_H
#define EGRESSD_ERRMSG_H

#include <stddef.h>

/* vsnprintf into err (cap bytes); err NULL: nothing. */
void errmsg_set(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* err = "what: <first OpenSSL error>" (or "unknown OpenSSL error"); the
 * rest of the thread's OpenSSL error queue is cleared. */
void errmsg_ossl(char *err, size_t cap, const char *what);

/* Value of a hex digit (either case), or -1. */
int hex_digit(int c);

#endif
