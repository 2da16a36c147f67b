/* runcmd.h -- `egressd run`: a command in a network jail whose traffic all
 * goes through an embedded transparent egressd */
#ifndef EGRESSD_RUNCMD_H
#define EGRESSD_RUNCMD_H

struct policy;
struct server_opts;

/* Runs argv (argc >= 1) in a fresh jail under policy p with the server
 * options o (listeners are set here). Returns the command's exit status,
 * 128+N if it died of signal N, or 125 if the jail could not be made. */
int runcmd_main(struct policy *p, struct server_opts *o, const char *log, int argc,
		char **argv);

#endif
