/* envvars.h -- the environment a sandbox gets to use egressd: its secrets'
 * placeholders, the proxy variables and the CA bundle variables, one list
 * shared by `egressd env`, `egressd sandbox put` and the control API */
#ifndef EGRESSD_ENVVARS_H
#define EGRESSD_ENVVARS_H

#include <stddef.h>

#include "secrets.h"

struct policy;

/* Called once per variable; name and value are valid during the call only. */
typedef void (*envvars_fn)(void *ctx, const char *name, const char *value);

/* Calls fn for each variable in a fixed order: a placeholder for each of
 * p's secrets (scoped as p is, made with key), then the proxy variables
 * (proxy_url, e.g. "http://127.0.0.1:3128"), NO_PROXY/no_proxy (loopback),
 * NODE_USE_ENV_PROXY=1, then the CA variables of every runtime we know
 * (bundle: the CA bundle's path), and, with a truststore (a PKCS#12 file
 * of the same certificates; NULL: none), JAVA_TOOL_OPTIONS: the truststore
 * and the proxy as Java's system properties. */
void envvars_each(const struct policy *p, const unsigned char key[PLACEHOLDER_KEYLEN],
		  const char *proxy_url, const char *bundle, const char *truststore,
		  envvars_fn fn, void *ctx);

/* The CA variables alone (egressd run's jail needs no proxy variables):
 * their number, and the name of the i-th (static). */
size_t envvars_ca_count(void);
const char *envvars_ca_name(size_t i);

#endif
