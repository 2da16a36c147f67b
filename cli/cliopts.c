/* cliopts.c -- the option and command rows, the getopt table built from
 * them, and the help texts (overview and per command) */
#include "cliopts.h"

#include <string.h>

#define POLICY_CMDS (CLI_SERVE | CLI_CHECK | CLI_RUN)
#define SBX_FLAGS (POLICY_CMDS | CLI_SANDBOX) /* sandbox put takes them as its sandbox's */
#define RUNTIME_CMDS (CLI_SERVE | CLI_RUN)

/* One row per option. The default column is what egressd does when the
 * option is absent; keep it in step with main()'s initial values. */
static const struct cliopt opts[] = {
	/* policy */
	{ "config", 'c', 'c', "FILE",
	  "JSON policy file: allowNet, denyNet, intercept, secrets, rules (reread on SIGHUP)",
	  "none", POLICY_CMDS | CLI_ENV },
	{ "allow-net", 0, OPT_ALLOW, "P[,P...]",
	  "add allowNet patterns (repeatable; '' denies everything)",
	  "no allowNet from any source: every destination is allowed", SBX_FLAGS },
	{ "deny-net", 0, OPT_DENY, "P[,P...]",
	  "patterns refused even when allowNet matches (repeatable)", "none", SBX_FLAGS },
	{ "secret", 0, OPT_SECRET, "NAME=HOST[,HOST...]",
	  "a secret whose value is egressd's own environment variable NAME, injected "
	  "only for HOSTs (repeatable)", "none", SBX_FLAGS | CLI_ENV },
	{ "secret-inject", 0, OPT_SECRET_INJECT, "NAME=PLACE:N[,PLACE:N...]",
	  "also inject secret NAME (defined before) into query parameter N (query:N), "
	  "form field N (form:N) or JSON member N (json:$.a.b) (repeatable)",
	  "header values only", POLICY_CMDS | CLI_ENV },
	{ "intercept", 0, OPT_INTERCEPT, "P[,P...]",
	  "also intercept (and audit per request) hosts matching these patterns, "
	  "without secrets (repeatable)", "none: only secrets' hosts", SBX_FLAGS },
	{ "allow-private", 0, OPT_PRIVATE, "CIDR",
	  "allow destinations in a special-purpose range (repeatable)",
	  "none: loopback, RFC 1918, link-local... are refused", POLICY_CMDS },
	{ "resolve", 0, OPT_RESOLVE, "HOST:PORT:ADDR",
	  "pin a name to an address, as curl's --resolve (repeatable)", "none", POLICY_CMDS },
	{ "sandbox", 0, OPT_SANDBOX, "NAME",
	  "with a policy of \"sandboxes\": the sandbox whose policy check and env use",
	  "none (required when the policy has sandboxes)", CLI_CHECK | CLI_ENV },
	{ "on-placeholder-leak", 0, OPT_LEAK, "log|block",
	  "what a placeholder sent to a host not approved for it gets: logged, or "
	  "also refused with 403", "log", RUNTIME_CMDS },
	{ "http2", 0, OPT_HTTP2, NULL,
	  "intercepted hosts: offer the upstream ALPN h2 and http/1.1; HTTP/2 on both sides "
	  "where both choose it, else HTTP/1.1 requests on h2 streams (the default)",
	  NULL, RUNTIME_CMDS },
	{ "no-http2", 0, OPT_NO_HTTP2, NULL,
	  "intercepted hosts: offer the upstream ALPN http/1.1 only (HTTP/1.1 on both sides)",
	  NULL, RUNTIME_CMDS },
	{ "user", 0, OPT_USER, "USER[:GROUP]",
	  "who CMD runs as (name or number; --user root: uid 0 without capabilities)",
	  "the user who ran sudo (SUDO_UID); as root without sudo, run refuses", CLI_RUN },
	/* listeners and upstreams */
	{ "listen", 0, OPT_LISTEN, "ADDR:PORT",
	  "explicit proxy listener, CONNECT and absolute-form HTTP (repeatable; "
	  "for env: the proxy address it prints)", "127.0.0.1:3128", CLI_SERVE | CLI_ENV | CLI_SANDBOX },
	{ "transparent", 0, OPT_TRANSPARENT, "ADDR:PORT",
	  "transparent listener for redirected traffic, SO_ORIGINAL_DST (repeatable)",
	  "none", CLI_SERVE },
	{ "dns", 0, OPT_DNS, "ADDR[:PORT]", "the DNS server egressd asks",
	  "the nameservers in /etc/resolv.conf", RUNTIME_CMDS },
	{ "state-dir", 0, OPT_STATE, "DIR",
	  "CA key and certificate, placeholder key, CA bundle; created 0700",
	  "/var/lib/egressd as root, else ~/.local/state/egressd",
	  CLI_SERVE | CLI_ENV | CLI_CA | CLI_RUN },
	{ "upstream-ca", 0, OPT_UPCA, "FILE",
	  "extra trust anchors (PEM) for upstream certificates",
	  "none: the system store only", CLI_SERVE | CLI_ENV | CLI_RUN },
	{ "ca-key", 0, OPT_CAKEY, "ec|rsa", "key type of a CA that is created",
	  "ec (P-256)", CLI_CA },
	/* limits */
	{ "threads", 0, OPT_THREADS, "N", "worker threads, one event loop each (1..64)",
	  "the number of cores", RUNTIME_CMDS },
	{ "max-connections", 0, OPT_MAXCONN, "N",
	  "open connections at most; more get 503 too-many-connections", "10000",
	  RUNTIME_CMDS },
	{ "header-timeout", 0, OPT_HEADTO, "S",
	  "seconds for a request head, ClientHello or TLS handshake", "30", RUNTIME_CMDS },
	{ "idle-timeout", 0, OPT_IDLETO, "S",
	  "seconds a connection may carry no traffic either way", "300", RUNTIME_CMDS },
	{ "max-buffer", 0, OPT_MAXBUF, "BYTES",
	  "bytes buffered per direction per connection (16384..67108864)", "262144",
	  RUNTIME_CMDS },
	{ "max-decode-memory", 0, OPT_DECODEMEM, "MIB",
	  "MiB all reply decoders (gzip, deflate, br, zstd) may hold together; a reply past it "
	  "is refused (1..65536)", "512", RUNTIME_CMDS },
	{ "drain-timeout", 0, OPT_DRAIN, "S",
	  "on SIGTERM/SIGINT, seconds open connections may still finish", "5", CLI_SERVE },
	{ "metrics", 0, OPT_METRICS, "ADDR:PORT",
	  "serve Prometheus metrics at http://ADDR:PORT/metrics (bind it to loopback or an "
	  "operator network)", "none", RUNTIME_CMDS },
	{ "format", 0, OPT_FORMAT, "sh|dotenv|json",
	  "env: NAME=VALUE lines quoted for the shell, a dotenv file, or one JSON object", "sh",
	  CLI_ENV },
	{ "control", 0, OPT_CONTROL, "unix:PATH|IP:PORT",
	  "serve: the control API (sandboxes created at runtime) on a unix socket, mode "
	  "0600, or over TCP with a token; sandbox: where to talk to it", "none",
	  CLI_SERVE | CLI_SANDBOX },
	{ "control-token-file", 0, OPT_CTLTOKEN, "FILE",
	  "a bearer token (the file's first line, 16+ characters) every control request must "
	  "carry; required for --control IP:PORT", "none", CLI_SERVE | CLI_SANDBOX },
	{ "source", 0, OPT_SOURCE, "CIDR",
	  "sandbox put: a client source address or range of the sandbox (repeatable)", "none",
	  CLI_SANDBOX },
	{ "file", 'f', 'f', "FILE",
	  "sandbox put: the sandbox as JSON (source, listen, allowNet, secrets...; '-' = stdin)",
	  "none", CLI_SANDBOX },
	/* logging */
	{ "log", 0, OPT_LOG, "FILE",
	  "JSON-lines audit and operations log ('-' = stderr); reopened on SIGHUP",
	  "none: operational messages go to stderr as text", RUNTIME_CMDS },
	{ "log-level", 0, OPT_LOGLEVEL, "LEVEL",
	  "error, warn, info or debug: the least severe level written", "info",
	  RUNTIME_CMDS },
	/* what the sandbox tried to reach */
	{ "report", 0, OPT_REPORT, "[=FILE]",
	  "write a report of every destination and DNS-only name to FILE when CMD exits "
	  "(also by a signal; serve: at exit) and on SIGUSR1",
	  "none; --report alone: standard error", RUNTIME_CMDS },
	{ "report-format", 0, OPT_REPORTFMT, "table|json", "the report's format", "table",
	  RUNTIME_CMDS },
	{ "report-max", 0, OPT_REPORTMAX, "N",
	  "destinations (and DNS names) tracked for --report and --learn; more are counted "
	  "in one _other row", "1000", RUNTIME_CMDS },
	{ "learn", 0, OPT_LEARN, "FILE",
	  "learn mode: nothing is refused for allowNet (denyNet and the private-address guard "
	  "still apply); when CMD exits (serve: at exit) and on SIGUSR1, FILE gets a policy "
	  "that allows what was used", "none", RUNTIME_CMDS },
	/* every command */
	{ "help", 'h', 'h', NULL, "print help (after a command: that command's)", NULL,
	  CLI_ALL },
	{ "version", 0, OPT_VERSION, NULL,
	  "print egressd's version and the library versions it runs with", NULL, CLI_ALL },
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* The number options' ranges (a range the help text states must be the same). */
static const struct clirange ranges[] = {
	{ OPT_THREADS, 1, 64, "" },
	{ OPT_MAXCONN, 1, 1000000, "" },
	{ OPT_HEADTO, 1, 86400, " seconds" },
	{ OPT_IDLETO, 1, 86400, " seconds" },
	{ OPT_MAXBUF, 16384, 64 << 20, " bytes" },
	{ OPT_DRAIN, 1, 3600, " seconds" },
	{ OPT_DECODEMEM, 1, 65536, " MiB" },
	{ OPT_REPORTMAX, 1, 100000, "" },
};

struct clicmd {
	const char *name;
	unsigned bit;
	const char *usage; /* after "egressd " */
	const char *summary;
	const char *detail; /* NULL or more lines for its own help */
};

static const struct clicmd cmds[] = {
	{ "serve", CLI_SERVE, "[serve] [OPTIONS]", "run the proxy (the default command)",
	  "SIGHUP rereads the policy and reopens the log; SIGTERM/SIGINT drain;\n"
	  "SIGUSR1 writes the --report and --learn files from the counts so far.\n"
	  "Exit status: 0 after a drain, 1 on a runtime error, 2 on a bad option or policy.\n" },
	{ "check", CLI_CHECK, "check [OPTIONS] [HOST[:PORT] | METHOD URL ...]",
	  "validate the policy; print each target's decision",
	  "One line per target: the decision, the rule that decided it and the secrets\n"
	  "that would be injected. A target without a port is checked as port 443. No DNS:\n"
	  "an IP target or a --resolve pin gets the address guard. METHOD URL (e.g.\n"
	  "GET https://api.github.com/repos/acme/x) also says which request rule decides.\n"
	  "With sandboxes, --sandbox NAME chooses the policy.\n"
	  "Exit status: 0 all allowed, 1 any denied, 2 bad policy or malformed target.\n" },
	{ "env", CLI_ENV, "env [OPTIONS]",
	  "print the sandbox's environment (NAME=VALUE lines)",
	  "Placeholders for the secrets, proxy variables for --listen, CA bundle variables.\n"
	  "Exit status: 0, 1 if the state dir cannot be used, 2 on a bad option or policy.\n" },
	{ "ca", CLI_CA, "ca init|show [OPTIONS]",
	  "create the CA / print its certificate (PEM)",
	  "show creates the CA first if the state dir has none.\n"
	  "Exit status: 0, 1 if the CA cannot be loaded or created, 2 on a usage error.\n" },
	{ "run", CLI_RUN, "run [OPTIONS] -- CMD [ARGS...]",
	  "run CMD in a network jail whose TCP all goes through egressd (root)",
	  "CMD runs without capabilities as the user who ran sudo, or --user, in its own\n"
	  "network, PID and mount namespaces; egressd's state dir and secret files are\n"
	  "hidden from it. It gets the placeholders and CA bundle variables; DNS is\n"
	  "egressd's own.\n"
	  "Exit status: CMD's (128+N if it died of signal N), 125 if egressd fails.\n" },
	{ "sandbox", CLI_SANDBOX, "sandbox put|rm|ls|env [NAME] --control unix:PATH [OPTIONS]",
	  "create, delete, list sandboxes of a running egressd (its control API)",
	  "put NAME -f FILE creates or replaces a sandbox and prints its environment;\n"
	  "or give it as options: --source CIDR, --listen ADDR:PORT, --allow-net,\n"
	  "--deny-net, --intercept, --secret NAME=HOST[,HOST] (value from this command's\n"
	  "own environment). rm NAME deletes it (its open connections are closed);\n"
	  "ls lists them; env NAME prints the environment of one (no new placeholders).\n"
	  "Exit status: 0, 1 if egressd refused (its answer on stderr), 2 on a usage error.\n" },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

const struct cliopt *cliopts_table(size_t *n)
{
	*n = NOPTS;
	return opts;
}

const struct cliopt *cliopts_find(int id)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].id == id)
			return &opts[i];
	return NULL;
}

const struct clirange *cliopts_range(int id)
{
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		if (ranges[i].id == id)
			return &ranges[i];
	return NULL;
}

const struct option *cliopts_long(void)
{
	static struct option lo[NOPTS + 1];

	if (!lo[0].name) {
		for (size_t i = 0; i < NOPTS; i++) {
			lo[i].name = opts[i].name;
			lo[i].has_arg = !opts[i].arg ? no_argument
					: opts[i].arg[0] == '[' ? optional_argument : required_argument;
			lo[i].flag = NULL;
			lo[i].val = opts[i].id;
		}
	}
	return lo;
}

const char *cliopts_short(void)
{
	static char s[2 + 2 * NOPTS + 1];

	if (!s[0]) {
		size_t k = 0;
		s[k++] = '+';
		s[k++] = ':';
		for (size_t i = 0; i < NOPTS; i++) {
			if (!opts[i].shortopt)
				continue;
			s[k++] = (char)opts[i].shortopt;
			if (opts[i].arg)
				s[k++] = ':';
		}
		s[k] = '\0';
	}
	return s;
}

unsigned cliopts_command(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return cmds[i].bit;
	return 0;
}

static const struct clicmd *find_cmd(unsigned bit)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (cmds[i].bit == bit)
			return &cmds[i];
	return NULL;
}

#define HELP_COL 28
#define HELP_WIDTH 79

/* Prints text word-wrapped from column col (the cursor is at column at). */
static void put_wrapped(FILE *f, const char *text, int at, int col)
{
	const char *p = text;

	for (;;) {
		int room = HELP_WIDTH - col, len = 0, brk = -1;

		fprintf(f, "%*s", at < col ? col - at : 0, "");
		while (p[len] && len <= room) {
			if (p[len] == ' ')
				brk = len;
			len++;
		}
		if (!p[len] || brk < 0) { /* the rest fits, or one long word */
			if (p[len] && brk < 0)
				while (p[len] && p[len] != ' ')
					len++;
			fprintf(f, "%.*s\n", len, p);
			p += len;
		} else {
			fprintf(f, "%.*s\n", brk, p);
			p += brk;
		}
		while (*p == ' ')
			p++;
		if (!*p)
			return;
		at = 0;
	}
}

static void put_option(FILE *f, const struct cliopt *o)
{
	char left[96];
	int n;

	if (o->shortopt)
		n = snprintf(left, sizeof(left), "  -%c, --%s%s%s", o->shortopt, o->name,
			     o->arg ? " " : "", o->arg ? o->arg : "");
	else
		n = snprintf(left, sizeof(left), "      --%s%s%s", o->name,
			     o->arg && o->arg[0] != '[' ? " " : "", o->arg ? o->arg : "");
	fputs(left, f);
	if (n + 2 > HELP_COL) {
		fputc('\n', f);
		n = 0;
	}
	put_wrapped(f, o->help, n, HELP_COL);
	if (o->def) {
		char d[256];
		snprintf(d, sizeof(d), "(default: %s)", o->def);
		put_wrapped(f, d, 0, HELP_COL);
	}
}

void cliopts_help(FILE *f, unsigned command)
{
	const struct clicmd *c = find_cmd(command);

	if (!c) {
		fputs("usage:\n", f);
		for (size_t i = 0; i < NCMDS; i++) {
			fprintf(f, "  egressd %s\n", cmds[i].usage);
			put_wrapped(f, cmds[i].summary, 0, 8);
		}
		fputs("  egressd help [COMMAND]\n", f);
		put_wrapped(f, "the overview, or a command's usage and options with their defaults", 0, 8);
		fputs("\nOptions of every command:\n", f);
		for (size_t i = 0; i < NOPTS; i++)
			if (opts[i].cmds == CLI_ALL)
				put_option(f, &opts[i]);
		fputs("\n'egressd COMMAND --help' lists a command's options with their defaults;\n"
		      "'man egressd' is the full reference.\n", f);
		return;
	}
	fprintf(f, "usage: egressd %s\n", c->usage);
	put_wrapped(f, c->summary, 0, 2);
	if (c->detail) {
		fputc('\n', f);
		fputs(c->detail, f);
	}
	fputs("\nOptions:\n", f);
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].cmds & command)
			put_option(f, &opts[i]);
}

void cliopts_hint(FILE *f, unsigned command)
{
	const struct clicmd *c = find_cmd(command);

	fprintf(f, "Try 'egressd %s%s--help'.\n", c ? c->name : "", c ? " " : "");
}
