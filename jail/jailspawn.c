/* jailspawn.c -- starting `egressd run`'s command inside the jail: its own
 * PID and mount namespaces (a fresh /proc), the jail's network namespace,
 * egressd's files hidden, no capabilities, a tiny init as PID 1; for uid 0 a
 * read-only host whose /tmp and /var/tmp write to a private tmpfs.
 *
 * The child comes from a raw clone(CLONE_NEWPID | CLONE_NEWNS) so that it is
 * the new namespace's PID 1 and egressd's direct child (no middle process
 * holding a copy of egressd's memory). glibc does not know about a raw
 * clone, so the child uses plain system calls only until it execs. It then
 * holds a copy of egressd's memory (keys, secret values) for a few system
 * calls: it execs a fresh egressd binary as the init before anything from
 * the jail runs, and is non-dumpable (inherited) until then.
 *
 * A failing step is reported over a close-on-exec pipe as {step, path,
 * errno}: step and path are addresses in memory the parent has too (static
 * strings, its own js->hide), so the parent can print them. EOF on the pipe
 * means the exec happened. */
#include "jailspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <linux/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "errmsg.h"
#include "jailinit.h"
#include "runas.h"

#define seterr(err, ...) errmsg_set((err), JAILSPAWN_ERRLEN, __VA_ARGS__)

/* The private tmpfs under each of uid 0's /tmp and /var/tmp overlays. */
#define JAILSPAWN_SCRATCH_SIZE "25%"

/* What the child reports when a step fails. */
struct report {
	const char *step;
	const char *path;
	int err;
};

/* Everything the child needs, prepared by the parent (no allocation after
 * the clone). */
struct plan {
	const struct jailspawn *js;
	int net_fd;            /* the network namespace */
	int exe_fd;            /* this binary, for the init */
	int report_fd;         /* write end of the report pipe */
	const char *cwd;       /* the current directory, or NULL */
	char **init_argv;      /* egressd JAILINIT_CMD -- CMD... */
};

__attribute__((noreturn))
static void child_fail(const struct plan *pl, const char *step, const char *path)
{
	struct report r = { step, path, errno };

	if (write(pl->report_fd, &r, sizeof r) < 0) {
		/* the parent then sees a bare 125 */
	}
	_exit(125);
}

/* SIGKILL when egressd dies; _exit if it already has (the report pipe's
 * read end, which egressd holds, is then closed). */
static void die_with_parent(const struct plan *pl)
{
	struct pollfd p = { .fd = pl->report_fd, .events = POLLOUT };

	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)))
		_exit(125);
}

/* "/proc/self/fd/<fd>" into buf (no stdio after a raw clone). */
static const char *fd_path(int fd, char buf[32])
{
	char digits[12];
	int n = 0, k = 0;

	do
		digits[n++] = (char)('0' + fd % 10);
	while ((fd /= 10) > 0 && n < 11);
	memcpy(buf, "/proc/self/fd/", 14);
	k = 14;
	while (n > 0)
		buf[k++] = digits[--n];
	buf[k] = '\0';
	return buf;
}

/* Bind-mounts what fd refers to (opened O_PATH before /dev was covered)
 * onto path, made first as an empty file or directory. */
static void bind_fd(const struct plan *pl, int fd, const char *path, bool dir, unsigned long extra)
{
	char src[32];
	int t;

	if (dir) {
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			child_fail(pl, "mkdir", path);
	} else if ((t = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		child_fail(pl, "creating", path);
	} else {
		close(t);
	}
	if (mount(fd_path(fd, src), path, NULL, MS_BIND | extra, NULL) < 0)
		child_fail(pl, "bind-mounting the host's device onto", path);
}

/* A minimal /dev: a tmpfs with the host's null, zero, full, random,
 * urandom, tty and ptmx nodes, its /dev/pts, a fresh /dev/shm and the usual
 * links; nothing else of the host's devices (disks, kmsg, ...) is there.
 * Read-only but for what is mounted on it. */
static void make_dev(const struct plan *pl)
{
	static const char *const nodes[][2] = {
		{ "/dev/null", NULL }, { "/dev/zero", NULL }, { "/dev/full", NULL },
		{ "/dev/random", NULL }, { "/dev/urandom", NULL }, { "/dev/tty", NULL },
		{ "/dev/ptmx", NULL }, { "/dev/pts", "dir" },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
	};
	enum { NNODES = sizeof nodes / sizeof nodes[0] };
	int fds[NNODES];

	for (size_t i = 0; i < NNODES; i++)
		fds[i] = open(nodes[i][0], O_PATH | O_CLOEXEC);
	if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") < 0)
		child_fail(pl, "mounting a tmpfs over", "/dev");
	for (size_t i = 0; i < NNODES; i++)
		if (fds[i] >= 0) /* a host without one does without it */
			bind_fd(pl, fds[i], nodes[i][0], nodes[i][1] != NULL, MS_REC);
	if (mkdir("/dev/shm", 01777) < 0 || chmod("/dev/shm", 01777) < 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		child_fail(pl, "making", "/dev/shm");
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		if (symlink(links[i][0], links[i][1]) < 0)
			child_fail(pl, "symlink", links[i][1]);
	if (mount(NULL, "/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
		  NULL) < 0)
		child_fail(pl, "making /dev read-only", NULL);
	for (size_t i = 0; i < NNODES; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* path bound onto itself read-only: the kernel's knobs there take writes
 * from uid 0 on permission bits alone (--user root has no capability but
 * owns them). */
static void read_only(const struct plan *pl, const char *path)
{
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return; /* a kernel without it */
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
	    mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV |
		  MS_NOEXEC, NULL) < 0)
		child_fail(pl, "making read-only", path);
}

/* The mount namespace: nothing propagates back to the host; /proc of the
 * new PID namespace (its sysctls and sysrq-trigger read-only); /sys of the
 * jail's network namespace, read-only; a minimal /dev; resolv.conf. */
static void set_mounts(const struct plan *pl)
{
	const unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;

	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
		child_fail(pl, "making / a slave mount", NULL);
	if (umount2("/proc", MNT_DETACH) < 0 && errno != EINVAL)
		child_fail(pl, "unmounting the host's /proc", NULL);
	if (mount("proc", "/proc", "proc", fl, NULL) < 0)
		child_fail(pl, "mounting a fresh /proc", NULL);
	read_only(pl, "/proc/sys");
	read_only(pl, "/proc/sysrq-trigger");
	if (umount2("/sys", MNT_DETACH) < 0 && errno != EINVAL)
		child_fail(pl, "unmounting the host's /sys", NULL);
	if (mount("sysfs", "/sys", "sysfs", fl | MS_RDONLY, NULL) < 0)
		child_fail(pl, "mounting /sys", NULL);
	make_dev(pl);
	if (mount(pl->js->resolv_conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) < 0)
		child_fail(pl, "bind-mounting resolv.conf over", "/etc/resolv.conf");
}

/* Files first: one inside a hidden directory is then still reachable. */
static void hide_paths(const struct plan *pl)
{
	for (int dirs = 0; dirs < 2; dirs++) {
		for (const char *const *h = pl->js->hide; h && *h; h++) {
			struct stat st;

			if (stat(*h, &st) < 0) {
				if (errno == ENOENT)
					continue;
				child_fail(pl, "stat", *h);
			}
			if (S_ISDIR(st.st_mode) != dirs)
				continue;
			if (dirs && mount("tmpfs", *h, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC |
					  MS_RDONLY, "size=4k,nr_inodes=1,mode=000") < 0)
				child_fail(pl, "mounting an empty tmpfs over", *h);
			if (!dirs && (mount("/dev/null", *h, NULL, MS_BIND, NULL) < 0 ||
				      mount(NULL, *h, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0))
				child_fail(pl, "bind-mounting /dev/null over", *h);
		}
	}
}

/* "a" "b" "c" into buf (no stdio after a raw clone); parts NULL-terminated,
 * the whole cut at cap - 1. */
static const char *concat(char *buf, size_t cap, const char *const *parts)
{
	size_t k = 0;

	for (; *parts; parts++)
		for (const char *c = *parts; *c && k + 1 < cap; c++)
			buf[k++] = *c;
	buf[k] = '\0';
	return buf;
}

/* The host changes the lower layer while the overlay is mounted:
 * overlayfs.rst ("Changes to underlying filesystems") allows changes to it
 * only without these features, whatever the kernel's defaults are. */
#define OVERLAY_FEATURES "redirect_dir=off,index=off,metacopy=off,xino=off"

/* dir (/tmp or /var/tmp, present) as an overlay for uid 0: the host's
 * directory, by a descriptor opened before it is covered, is the read-only
 * lower layer; a fresh size-limited tmpfs mounted on dir itself holds the
 * upper and work directories, and the overlay then covers that tmpfs, so
 * nothing reaches it but the overlay. The upper root takes the host
 * directory's owner and mode (what the overlay's root shows). Overlays see
 * one file system each: a host mount below dir is not in the overlay. */
static void overlay_scratch(const struct plan *pl, const char *dir)
{
	char upper[32], work[32], fdp[32], opts[192];
	unsigned long fl = MS_NOSUID | MS_NODEV;
	struct statfs sf;
	struct stat st;
	int lower = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (lower < 0 || fstat(lower, &st) < 0 || fstatfs(lower, &sf) < 0)
		child_fail(pl, "opening the host's directory", dir);
	if (sf.f_flags & ST_NOEXEC)
		fl |= MS_NOEXEC;
	concat(upper, sizeof upper, (const char *const[]){ dir, "/upper", NULL });
	concat(work, sizeof work, (const char *const[]){ dir, "/work", NULL });
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV,
		  "mode=700,size=" JAILSPAWN_SCRATCH_SIZE) < 0)
		child_fail(pl, "mounting the overlay's private tmpfs on", dir);
	if (mkdir(upper, 0700) < 0 || mkdir(work, 0700) < 0 ||
	    chown(upper, st.st_uid, st.st_gid) < 0 || chmod(upper, st.st_mode & 07777) < 0)
		child_fail(pl, "making the overlay's upper and work directories for", dir);
	concat(opts, sizeof opts, (const char *const[]){ "lowerdir=", fd_path(lower, fdp),
		",upperdir=", upper, ",workdir=", work, ",", OVERLAY_FEATURES, NULL });
	if (mount("overlay", dir, "overlay", fl, opts) < 0)
		child_fail(pl, "mounting an overlay (the host's directory read-only under a "
			   "private tmpfs) on", dir);
	close(lower);
}

/* uid 0 without any capability still writes whatever root owns by its
 * owner permission bits: system binaries, /etc/passwd, egressd's own binary,
 * so a command run as --user root could plant code that real root runs
 * later. For it, every mount is made read-only (mount_setattr, recursive);
 * then the scratch places /tmp and /var/tmp become overlays whose writes go
 * to a private tmpfs (a root-owned file in the host's /tmp, a checkout or a
 * build tree there, is as safe as one elsewhere), and the jail's fresh
 * /dev/shm is made writable again. Both overlays are new mounts, so the
 * read-only attribute does not reach them. /var/tmp the same directory as
 * /tmp (a symbolic link) gets one overlay. */
static void root_read_only(const struct plan *pl)
{
	static const char *const scratch[] = { "/var/tmp", "/tmp" };
	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY };
	struct mount_attr rw = { .attr_clr = MOUNT_ATTR_RDONLY };
	struct stat st[2];
	bool present[2];

	for (size_t i = 0; i < 2; i++)
		present[i] = stat(scratch[i], &st[i]) == 0 && S_ISDIR(st[i].st_mode);
	if (present[0] && present[1] && st[0].st_dev == st[1].st_dev &&
	    st[0].st_ino == st[1].st_ino)
		present[0] = false;
	if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) < 0)
		child_fail(pl, "making every mount read-only for uid 0 (mount_setattr)", "/");
	for (size_t i = 0; i < 2; i++)
		if (present[i])
			overlay_scratch(pl, scratch[i]);
	if (syscall(SYS_mount_setattr, AT_FDCWD, "/dev/shm", 0, &rw, sizeof rw) < 0)
		child_fail(pl, "making writable again", "/dev/shm");
}

__attribute__((noreturn))
static void child_main(const struct plan *pl)
{
	const char *step = NULL;

	die_with_parent(pl);
	setpgid(0, 0); /* out of the terminal's foreground group, as before */
	if (setns(pl->net_fd, CLONE_NEWNET) < 0)
		child_fail(pl, "entering the network namespace", pl->js->netns);
	set_mounts(pl);
	if (runas_uid(pl->js->user) == 0)
		root_read_only(pl);
	/* after the overlays: they show the host's /tmp without what is
	 * mounted on it, so a hidden path there is hidden on the overlay */
	hide_paths(pl);
	/* by path again: the old directory may be one just hidden */
	if (!pl->cwd || chdir(pl->cwd) < 0)
		if (chdir("/") < 0)
			child_fail(pl, "chdir", "/");
	if (runas_apply(pl->js->user, &step) < 0)
		child_fail(pl, step, NULL);
	die_with_parent(pl); /* a credential change cleared the death signal */
	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		for (int fd = 3; fd < 65536; fd++) /* a kernel before 5.11 */
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	fexecve(pl->exe_fd, pl->init_argv, pl->js->envp);
	child_fail(pl, "executing the jail's init (this egressd binary)", NULL);
}

/* Waits for the child's report: 0 if it exec'd (EOF), else -1 with err. */
static int read_report(int fd, pid_t pid, char *err)
{
	struct report r;
	ssize_t n;

	do
		n = read(fd, &r, sizeof r);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof r)
		seterr(err, "the jail's process failed before reporting why");
	else
		seterr(err, "setting up the command's namespaces: %s%s%s: %s", r.step,
		       r.path ? " " : "", r.path ? r.path : "", strerror(r.err));
	return -1;
}

pid_t jailspawn_start(const struct jailspawn *js, char *err)
{
	struct plan pl = { .js = js, .net_fd = -1, .exe_fd = -1, .report_fd = -1 };
	int rep[2] = { -1, -1 };
	size_t argc = 0;
	char cwd[PATH_MAX];
	pid_t pid = -1;

	while (js->argv[argc])
		argc++;
	if (!argc) {
		seterr(err, "no command to run");
		goto out;
	}
	pl.init_argv = xcalloc(argc + 4, sizeof(char *));
	pl.init_argv[0] = (char *)"egressd";
	pl.init_argv[1] = (char *)JAILINIT_CMD;
	pl.init_argv[2] = (char *)"--";
	memcpy(pl.init_argv + 3, js->argv, argc * sizeof(char *));
	pl.cwd = getcwd(cwd, sizeof cwd);
	if ((pl.net_fd = open(js->netns, O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(err, "open %s: %s", js->netns, strerror(errno));
		goto out;
	}
	if ((pl.exe_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(err, "open /proc/self/exe: %s", strerror(errno));
		goto out;
	}
	if (pipe2(rep, O_CLOEXEC) < 0) {
		seterr(err, "pipe: %s", strerror(errno));
		goto out;
	}
	pl.report_fd = rep[1];
	pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL,
			     NULL);
	if (pid < 0) {
		seterr(err, "clone (new PID and mount namespaces): %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_main(&pl);
	setpgid(pid, pid); /* either side may win the race; both set the same */
	close(rep[1]);
	rep[1] = -1;
	if (read_report(rep[0], pid, err) < 0)
		pid = -1;
out:
	for (int i = 0; i < 2; i++)
		if (rep[i] >= 0)
			close(rep[i]);
	if (pl.net_fd >= 0)
		close(pl.net_fd);
	if (pl.exe_fd >= 0)
		close(pl.exe_fd);
	free(pl.init_argv);
	return pid;
}
