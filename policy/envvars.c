/* envvars.c -- the variables a sandbox's runtimes need to go through egressd
 * and trust its CA, with its secrets' placeholders */
#include "envvars.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

static const char *const proxy_vars[] = { "HTTPS_PROXY", "HTTP_PROXY", "https_proxy",
					  "http_proxy" };
/* OpenSSL and what reads its variable (curl, Python ssl, Ruby, ...), Python
 * requests, curl, Node (not on npm's proxy path: NPM_CONFIG_CAFILE), Deno,
 * git, npm, gRPC's C core, pip, the AWS SDKs and CLI, cargo */
static const char *const ca_vars[] = { "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
				       "NODE_EXTRA_CA_CERTS", "DENO_CERT", "GIT_SSL_CAINFO",
				       "NPM_CONFIG_CAFILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
				       "PIP_CERT", "AWS_CA_BUNDLE", "CARGO_HTTP_CAINFO" };
/* loopback never goes through the proxy (egressd would refuse it anyway) */
static const char *const no_proxy_vars[] = { "NO_PROXY", "no_proxy" };
#define NO_PROXY_LIST "localhost,127.0.0.1,::1"

/* -Djavax.net.ssl.trustStore=... and Java's proxy properties for the host
 * and port of proxy_url ("http://HOST:PORT"). */
static void java_options(const char *proxy_url, const char *truststore, char *out, size_t cap)
{
	const char *hp = strncmp(proxy_url, "http://", 7) == 0 ? proxy_url + 7 : proxy_url;
	const char *colon = strrchr(hp, ':');
	int hl = colon ? (int)(colon - hp) : (int)strlen(hp);
	const char *port = colon ? colon + 1 : "3128";

	snprintf(out, cap, "-Djavax.net.ssl.trustStore=%s -Djavax.net.ssl.trustStorePassword=changeit "
			   "-Dhttps.proxyHost=%.*s -Dhttps.proxyPort=%s -Dhttp.proxyHost=%.*s "
			   "-Dhttp.proxyPort=%s -Dhttp.nonProxyHosts=localhost|127.0.0.1|[::1]",
		 truststore, hl, hp, port, hl, hp, port);
}

void envvars_each(const struct policy *p, const unsigned char key[PLACEHOLDER_KEYLEN],
		  const char *proxy_url, const char *bundle, const char *truststore,
		  envvars_fn fn, void *ctx)
{
	char ph[PLACEHOLDER_LEN + 1], java[8192];

	for (size_t i = 0; i < policy_secret_count(p); i++) {
		placeholder_make(key, policy_scope(p), policy_secret_name(p, i), ph);
		fn(ctx, policy_secret_name(p, i), ph);
	}
	for (size_t i = 0; i < sizeof(proxy_vars) / sizeof(proxy_vars[0]); i++)
		fn(ctx, proxy_vars[i], proxy_url);
	for (size_t i = 0; i < sizeof(no_proxy_vars) / sizeof(no_proxy_vars[0]); i++)
		fn(ctx, no_proxy_vars[i], NO_PROXY_LIST);
	fn(ctx, "NODE_USE_ENV_PROXY", "1"); /* Node 24+: fetch and https honour HTTPS_PROXY */
	for (size_t i = 0; i < sizeof(ca_vars) / sizeof(ca_vars[0]); i++)
		fn(ctx, ca_vars[i], bundle);
	if (truststore) {
		java_options(proxy_url, truststore, java, sizeof(java));
		fn(ctx, "JAVA_TOOL_OPTIONS", java);
	}
}

size_t envvars_ca_count(void)
{
	return sizeof(ca_vars) / sizeof(ca_vars[0]);
}

const char *envvars_ca_name(size_t i)
{
	return ca_vars[i];
}
