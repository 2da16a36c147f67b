/* runcmd.c -- `egressd run`: jail + embedded transparent egressd + the
 * command (unprivileged, in its own PID and mount namespaces) with
 * placeholders and CA variables, its exit status, teardown on every path */
#include "runcmd.h"
#include "envvars.h"
#include "sandboxes.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "alloc.h"
#include "audit.h"
#include "jail.h"
#include "jailspawn.h"
#include "obsreport.h"
#include "policy.h"
#include "runas.h"
#include "sandboxenv.h"
#include "secrets.h"
#include "server.h"

extern char **environ;

#define ENV_MAX 4096

static bool is_proxy_var(const char *kv)
{
	static const char *const names[] = { "http_proxy=", "https_proxy=", "all_proxy=",
					     "no_proxy=", "ftp_proxy=" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncasecmp(kv, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/* Would passing kv hand a secret to the command? Its name is a secret's (it
 * gets the placeholder instead) or an env source of one, or its value holds
 * a secret's value. */
static bool is_secret_var(const char *kv, const struct policy *p, const struct secretset *ss)
{
	const char *eq = strchr(kv, '=');
	size_t nl = eq ? (size_t)(eq - kv) : strlen(kv);

	for (size_t i = 0; i < policy_secret_count(p); i++) {
		const char *n = policy_secret_name(p, i), *src = policy_secret_source_arg(p, i);
		size_t vl;
		const char *v = secretset_value(ss, i, &vl);

		if ((strlen(n) == nl && !strncmp(kv, n, nl)) ||
		    (policy_secret_source(p, i) == SECRET_FROM_ENV && strlen(src) == nl &&
		     !strncmp(kv, src, nl)) ||
		    (eq && v && vl && strstr(eq + 1, v)))
			return true;
	}
	return false;
}

static void add_env(char **env, size_t *n, const char *name, const char *val)
{
	size_t l = strlen(name) + strlen(val) + 2;

	if (*n + 1 >= ENV_MAX)
		return;
	env[*n] = xmalloc(l);
	snprintf(env[*n], l, "%s=%s", name, val);
	(*n)++;
}

/* HOME, USER and LOGNAME are the command's user's. */
static bool is_user_var(const char *kv)
{
	return !strncmp(kv, "HOME=", 5) || !strncmp(kv, "USER=", 5) || !strncmp(kv, "LOGNAME=", 8);
}

/* The command's environment (caller frees each string and the array). */
static char **make_env(const struct policy *p, const struct secretset *ss, const char *bundle,
		       const struct runas *ru)
{
	char **env = xcalloc(ENV_MAX, sizeof(char *));
	size_t n = 0;

	for (char **e = environ; *e && n + 64 < ENV_MAX; e++) {
		bool ca = false;
		for (size_t i = 0; i < envvars_ca_count(); i++) {
			const char *v = envvars_ca_name(i);
			ca |= strncmp(*e, v, strlen(v)) == 0 && (*e)[strlen(v)] == '=';
		}
		if (!ca && !is_proxy_var(*e) && !is_user_var(*e) && !is_secret_var(*e, p, ss))
			env[n++] = xstrdup(*e);
	}
	for (size_t i = 0; i < secretset_count(ss); i++)
		add_env(env, &n, secretset_name(ss, i), secretset_placeholder(ss, i));
	add_env(env, &n, "HOME", runas_home(ru));
	add_env(env, &n, "USER", runas_name(ru));
	add_env(env, &n, "LOGNAME", runas_name(ru));
	for (size_t i = 0; i < envvars_ca_count(); i++) /* every runtime's CA variable */
		add_env(env, &n, envvars_ca_name(i), bundle);
	env[n] = NULL;
	return env;
}

static void free_env(char **env)
{
	for (char **e = env; e && *e; e++)
		free(*e);
	free(env);
}

static int exit_status(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 125;
}

/* Waits for the child (the jail's init), sending it SIGTERM on SIGINT or
 * SIGTERM (it forwards that to every process of the jail), SIGKILL (the
 * whole PID namespace dies with it) if it is still there 200 ms after
 * another signal came or the wait timed out; SIGHUP reopens the log;
 * SIGUSR1 writes the report and learned policy so far (with --report or
 * --learn; else it is ignored). */
static int wait_child(pid_t child, const sigset_t *set, const struct runcmd_opts *ro)
{
	int st = 0, sig;
	bool killing = false;

	for (;;) {
		struct timespec ts = { 0, 200 * 1000 * 1000 };
		pid_t r = waitpid(child, &st, WNOHANG);

		if (r == child)
			return exit_status(st);
		if (r < 0 && errno != EINTR)
			return 125;
		sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGUSR1 && ro->obs)
			obsreport_finish(ro->obs, ro->out);
		if (sig == SIGHUP && audit_reopen() < 0)
			audit_msg(AUDIT_ERROR, "error", "SIGHUP: cannot reopen the log: %s",
				  strerror(errno));
		if ((sig == SIGINT || sig == SIGTERM) && !killing) {
			kill(child, SIGTERM);
			killing = true;
		} else if (killing && sig < 0) {
			kill(child, SIGKILL);
		}
	}
}

/* The jail is a sandbox like any other: the one source address the
 * transparent listener takes connections from (placeholders stay
 * unscoped, as `egressd env` prints them). */
static struct sbtable *jail_table(const struct jail *j, struct policy *p)
{
	struct sbtable *t = sbx_new();
	char ip[ADDR_STRLEN], e[SBX_ERRLEN];
	int i = sbx_add(t, "run", e);

	addr_format(jail_jail_ip(j), ip);
	if (i < 0 || !sbx_add_source(t, i, ip, e))
		abort(); /* fixed name, an address we formatted */
	sbx_set_policy(t, i, p);
	return t;
}

/* What the command must not read: the state dir (CA key, placeholder
 * key), the jails' locks (a uid-0 command could hold them), every
 * valueFromFile file and the policy files (inline values).
 * NULL-terminated; the caller frees the array. */
static const char **hidden_paths(const struct policy *p, const char *state_dir,
				 const char *const *configs)
{
	size_t n = 0, cap = 4 + policy_secret_count(p);
	const char **h;

	for (const char *const *c = configs; c && *c; c++)
		cap++;
	h = xcalloc(cap, sizeof(char *));
	h[n++] = state_dir;
	h[n++] = JAIL_OWNER_DIR;
	h[n++] = JAIL_LOCK_FILE;
	for (size_t i = 0; i < policy_secret_count(p); i++)
		if (policy_secret_source(p, i) == SECRET_FROM_FILE)
			h[n++] = policy_secret_source_arg(p, i);
	for (const char *const *c = configs; c && *c; c++)
		h[n++] = *c;
	h[n] = NULL;
	return h;
}

/* Starts the command in the jail as ru. Returns its pid or -1 with err. */
static pid_t start_command(struct jail *j, struct policy *p, const struct server_opts *o,
			   const char *const *configs, const struct runas *ru, char **argv,
			   char **env, char *err)
{
	const char **hide = hidden_paths(p, o->state_dir, configs);
	struct jailspawn js = {
		.netns = jail_netns_path(j), .resolv_conf = jail_resolv_conf(j), .hide = hide,
		.user = ru, .argv = argv, .envp = env,
	};
	char e[JAILSPAWN_ERRLEN];
	pid_t pid = jailspawn_start(&js, e);

	if (pid < 0)
		snprintf(err, JAIL_ERRLEN, "%s", e);
	free(hide);
	return pid;
}

int runcmd_main(struct policy *p, struct server_opts *o, const struct runcmd_opts *ro, int argc,
		char **argv)
{
	char err[JAIL_ERRLEN], listen[64], dnsl[64], ip[ADDR_STRLEN], src[4200];
	struct jail *j = NULL;
	struct server *s = NULL;
	struct runas *ru = NULL;
	char **env = NULL;
	int rc = 125;
	pid_t child;
	sigset_t set;

	(void)argc;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	/* before any thread or child: signals are taken with sigtimedwait */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* as root: who the command runs as (never root with capabilities);
	 * not root: jail_create says it needs root */
	_Static_assert(JAIL_ERRLEN >= RUNAS_ERRLEN, "a runas error fits");
	if (geteuid() == 0 && !(ru = runas_new(ro->user, err)))
		goto fail;
	j = jail_create(err);
	if (!j)
		goto fail;
	addr_format(jail_host_ip(j), ip);
	snprintf(listen, sizeof(listen), "%s:0", ip);
	snprintf(dnsl, sizeof(dnsl), "%s:0", ip);
	o->nlisten = 0;
	o->ntransparent = 1;
	o->transparent[0] = listen;
	o->dns_listen = dnsl;
	snprintf(src, sizeof(src), "%s/ca-bundle.pem", o->state_dir);
	if (sandboxenv_write_bundle(o->state_dir, o->upstream_ca) < 0) {
		snprintf(err, sizeof(err), "cannot write the CA bundle in %s", o->state_dir);
		goto fail;
	}
	if (jail_add_bundle(j, src, err) < 0)
		goto fail;
	if (audit_open(ro->log) < 0) {
		snprintf(err, sizeof(err), "cannot open log %s: %s", ro->log, strerror(errno));
		goto fail;
	}
	s = server_new(o, jail_table(j, p), err);
	if (!s || jail_redirect(j, server_listen_port(s, 0), server_dns_port(s), err) < 0)
		goto fail;
	server_start(s);
	env = make_env(p, server_secrets(s), jail_bundle_path(j), ru);
	child = start_command(j, p, o, ro->configs, ru, argv, env, err);
	if (child < 0) {
		server_stop(s);
		goto fail;
	}
	rc = wait_child(child, &set, ro);
	server_stop(s); /* the workers closed every connection: all counted */
	if (ro->obs)
		obsreport_finish(ro->obs, ro->out);
	goto out;
fail:
	fprintf(stderr, "egressd run: %s\n", err);
out:
	free_env(env);
	server_free(s);
	jail_destroy(j);
	runas_free(ru);
	audit_close();
	return rc;
}
