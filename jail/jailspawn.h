/* jailspawn.h -- starting `egressd run`'s command inside the jail: its own
 * PID and mount namespaces (a fresh /proc), the jail's network namespace,
 * egressd's files hidden, no capabilities, a tiny init as PID 1 */
#ifndef EGRESSD_JAILSPAWN_H
#define EGRESSD_JAILSPAWN_H

#include <sys/types.h>

#define JAILSPAWN_ERRLEN 512

struct runas;

/* What to start and how (all borrowed for the call). */
struct jailspawn {
	const char *netns;          /* the network namespace's file (/var/run/netns/NAME) */
	const char *resolv_conf;    /* bind-mounted over /etc/resolv.conf */
	const char *const *hide;    /* NULL-terminated paths made unreadable inside:
				     * a directory gets an empty mode-000 tmpfs over it,
				     * anything else /dev/null (read-only); a path that
				     * does not exist is skipped */
	const struct runas *user;   /* who the command runs as */
	char *const *argv;          /* the command (argv[0] looked up in PATH) */
	char *const *envp;          /* its whole environment */
};

/* Clones a child that is PID 1 of a new PID namespace, in a new mount
 * namespace (mounts slave to the host's; fresh /proc and /sys; resolv.conf;
 * hidden paths; for uid 0 every mount read-only, /tmp and /var/tmp overlays
 * whose writes go to a private tmpfs), enters js->netns, returns to the
 * current directory by its path, drops to js->user for good (runas_apply), marks every inherited
 * descriptor above 2 close-on-exec, and execs this egressd binary as the
 * namespace's init (jailinit.h), which starts the command. The child gets
 * SIGKILL if egressd dies; signals egressd sends it are forwarded to the
 * whole namespace; its exit status is the command's. Call from the thread
 * that will wait for the child. Returns its pid (in egressd's namespace),
 * or -1 with err saying which step failed and why. */
pid_t jailspawn_start(const struct jailspawn *js, char *err);

#endif
