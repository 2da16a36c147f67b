/* jailinit.h -- PID 1 of `egressd run`'s PID namespace: starts the command,
 * forwards signals to everything in the namespace, reaps orphans, exits
 * with the command's status */
#ifndef EGRESSD_JAILINIT_H
#define EGRESSD_JAILINIT_H

/* The hidden command egressd execs as the namespace's init (already
 * unprivileged, in the jail): `egressd JAILINIT_CMD -- CMD [ARGS...]`. */
#define JAILINIT_CMD "__jail-init"

/* argv: CMD [ARGS...] (argc >= 1), looked up in PATH. Does not return: the
 * process _exits with CMD's status (128+N if it died of signal N; 127 if it
 * cannot be found, 126 if it cannot be executed, 125 if it cannot be
 * started at all). */
__attribute__((noreturn)) void jailinit_main(int argc, char **argv);

#endif
