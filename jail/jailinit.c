/* jailinit.c -- PID 1 of `egressd run`'s PID namespace: starts the command,
 * forwards signals to everything in the namespace, reaps orphans, exits
 * with the command's status.
 *
 * The kernel drops a signal sent to a namespace's init unless the init
 * handles it, and kills every process of the namespace when the init
 * exits. So the command cannot be PID 1 itself: a `sleep` without handlers
 * would ignore egressd's SIGTERM. This init is a fresh exec of the egressd
 * binary (none of egressd's memory -- keys, secrets -- is in it), already
 * without capabilities. Every catchable signal it receives goes to every
 * other process of the namespace (kill(-1, sig)); when the command exits,
 * the init exits with its status and the kernel kills what is left. */
#include "jailinit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The command, in the child: default dispositions, empty mask, exec. */
__attribute__((noreturn))
static void start_command(char **argv)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], argv);
	fprintf(stderr, "egressd run: %s: %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static int status_of(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 125;
}

/* Reaps every child that exited; returns the command's status once it has
 * exited, else -1. */
static int reap(pid_t cmd)
{
	int st, rc = -1;
	pid_t p;

	while ((p = waitpid(-1, &st, WNOHANG)) > 0)
		if (p == cmd)
			rc = status_of(st);
	return rc;
}

void jailinit_main(int argc, char **argv)
{
	sigset_t all;
	pid_t cmd;

	if (argc < 1)
		_exit(125);
	/* dispositions egressd ignored (SIGPIPE) survive exec: not for CMD */
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	cmd = fork();
	if (cmd < 0) {
		fprintf(stderr, "egressd run: fork: %s\n", strerror(errno));
		_exit(125);
	}
	if (cmd == 0)
		start_command(argv);
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si), rc;

		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			kill(-1, sig); /* every process of the namespace but this one */
			continue;
		}
		if ((rc = reap(cmd)) >= 0)
			_exit(rc); /* no atexit work: nothing to flush, no leak check */
	}
}
