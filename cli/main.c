/* main.c -- the egressd command line: parses the options (their table and
 * help texts are cliopts.c's) and runs serve (default), check, env, ca, run */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <event2/event.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <pcre2.h>

#include "audit.h"
#include "cliopts.h"
#include "config.h"
#include "contentdec.h"
#include "control.h"
#include "injspec.h"
#include "jailinit.h"
#include "observe.h"
#include "obsreport.h"
#include "pattern.h"
#include "policy.h"
#include "rules.h"
#include "runcmd.h"
#include "sandboxenv.h"
#include "sandboxes.h"
#include "sbxclient.h"
#include "selfguard.h"
#include "server.h"
#include "version.h"

#define MAX_CONFIGS 16 /* -c options a command line may give */

struct cli {
	const char *command;
	unsigned cmd;             /* its CLI_ bit */
	bool explicit_cmd;        /* named on the command line (help: that command's) */
	struct server_opts so;
	const char *log;
	enum audit_level log_level;
	const char *ca_key;       /* "ec" or "rsa" for `ca init` */
	const char *ca_sub;       /* "init" or "show" */
	struct sbtable *sbt;      /* -c gave sandboxes (owned), or NULL */
	int nconfig;              /* -c options seen */
	bool skip_config;         /* applying the command line to a sandbox's policy */
	bool tolerant;            /* a reload: a sandbox's bad policy file is recorded */
	const char *sandbox;      /* --sandbox NAME for check and env */
	const char *user;         /* run --user USER[:GROUP] */
	const char *control;      /* --control unix:PATH or IP:PORT */
	const char *ctl_token;    /* --control-token-file FILE */
	const char *file;         /* sandbox put -f FILE */
	const char *format;       /* env --format sh|dotenv|json */
	const char *sbx_sub;      /* sandbox put|rm|ls|env */
	const char *sbx_name;     /* its NAME */
	struct sbxflags *sbx;     /* sandbox put's options (owned) */
	const char *configs[MAX_CONFIGS + 1]; /* the -c files, NULL-terminated */
	struct obsreport_opts out; /* --report, --report-format, --learn */
	int report_max;           /* --report-max */
	int decode_mib;           /* --max-decode-memory */
	bool cmd_status;          /* run: the status is CMD's own (or the jail's 125) */
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

/* --secret-inject NAME=PLACE:N,...: where a defined secret also goes. */
static bool add_cli_inject(struct policy *p, const char *arg, char *err)
{
	const char *eq = strchr(arg, '=');
	struct injspec *spec;
	char name[256], ierr[INJSPEC_ERRLEN];

	if (!eq || (size_t)(eq - arg) >= sizeof(name)) {
		snprintf(err, PATTERN_ERRLEN, "invalid --secret-inject \"%.64s\" "
			 "(want NAME=PLACE:N[,PLACE:N...])", arg);
		return false;
	}
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	spec = injspec_new();
	if (!injspec_add_csv(spec, eq + 1, ierr)) {
		snprintf(err, PATTERN_ERRLEN, "invalid --secret-inject %.64s: %.150s", name, ierr);
		injspec_free(spec);
		return false;
	}
	return policy_set_secret_inject(p, name, spec, err); /* takes spec */
}

/* -c FILE: into p, or a table of sandboxes (then the only -c). */
static bool load_config(struct cli *cli, struct policy *p, const char *path, char *err)
{
	struct sbtable *t = NULL;

	if (cli->skip_config)
		return true;
	if (!cli->sbt && !config_load_main(p, path, cli->tolerant, &t, err))
		return false;
	if (cli->nconfig >= MAX_CONFIGS) {
		sbx_free(t);
		snprintf(err, CONFIG_ERRLEN, "%s: at most %d -c options", path, MAX_CONFIGS);
		return false;
	}
	if (cli->sbt || (t && cli->nconfig > 0)) {
		sbx_free(t);
		snprintf(err, CONFIG_ERRLEN, "%s: a policy file with \"sandboxes\" must be the only -c",
			 path);
		return false;
	}
	cli->configs[cli->nconfig++] = path;
	cli->sbt = t;
	return true;
}

/* An option of `egressd sandbox`: the sandbox's own keys go to the body
 * put sends; the rest to the CLI state. Returns 0 or 2 with err. */
static int sandbox_opt(struct cli *cli, int opt, const char *arg, char *err)
{
	static const struct { int opt; const char *key; } keys[] = {
		{ OPT_SOURCE, "source" }, { OPT_LISTEN, "listen" }, { OPT_ALLOW, "allowNet" },
		{ OPT_DENY, "denyNet" }, { OPT_INTERCEPT, "intercept" }, { OPT_SECRET, "secret" },
	};
	char e[SBXCLIENT_ERRLEN];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].opt != opt)
			continue;
		if (sbxflags_add(cli->sbx, keys[i].key, arg, e))
			return 0;
		snprintf(err, CONFIG_ERRLEN, "%s", e);
		return 2;
	}
	if (opt == OPT_CONTROL)
		cli->control = arg;
	else if (opt == OPT_CTLTOKEN)
		cli->ctl_token = arg;
	else if (opt == 'f')
		cli->file = arg;
	return 0;
}

/* Applies one option to the policy or the CLI state; a number is first
 * checked against its row's range. Returns 0, or 2 with the reason in err
 * (CONFIG_ERRLEN bytes). */
static int apply_opt(struct cli *cli, struct policy *p, int opt, const char *arg, char *err)
{
	const struct clirange *r = cliopts_range(opt);
	const struct cliopt *o = cliopts_find(opt);
	bool okay = true;
	int n = 0;

	err[0] = '\0';
	if (cli->sbx)
		return sandbox_opt(cli, opt, arg, err);
	if (r && o && (n = parse_uint(arg, r->max)) < r->min) {
		snprintf(err, CONFIG_ERRLEN, "invalid --%s \"%s\" (want %d..%d%s)", o->name, arg,
			 r->min, r->max, r->unit);
		return 2;
	}
	switch (opt) {
	case 'c': okay = load_config(cli, p, arg, err); break;
	case OPT_SANDBOX: cli->sandbox = arg; break;
	case OPT_USER: cli->user = arg; break;
	case OPT_METRICS: cli->so.metrics = arg; break;
	case OPT_REPORT: cli->out.report = true; cli->out.report_path = arg; break;
	case OPT_REPORTMAX: cli->report_max = n; break;
	case OPT_DECODEMEM: cli->decode_mib = n; break;
	case OPT_HTTP2: cli->so.http2 = true; break;
	case OPT_NO_HTTP2: cli->so.http2 = false; break;
	case OPT_LEARN: cli->out.learn_path = arg; policy_set_learn(p, true); break;
	case OPT_REPORTFMT:
		if (!strcmp(arg, "table") || !strcmp(arg, "json")) {
			cli->out.json = !strcmp(arg, "json");
		} else {
			snprintf(err, CONFIG_ERRLEN, "invalid --report-format \"%s\" (want table or json)", arg);
			okay = false;
		}
		break;
	case OPT_CONTROL: cli->control = arg; break;
	case OPT_CTLTOKEN: cli->ctl_token = arg; break;
	case OPT_FORMAT: cli->format = arg; break;
	case 'f': cli->file = arg; break;
	case OPT_ALLOW: okay = policy_add_allow(p, arg, err); break;
	case OPT_DENY: okay = policy_add_deny(p, arg, err); break;
	case OPT_INTERCEPT: okay = policy_add_intercept(p, arg, err); break;
	case OPT_PRIVATE: okay = policy_add_allow_private(p, arg, err); break;
	case OPT_RESOLVE: okay = policy_add_pin(p, arg, err); break;
	case OPT_SECRET: okay = add_cli_secret(p, arg, err); break;
	case OPT_SECRET_INJECT: okay = add_cli_inject(p, arg, err); break;
	case OPT_DNS: cli->so.dns = arg; break;
	case OPT_STATE: cli->so.state_dir = arg; break;
	case OPT_UPCA: cli->so.upstream_ca = arg; break;
	case OPT_LOG: cli->log = arg; break;
	case OPT_THREADS: cli->so.threads = n; break;
	case OPT_MAXCONN: cli->so.max_conns = n; break;
	case OPT_MAXBUF: cli->so.max_buffer = (size_t)n; break;
	case OPT_HEADTO: cli->so.header_timeout_s = (unsigned)n; break;
	case OPT_IDLETO: cli->so.idle_timeout_s = (unsigned)n; break;
	case OPT_DRAIN: cli->so.drain_timeout_s = (unsigned)n; break;
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

/* Prints the decision on t (no newline); returns 0 allowed, 1 denied. */
static int print_target(const struct policy *p, const struct target *t)
{
	struct decision d;
	struct ipaddr pin;
	enum reason r = REASON_NONE;

	policy_check_target(p, t, &d);
	printf(t->is_ip && t->ip.family == 6 ? "[%s]:%u" : "%s:%u", t->host, t->port);
	if (d.allow && t->is_ip)
		r = policy_check_addr(p, &t->ip, t->port);
	else if (d.allow && policy_pin_lookup(p, t->host, t->port, &pin))
		r = policy_check_addr(p, &pin, t->port);
	if (!d.allow || r != REASON_NONE) {
		printf(" deny reason=%s", reason_str(d.allow ? r : d.reason));
		if (d.rule)
			printf(" rule=\"%s\"", d.rule);
		return 1;
	}
	printf(" allow rule=");
	printf(d.rule ? "\"%s\"" : "*", d.rule);
	if (policy_intercepts(p, t))
		printf(" intercept");
	print_secrets(p, t);
	return 0;
}

/* One `check` target: prints its line; returns 0 allowed, 1 denied, 2 malformed. */
static int check_one(const struct policy *p, const char *arg)
{
	struct target t;
	char err[PATTERN_ERRLEN];
	int rc;

	if (!target_parse_authority(arg, strlen(arg), 443, &t, err)) {
		fprintf(stderr, "egressd: %s\n", err);
		return 2;
	}
	rc = print_target(p, &t);
	printf("\n");
	return rc;
}

/* Is arg an http:// or https:// URL (then it is the URL of a METHOD URL pair)? */
static bool is_url(const char *arg)
{
	return strncasecmp(arg, "http://", 7) == 0 || strncasecmp(arg, "https://", 8) == 0;
}

/* Splits url into its target (port by scheme if none) and the request-target
 * a client sends for it (path and query, "/" if the path is empty; a fragment
 * is dropped, as clients do). Returns a new string (caller frees), or NULL
 * with err. */
static char *parse_url(const char *url, struct target *t, char *err)
{
	bool tls = strncasecmp(url, "https://", 8) == 0;
	const char *a = url + (tls ? 8 : 7), *e = a, *frag;
	size_t rest;
	char *rt;

	while (*e && *e != '/' && *e != '?' && *e != '#')
		e++;
	if (memchr(a, '@', (size_t)(e - a))) {
		snprintf(err, PATTERN_ERRLEN, "URL \"%.200s\": userinfo is not supported", url);
		return NULL;
	}
	if (!target_parse_authority(a, (size_t)(e - a), tls ? 443 : 80, t, err))
		return NULL;
	frag = strchr(e, '#');
	rest = frag ? (size_t)(frag - e) : strlen(e);
	rt = malloc(rest + 2);
	if (!rt) {
		snprintf(err, PATTERN_ERRLEN, "out of memory");
		return NULL;
	}
	snprintf(rt, rest + 2, "%s%.*s", rest == 0 || *e == '?' ? "/" : "", (int)rest, e);
	return rt;
}

/* `check METHOD URL`: the host's decision, then the request rules' verdict.
 * Returns 0 allowed, 1 refused (host or request), 2 malformed. */
static int check_request(const struct policy *p, const char *method, const char *url)
{
	struct target t;
	struct rule_verdict v;
	char err[PATTERN_ERRLEN], *rt, *norm = NULL;
	const char *why;
	size_t nlen, qlen;
	int rc = 2;

	if (!rules_method_valid(method, strlen(method))) {
		fprintf(stderr, "egressd: invalid method \"%s\" (an upper-case HTTP method token, "
				"e.g. GET)\n", method);
		return 2;
	}
	if (!(rt = parse_url(url, &t, err))) {
		fprintf(stderr, "egressd: %s\n", err);
		return 2;
	}
	rc = print_target(p, &t);
	if (rc != 0)
		goto out;
	printf(" request %s %s", method, rt);
	if (!policy_check_request(p, &t, method, rt, strlen(rt), &v)) {
		printf(" allow (no rule names this host)");
		goto out;
	}
	if (v.how == RULE_BY_RULE)
		printf(" %s by rule %zu", v.allow ? "allow" : "deny", v.index);
	else if (v.how == RULE_BY_DEFAULT)
		printf(" %s by rulesDefault", v.allow ? "allow" : "deny");
	else
		printf(" deny");
	if (!v.allow)
		printf(" reason=%s", reason_str(REASON_RULE_DENIED));
	if (v.how == RULE_AMBIGUOUS) {
		printf(" (ambiguous path: %s)", v.why);
	} else if (v.how == RULE_MATCH_ERROR) {
		printf(" (rule %zu's path pattern hit the match limit)", v.index);
	} else {
		/* say what the rules saw when it is not what was written */
		qlen = strcspn(rt, "?");
		norm = malloc(strlen(rt) + 1);
		if (norm && !(why = rules_normalize_path(rt, strlen(rt), norm, &nlen)) &&
		    (nlen != qlen || memcmp(norm, rt, nlen) != 0))
			printf(" (path matched as %s)", norm);
	}
	rc = v.allow ? 0 : 1;
out:
	printf("\n");
	free(norm);
	free(rt);
	return rc;
}

/* The command line's policy options (--resolve, --deny-net, ...) go into
 * every sandbox's policy as well; the table is then the sandboxes', or the
 * one policy p. Returns it (the caller's), or NULL on error. */
static struct sbtable *make_table(struct cli *cli, struct policy *p, int argc, char **argv)
{
	struct sbtable *t = cli->sbt;

	cli->sbt = NULL;
	if (!t)
		return sbx_single(p);
	for (size_t i = 0; i < sbx_count(t); i++) {
		struct cli tmp = { .skip_config = true };
		char err[CONFIG_ERRLEN];
		if (sbx_policy(t, i) && parse_args(argc, argv, &tmp, sbx_policy(t, i), err) != 0) {
			fprintf(stderr, "egressd: sandbox %s: %s\n", sbx_name(t, i), err);
			sbx_free(t);
			return NULL;
		}
	}
	return t;
}

/* check and env: the one policy, or --sandbox NAME's. NULL: said why. */
static struct policy *chosen_policy(const struct cli *cli, const struct sbtable *t)
{
	int i;

	if (!sbx_named(t)) {
		if (cli->sandbox) {
			fprintf(stderr, "egressd: --sandbox %s: the policy has no \"sandboxes\"\n",
				cli->sandbox);
			return NULL;
		}
		return sbx_policy(t, 0);
	}
	if (!cli->sandbox) {
		fprintf(stderr, "egressd: the policy has sandboxes; choose one with --sandbox NAME:");
		for (size_t k = 0; k < sbx_count(t); k++)
			fprintf(stderr, " %s", sbx_name(t, k));
		fprintf(stderr, "\n");
		return NULL;
	}
	if ((i = sbx_find(t, cli->sandbox)) < 0) {
		fprintf(stderr, "egressd: no sandbox named \"%s\" in the policy\n", cli->sandbox);
		return NULL;
	}
	return sbx_policy(t, (size_t)i);
}

static int cmd_check(int argc, char **argv, const struct cli *cli, const struct sbtable *t)
{
	const struct policy *p;
	int worst = 0;

	for (int i = 0; i < argc; i++) {
		if (argv[i][0] != '-')
			continue;
		/* getopt stopped at the first target; no target starts with '-' */
		fprintf(stderr, "egressd: option '%s' after a target (options go before the "
				"targets)\n", argv[i]);
		cliopts_hint(stderr, CLI_CHECK);
		return 2;
	}
	if (argc == 0 && sbx_named(t) && !cli->sandbox) {
		printf("policy ok: %zu sandboxes\n", sbx_count(t));
		return 0;
	}
	if (!(p = chosen_policy(cli, t)))
		return 2;
	if (argc == 0)
		printf("policy ok\n");
	for (int i = 0; i < argc; i++) {
		int r;
		if (is_url(argv[i])) {
			fprintf(stderr, "egressd: a URL is checked with its method: "
					"egressd check METHOD %s\n", argv[i]);
			r = 2;
		} else if (i + 1 < argc && is_url(argv[i + 1])) {
			r = check_request(p, argv[i], argv[i + 1]);
			i++;
		} else {
			r = check_one(p, argv[i]);
		}
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

/* getopt's state is global: SIGHUP (main thread) and the control API's
 * amend (control thread) parse the saved command line one at a time */
static pthread_mutex_t args_lock = PTHREAD_MUTEX_INITIALIZER;

static struct sbtable *reload_table(void *ctx, char *err)
{
	struct cli tmp = { .so = { .drain_timeout_s = 5 }, .tolerant = true };
	struct policy *p = policy_new();
	struct sbtable *t = NULL;
	char e[CONFIG_ERRLEN];

	(void)ctx;
	pthread_mutex_lock(&args_lock);
	if (parse_args(saved.argc, saved.argv, &tmp, p, e) == 0)
		t = make_table(&tmp, p, saved.argc, saved.argv);
	else
		snprintf(err, 256, "%.250s", e[0] ? e : "the command line did not parse");
	pthread_mutex_unlock(&args_lock);
	if (t && !sbx_named(t) && tmp.nconfig == 0 && tmp.control) {
		sbx_free(t); /* --control without -c: sandboxes, none from a file */
		t = sbx_new();
	}
	sbx_free(tmp.sbt);
	policy_unref(p);
	if (!t && !err[0])
		snprintf(err, 256, "the policy did not load (the reason is on the line above)");
	return t;
}

/* serve --report/--learn: a thread that writes both on SIGUSR1 (blocked
 * in every other thread) until reporter_stop. */
static struct {
	pthread_t thread;
	bool running;
	atomic_bool stopping;
	struct observe *obs;
	const struct obsreport_opts *out;
} reporter;

static void *reporter_main(void *arg)
{
	sigset_t set;
	int sig;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	while (sigwait(&set, &sig) == 0 && !atomic_load(&reporter.stopping))
		obsreport_finish(reporter.obs, reporter.out);
	return NULL;
}

/* Blocks SIGUSR1 (before any other thread starts: they inherit the mask)
 * and starts the thread that takes it. */
static void reporter_start(struct observe *obs, const struct obsreport_opts *out)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	reporter.obs = obs;
	reporter.out = out;
	atomic_store(&reporter.stopping, false);
	reporter.running = pthread_create(&reporter.thread, NULL, reporter_main, NULL) == 0;
}

static void reporter_stop(void)
{
	if (!reporter.running)
		return;
	atomic_store(&reporter.stopping, true);
	pthread_kill(reporter.thread, SIGUSR1);
	pthread_join(reporter.thread, NULL);
	reporter.running = false;
}

/* The observer for --report or --learn, attached as the audit sink; NULL
 * when neither is given. */
static struct observe *observe_start(struct cli *cli)
{
	struct observe *o;

	if (!cli->out.report && !cli->out.learn_path)
		return NULL;
	cli->out.configs = cli->configs;
	o = observe_new(cli->report_max ? (size_t)cli->report_max : 1000);
	observe_attach(o);
	return o;
}

static void observe_end(struct observe *o)
{
	observe_attach(NULL);
	observe_free(o);
	obsreport_cleanup();
}

/* The command line's policy options, added to an API sandbox's policy as
 * to each sandbox of a file. */
static bool amend_api_policy(void *ctx, struct policy *p, char *err)
{
	struct cli tmp = { .skip_config = true };
	char e[CONFIG_ERRLEN];
	int rc;

	(void)ctx;
	pthread_mutex_lock(&args_lock);
	rc = parse_args(saved.argc, saved.argv, &tmp, p, e);
	pthread_mutex_unlock(&args_lock);
	if (rc != 0)
		snprintf(err, CONTROL_ERRLEN, "the command line's policy options: %.200s", e);
	return rc == 0;
}

/* --control: the table must be one of sandboxes (an empty one without -c). */
static struct sbtable *control_table(const struct cli *cli, struct sbtable *t)
{
	if (!cli->control || sbx_named(t))
		return t;
	sbx_free(t);
	if (cli->nconfig > 0) {
		fprintf(stderr, "egressd: --control needs a policy file with \"sandboxes\", or no "
				"-c (the command line's policy options then apply to each API "
				"sandbox)\n");
		return NULL;
	}
	return sbx_new();
}

static int cmd_serve(struct cli *cli, struct sbtable *t)
{
	char err[256];
	struct server *s;
	struct observe *obs;
	struct control *ctl = NULL;
	int rc;

	if (!(t = control_table(cli, t)))
		return 2;

	if (cli->so.nlisten == 0 && cli->so.ntransparent == 0)
		cli->so.listen[cli->so.nlisten++] = "127.0.0.1:3128";
	if (sbx_needs_interception(t) && sandboxenv_write_bundle(cli->so.state_dir, cli->so.upstream_ca) < 0) {
		sbx_free(t);
		return 1;
	}
	if (audit_open(cli->log) < 0) {
		fprintf(stderr, "egressd: cannot open log %s: %m\n", cli->log);
		sbx_free(t);
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
	cli->so.reload = reload_table;
	obs = observe_start(cli);
	if (obs)
		reporter_start(obs, &cli->out);
	s = server_new(&cli->so, t, err);
	if (s && cli->control &&
	    !(ctl = control_new(s, cli->control, cli->ctl_token, cli->so.state_dir, amend_api_policy,
				NULL, err))) {
		server_free(s);
		s = NULL;
	}
	if (!s) {
		audit_msg(AUDIT_ERROR, "error", "%s", err);
		reporter_stop();
		observe_end(obs);
		audit_close();
		return 1;
	}
	if (ctl) {
		audit_say(AUDIT_INFO, "control API on %s", cli->control);
		control_start(ctl);
	}
	rc = server_run(s);
	reporter_stop();
	obsreport_finish(obs, &cli->out); /* after the workers: every close is counted */
	control_free(ctl); /* before the server: it calls into it */
	server_free(s);
	observe_end(obs);
	audit_close();
	return rc;
}

/* env, run and check, once the policy (or sandboxes) loaded. */
static int dispatch(struct cli *cli, struct sbtable *t, int argc, char **argv)
{
	const char *listen = cli->so.nlisten ? cli->so.listen[0] : "127.0.0.1:3128";
	struct policy *p;
	int rc;

	if (cli->cmd == CLI_SERVE && optind < argc) {
		fprintf(stderr, "egressd: unexpected argument '%s'\n", argv[optind]);
		cliopts_hint(stderr, cli->cmd);
		sbx_free(t);
		return 2;
	}
	if (cli->cmd == CLI_SERVE)
		return cmd_serve(cli, t);
	if (cli->cmd == CLI_CHECK)
		rc = cmd_check(argc - optind, argv + optind, cli, t);
	else if (cli->cmd == CLI_ENV)
		rc = optind < argc ? 2 : !(p = chosen_policy(cli, t)) ? 2
			: sandboxenv_cmd_env(p, cli->so.state_dir, listen, cli->so.upstream_ca,
					     cli->format);
	else if (sbx_named(t))
		rc = (fprintf(stderr, "egressd run: takes one policy, not \"sandboxes\"\n"), 2);
	else if (optind < argc) {
		struct runcmd_opts ro = { .log = cli->log, .user = cli->user, .configs = cli->configs,
					  .out = &cli->out };
		ro.obs = observe_start(cli);
		rc = runcmd_main(sbx_policy(t, 0), &cli->so, &ro, argc - optind, argv + optind);
		cli->cmd_status = true;
		observe_end(ro.obs);
	} else {
		fprintf(stderr, "egressd run: usage: egressd run [OPTIONS] -- CMD [ARGS...]\n");
		rc = 125;
	}
	sbx_free(t);
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
				   .max_conns = 10000, .max_buffer = 256 * 1024,
				   .http2 = true },
			   .log_level = AUDIT_INFO };
	struct policy *p;
	struct sbtable *t;
	char err[CONFIG_ERRLEN];
	int rc;

	/* the init of `egressd run`'s PID namespace: an unprivileged exec */
	if (argc > 3 && !strcmp(argv[1], JAILINIT_CMD) && !strcmp(argv[2], "--"))
		jailinit_main(argc - 3, argv + 3);
	selfguard_init();
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
	if (cli.cmd == CLI_SANDBOX) { /* egressd sandbox put|rm|ls|env [NAME] [OPTIONS] */
		cli.sbx = sbxflags_new();
		if (argc > 1 && argv[1][0] != '-') {
			cli.sbx_sub = argv[1];
			argc--;
			argv++;
		}
		if (argc > 1 && argv[1][0] != '-') {
			cli.sbx_name = argv[1];
			argc--;
			argv++;
		}
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
	audit_hook_libevent();
	contentdec_set_budget((size_t)(cli.decode_mib ? cli.decode_mib : 512) << 20);
	if (!cli.so.state_dir)
		cli.so.state_dir = sandboxenv_default_state_dir();
	if (rc == 0 && cli.cmd == CLI_SANDBOX)
		rc = optind < argc ? (fprintf(stderr, "egressd: unexpected argument '%s'\n",
					      argv[optind]), 2)
				   : sbxclient_main(cli.control, cli.ctl_token, cli.sbx_sub,
						    cli.sbx_name, cli.file, cli.sbx);
	else if (rc == 0 && cli.cmd == CLI_CA)
		rc = optind < argc || !cli.ca_sub ? sandboxenv_cmd_ca(0, NULL, NULL, NULL)
						  : sandboxenv_cmd_ca(1, (char **)&cli.ca_sub, cli.so.state_dir, cli.ca_key);
	else if (rc == 0) {
		int end = optind; /* make_table parses argv again */
		t = make_table(&cli, p, argc, argv);
		optind = end;
		rc = t ? dispatch(&cli, t, argc, argv) : 2;
	}
	sbx_free(cli.sbt);
	sbxflags_free(cli.sbx);
	policy_unref(p);
	if (rc == 2 && cli.cmd == CLI_RUN && !cli.cmd_status)
		rc = 125; /* run's own failures are 125, so CMD's statuses stay CMD's */
	return rc < 0 ? 0 : rc;
}
