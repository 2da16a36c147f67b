/* audit.h -- the JSON-lines audit log: one line per connection event and request */
#ifndef EGRESSD_AUDIT_H
#define EGRESSD_AUDIT_H

#include "jsonw.h"

/* Opens the log: path "-" is stderr, NULL disables logging. Returns 0, or -1
 * with errno set. Call once before any thread starts. */
int audit_open(const char *path);
void audit_close(void);
/* Starts an event line: {"ts":"...","event":EVENT,"id":ID ... */
void audit_begin(struct jsonw *w, const char *event, unsigned long long id);
/* Finishes and writes the line atomically (one write(2), thread-safe). */
void audit_emit(struct jsonw *w);
int audit_enabled(void);

#endif
