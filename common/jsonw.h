/* jsonw.h -- a tiny append-only JSON object writer for log lines */
#ifndef EGRESSD_JSONW_H
#define EGRESSD_JSONW_H

#include <stddef.h>
#include <stdint.h>

/* A fixed-capacity line buffer. Output that would overflow is truncated at a
 * field boundary and the object is still closed validly ("truncated":true). */
struct jsonw {
	char buf[4096];
	size_t len;
	int fields;    /* fields written so far (for commas) */
	int truncated; /* a field did not fit */
	int skip;      /* audit: built for a sink, not for the log */
};

void jsonw_begin(struct jsonw *w);
void jsonw_str(struct jsonw *w, const char *key, const char *val); /* val NULL: skipped */
void jsonw_strn(struct jsonw *w, const char *key, const char *val, size_t n);
void jsonw_int(struct jsonw *w, const char *key, long long val);
void jsonw_bool(struct jsonw *w, const char *key, int val);
/* raw: val must already be valid JSON (an array built by the caller) */
void jsonw_raw(struct jsonw *w, const char *key, const char *val);
/* Closes the object, appends '\n'; returns the line (NUL-terminated). */
const char *jsonw_end(struct jsonw *w, size_t *len);

/* Escape src (n bytes) as a JSON string body into dst (cap bytes incl. NUL).
 * Bytes >= 0x80 and control bytes are written as \u00XX so the output is
 * always ASCII. Returns the length written, or -1 if it did not fit. */
long jsonw_escape(char *dst, size_t cap, const char *src, size_t n);

#endif
