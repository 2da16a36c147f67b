/* audit.c -- the JSON-lines audit log: timestamps, atomic line writes */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static int own_fd;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

int audit_open(const char *path)
{
	if (!path)
		return 0;
	if (path[0] == '-' && path[1] == '\0') {
		log_fd = 2;
		return 0;
	}
	log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log_fd < 0)
		return -1;
	own_fd = 1;
	return 0;
}

void audit_close(void)
{
	if (own_fd && log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	own_fd = 0;
}

int audit_enabled(void)
{
	return log_fd >= 0;
}

void audit_begin(struct jsonw *w, const char *event, unsigned long long id)
{
	struct timeval tv;
	struct tm tm;
	char ts[96];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (int)(tv.tv_usec / 1000));
	jsonw_begin(w);
	jsonw_str(w, "ts", ts);
	jsonw_str(w, "event", event);
	if (id)
		jsonw_int(w, "id", (long long)id);
}

void audit_emit(struct jsonw *w)
{
	size_t len, off = 0;
	const char *line = jsonw_end(w, &len);

	if (log_fd < 0)
		return;
	pthread_mutex_lock(&log_lock);
	while (off < len) {
		ssize_t k = write(log_fd, line + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	pthread_mutex_unlock(&log_lock);
}
