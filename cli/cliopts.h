/* cliopts.h -- the command-line vocabulary as data: one row per option (name,
 * argument, meaning, default, the commands that use it), one row per command;
 * the getopt table and every help text are built from these rows, so they
 * cannot drift apart. A number option also has a range row, which main.c
 * checks the value against before it stores it. Adding an option = one OPT_
 * id + one row in cliopts.c (+ a range row if it is a number, + its case in
 * main.c's apply_opt, + its entry in docs/egressd.1). */
#ifndef EGRESSD_CLIOPTS_H
#define EGRESSD_CLIOPTS_H

#include <getopt.h>
#include <stdio.h>

/* The value getopt_long returns for each option (short options return
 * their letter). */
enum {
	OPT_ALLOW = 256, OPT_DENY, OPT_SECRET, OPT_SECRET_INJECT, OPT_STATE, OPT_LISTEN, OPT_TRANSPARENT,
	OPT_UPCA, OPT_RESOLVE, OPT_DNS, OPT_PRIVATE, OPT_INTERCEPT, OPT_LEAK, OPT_LOG,
	OPT_LOGLEVEL, OPT_THREADS, OPT_VERSION, OPT_CAKEY, OPT_DRAIN, OPT_MAXCONN,
	OPT_HEADTO, OPT_IDLETO, OPT_MAXBUF, OPT_SANDBOX, OPT_METRICS, OPT_USER, OPT_CONTROL,
	OPT_SOURCE, OPT_FORMAT, OPT_CTLTOKEN, OPT_REPORT, OPT_REPORTFMT, OPT_REPORTMAX, OPT_LEARN,
	OPT_DECODEMEM, OPT_HTTP2, OPT_NO_HTTP2,
};

/* Commands, as bits: an option row names the commands that use it. */
enum {
	CLI_SERVE = 1 << 0, CLI_CHECK = 1 << 1, CLI_ENV = 1 << 2, CLI_CA = 1 << 3,
	CLI_RUN = 1 << 4, CLI_SANDBOX = 1 << 5,
	CLI_ALL = CLI_SERVE | CLI_CHECK | CLI_ENV | CLI_CA | CLI_RUN | CLI_SANDBOX,
};

struct cliopt {
	const char *name;  /* long name, without "--" */
	int shortopt;      /* 'c', or 0 */
	int id;            /* what getopt_long returns: an OPT_ value or shortopt */
	const char *arg;   /* the argument's placeholder ("FILE"), NULL for a flag;
			    * "[=FILE]": an optional argument (--name or --name=FILE) */
	const char *help;  /* one line: what it does (repeatable?) */
	const char *def;   /* the default, as help and the man page print it;
			    * NULL only for flags */
	unsigned cmds;     /* CLI_ bits: the commands that use it */
};

/* The option rows, in help order; *n gets their number. Static storage. */
const struct cliopt *cliopts_table(size_t *n);

/* The row of option id (what getopt_long returned), or NULL. */
const struct cliopt *cliopts_find(int id);

/* A number option's range; a value outside it is refused with a line that
 * names it ("want 1..86400 seconds"). */
struct clirange {
	int id;            /* the option's OPT_ value */
	int min, max;
	const char *unit;  /* after the range in that line: "", " seconds" */
};

/* The range of option id (what getopt_long returned), or NULL if it does
 * not take a number. Static storage. */
const struct clirange *cliopts_range(int id);

/* The getopt_long table built from the rows (NULL-terminated, static
 * storage, built on first use; call before any thread starts). */
const struct option *cliopts_long(void);
/* The getopt_long short-option string ("+:c:h": stop at the first
 * non-option, ':' reports a missing argument). */
const char *cliopts_short(void);

/* The command bit for name ("serve", "check", ...), or 0 if unknown. */
unsigned cliopts_command(const char *name);

/* Help: command 0 prints the overview (synopsis of every command and the
 * options every command takes); a CLI_ bit prints that command's usage and
 * each option it uses, with its default. */
void cliopts_help(FILE *f, unsigned command);
/* The one-line hint after a usage error: "Try 'egressd CMD --help'." */
void cliopts_hint(FILE *f, unsigned command);

#endif
