/* injparam.h -- placeholder substitution in the values of named parameters
 * of a query string or an application/x-www-form-urlencoded body */
#ifndef EGRESSD_INJPARAM_H
#define EGRESSD_INJPARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "injspec.h"

struct obuf;
struct policy;
struct secretset;

/* Appends to out the pairs text t[0..n) ("a=1&b=2": a query without its
 * '?', or a form body) with, in the value of each parameter whose name
 * (percent-decoded, '+' a space) the spec of a secret i in mask names for
 * w (INJ_QUERY or INJ_FORM; policy_secret_inject(p, i)), every placeholder
 * of secret i -- raw, or with any of its bytes as %XX -- replaced by the
 * secret's value percent-encoded (A-Z a-z 0-9 - . _ ~ raw, every other
 * byte %XX). Everything else is copied byte for byte: other parameters,
 * placeholders of other secrets, separators, empty values, names. *used
 * gets the bits of the secrets injected. s was loaded from p. Returns false
 * only if out's cap was hit (out then as before). */
bool injparam_rewrite(const struct policy *p, const struct secretset *s, uint64_t mask,
		      enum injwhere w, const char *t, size_t n, struct obuf *out, uint64_t *used);

/* The secrets of mask whose spec names any place of kind w. */
uint64_t injparam_mask(const struct policy *p, uint64_t mask, enum injwhere w);

#endif
