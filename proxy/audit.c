/* audit.c -- the JSON-lines log: levels, timestamps, atomic line writes,
 * reopening on SIGHUP; operational messages on stderr; the secret names a
 * line lists */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "alloc.h"
#include "secrets.h"

static int log_fd = -1;
static int own_fd;       /* log_fd is a file we opened (not stderr) */
static char *log_path;   /* for audit_reopen; NULL unless own_fd */
static atomic_int level = AUDIT_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static audit_sink_fn sink;  /* audit_set_sink's; NULL: none */
static void *sink_arg;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

bool audit_level_parse(const char *s, enum audit_level *l)
{
	for (int i = AUDIT_ERROR; i <= AUDIT_DEBUG; i++) {
		if (!strcmp(s, level_names[i])) {
			*l = (enum audit_level)i;
			return true;
		}
	}
	return false;
}

const char *audit_level_str(enum audit_level l)
{
	return l >= AUDIT_ERROR && l <= AUDIT_DEBUG ? level_names[l] : "info";
}

void audit_set_level(enum audit_level l)
{
	atomic_store(&level, l);
}

static bool level_on(enum audit_level l)
{
	return (int)l <= atomic_load(&level);
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

int audit_open(const char *path)
{
	if (!path)
		return 0;
	if (path[0] == '-' && path[1] == '\0') {
		log_fd = 2;
		return 0;
	}
	log_fd = open_log(path);
	if (log_fd < 0)
		return -1;
	own_fd = 1;
	log_path = xstrdup(path);
	return 0;
}

int audit_reopen(void)
{
	int fd, rc = 0;

	pthread_mutex_lock(&log_lock);
	if (own_fd && log_fd >= 0 && log_path) {
		/* dup2 swaps the file under the same descriptor number, so a
		 * writer never sees a closed or reused descriptor */
		fd = open_log(log_path);
		if (fd < 0 || dup3(fd, log_fd, O_CLOEXEC) < 0)
			rc = -1;
		if (fd >= 0) {
			int saved = errno;
			close(fd);
			errno = saved;
		}
	}
	pthread_mutex_unlock(&log_lock);
	return rc;
}

void audit_close(void)
{
	if (own_fd && log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	own_fd = 0;
	free(log_path);
	log_path = NULL;
}

int audit_enabled(void)
{
	return log_fd >= 0;
}

bool audit_wants(enum audit_level l)
{
	return log_fd >= 0 && level_on(l);
}

void audit_set_sink(audit_sink_fn fn, void *arg)
{
	sink = fn;
	sink_arg = arg;
}

bool audit_begin(struct jsonw *w, enum audit_level l, const char *event, unsigned long long id)
{
	struct timeval tv;
	struct tm tm;
	char ts[96];

	jsonw_begin(w);
	w->skip = !audit_wants(l); /* built for the sink alone */
	if (w->skip && !sink)
		return false;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(tv.tv_usec / 1000));
	jsonw_str(w, "ts", ts);
	jsonw_str(w, "level", audit_level_str(l));
	jsonw_str(w, "event", event);
	if (id)
		jsonw_int(w, "id", (long long)id);
	return true;
}

static void write_all(int fd, const char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t k = write(fd, p + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		off += (size_t)k;
	}
}

void audit_emit(struct jsonw *w)
{
	size_t len;
	const char *line = jsonw_end(w, &len);

	/* the sink first: once a line is in the log, the sink has counted it */
	if (sink)
		sink(sink_arg, line, len);
	if (log_fd >= 0 && !w->skip) {
		pthread_mutex_lock(&log_lock);
		write_all(log_fd, line, len);
		pthread_mutex_unlock(&log_lock);
	}
}

__attribute__((format(printf, 2, 0)))
static void vsay(enum audit_level l, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (!level_on(l) || log_fd == 2)
		return;
	memcpy(line, "egressd: ", 9);
	n = vsnprintf(line + 9, sizeof(line) - 10, fmt, ap);
	if (n < 0)
		return;
	n = n + 9 < (int)sizeof(line) - 1 ? n + 9 : (int)sizeof(line) - 2;
	line[n++] = '\n';
	write_all(2, line, (size_t)n); /* one write: lines from threads stay whole */
}

void audit_say(enum audit_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(l, fmt, ap);
	va_end(ap);
}

void audit_msg(enum audit_level l, const char *event, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];
	struct jsonw w;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	audit_say(l, "%s", msg);
	if (!audit_begin(&w, l, event, 0))
		return;
	jsonw_str(&w, "msg", msg);
	audit_emit(&w);
}

/* libevent's own messages (evdns: "Nameserver ... has failed", bufferevent
 * warnings) are operational messages like ours: an "egressd: libevent: ..."
 * line on stderr (never beside a JSON log on stderr) and a "libevent" event. */
static void on_libevent_log(int severity, const char *msg)
{
	enum audit_level l = severity >= EVENT_LOG_ERR  ? AUDIT_ERROR
			     : severity >= EVENT_LOG_MSG ? AUDIT_WARN
							 : AUDIT_DEBUG;

	audit_msg(l, "libevent", "libevent: %s", msg);
}

void audit_hook_libevent(void)
{
	event_set_log_callback(on_libevent_log);
}

void audit_secrets(struct jsonw *w, const struct secretset *ss, uint64_t mask)
{
	char names[SECRETS_MAX * 64 + 4];
	size_t o = 0;

	names[o++] = '[';
	for (size_t i = 0; ss && i < secretset_count(ss) && o < sizeof(names) - 80; i++)
		if (mask & (1ULL << i))
			o += (size_t)snprintf(names + o, sizeof(names) - o, "%s\"%s\"",
					      o > 1 ? "," : "", secretset_name(ss, i));
	names[o++] = ']';
	names[o] = '\0';
	jsonw_raw(w, "secrets", names);
}
