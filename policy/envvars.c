/* envvars.c -- the variables a sandbox's runtimes need to go through egressd
 * and trust its CA, with its secrets' placeholders */
#include "envvars.h"

#include <stddef.h>

#include "policy.h"

static const char *const proxy_vars[] = { "HTTPS_PROXY", "HTTP_PROXY", "https_proxy",
					  "http_proxy" };
static const char *const ca_vars[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
				       "NODE_EXTRA_CA_CERTS", "DENO_CERT", "GIT_SSL_CAINFO" };

void envvars_each(const struct policy *p, const unsigned char key[PLACEHOLDER_KEYLEN],
		  const char *proxy_url, const char *bundle, envvars_fn fn, void *ctx)
{
	char ph[PLACEHOLDER_LEN + 1];

	for (size_t i = 0; i < policy_secret_count(p); i++) {
		placeholder_make(key, policy_scope(p), policy_secret_name(p, i), ph);
		fn(ctx, policy_secret_name(p, i), ph);
	}
	for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++)
		fn(ctx, proxy_vars[i], proxy_url);
	for (size_t i = 0; i < sizeof(ca_vars) / sizeof(ca_vars[0]); i++)
		fn(ctx, ca_vars[i], bundle);
}
