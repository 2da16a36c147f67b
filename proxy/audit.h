/* audit.h -- the log: JSON lines (one per connection event, request and
 * operational event, each with a level), level filtering, reopening for
 * logrotate, and operational messages as plain text on stderr */
#ifndef EGRESSD_AUDIT_H
#define EGRESSD_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "jsonw.h"

/* Severity, most severe first. What each event gets:
 *   error  internal failures, fatal startup errors, a refused reload
 *   warn   refusals (connect decision deny, refuse, 4xx errors, DNS
 *          names refused), placeholder leaks
 *   info   connect (allowed), request, close, timeout, start, reload,
 *          drain, stop
 *   debug  upstream connect attempts and failures, TLS handshake details,
 *          resolver answers (never a secret value) */
enum audit_level { AUDIT_ERROR, AUDIT_WARN, AUDIT_INFO, AUDIT_DEBUG };

/* "error", "warn", "info", "debug" -> *l; false for anything else. */
bool audit_level_parse(const char *s, enum audit_level *l);
const char *audit_level_str(enum audit_level l);
/* The least severe level written (default AUDIT_INFO), to the log and to
 * stderr alike. Call before any thread starts. */
void audit_set_level(enum audit_level l);

/* Opens the log: path "-" is stderr, NULL disables JSON logging. Returns 0,
 * or -1 with errno set. Call once before any thread starts. */
int audit_open(const char *path);
/* Reopens the log file by its path (after logrotate renamed it): later
 * lines go to a new file. No-op for stderr or no log. Returns 0, or -1 with
 * errno set and the old file kept. Any thread. */
int audit_reopen(void);
void audit_close(void);
/* Is the JSON log open? */
int audit_enabled(void);
/* Would a line of level l be written to the JSON log? */
bool audit_wants(enum audit_level l);

/* Starts an event line {"ts":"...","level":L,"event":EVENT,"id":ID ...
 * (no id when 0). Returns false, and w is not to be used, when no line of
 * that level is written: the caller skips building it. */
bool audit_begin(struct jsonw *w, enum audit_level l, const char *event,
		 unsigned long long id) __attribute__((warn_unused_result));
/* Hands the finished line to the sink, if one is set, then writes it
 * atomically (one write(2), thread-safe). */
void audit_emit(struct jsonw *w);

/* A sink sees every event line (whatever the level and whether a log is
 * open), finished and NUL-terminated, from any thread, before the log gets
 * it (a line in the log has been counted); arg is passed back. One sink at most; set it (or NULL to remove it)
 * before any thread starts or after they all stopped. With a sink set,
 * audit_begin returns true for every level. */
typedef void (*audit_sink_fn)(void *arg, const char *line, size_t len);
void audit_set_sink(audit_sink_fn fn, void *arg);

/* An operational message (started, listening, reload, drain, errors):
 * "egressd: TEXT" on stderr unless the JSON log is stderr itself, and a
 * JSON line {"event":EVENT,"msg":TEXT} in the log; both only if level l is
 * wanted. */
void audit_msg(enum audit_level l, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The stderr half alone (for events whose JSON line carries more fields). */
void audit_say(enum audit_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Routes libevent's log messages through audit_msg (event "libevent"):
 * errors at level error, warnings and messages at warn, debug at debug.
 * Call once at startup. */
void audit_hook_libevent(void);

struct secretset;
/* Adds "secrets":["NAME",...] to a line: the names of the secrets of ss
 * whose bit is set in mask (bit i = secret i). */
void audit_secrets(struct jsonw *w, const struct secretset *ss, uint64_t mask);

#endif
