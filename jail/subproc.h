/* subproc.h -- running a helper command (ip, iptables) from an argv array and
 * waiting for it: argv[0] looked up in PATH, never a shell, stdin /dev/null */
#ifndef EGRESSD_SUBPROC_H
#define EGRESSD_SUBPROC_H

#include <stddef.h>

#define SUBPROC_ERRLEN 512

/* A command's captured stdout: NUL-terminated, at most 16 MiB (more is
 * dropped). The caller frees buf. */
struct subproc_out {
	char *buf;
	size_t len;
	size_t cap;
};

/* Runs argv and waits for it. With out, stdout is captured there; without,
 * it goes to /dev/null. Returns 0 if it exited 0; else -1 with err
 * (SUBPROC_ERRLEN bytes) naming the command, one line of its stderr and its
 * exit status or signal (out->buf is then freed and NULL). */
int subproc_capture(const char *const argv[], struct subproc_out *out, char *err);

/* subproc_capture without capturing stdout. */
int subproc_run(const char *const argv[], char *err);

#endif
