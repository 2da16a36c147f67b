/* subproc.c -- helper commands (ip, iptables) run from an argv array: fork +
 * execvp (never a shell), stdin /dev/null, stdout captured or discarded,
 * stderr kept for the error message, waited for */
#include "subproc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "errmsg.h"

#define OUT_CAP (16u << 20) /* cap on a command's captured stdout */
#define seterr(err, ...) errmsg_set((err), SUBPROC_ERRLEN, __VA_ARGS__)

/* "ip link add ..." for messages: argv joined with spaces, truncated. */
static void join_argv(const char *const argv[], char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; argv[i] && n + 1 < cap; i++) {
		int w = snprintf(buf + n, cap - n, "%s%s", i ? " " : "", argv[i]);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	if (n >= cap && cap > 4)
		memcpy(buf + cap - 4, "...", 4);
}

/* The child side of subproc_capture: never returns. Only async-signal-safe calls
 * (the parent may have threads). */
__attribute__((noreturn))
static void exec_child(const char *const argv[], int out_fd, int err_fd, int exec_fd)
{
	sigset_t none;
	int null_fd = open("/dev/null", O_RDWR);
	int e;

	if (null_fd >= 0) {
		dup2(null_fd, 0);
		if (out_fd < 0)
			dup2(null_fd, 1);
	}
	if (out_fd >= 0)
		dup2(out_fd, 1);
	dup2(err_fd, 2);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], (char *const *)argv);
	e = errno;
	if (write(exec_fd, &e, sizeof e) < 0) {
		/* nothing more to do */
	}
	_exit(127);
}

/* Appends r bytes of a child's output to ebuf (stderr, truncated to its
 * size) or out (stdout, up to OUT_CAP). */
static void keep_output(bool is_err, const char *tmp, size_t r, char *ebuf, size_t esize,
			size_t *elen, struct subproc_out *out)
{
	if (is_err) {
		if (r > esize - 1 - *elen)
			r = esize - 1 - *elen;
		memcpy(ebuf + *elen, tmp, r);
		*elen += r;
	} else if (out->len + r < OUT_CAP) {
		while (out->len + r + 1 > out->cap) {
			out->cap *= 2;
			out->buf = xrealloc(out->buf, out->cap);
		}
		memcpy(out->buf + out->len, tmp, r);
		out->len += r;
		out->buf[out->len] = '\0';
	}
}

/* Reads the child's stderr (*errfd) and stdout (*outfd, or -1) until both
 * are closed; each is closed and set to -1 at its end. */
static void drain_pipes(int *errfd, int *outfd, char *ebuf, size_t esize, size_t *elen,
			struct subproc_out *out)
{
	for (;;) {
		struct pollfd p[2];
		int np = 0;

		if (*errfd >= 0)
			p[np++] = (struct pollfd){ .fd = *errfd, .events = POLLIN };
		if (*outfd >= 0)
			p[np++] = (struct pollfd){ .fd = *outfd, .events = POLLIN };
		if (np == 0)
			return;
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < np; i++) {
			char tmp[4096];
			ssize_t r;

			if (!p[i].revents)
				continue;
			r = read(p[i].fd, tmp, sizeof tmp);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				close(p[i].fd);
				*(p[i].fd == *errfd ? errfd : outfd) = -1;
				continue;
			}
			keep_output(p[i].fd == *errfd, tmp, (size_t)r, ebuf, esize, elen, out);
		}
	}
}

/* err for a child that did not exit 0: its status and one line of its
 * stderr (newlines become ';', trailing ones dropped). */
static void describe_failure(const char *cmd, int status, char *ebuf, size_t elen, char *err)
{
	while (elen && (ebuf[elen - 1] == '\n' || ebuf[elen - 1] == '\r'))
		ebuf[--elen] = '\0';
	for (size_t i = 0; i < elen; i++)
		if (ebuf[i] == '\n' || ebuf[i] == '\r')
			ebuf[i] = ';';
	if (WIFEXITED(status))
		seterr(err, "%s: %s (exit status %d)", cmd, elen ? ebuf : "failed",
		       WEXITSTATUS(status));
	else
		seterr(err, "%s: killed by signal %d", cmd,
		       WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int subproc_capture(const char *const argv[], struct subproc_out *out, char *err)
{
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, exp[2] = { -1, -1 };
	char ebuf[400], cmd[160];
	size_t elen = 0;
	int exec_errno = 0, status = 0, rc = -1;
	pid_t pid = -1;

	join_argv(argv, cmd, sizeof cmd);
	if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(exp, O_CLOEXEC) < 0 ||
	    (out && pipe2(outp, O_CLOEXEC) < 0)) {
		seterr(err, "%s: pipe: %s", cmd, strerror(errno));
		goto out;
	}
	if (out) {
		out->len = 0;
		out->cap = 4096;
		out->buf = xmalloc(out->cap);
		out->buf[0] = '\0';
	}
	pid = fork();
	if (pid < 0) {
		seterr(err, "%s: fork: %s", cmd, strerror(errno));
		goto out;
	}
	if (pid == 0)
		exec_child(argv, outp[1], errp[1], exp[1]);
	close(errp[1]);
	errp[1] = -1;
	close(exp[1]);
	exp[1] = -1;
	if (outp[1] >= 0) {
		close(outp[1]);
		outp[1] = -1;
	}

	drain_pipes(&errp[0], &outp[0], ebuf, sizeof ebuf, &elen, out);
	ebuf[elen] = '\0';
	if (read(exp[0], &exec_errno, sizeof exec_errno) != (ssize_t)sizeof exec_errno)
		exec_errno = 0;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			seterr(err, "%s: waitpid: %s", cmd, strerror(errno));
			goto out;
		}
	}
	if (exec_errno) {
		seterr(err, "cannot run %s: %s", argv[0], strerror(exec_errno));
		goto out;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		rc = 0;
		goto out;
	}
	describe_failure(cmd, status, ebuf, elen, err);
out:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
		if (exp[i] >= 0)
			close(exp[i]);
	}
	if (rc < 0 && out) {
		free(out->buf);
		out->buf = NULL;
		out->len = 0;
	}
	return rc;
}

int subproc_run(const char *const argv[], char *err)
{
	return subproc_capture(argv, NULL, err);
}
