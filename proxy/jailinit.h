/* jailinit.h -- PID 1 of `egressd run`'s PID namespace: starts the command,
 * forwards signals to everything in the namespace, reaps orphans, exits
 * with the command's status */
#ifndef EGRESSD_JAILINIT_H
#define EGRESSD_JAILINIT_H

/* The hidden command egressd execs as the namespace's init (already
 * unprivileged, in the jail): `egressd JAILINIT_CMD -- CMD [ARGS...]`. */
#define JAILINIT_CMD "__jail-init"

/* argv: CMD [ARGS...] (argc >= 1), looked up in PATH. Never returns to
 * egressd's main: returns the exit status to use, CMD's own (128+N if it
 * died of signal N; 127 if it cannot be started, 126 if not executable). */
int jailinit_main(int argc, char **argv);

#endif
