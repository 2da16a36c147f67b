/* cliopts_test.c -- unit tests for the option table (cli/cliopts.c): the
 * getopt table is built from the help rows, every row is printed once in the
 * help of each command that uses it, with its default; the number options'
 * ranges agree with their rows */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliopts.h"
#include "tap.h"

static const unsigned all_cmds[] = { CLI_SERVE, CLI_CHECK, CLI_ENV, CLI_CA, CLI_RUN,
				      CLI_SANDBOX };
static const char *const cmd_names[] = { "serve", "check", "env", "ca", "run", "sandbox" };

/* The help text of command (0: overview), in a malloc'ed string. Not
 * inlined: gcc 12 -O2 then takes the memstream's pointer for a local that
 * dangles (a false -Wdangling-pointer in the caller). */
static __attribute__((noinline)) char *help_text(unsigned command)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cliopts_help(f, command);
	fclose(f);
	return buf;
}

/* How many option lines of text ("  -c, --name ARG" or "      --name ARG")
 * introduce --name (mentions inside help sentences do not count). */
static int count_opt(const char *text, const char *name)
{
	char pat[96];
	int n = 0;
	size_t pl;

	pl = (size_t)snprintf(pat, sizeof(pat), "--%s", name);
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *p = NULL;

		if (!strncmp(l, "      --", 8))
			p = l + 6;
		else if (l[0] == ' ' && l[1] == ' ' && l[2] == '-' && l[3] != '-' && !strncmp(l + 4, ", --", 4))
			p = l + 6;
		if (p && !strncmp(p, pat, pl) && (p[pl] == ' ' || p[pl] == '\n' || p[pl] == '['))
			n++;
	}
	return n;
}

static void test_getopt_table(void)
{
	size_t n, nlong = 0;
	const struct cliopt *t = cliopts_table(&n);
	const struct option *lo = cliopts_long();
	const char *so = cliopts_short();
	bool same = true, uniq = true, defaults = true, shorts = true;

	for (; lo[nlong].name; nlong++)
		;
	ok(nlong == n, "getopt table has one entry per row (%zu vs %zu)", nlong, n);
	for (size_t i = 0; i < n && i < nlong; i++) {
		same &= !strcmp(lo[i].name, t[i].name) && lo[i].val == t[i].id &&
			lo[i].has_arg == (!t[i].arg ? no_argument : t[i].arg[0] == '['
					  ? optional_argument : required_argument);
		for (size_t j = 0; j < i; j++)
			uniq &= strcmp(t[i].name, t[j].name) && t[i].id != t[j].id;
		/* every option that takes a value says what egressd does without it */
		defaults &= !t[i].arg || (t[i].def && t[i].def[0]);
		defaults &= t[i].help && t[i].help[0] && t[i].cmds != 0;
		if (t[i].shortopt) {
			const char *p = strchr(so, t[i].shortopt);
			shorts &= p && t[i].id == t[i].shortopt && (p[1] == ':') == !!t[i].arg;
		}
	}
	ok(same, "getopt rows match the help rows (name, value, argument)");
	ok(uniq, "option names and ids are unique");
	ok(defaults, "every option has help, commands, and (if it takes a value) a default");
	ok(shorts, "short options are in the short string with their argument marker");
	ok(!strncmp(so, "+:", 2), "short string stops at the first operand and reports ':'");
}

static void test_help(void)
{
	size_t n;
	const struct cliopt *t = cliopts_table(&n);
	char *over = help_text(0);

	for (size_t c = 0; c < sizeof(all_cmds) / sizeof(all_cmds[0]); c++) {
		char *h = help_text(all_cmds[c]);
		bool listed = true, absent = true, defs = true;
		char want[64];

		snprintf(want, sizeof(want), "usage: egressd %s", c == 0 ? "[serve]" : cmd_names[c]);
		ok(!strncmp(h, want, strlen(want)), "%s help starts with its usage line", cmd_names[c]);
		ok(cliopts_command(cmd_names[c]) == all_cmds[c], "command '%s' is known", cmd_names[c]);
		for (size_t i = 0; i < n; i++) {
			int k = count_opt(h, t[i].name);
			if (t[i].cmds & all_cmds[c]) {
				if (k != 1) {
					listed = false;
					printf("#   --%s listed %d times in %s help\n", t[i].name, k, cmd_names[c]);
				}
			} else if (k != 0) {
				absent = false;
				printf("#   --%s (not used by %s) in its help\n", t[i].name, cmd_names[c]);
			}
		}
		/* each "(default: X)" follows its option: as many as options with values */
		{
			int nd = 0, want_d = 0;
			for (const char *p = strstr(h, "(default: "); p; p = strstr(p + 1, "(default: "))
				nd++;
			for (size_t i = 0; i < n; i++)
				want_d += (t[i].cmds & all_cmds[c]) && t[i].def;
			defs = nd == want_d;
		}
		ok(listed, "%s help lists each of its options exactly once", cmd_names[c]);
		ok(absent, "%s help lists no option it does not use", cmd_names[c]);
		ok(defs, "%s help gives a default for each option with a value", cmd_names[c]);
		free(h);
	}
	ok(cliopts_command("nope") == 0 && cliopts_command("help") == 0,
	   "unknown names are not commands");
	for (size_t c = 0; c < sizeof(cmd_names) / sizeof(cmd_names[0]); c++) {
		char want[64];
		snprintf(want, sizeof(want), "egressd %s", c == 0 ? "[serve]" : cmd_names[c]);
		ok(strstr(over, want) != NULL, "overview names '%s'", want);
	}
	ok(count_opt(over, "help") == 1 && count_opt(over, "version") == 1,
	   "overview lists the options of every command");
	free(over);
}

/* Each range belongs to an option that takes a value; its default, when a
 * number, is inside it; a range its help states ("(1..64)") is the same. */
static void test_ranges(void)
{
	size_t n, nranges = 0;
	const struct cliopt *t = cliopts_table(&n);

	for (size_t i = 0; i < n; i++) {
		const struct clirange *r = cliopts_range(t[i].id);
		const char *h;
		char *end;
		long d, lo, hi;

		if (!r)
			continue;
		nranges++;
		ok(cliopts_find(t[i].id) == &t[i] && r->id == t[i].id && t[i].arg &&
		   r->min >= 1 && r->min < r->max && r->unit, "--%s: a range of a value", t[i].name);
		d = strtol(t[i].def, &end, 10);
		if (!*end)
			ok(d >= r->min && d <= r->max, "--%s: default %ld is in %d..%d", t[i].name, d,
			   r->min, r->max);
		if ((h = strchr(t[i].help, '(')) && sscanf(h, "(%ld..%ld)", &lo, &hi) == 2)
			ok(lo == r->min && hi == r->max, "--%s: its help's range %ld..%ld is %d..%d",
			   t[i].name, lo, hi, r->min, r->max);
	}
	ok(nranges == 8, "eight number options (%zu)", nranges);
	ok(cliopts_range('c') == NULL && cliopts_find(-1) == NULL, "no range for other options");
}

/* HTTP/2 is on by default: --no-http2 turns it off, --http2 stays accepted;
 * both are flags of serve and run. */
static void test_http2_flags(void)
{
	size_t n;
	const struct cliopt *t = cliopts_table(&n);
	int found = 0;

	for (size_t i = 0; i < n; i++) {
		bool on = !strcmp(t[i].name, "http2"), off = !strcmp(t[i].name, "no-http2");
		if (!on && !off)
			continue;
		found++;
		ok(t[i].id == (on ? OPT_HTTP2 : OPT_NO_HTTP2) && !t[i].arg &&
		   (t[i].cmds & CLI_SERVE) && (t[i].cmds & CLI_RUN),
		   "--%s: a flag of serve and run", t[i].name);
	}
	ok(found == 2, "--http2 and --no-http2 both exist (%d)", found);
}

int main(void)
{
	test_getopt_table();
	test_help();
	test_ranges();
	test_http2_flags();
	return done_testing();
}
