/* mint.h -- per-host leaf certificates signed by the CA, one shared leaf key,
 * and a bounded LRU cache of minted certificates */
#ifndef EGRESSD_MINT_H
#define EGRESSD_MINT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

struct ca;
struct minter;

/* A minter holds the CA (borrowed: must outlive the minter) and one leaf key
 * pair (EC P-256) generated once here; every leaf uses that key, so minting
 * costs one signature. Thread-safe after creation. NULL with err (256 bytes). */
struct minter *minter_new(const struct ca *ca, char *err);
void minter_free(struct minter *m);
EVP_PKEY *minter_leaf_key(const struct minter *m); /* borrowed */

/* Mints a leaf for host (a lower-case DNS name, or an IP address in text form
 * when is_ip): subject CN=host (cut to 64 bytes), SAN DNS:host or IP:addr,
 * issuer = CA subject, random 128-bit serial, SHA-256 signature, valid from
 * now-1h to now+7d, basicConstraints CA:FALSE, keyUsage digitalSignature(+
 * keyEncipherment), extendedKeyUsage serverAuth, SKI/AKI. Returns a new X509
 * (caller frees with X509_free) or NULL with err. */
X509 *minter_mint(struct minter *m, const char *host, bool is_ip, char *err);

struct certcache;

/* A cache of at most cap leaves, least recently used evicted. Not
 * thread-safe: use one per worker thread. */
struct certcache *certcache_new(struct minter *m, size_t cap);
void certcache_free(struct certcache *c);
/* The leaf for host (minted on a miss). Returns a new reference (caller
 * X509_free) or NULL with err. Leaves close to expiry (< 1 day) are re-minted. */
X509 *certcache_get(struct certcache *c, const char *host, bool is_ip, char *err);
/* Counters for metrics and tests. */
void certcache_stats(const struct certcache *c, size_t *hits, size_t *misses, size_t *size);
/* Leaves minted by this cache so far (a failed mint is a miss, not a mint). */
size_t certcache_minted(const struct certcache *c);

#endif
