/* jail.c -- the network namespace of `egressd run`: veth pair, addresses,
 * routes, resolv.conf, iptables redirection to egressd, and full teardown.
 *
 * Everything is done with the iproute2 and iptables commands, each run by
 * subproc.c from an argv array (never a shell), waited for, its stderr kept
 * for the error message. Names: namespace "egressd-<pid>-<n>", veth
 * "egh<hex>" (host end) / "egj<hex>" (jail end), iptables rules tagged with
 * the comment "<namespace name>" so teardown deletes exactly those. The /30
 * out of 10.200.0.0/16 is picked under a lock file from the addresses already
 * present, so concurrent jails never share one. Each jail holds an flock on
 * /run/egressd-jails/<name> for its life: a jail whose lock nobody holds was
 * left by an egressd that died (SIGKILL) and is removed by the next run. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "errmsg.h"
#include "jail.h"
#include "subproc.h"

#define NETNS_RUN_DIR "/var/run/netns"
#define ETC_NETNS "/etc/netns"
#define LOCK_FILE JAIL_LOCK_FILE
#define OWNER_DIR JAIL_OWNER_DIR
#define SUBNET_BLOCKS 16384u          /* /30s in 10.200.0.0/16 */
#define KILL_ROUNDS 200               /* x 10 ms: bound on the kill loop */

struct jail {
	char name[32];         /* netns name, also the iptables comment */
	char host_if[16];      /* veth end in the host namespace */
	char jail_if[16];      /* veth end inside the namespace */
	char dir[64];          /* /etc/netns/<name> */
	char conf[96];         /* /etc/netns/<name>/resolv.conf */
	char bundle[96];       /* /etc/netns/<name>/ca-bundle.pem */
	char nspath[64];       /* /var/run/netns/<name> */
	struct ipaddr host_ip;
	struct ipaddr jail_ip;
	dev_t ns_dev;          /* identity of the namespace (for the kill loop) */
	ino_t ns_ino;
	bool have_ns_id;
	bool made_ns, made_veth, made_etc, made_dir, made_conf, made_bundle;
	int owner_fd;          /* flock held on OWNER_DIR/<name>, or -1 */
};

static atomic_uint jail_counter;

#define seterr(err, ...) errmsg_set((err), JAIL_ERRLEN, __VA_ARGS__)
_Static_assert(JAIL_ERRLEN >= SUBPROC_ERRLEN, "a command's error fits a jail error");

/* Logs a failed cleanup step; teardown goes on with the next one. */
static void cleanup_warn(const char *what, const char *msg)
{
	fprintf(stderr, "egressd: jail cleanup: %s: %s\n", what, msg);
}

/* ------------------------------------------------------------------------
 * the /30 out of 10.200.0.0/16 */

/* Marks in used[] every /30 block of 10.200.0.0/16 that overlaps a.b.c.d/p.
 * Networks wider than the /16 are ignored: our /30 routes are more specific. */
static void mark_used(uint8_t *used, uint32_t a, unsigned p)
{
	uint32_t base = 0x0ac80000u; /* 10.200.0.0 */
	uint32_t lo, hi;

	if (p < 16 || p > 32)
		return;
	lo = p == 32 ? a : a & ~((1u << (32 - p)) - 1);
	hi = p == 32 ? a : lo | ((1u << (32 - p)) - 1);
	if ((lo & 0xffff0000u) != base)
		return;
	for (uint32_t b = (lo - base) >> 2; b <= (hi - base) >> 2 && b < SUBNET_BLOCKS; b++)
		used[b / 8] |= (uint8_t)(1u << (b % 8));
}

/* Fills j->host_ip / j->jail_ip with a /30 no interface of this namespace
 * uses, probing from seed. Caller holds the lock. 0, or -1 with err. */
static int pick_subnet(struct jail *j, unsigned seed, char *err)
{
	static const char *const argv[] = { "ip", "-o", "-4", "addr", "show", NULL };
	uint8_t used[SUBNET_BLOCKS / 8];
	struct subproc_out o = { 0 };
	int rc = -1;

	if (subproc_capture(argv, &o, err) < 0)
		goto out;
	memset(used, 0, sizeof used);
	for (const char *s = o.buf; (s = strstr(s, " inet ")) != NULL;) {
		const char *a = s + 6, *slash = a;
		struct ipaddr ip;
		unsigned p = 0;

		while (*slash && *slash != '/' && *slash != ' ')
			slash++;
		s = slash;
		if (*slash != '/' || !addr_parse_ipv4(a, (size_t)(slash - a), &ip))
			continue;
		for (const char *d = slash + 1; isdigit((unsigned char)*d) && p <= 32; d++)
			p = p * 10 + (unsigned)(*d - '0');
		mark_used(used, (uint32_t)ip.b[0] << 24 | (uint32_t)ip.b[1] << 16 |
				(uint32_t)ip.b[2] << 8 | ip.b[3], p);
	}
	for (unsigned i = 0; i < SUBNET_BLOCKS; i++) {
		unsigned b = (seed + i) % SUBNET_BLOCKS;
		uint32_t base;

		if (used[b / 8] & (1u << (b % 8)))
			continue;
		base = 0x0ac80000u | (b << 2);
		memset(&j->host_ip, 0, sizeof j->host_ip);
		j->host_ip.family = 4;
		j->host_ip.b[0] = 10;
		j->host_ip.b[1] = 200;
		j->host_ip.b[2] = (uint8_t)(base >> 8);
		j->host_ip.b[3] = (uint8_t)((base & 0xff) + 1);
		j->jail_ip = j->host_ip;
		j->jail_ip.b[3] = (uint8_t)((base & 0xff) + 2);
		rc = 0;
		goto out;
	}
	seterr(err, "no free /30 left in 10.200.0.0/16");
out:
	free(o.buf);
	return rc;
}

/* ------------------------------------------------------------------------
 * teardown */

/* SIGKILLs every process whose network namespace is the jail's, until none
 * is left (bounded). Processes are signalled through a pidfd opened before
 * their namespace is checked, so a recycled pid is never hit. */
static void kill_ns_procs(const struct jail *j)
{
	for (int round = 0; round < KILL_ROUNDS; round++) {
		DIR *d = opendir("/proc");
		struct dirent *de;
		int found = 0;

		if (!d) {
			cleanup_warn("opendir /proc", strerror(errno));
			return;
		}
		while ((de = readdir(d)) != NULL) {
			char path[64];
			struct stat st;
			pid_t pid = 0;
			int fd;

			if (!isdigit((unsigned char)de->d_name[0]))
				continue;
			for (const char *c = de->d_name; isdigit((unsigned char)*c); c++)
				pid = pid * 10 + (*c - '0');
			if (pid <= 1 || pid == getpid())
				continue;
			fd = pidfd_open(pid, 0);
			if (fd < 0)
				continue;
			snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
			if (stat(path, &st) == 0 && st.st_dev == j->ns_dev && st.st_ino == j->ns_ino) {
				found++;
				pidfd_send_signal(fd, SIGKILL, NULL, 0);
			}
			close(fd);
		}
		closedir(d);
		if (!found)
			return;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	cleanup_warn(j->name, "processes still alive in the namespace after SIGKILL");
}

/* Deletes every rule of table whose comment is the jail's name: each line
 * of `iptables -S` carrying it, re-issued with -D. */
static void delete_rules(const struct jail *j, const char *table)
{
	const char *const list[] = { "iptables", "-w", "-t", table, "-S", NULL };
	struct subproc_out o = { 0 };
	char err[JAIL_ERRLEN];
	char *line, *save = NULL;

	if (subproc_capture(list, &o, err) < 0) {
		cleanup_warn("listing iptables rules", err);
		return;
	}
	for (line = strtok_r(o.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *argv[72];
		char *tok, *tsave = NULL;
		bool ours = false;
		size_t n = 0;

		if (strncmp(line, "-A ", 3) != 0)
			continue;
		argv[n++] = "iptables";
		argv[n++] = "-w";
		argv[n++] = "-t";
		argv[n++] = table;
		for (tok = strtok_r(line, " ", &tsave); tok && n < 70; tok = strtok_r(NULL, " ", &tsave)) {
			size_t tl = strlen(tok);

			if (n > 4 && !strcmp(argv[n - 1], "--comment")) {
				if (tl >= 2 && tok[0] == '"' && tok[tl - 1] == '"') {
					tok[tl - 1] = '\0';
					tok++;
				}
				if (!strcmp(tok, j->name))
					ours = true;
			}
			argv[n] = n == 4 ? "-D" : tok; /* -A CHAIN ... -> -D CHAIN ... */
			n++;
		}
		argv[n] = NULL;
		if (ours && !tok && subproc_run(argv, err) < 0)
			cleanup_warn("deleting an iptables rule", err);
	}
	free(o.buf);
}

/* Removes what j made (each step on its own; failures are logged). */
static void teardown(struct jail *j)
{
	char err[JAIL_ERRLEN];

	if (j->made_ns && j->have_ns_id)
		kill_ns_procs(j);
	delete_rules(j, "nat");
	delete_rules(j, "filter");
	if (j->made_veth) {
		const char *const argv[] = { "ip", "link", "del", j->host_if, NULL };
		/* gone already when the namespace took the peer with it */
		if (subproc_run(argv, err) < 0 && !strstr(err, "Cannot find device"))
			cleanup_warn("deleting the veth", err);
		j->made_veth = false;
	}
	if (j->made_ns) {
		const char *const argv[] = { "ip", "netns", "del", j->name, NULL };
		if (subproc_run(argv, err) < 0)
			cleanup_warn("deleting the namespace", err);
		j->made_ns = false;
	}
	if (j->made_conf && unlink(j->conf) < 0 && errno != ENOENT)
		cleanup_warn(j->conf, strerror(errno));
	j->made_conf = false;
	if (j->made_bundle && unlink(j->bundle) < 0 && errno != ENOENT)
		cleanup_warn(j->bundle, strerror(errno));
	j->made_bundle = false;
	if (j->made_dir && rmdir(j->dir) < 0 && errno != ENOENT)
		cleanup_warn(j->dir, strerror(errno));
	/* /etc/netns too once empty, whichever of two concurrent jails made
	 * it (the other one may be last out); another jail may still use it:
	 * ENOTEMPTY is fine, and its creation retries if we win the race */
	if ((j->made_etc || j->made_dir) && rmdir(ETC_NETNS) < 0 && errno != ENOENT &&
	    errno != ENOTEMPTY && errno != EEXIST)
		cleanup_warn(ETC_NETNS, strerror(errno));
	j->made_dir = false;
	j->made_etc = false;
	if (j->owner_fd >= 0) {
		char path[96];
		snprintf(path, sizeof path, OWNER_DIR "/%s", j->name);
		unlink(path);
		close(j->owner_fd);
		j->owner_fd = -1;
	}
}

void jail_destroy(struct jail *j)
{
	if (!j)
		return;
	teardown(j);
	free(j);
}

/* ------------------------------------------------------------------------
 * creation */

/* /etc/netns/<name>/resolv.conf naming the host end. 0 or -1 with err. */
static int write_resolv_conf(struct jail *j, char *err)
{
	char ip[ADDR_STRLEN], text[80];
	int fd = -1, rc = -1, n;

	/* a concurrent teardown may rmdir /etc/netns between our two mkdirs */
	for (int attempt = 0; attempt < 5 && !j->made_dir; attempt++) {
		if (mkdir(ETC_NETNS, 0755) == 0)
			j->made_etc = true;
		else if (errno != EEXIST) {
			seterr(err, "mkdir %s: %s", ETC_NETNS, strerror(errno));
			goto out;
		}
		/* EEXIST: left by a crashed egressd that had our pid; the
		 * namespace name is ours now, so is the directory */
		if (mkdir(j->dir, 0755) == 0 || errno == EEXIST)
			j->made_dir = true;
		else if (errno != ENOENT) {
			seterr(err, "mkdir %s: %s", j->dir, strerror(errno));
			goto out;
		}
	}
	if (!j->made_dir) {
		seterr(err, "mkdir %s: %s", j->dir, strerror(ENOENT));
		goto out;
	}
	fd = open(j->conf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		seterr(err, "create %s: %s", j->conf, strerror(errno));
		goto out;
	}
	j->made_conf = true;
	n = snprintf(text, sizeof text, "nameserver %s\n", addr_format(&j->host_ip, ip));
	if (write(fd, text, (size_t)n) != n) {
		seterr(err, "write %s: %s", j->conf, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		seterr(err, "close %s: %s", j->conf, strerror(errno));
		rc = -1;
	}
	return rc;
}

/* The names of the jail egressd <pid> made as its n-th. */
static void set_names(struct jail *j, unsigned pid, unsigned n)
{
	snprintf(j->name, sizeof j->name, "egressd-%u-%u", pid, n);
	snprintf(j->host_if, sizeof j->host_if, "egh%06x%x", pid & 0xffffffu, n & 0xffffffu);
	snprintf(j->jail_if, sizeof j->jail_if, "egj%06x%x", pid & 0xffffffu, n & 0xffffffu);
	snprintf(j->dir, sizeof j->dir, ETC_NETNS "/%s", j->name);
	snprintf(j->conf, sizeof j->conf, ETC_NETNS "/%s/resolv.conf", j->name);
	snprintf(j->bundle, sizeof j->bundle, ETC_NETNS "/%s/ca-bundle.pem", j->name);
	snprintf(j->nspath, sizeof j->nspath, NETNS_RUN_DIR "/%s", j->name);
}

static void note_ns_id(struct jail *j)
{
	char path[96];
	struct stat st;

	snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", j->name);
	if (stat(path, &st) == 0) {
		j->ns_dev = st.st_dev;
		j->ns_ino = st.st_ino;
		j->have_ns_id = true;
	}
}

/* Takes OWNER_DIR/<name>'s lock for the jail's life. 0; 1 if a live jail
 * holds the name; -1 with err if the lock cannot be made. */
static int own_name(struct jail *j, char *err)
{
	char path[96];
	int fd;

	snprintf(path, sizeof path, OWNER_DIR "/%s", j->name);
	if ((mkdir(OWNER_DIR, 0700) < 0 && errno != EEXIST) ||
	    (fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		seterr(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return 1;
	}
	j->owner_fd = fd;
	return 0;
}

/* `ip netns add` under a fresh name; a name taken by someone else (a process
 * with our pid in another pid namespace) moves on to the next counter. */
static int add_netns(struct jail *j, char *err)
{
	for (int attempt = 0; attempt < 16; attempt++) {
		const char *const argv[] = { "ip", "netns", "add", j->name, NULL };

		int own;

		set_names(j, (unsigned)getpid(), atomic_fetch_add(&jail_counter, 1));
		if ((own = own_name(j, err)) < 0)
			return -1;
		if (own > 0)
			continue;
		if (subproc_run(argv, err) < 0) {
			bool taken = strstr(err, "exists") != NULL;
			teardown(j); /* releases the name */
			if (taken)
				continue;
			return -1;
		}
		j->made_ns = true;
		note_ns_id(j);
		return 0;
	}
	seterr(err, "no free namespace name after 16 tries");
	return -1;
}

static bool path_exists(const char *dir, const char *name)
{
	char path[128];

	snprintf(path, sizeof path, "%s%s", dir, name);
	return access(path, F_OK) == 0;
}

/* Removes the jail whose owner lock fd just gave us: what is left of it. */
static void collect(int fd, const char *name)
{
	struct jail j = { .owner_fd = fd };
	unsigned pid, n;

	if (sscanf(name, "egressd-%u-%u", &pid, &n) != 2) {
		close(fd);
		return;
	}
	set_names(&j, pid, n);
	j.made_ns = path_exists(NETNS_RUN_DIR "/", j.name);
	j.made_veth = path_exists("/sys/class/net/", j.host_if);
	j.made_dir = path_exists("", j.dir);
	j.made_conf = path_exists("", j.conf);
	j.made_bundle = path_exists("", j.bundle);
	if (j.made_ns)
		note_ns_id(&j);
	fprintf(stderr, "egressd run: removing jail %s, left by an egressd that died\n", j.name);
	teardown(&j);
}

/* Collects every jail whose owner died: its lock file is free. */
static void collect_dead_jails(void)
{
	DIR *d = opendir(OWNER_DIR);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		char path[300];
		struct stat a, b;
		int fd;

		if (strncmp(de->d_name, "egressd-", 8) != 0)
			continue;
		snprintf(path, sizeof path, OWNER_DIR "/%s", de->d_name);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* still the file in the directory (not one a collector just unlinked)? */
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, &a) < 0 || stat(path, &b) < 0 ||
		    a.st_ino != b.st_ino) {
			close(fd);
			continue;
		}
		collect(fd, de->d_name);
	}
	closedir(d);
}

/* Best effort: no IPv6 link-local chatter on the host end. */
static void host_end_no_ipv6(const struct jail *j)
{
	char path[96];
	int fd;

	snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", j->host_if);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, "1\n", 2) != 2) {
		/* IPv6 may be off entirely; nothing to do */
	}
	close(fd);
}

struct jail *jail_create(char *err)
{
	struct jail *j = NULL;
	char host[ADDR_STRLEN + 4], jip[ADDR_STRLEN + 4], gw[ADDR_STRLEN];
	int lock_fd = -1;
	bool ok = false;

	if (geteuid() != 0) {
		seterr(err, "egressd run needs root (network namespaces)");
		goto out;
	}
	collect_dead_jails();
	j = xcalloc(1, sizeof *j);
	j->owner_fd = -1;
	if (add_netns(j, err) < 0)
		goto out;
	{
		const char *const add[] = { "ip", "link", "add", j->host_if, "type", "veth",
					    "peer", "name", j->jail_if, NULL };
		if (subproc_run(add, err) < 0)
			goto out;
		j->made_veth = true;
	}
	host_end_no_ipv6(j);
	{
		const char *const mv[] = { "ip", "link", "set", j->jail_if, "netns", j->name, NULL };
		const char *const v6all[] = { "ip", "netns", "exec", j->name, "sysctl", "-qw",
					      "net.ipv6.conf.all.disable_ipv6=1", NULL };
		const char *const v6def[] = { "ip", "netns", "exec", j->name, "sysctl", "-qw",
					      "net.ipv6.conf.default.disable_ipv6=1", NULL };
		if (subproc_run(mv, err) < 0 || subproc_run(v6all, err) < 0 || subproc_run(v6def, err) < 0)
			goto out;
	}

	/* the lock makes pick + assign atomic between concurrent jails */
	lock_fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd >= 0) {
		while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
			;
	}
	if (pick_subnet(j, (unsigned)getpid() * 2654435761u + atomic_load(&jail_counter) * 40503u,
			err) < 0)
		goto out;
	snprintf(host, sizeof host, "%s/30", addr_format(&j->host_ip, gw));
	snprintf(jip, sizeof jip, "%s/30", addr_format(&j->jail_ip, gw));
	addr_format(&j->host_ip, gw);
	{
		const char *const a1[] = { "ip", "addr", "add", host, "dev", j->host_if, NULL };
		if (subproc_run(a1, err) < 0)
			goto out;
	}
	if (lock_fd >= 0) {
		close(lock_fd);
		lock_fd = -1;
	}
	{
		const char *const a2[] = { "ip", "-n", j->name, "addr", "add", jip, "dev",
					   j->jail_if, NULL };
		const char *const up1[] = { "ip", "link", "set", j->host_if, "up", NULL };
		const char *const up2[] = { "ip", "-n", j->name, "link", "set", j->jail_if, "up", NULL };
		const char *const up3[] = { "ip", "-n", j->name, "link", "set", "lo", "up", NULL };
		const char *const rt[] = { "ip", "-n", j->name, "route", "add", "default", "via", gw,
					   NULL };
		if (subproc_run(a2, err) < 0 || subproc_run(up1, err) < 0 || subproc_run(up2, err) < 0 ||
		    subproc_run(up3, err) < 0 || subproc_run(rt, err) < 0)
			goto out;
	}
	if (write_resolv_conf(j, err) < 0)
		goto out;
	ok = true;
out:
	if (lock_fd >= 0)
		close(lock_fd);
	if (!ok && j) {
		teardown(j);
		free(j);
		j = NULL;
	}
	return j;
}

const struct ipaddr *jail_host_ip(const struct jail *j)
{
	return &j->host_ip;
}

const struct ipaddr *jail_jail_ip(const struct jail *j)
{
	return &j->jail_ip;
}

const char *jail_name(const struct jail *j)
{
	return j->name;
}

const char *jail_netns_path(const struct jail *j)
{
	return j->nspath;
}

const char *jail_resolv_conf(const struct jail *j)
{
	return j->conf;
}

const char *jail_bundle_path(const struct jail *j)
{
	return j->bundle;
}

int jail_add_bundle(struct jail *j, const char *src, char *err)
{
	char buf[16384];
	int in = -1, out = -1, rc = -1;
	ssize_t n;

	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
		seterr(err, "open %s: %s", src, strerror(errno));
		goto out;
	}
	out = open(j->bundle, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0) {
		seterr(err, "create %s: %s", j->bundle, strerror(errno));
		goto out;
	}
	j->made_bundle = true;
	fchmod(out, 0644); /* whatever the umask */
	while ((n = read(in, buf, sizeof buf)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write(out, buf, (size_t)n) != n) {
			seterr(err, "copying %s to %s: %s", src, j->bundle, strerror(errno));
			goto out;
		}
	}
	rc = 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && rc == 0) {
		seterr(err, "close %s: %s", j->bundle, strerror(errno));
		rc = -1;
	}
	return rc;
}

/* ------------------------------------------------------------------------
 * redirection */

int jail_redirect(struct jail *j, uint16_t tport, uint16_t dport, char *err)
{
	char tp[8], dp[8];
	const char *h = j->host_if, *c = j->name;
	int rc = -1;
	/* each is inserted at position 1, so they end up in the reverse of this
	 * order, ahead of whatever the host has: the ACCEPTs before the DROP */
	const char *const rules[][24] = {
		{ "iptables", "-w", "-t", "nat", "-I", "PREROUTING", "1", "-i", h, "-p", "udp",
		  "--dport", "53", "-m", "comment", "--comment", c, "-j", "REDIRECT",
		  "--to-ports", dp, NULL },
		{ "iptables", "-w", "-t", "nat", "-I", "PREROUTING", "1", "-i", h, "-p", "tcp",
		  "-m", "comment", "--comment", c, "-j", "REDIRECT", "--to-ports", tp, NULL },
		{ "iptables", "-w", "-t", "filter", "-I", "INPUT", "1", "-i", h, "-m", "comment",
		  "--comment", c, "-j", "DROP", NULL },
		{ "iptables", "-w", "-t", "filter", "-I", "INPUT", "1", "-i", h, "-p", "udp",
		  "--dport", dp, "-m", "comment", "--comment", c, "-j", "ACCEPT", NULL },
		{ "iptables", "-w", "-t", "filter", "-I", "INPUT", "1", "-i", h, "-p", "tcp",
		  "--dport", tp, "-m", "comment", "--comment", c, "-j", "ACCEPT", NULL },
		{ "iptables", "-w", "-t", "filter", "-I", "FORWARD", "1", "-i", h, "-m", "comment",
		  "--comment", c, "-j", "DROP", NULL },
		{ "iptables", "-w", "-t", "filter", "-I", "FORWARD", "1", "-o", h, "-m", "comment",
		  "--comment", c, "-j", "DROP", NULL },
	};

	snprintf(tp, sizeof tp, "%u", (unsigned)tport);
	snprintf(dp, sizeof dp, "%u", (unsigned)dport);
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		if (subproc_run(rules[i], err) < 0)
			goto out;
	rc = 0;
out:
	if (rc < 0) {
		delete_rules(j, "nat");
		delete_rules(j, "filter");
	}
	return rc;
}
