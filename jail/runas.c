/* runas.c -- who `egressd run`'s command runs as (the sudo user, or --user)
 * and dropping to it for good: groups, gid, uid, no capability ever again.
 *
 * Resolution (passwd, group, getgrouplist) happens in egressd before the
 * jail's child is cloned; runas_apply runs in that child and uses raw system
 * calls only: glibc's setresuid() in a copy of a threaded process would try
 * to signal threads that do not exist there. */
#include "runas.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "errmsg.h"

#define MAX_GROUPS 65536

struct runas {
	uid_t uid;
	gid_t gid;
	gid_t *groups;  /* supplementary groups */
	size_t ngroups;
	char *name;     /* passwd name, or the uid as text */
	char *home;     /* passwd home, or "/" */
};

#define seterr(err, ...) errmsg_set((err), RUNAS_ERRLEN, __VA_ARGS__)

/* Strict decimal id (no sign, no spaces, below 2^32 - 1). */
static int parse_id(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;

	if (!len || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v >= 0xffffffffUL)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* The supplementary groups of name (primary group gid included). */
static void load_groups(struct runas *r)
{
	int n = 32;

	for (;;) {
		int want = n;

		r->groups = xrealloc(r->groups, (size_t)n * sizeof(gid_t));
		if (getgrouplist(r->name, r->gid, r->groups, &want) >= 0) {
			r->ngroups = (size_t)want;
			return;
		}
		if (want <= n || want > MAX_GROUPS) {
			r->groups[0] = r->gid; /* cannot list them: the primary group only */
			r->ngroups = 1;
			return;
		}
		n = want;
	}
}

/* uid, name and home from user (a name or a number); gid from its entry. */
static int find_user(struct runas *r, const char *user, size_t len, char *err)
{
	char name[256];
	struct passwd *pw;
	unsigned id;

	if (len >= sizeof name) {
		seterr(err, "user name too long");
		return -1;
	}
	memcpy(name, user, len);
	name[len] = '\0';
	if (parse_id(name, len, &id) == 0) {
		pw = getpwuid((uid_t)id);
		r->uid = (uid_t)id;
		r->gid = pw ? pw->pw_gid : (gid_t)id;
	} else if ((pw = getpwnam(name)) != NULL) {
		r->uid = pw->pw_uid;
		r->gid = pw->pw_gid;
	} else {
		seterr(err, "unknown user \"%s\"", name);
		return -1;
	}
	r->name = xstrdup(pw ? pw->pw_name : name);
	r->home = xstrdup(pw && pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : "/");
	return 0;
}

static int find_group(struct runas *r, const char *group, char *err)
{
	struct group *gr;
	unsigned id;

	if (parse_id(group, strlen(group), &id) == 0) {
		r->gid = (gid_t)id;
	} else if ((gr = getgrnam(group)) != NULL) {
		r->gid = gr->gr_gid;
	} else {
		seterr(err, "unknown group \"%s\"", group);
		return -1;
	}
	return 0;
}

/* The user who ran sudo: SUDO_UID (SUDO_GID, SUDO_USER). */
static int from_sudo(struct runas *r, char *err)
{
	const char *uid = getenv("SUDO_UID"), *gid = getenv("SUDO_GID");
	const char *user = getenv("SUDO_USER");
	unsigned id;

	if (!uid) {
		seterr(err, "refusing to run the command as root: start egressd run through "
			    "sudo (the command runs as the user who ran sudo) or name a user "
			    "with --user USER[:GROUP] (--user root: uid 0 without capabilities)");
		return -1;
	}
	if (parse_id(uid, strlen(uid), &id) < 0) {
		seterr(err, "SUDO_UID=\"%.40s\" is not a user id", uid);
		return -1;
	}
	if (find_user(r, uid, strlen(uid), err) < 0)
		return -1;
	if (user && user[0] && getpwnam(user) && getpwnam(user)->pw_uid == r->uid) {
		free(r->name);
		r->name = xstrdup(user);
	}
	if (gid && parse_id(gid, strlen(gid), &id) < 0) {
		seterr(err, "SUDO_GID=\"%.40s\" is not a group id", gid);
		return -1;
	}
	if (gid)
		r->gid = (gid_t)id;
	return 0;
}

struct runas *runas_new(const char *spec, char *err)
{
	struct runas *r = xcalloc(1, sizeof *r);
	int rc;

	if (!spec) {
		rc = from_sudo(r, err);
	} else {
		const char *colon = strchr(spec, ':');

		rc = find_user(r, spec, colon ? (size_t)(colon - spec) : strlen(spec), err);
		if (rc == 0 && colon)
			rc = find_group(r, colon + 1, err);
	}
	if (rc < 0) {
		runas_free(r);
		return NULL;
	}
	load_groups(r);
	return r;
}

void runas_free(struct runas *r)
{
	if (!r)
		return;
	free(r->groups);
	free(r->name);
	free(r->home);
	free(r);
}

uid_t runas_uid(const struct runas *r)
{
	return r->uid;
}

gid_t runas_gid(const struct runas *r)
{
	return r->gid;
}

const char *runas_name(const struct runas *r)
{
	return r->name;
}

const char *runas_home(const struct runas *r)
{
	return r->home;
}

/* ------------------------------------------------------------------------
 * the drop (async-signal-safe) */

#define FAIL(what)            \
	do {                  \
		*step = what; \
		return -1;    \
	} while (0)

int runas_apply(const struct runas *r, const char **step)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct none[2];
	unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
			     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
			     SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

	memset(none, 0, sizeof none);
	if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
		FAIL("prctl(PR_SET_SECUREBITS)");
	for (unsigned long cap = 0; cap < 64; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
			continue;
		if (errno == EINVAL)
			break; /* past the kernel's last capability */
		FAIL("prctl(PR_CAPBSET_DROP)");
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		FAIL("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	if (syscall(SYS_setgroups, r->ngroups, r->groups) < 0)
		FAIL("setgroups");
	if (syscall(SYS_setresgid, r->gid, r->gid, r->gid) < 0)
		FAIL("setresgid");
	if (syscall(SYS_setresuid, r->uid, r->uid, r->uid) < 0)
		FAIL("setresuid");
	if (syscall(SYS_capset, &hdr, none) < 0)
		FAIL("capset");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		FAIL("prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}
