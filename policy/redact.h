/* redact.h -- streaming replacement of secret values (raw and encoded: see
 * secform.h) by their placeholders in response bodies, correct across read
 * and chunk boundaries */
#ifndef EGRESSD_REDACT_H
#define EGRESSD_REDACT_H

#include <stddef.h>
#include <stdint.h>

struct secretset;
struct redactor;

typedef void (*redact_emit_fn)(void *ctx, const char *p, size_t n);

/* Redacts the values of the secrets in mask (borrowed set, must outlive it).
 * The match tables are built once per (s, mask) and shared, read-only, by
 * every redactor of any thread (cached on s: secretset_cache); a redactor
 * itself is a few words until it holds bytes back. Holds back at most
 * (longest match - 1) bytes between feeds: a form spans at most 6 bytes per
 * value byte (JSON \u00XX); that buffer is allocated at the first hold-back
 * and wiped and freed by redactor_flush and redactor_free. */
struct redactor *redactor_new(const struct secretset *s, uint64_t mask);
void redactor_free(struct redactor *r); /* wipes held-back bytes; NULL: no-op */
/* Feeds n bytes; emits redacted output (possibly in several calls). */
void redactor_feed(struct redactor *r, const char *p, size_t n, redact_emit_fn emit, void *ctx);
/* End of body: emits what is held back. The redactor can then be reused. */
void redactor_flush(struct redactor *r, redact_emit_fn emit, void *ctx);

#endif
