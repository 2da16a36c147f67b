/* runcmd.h -- `egressd run`: a command in a network jail whose traffic all
 * goes through an embedded transparent egressd */
#ifndef EGRESSD_RUNCMD_H
#define EGRESSD_RUNCMD_H

struct observe;
struct obsreport_opts;
struct policy;
struct server_opts;

/* run's own options. */
struct runcmd_opts {
	const char *log;              /* --log FILE, or NULL */
	const char *user;             /* --user USER[:GROUP], or NULL: the sudo user */
	const char *const *configs;   /* the -c files (hidden from the command),
				       * NULL-terminated, or NULL */
	struct observe *obs;          /* --report/--learn's observer (attached as
				       * the audit sink), or NULL */
	const struct obsreport_opts *out; /* what to write when the command ends */
};

/* Runs argv (argc >= 1) in a fresh jail under policy p with the server
 * options o (listeners are set here), as ro->user or the user who ran sudo
 * (never as root with capabilities: refused with 125 when neither is
 * given). Once the command ended (exit or signal, also after run forwarded
 * SIGINT/SIGTERM) and the workers stopped, ro->obs's report and learned
 * policy are written as ro->out says. Returns the command's exit status, 128+N if it died of signal N,
 * or 125 if the jail could not be made. */
int runcmd_main(struct policy *p, struct server_opts *o, const struct runcmd_opts *ro,
		int argc, char **argv);

#endif
