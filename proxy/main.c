/* main.c -- the egressd command line: parses the options (their table and
 * help texts are cliopts.c's) and runs serve (default), check, env, ca, run */
#include <getopt.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <event2/event.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <pcre2.h>

#include "audit.h"
#include "cliopts.h"
#include "config.h"
#include "pattern.h"
#include "policy.h"
#include "runcmd.h"
#include "sandboxenv.h"
#include "server.h"
#include "version.h"

struct cli {
	const char *command;
	unsigned cmd;             /* its CLI_ bit */
	bool explicit_cmd;        /* named on the command line (help: that command's) */
	struct server_opts so;
	const char *log;
	enum audit_level log_level;
	const char *ca_key;       /* "ec" or "rsa" for `ca init` */
	const char *ca_sub;       /* "init" or "show" */
};

/* egressd X.Y.Z, then the libraries it runs with (run time where the
 * library can say, else the headers it was built with). */
static void print_version(void)
{
	char pcre[64] = "?";
	uint32_t jit = 0;

	pcre2_config(PCRE2_CONFIG_VERSION, pcre);
	pcre2_config(PCRE2_CONFIG_JIT, &jit);
	printf("egressd %s\n", EGRESSD_VERSION);
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("libevent %s\n", event_get_version());
	printf("llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
	       LLHTTP_VERSION_PATCH);
	printf("PCRE2 %s (JIT %s)\n", pcre, jit ? "available" : "not available");
	printf("jansson %s\n", jansson_version_str());
}

/* Strict decimal 1..max. */
static int parse_uint(const char *s, int max)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	return v >= 1 ? (int)v : -1;
}

/* --secret NAME=HOST,HOST: value from egressd's own environment variable. */
static bool add_cli_secret(struct policy *p, const char *arg, char *err)
{
	const char *eq = strchr(arg, '=');
	char name[256];

	if (!eq || (size_t)(eq - arg) >= sizeof(name)) {
		snprintf(err, PATTERN_ERRLEN, "invalid --secret \"%s\" (want NAME=HOST[,HOST...])", arg);
		return false;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	return policy_add_secret(p, name, eq + 1, SECRET_FROM_ENV, name, err);
}

/* Applies one option to the policy or the CLI state. Returns 0, or 2 with
 * the reason in err (CONFIG_ERRLEN bytes). */
static int apply_opt(struct cli *cli, struct policy *p, int opt, const char *arg, char *err)
{
	bool okay = true;

	err[0] = '\0';
	switch (opt) {
	case 'c': okay = config_load_file(p, arg, err); break;
	case OPT_ALLOW: okay = policy_add_allow(p, arg, err); break;
	case OPT_DENY: okay = policy_add_deny(p, arg, err); break;
	case OPT_INTERCEPT: okay = policy_add_intercept(p, arg, err); break;
	case OPT_PRIVATE: okay = policy_add_allow_private(p, arg, err); break;
	case OPT_RESOLVE: okay = policy_add_pin(p, arg, err); break;
	case OPT_SECRET: okay = add_cli_secret(p, arg, err); break;
	case OPT_DNS: cli->so.dns = arg; break;
	case OPT_STATE: cli->so.state_dir = arg; break;
	case OPT_UPCA: cli->so.upstream_ca = arg; break;
	case OPT_CAKEY:
		cli->ca_key = arg;
		if (strcmp(arg, "ec") && strcmp(arg, "rsa")) {
			snprintf(err, CONFIG_ERRLEN, "invalid --ca-key \"%s\" (want ec or rsa)", arg);
			okay = false;
		}
		break;
	case OPT_LEAK:
		if (!strcmp(arg, "block") || !strcmp(arg, "log")) {
			cli->so.leak_block = !strcmp(arg, "block");
		} else {
			snprintf(err, CONFIG_ERRLEN, "invalid --on-placeholder-leak \"%s\" (want log or block)", arg);
			okay = false;
		}
		break;
	case OPT_LOG: cli->log = arg; break;
	case OPT_LOGLEVEL:
		if (!audit_level_parse(arg, &cli->log_level)) {
			snprintf(err, CONFIG_ERRLEN, "invalid --log-level \"%s\" (want error, warn, info or debug)", arg);
			okay = false;
		}
		break;
	case OPT_LISTEN:
		if (cli->so.nlisten == SERVER_MAX_LISTENERS) {
			snprintf(err, CONFIG_ERRLEN, "too many --listen options");
			okay = false;
		} else {
			cli->so.listen[cli->so.nlisten++] = arg;
		}
		break;
	case OPT_MAXCONN:
		cli->so.max_conns = parse_uint(arg, 1000000);
		if (cli->so.max_conns < 0) {
			snprintf(err, CONFIG_ERRLEN, "invalid --max-connections \"%s\" (want 1..1000000)", arg);
			okay = false;
		}
		break;
	case OPT_MAXBUF:
		if (parse_uint(arg, 64 << 20) < 16384) {
			snprintf(err, CONFIG_ERRLEN, "invalid --max-buffer \"%s\" (want 16384..67108864 bytes)", arg);
			okay = false;
		} else {
			cli->so.max_buffer = (size_t)parse_uint(arg, 64 << 20);
		}
		break;
	case OPT_HEADTO:
	case OPT_IDLETO:
		if (parse_uint(arg, 86400) < 0) {
			snprintf(err, CONFIG_ERRLEN, "invalid --%s \"%s\" (want 1..86400 seconds)",
				 opt == OPT_HEADTO ? "header-timeout" : "idle-timeout", arg);
			okay = false;
		} else if (opt == OPT_HEADTO) {
			cli->so.header_timeout_s = (unsigned)parse_uint(arg, 86400);
		} else {
			cli->so.idle_timeout_s = (unsigned)parse_uint(arg, 86400);
		}
		break;
	case OPT_DRAIN:
		if (parse_uint(arg, 3600) < 0) {
			snprintf(err, CONFIG_ERRLEN, "invalid --drain-timeout \"%s\" (want 1..3600 seconds)", arg);
			okay = false;
		} else {
			cli->so.drain_timeout_s = (unsigned)parse_uint(arg, 3600);
		}
		break;
	case OPT_THREADS:
		cli->so.threads = parse_uint(arg, 64);
		if (cli->so.threads < 0) {
			snprintf(err, CONFIG_ERRLEN, "invalid --threads \"%s\" (want 1..64)", arg);
			okay = false;
		}
		break;
	case OPT_TRANSPARENT:
		if (cli->so.ntransparent == SERVER_MAX_LISTENERS) {
			snprintf(err, CONFIG_ERRLEN, "too many --transparent options");
			okay = false;
		} else {
			cli->so.transparent[cli->so.ntransparent++] = arg;
		}
		break;
	default:
		break;
	}
	return okay ? 0 : 2;
}

/* Parses argv into cli and policy. Returns 0, -1 for --help/--version, or 2:
 * an unknown option (said on stderr, err empty) or a bad value (the reason in
 * err, CONFIG_ERRLEN bytes, for the caller to say). */
static int parse_args(int argc, char **argv, struct cli *cli, struct policy *p, char *err)
{
	int opt;

	optind = 0; /* GNU getopt: full re-initialisation (parsed again on SIGHUP) */
	opterr = 0; /* our own messages, naming egressd and the command */
	err[0] = '\0';
	while ((opt = getopt_long(argc, argv, cliopts_short(), cliopts_long(), NULL)) != -1) {
		if (opt == 'h') {
			cliopts_help(stdout, cli->explicit_cmd ? cli->cmd : 0);
			return -1;
		}
		if (opt == OPT_VERSION) {
			print_version();
			return -1;
		}
		if (opt == '?' || opt == ':') {
			const char *what = argv[optind - 1];
			char shortname[3] = { '-', (char)optopt, '\0' };

			if (optopt > 0 && optopt < 256 && strncmp(what, "--", 2) != 0)
				what = shortname; /* a short option (perhaps in a cluster) */
			fprintf(stderr, opt == ':' ? "egressd: option '%s' needs an argument\n"
						   : "egressd: unknown option '%s'\n", what);
			cliopts_hint(stderr, cli->explicit_cmd ? cli->cmd : 0);
			return 2;
		}
		if (apply_opt(cli, p, opt, optarg, err) != 0)
			return 2;
	}
	return 0;
}

static void print_secrets(const struct policy *p, const struct target *t)
{
	const char *sep = " secrets=";

	for (size_t i = 0; i < policy_secret_count(p); i++) {
		if (!patlist_match_target(policy_secret_hosts(p, i), t))
			continue;
		printf("%s%s", sep, policy_secret_name(p, i));
		sep = ",";
	}
}

/* One `check` target: prints its line; returns 0 allowed, 1 denied, 2 malformed. */
static int check_one(const struct policy *p, const char *arg)
{
	struct target t;
	struct decision d;
	struct ipaddr pin;
	char err[PATTERN_ERRLEN];
	enum reason r = REASON_NONE;

	if (!target_parse_authority(arg, strlen(arg), 443, &t, err)) {
		fprintf(stderr, "egressd: %s\n", err);
		return 2;
	}
	policy_check_target(p, &t, &d);
	printf(t.is_ip && t.ip.family == 6 ? "[%s]:%u" : "%s:%u", t.host, t.port);
	if (d.allow && t.is_ip)
		r = policy_check_addr(p, &t.ip, t.port);
	else if (d.allow && policy_pin_lookup(p, t.host, t.port, &pin))
		r = policy_check_addr(p, &pin, t.port);
	if (!d.allow || r != REASON_NONE) {
		printf(" deny reason=%s", reason_str(d.allow ? r : d.reason));
		if (d.rule)
			printf(" rule=\"%s\"", d.rule);
		printf("\n");
		return 1;
	}
	printf(" allow rule=");
	printf(d.rule ? "\"%s\"" : "*", d.rule);
	if (policy_intercepts(p, &t))
		printf(" intercept");
	print_secrets(p, &t);
	printf("\n");
	return 0;
}

static int cmd_check(int argc, char **argv, const struct policy *p)
{
	int worst = 0;

	if (argc == 0)
		printf("policy ok\n");
	for (int i = 0; i < argc; i++) {
		int r = check_one(p, argv[i]);
		if (r > worst)
			worst = r;
	}
	return worst;
}

/* The command line, kept to build the policy again on SIGHUP (the config
 * file is read again; command-line patterns stay). */
static struct {
	int argc;
	char **argv;
} saved;

static struct policy *reload_policy(void *ctx, char *err)
{
	struct cli tmp = { .so = { .drain_timeout_s = 5 } };
	struct policy *p = policy_new();
	char e[CONFIG_ERRLEN];

	(void)ctx;
	if (parse_args(saved.argc, saved.argv, &tmp, p, e) != 0) {
		snprintf(err, 256, "%.250s", e[0] ? e : "the command line did not parse");
		policy_unref(p);
		return NULL;
	}
	return p;
}

static int cmd_serve(struct cli *cli, struct policy *p)
{
	char err[256];
	struct server *s;
	int rc;

	if (cli->so.nlisten == 0 && cli->so.ntransparent == 0)
		cli->so.listen[cli->so.nlisten++] = "127.0.0.1:3128";
	if ((policy_secret_count(p) > 0 || policy_intercept_present(p)) &&
	    sandboxenv_write_bundle(cli->so.state_dir, cli->so.upstream_ca) < 0)
		return 1;
	if (audit_open(cli->log) < 0) {
		fprintf(stderr, "egressd: cannot open log %s: %m\n", cli->log);
		return 2;
	}
	{
		/* two descriptors per connection: take what the hard limit allows */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	cli->so.reload = reload_policy;
	s = server_new(&cli->so, p, err);
	if (!s) {
		audit_msg(AUDIT_ERROR, "error", "%s", err);
		audit_close();
		return 1;
	}
	rc = server_run(s);
	server_free(s);
	audit_close();
	return rc;
}

/* `egressd help [COMMAND]`: 0, or 2 for an unknown command. */
static int cmd_help(int argc, char **argv)
{
	unsigned c = argc > 1 ? cliopts_command(argv[1]) : 0;

	if (argc > 1 && !c) {
		fprintf(stderr, "egressd: unknown command '%s'\n", argv[1]);
		cliopts_hint(stderr, 0);
		return 2;
	}
	cliopts_help(stdout, c);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = { .so = { .connect_timeout_s = 10, .header_timeout_s = 30,
				   .idle_timeout_s = 300, .drain_timeout_s = 5,
				   .max_conns = 10000, .max_buffer = 256 * 1024 },
			   .log_level = AUDIT_INFO };
	struct policy *p;
	char err[CONFIG_ERRLEN];
	int rc;

	if (argc > 1 && !strcmp(argv[1], "help"))
		return cmd_help(argc - 1, argv + 1);
	cli.command = "serve";
	if (argc > 1 && argv[1][0] != '-') {
		cli.command = argv[1];
		cli.explicit_cmd = true;
		argc--;
		argv++;
	}
	cli.cmd = cliopts_command(cli.command);
	if (!cli.cmd) {
		fprintf(stderr, "egressd: unknown command '%s'\n", cli.command);
		cliopts_hint(stderr, 0);
		return 2;
	}
	if (cli.cmd == CLI_CA && argc > 1 && argv[1][0] != '-') {
		cli.ca_sub = argv[1]; /* egressd ca init|show [OPTIONS] */
		argc--;
		argv++;
	}
	saved.argc = argc;
	saved.argv = argv;
	p = policy_new();
	rc = parse_args(argc, argv, &cli, p, err);
	if (rc == 2 && err[0])
		fprintf(stderr, "egressd: %s\n", err);
	audit_set_level(cli.log_level);
	if (!cli.so.state_dir)
		cli.so.state_dir = sandboxenv_default_state_dir();
	if (rc == 0 && cli.cmd == CLI_CA)
		rc = optind < argc || !cli.ca_sub ? sandboxenv_cmd_ca(0, NULL, NULL, NULL)
						  : sandboxenv_cmd_ca(1, (char **)&cli.ca_sub, cli.so.state_dir, cli.ca_key);
	else if (rc == 0 && cli.cmd == CLI_ENV)
		rc = optind < argc ? 2 : sandboxenv_cmd_env(p, cli.so.state_dir,
				cli.so.nlisten ? cli.so.listen[0] : "127.0.0.1:3128", cli.so.upstream_ca);
	else if (rc == 0 && cli.cmd == CLI_RUN)
		rc = optind < argc ? runcmd_main(p, &cli.so, cli.log, argc - optind, argv + optind)
				   : (fprintf(stderr, "egressd run: usage: egressd run [OPTIONS] -- CMD [ARGS...]\n"), 125);
	else if (rc == 0 && cli.cmd == CLI_CHECK)
		rc = cmd_check(argc - optind, argv + optind, p);
	else if (rc == 0 && optind < argc) {
		fprintf(stderr, "egressd: unexpected argument '%s'\n", argv[optind]);
		cliopts_hint(stderr, cli.cmd);
		rc = 2;
	} else if (rc == 0)
		rc = cmd_serve(&cli, p);
	policy_unref(p);
	if (rc == 2 && cli.cmd == CLI_RUN)
		rc = 125; /* run's own failures are 125, so CMD's statuses stay CMD's */
	return rc < 0 ? 0 : rc;
}
