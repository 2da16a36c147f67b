/* selfguard_test.c -- unit tests for cli/selfguard.c: after
 * selfguard_init the process is non-dumpable, getenv still answers from the
 * private copy, setenv works, and /proc/self/environ (the original block)
 * holds none of the values */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "selfguard.h"
#include "tap.h"

#define VALUE "sk-selfguard-test-0123456789"

/* Whether /proc/self/environ contains s; -1 if it cannot be read. */
static int environ_has(const char *s)
{
	char buf[1 << 16];
	FILE *f = fopen("/proc/self/environ", "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	return memmem(buf, n, s, strlen(s)) != NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		/* re-exec with the value in the initial environment block */
		char *args[] = { argv[0], (char *)"child", NULL };
		char *env[] = { (char *)"SELFGUARD_SECRET=" VALUE, (char *)"PATH=/usr/bin:/bin",
				NULL };
		execve("/proc/self/exe", args, env);
		perror("execve");
		return 2;
	}
	ok(environ_has(VALUE) == 1, "before: the value is in /proc/self/environ");
	selfguard_init();
	ok(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0, "non-dumpable");
	is_str(getenv("SELFGUARD_SECRET"), VALUE, "getenv reads the private copy");
	is_str(getenv("PATH"), "/usr/bin:/bin", "other variables too");
	/* non-dumpable, a non-root process cannot read its own /proc/self/environ
	 * at all: dumpable again for a moment, to see what the block holds */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	ok(environ_has(VALUE) == 0 && environ_has("SELFGUARD_SECRET") == 0,
	   "after: /proc/self/environ holds neither the value nor the name");
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	ok(setenv("LATER", "x", 1) == 0 && !strcmp(getenv("LATER"), "x"), "setenv still works");
	is_str(getenv("SELFGUARD_SECRET"), VALUE, "and the copy survives it");
	return done_testing();
}
