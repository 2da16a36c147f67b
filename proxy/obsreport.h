/* obsreport.h -- what the observer saw, written out: the report (a table or
 * JSON) and, in learn mode, a policy file that allows exactly what was used */
#ifndef EGRESSD_OBSREPORT_H
#define EGRESSD_OBSREPORT_H

#include <stdbool.h>
#include <stdio.h>

struct observe;
struct psl;

/* What to write, and where (borrowed strings). */
struct obsreport_opts {
	bool report;                /* --report */
	const char *report_path;    /* --report=FILE, or NULL: stderr */
	bool json;                  /* --report-format json */
	const char *learn_path;     /* --learn FILE, or NULL */
	const char *const *configs; /* the -c files (NULL-terminated) or NULL */
};

/* The report to f: a table (one row per destination, refusals first, then
 * the names only looked up) or one JSON object. No secret value: secrets
 * appear by name. */
void obsreport_write(struct observe *o, FILE *f, bool json);

/* The learned policy as a new JSON object (caller frees the string): every
 * top-level key of the -c files kept (arrays of allowNet, denyNet and
 * intercept joined; for "secrets", entries with an inline "value" are left
 * out and named in *dropped), allowNet = the files' allowNet plus one
 * pattern per destination used (allowed or learned): exact names, "*.D"
 * when two or more names under registrable domain D (psl; NULL: exact names
 * only) were used on the same port, the port kept unless 443 or 80, IPs as
 * IPs. NULL with err (256 bytes) if a -c file cannot be read. dropped: a
 * comma-separated list (caller frees), or NULL. */
char *obsreport_learned(struct observe *o, const struct psl *psl, const char *const *configs,
			char **dropped, char *err);

/* Writes the report and the learned policy as opts says (the policy file
 * through a temporary file and rename, mode 0644). Problems are said on
 * stderr (and in the log); returns 0, or -1 if something was not written.
 * The Public Suffix List is read once, on first use: if it cannot be read,
 * learning goes on with exact names only and says so once. Not thread-safe
 * against itself (one writer at a time). */
int obsreport_finish(struct observe *o, const struct obsreport_opts *opts);
/* Frees the list obsreport_finish read (at exit). */
void obsreport_cleanup(void);

#endif
