/* runas_test.c -- unit tests for who `egressd run`'s command runs as
 * (jail/runas.c): --user USER[:GROUP] by name or number, the sudo
 * variables, refusals; the drop itself (runas_apply) in a forked child when
 * the test runs as root */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runas.c"
#include "tap.h"

static void sudo_env(const char *uid, const char *gid, const char *user)
{
	unsetenv("SUDO_UID");
	unsetenv("SUDO_GID");
	unsetenv("SUDO_USER");
	if (uid)
		setenv("SUDO_UID", uid, 1);
	if (gid)
		setenv("SUDO_GID", gid, 1);
	if (user)
		setenv("SUDO_USER", user, 1);
}

static void test_spec(void)
{
	char err[RUNAS_ERRLEN];
	struct runas *r;

	r = runas_new("root", err);
	ok(r && runas_uid(r) == 0 && runas_gid(r) == 0, "--user root: uid 0, gid 0");
	is_str(r ? runas_name(r) : NULL, "root", "--user root: name");
	runas_free(r);
	r = runas_new("65534:0", err);
	ok(r && runas_uid(r) == 65534 && runas_gid(r) == 0, "--user 65534:0: numbers");
	runas_free(r);
	r = runas_new("4000123", err);
	ok(r && runas_uid(r) == 4000123 && runas_gid(r) == 4000123,
	   "a uid without a passwd entry: gid = uid");
	is_str(r ? runas_home(r) : NULL, "/", "... HOME /");
	is_str(r ? runas_name(r) : NULL, "4000123", "... its name is the number");
	runas_free(r);
	ok(!runas_new("no-such-user-egressd", err) && strstr(err, "unknown user"),
	   "unknown user refused: %s", err);
	ok(!runas_new("root:no-such-group-egressd", err) && strstr(err, "unknown group"),
	   "unknown group refused: %s", err);
	ok(!runas_new("", err), "empty user refused");
	ok(!runas_new("-1", err) && !runas_new("+0", err) && !runas_new("4294967295", err),
	   "signed or out-of-range ids are names, and unknown");
}

static void test_sudo(void)
{
	char err[RUNAS_ERRLEN];
	struct runas *r;

	sudo_env(NULL, NULL, NULL);
	ok(!runas_new(NULL, err) && strstr(err, "refusing to run the command as root"),
	   "no sudo, no --user: refused (%s)", err);
	sudo_env("0", "0", "root");
	r = runas_new(NULL, err);
	ok(r && runas_uid(r) == 0, "SUDO_UID=0: root (without capabilities)");
	runas_free(r);
	sudo_env("4000123", "4000124", NULL);
	r = runas_new(NULL, err);
	ok(r && runas_uid(r) == 4000123 && runas_gid(r) == 4000124, "SUDO_UID and SUDO_GID used");
	ok(r && r->ngroups >= 1, "at least the primary group");
	runas_free(r);
	sudo_env("12x", NULL, NULL);
	ok(!runas_new(NULL, err) && strstr(err, "SUDO_UID"), "SUDO_UID not a number: %s", err);
	sudo_env("1", "g", NULL);
	ok(!runas_new(NULL, err) && strstr(err, "SUDO_GID"), "SUDO_GID not a number: %s", err);
	r = runas_new("4000123", err);
	ok(r && runas_uid(r) == 4000123, "--user wins over the sudo variables");
	runas_free(r);
	sudo_env(NULL, NULL, NULL);
}

/* As root: the child that dropped has uid/gid/groups as asked and every
 * capability set empty. */
static void test_apply(void)
{
	char err[RUNAS_ERRLEN];
	struct runas *r;
	int st = 0;
	pid_t pid;

	if (geteuid() != 0) {
		ok(1, "# SKIP runas_apply needs root");
		return;
	}
	r = runas_new("root", err);
	pid = fork();
	if (pid == 0) {
		const char *step = NULL;
		char line[256];
		FILE *f;
		int bad = 0;

		if (runas_apply(r, &step) < 0)
			_exit(2);
		f = fopen("/proc/self/status", "r");
		while (f && fgets(line, sizeof line, f))
			if (!strncmp(line, "Cap", 3) && !strstr(line, "0000000000000000"))
				bad++;
		if (!f || bad || getuid() != 0 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 ||
		    prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) == 0)
			_exit(3);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "uid 0 after runas_apply: every Cap* line zero, no_new_privs, securebits (status %d)",
	   WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	runas_free(r);
}

int main(void)
{
	test_spec();
	test_sudo();
	test_apply();
	return done_testing();
}
