/* ca.h -- egressd's certificate authority: creation in the state dir, loading */
#ifndef EGRESSD_CA_H
#define EGRESSD_CA_H

#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define CA_ERRLEN 256

enum ca_keytype { CA_KEY_EC_P256, CA_KEY_RSA_2048 };

struct ca;

/* Creates state_dir (mode 0700, parents too) if missing; loads ca.key/ca.crt
 * from it, or creates them if both are absent (key file 0600, written
 * atomically: temp file + rename). One present without the other, unreadable
 * or mismatched files, or a state dir writable by others, are errors.
 * *created is set to 1 if a new CA was made. Returns NULL with err set. */
struct ca *ca_load_or_create(const char *state_dir, enum ca_keytype kt, int *created, char *err);
void ca_free(struct ca *ca); /* NULL: no-op */

X509 *ca_cert(const struct ca *ca);     /* borrowed */
EVP_PKEY *ca_key(const struct ca *ca);  /* borrowed */
/* Writes the certificate in PEM. Returns 0 or -1. */
int ca_write_pem(const struct ca *ca, FILE *f);
/* Sets a random positive 128-bit serial on x (CA and leaves alike).
 * Returns 0, or -1 if the random generator failed. */
int ca_random_serial(X509 *x);

/* Path of the PEM certificate file inside the state dir (borrowed). */
const char *ca_cert_path(const struct ca *ca);

#endif
