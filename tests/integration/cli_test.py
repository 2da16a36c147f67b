#!/usr/bin/env python3
"""cli_test.py -- integration tests of `egressd check` and of how `serve` and
`check` refuse a bad policy. No network at all. Prints TAP; exits 1 on failure."""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Suite, check, check_eq, run_egressd, free_port  # noqa: E402

suite = Suite("cli")

# --------------------------------------------------------------------------
# egressd check: (description, argv after `check`, exit status, stdout lines)
# Each expected line is either a string the output line must equal or continue
# with " key=value..." (the decision line may carry more fields, e.g. the deny
# rule or the secrets) or re:REGEX (full match).

CHECKS = [
    ("check: allowed, denied, not-allowed targets; exit 1",
     ["--allow-net", "allowed.test,*.ok.test:443", "--deny-net", "bad.ok.test",
      "allowed.test:8080", "a.ok.test", "b.ok.test:80", "bad.ok.test", "evil.test"], 1,
     ['allowed.test:8080 allow rule="allowed.test"',
      'a.ok.test:443 allow rule="*.ok.test:443"',
      "b.ok.test:80 deny reason=not-allowed",
      "bad.ok.test:443 deny reason=denied",
      "evil.test:443 deny reason=not-allowed"]),
    ("check: all targets allowed -> exit 0; target without port is :443",
     ["--allow-net", "allowed.test", "allowed.test", "allowed.test:80"], 0,
     ['allowed.test:443 allow rule="allowed.test"',
      'allowed.test:80 allow rule="allowed.test"']),
    ("check: without allowNet everything is allowed with rule=*",
     ["x.test:8443", "y.test"], 0,
     ["x.test:8443 allow rule=*", "y.test:443 allow rule=*"]),
    ("check: --allow-net '' denies everything",
     ["--allow-net", "", "x.test"], 1, ["x.test:443 deny reason=not-allowed"]),
    ("check: wildcard matches any depth but not the apex",
     ["--allow-net", "*.allowed.test", "a.b.allowed.test", "allowed.test"], 1,
     ['a.b.allowed.test:443 allow rule="*.allowed.test"',
      "allowed.test:443 deny reason=not-allowed"]),
    ("check: host compares case-insensitively, trailing dot ignored",
     ["--allow-net", "allowed.test", "ALLOWED.Test.:443"], 0,
     [r're:(?i)allowed\.test\.?:443 allow rule="allowed\.test"']),
    ("check: --resolve to 127.0.0.1 applies the address guard",
     ["--allow-net", "allowed.test", "--resolve", "allowed.test:443:127.0.0.1", "allowed.test"], 1,
     ["allowed.test:443 deny reason=private-address"]),
    ("check: --resolve to 127.0.0.1 with --allow-private 127.0.0.0/8 is allowed",
     ["--allow-net", "allowed.test", "--resolve", "allowed.test:443:127.0.0.1",
      "--allow-private", "127.0.0.0/8", "allowed.test"], 0,
     ['allowed.test:443 allow rule="allowed.test"']),
    ("check: IP literal 127.0.0.1 -> private-address",
     ["127.0.0.1:80"], 1, ["127.0.0.1:80 deny reason=private-address"]),
    ("check: CIDR allow pattern names the address",
     ["--allow-net", "10.0.0.0/8", "10.1.2.3:5432"], 0,
     ['10.1.2.3:5432 allow rule="10.0.0.0/8"']),
    ("check: documentation address 203.0.113.7 is public",
     ["203.0.113.7:443"], 0, ["203.0.113.7:443 allow rule=*"]),
    ("check: deny pattern beats a more specific allow",
     ["--allow-net", "api.x.test:443", "--deny-net", "*.x.test", "api.x.test:443"], 1,
     ["api.x.test:443 deny reason=denied"]),
    ("check: valid policy and no targets -> exit 0",
     ["--allow-net", "allowed.test"], 0, None),
]


def check_case(ctx, argv, status, lines):
    r = run_egressd(["check"] + argv)
    ctx.note("stdout: %r\nstderr: %r" % (r.stdout, r.stderr))
    check_eq(r.returncode, status, "exit status")
    if lines is None:
        return
    got = [l for l in r.stdout.split("\n") if l.strip()]
    check_eq(len(got), len(lines), "number of output lines (%r)" % got)
    for g, w in zip(got, lines):
        if w.startswith("re:"):
            check(re.fullmatch(w[3:], g), "line %r does not match %r" % (g, w[3:]))
        else:
            check(line_matches(g, w), "output line %r, want %r (optionally followed by ' key=value')"
                  % (g, w))


def line_matches(got, want):
    return got == want or (got.startswith(want + " ") and "=" in got[len(want):])


for desc, argv, status, lines in CHECKS:
    suite.add(desc, check_case, argv, status, lines)


# malformed targets and bad patterns: exit 2, something on stderr
BAD_ARGS = [
    ("check: malformed target a..b.test -> exit 2", ["a..b.test"], None),
    ("check: target port 99999 -> exit 2", ["x.test:99999"], None),
    ("check: target port 0 -> exit 2", ["x.test:0"], None),
    ("check: URL as target -> exit 2", ["https://x.test/"], None),
    ("check: an option after a target (x.test --help) -> exit 2 saying options go first",
     ["x.test", "--help"], "options go before the targets"),
    ("check: -c after a target -> exit 2 naming it, nothing checked",
     ["--allow-net", "x.test", "x.test", "-c", "/dev/null"], "'-c'"),
    ("check: pattern https://x.test -> exit 2", ["--allow-net", "https://x.test", "x.test"],
     "https://x.test"),
    ("check: bare IPv6 pattern ::1 -> exit 2 suggesting [::1]", ["--allow-net", "::1", "x.test"],
     "[::1]"),
    ("check: pattern * alone -> exit 2", ["--allow-net", "*", "x.test"], None),
    ("check: pattern with empty label -> exit 2", ["--allow-net", "a..b", "x.test"], "a..b"),
    ("check: CIDR with host bits -> exit 2", ["--allow-net", "10.0.0.1/8", "x.test"], "10.0.0.1/8"),
    ("check: 256.1.1.1 pattern -> exit 2", ["--deny-net", "256.1.1.1", "x.test"], "256.1.1.1"),
]


def bad_args_case(ctx, argv, mention):
    r = run_egressd(["check"] + argv)
    ctx.note("stdout: %r\nstderr: %r" % (r.stdout, r.stderr))
    check_eq(r.returncode, 2, "exit status")
    check(r.stderr.strip(), "nothing on stderr")
    if mention:
        check(mention in r.stderr, "stderr does not mention %r: %r" % (mention, r.stderr))


for desc, argv, mention in BAD_ARGS:
    suite.add(desc, bad_args_case, argv, mention)


# --------------------------------------------------------------------------
# bad policy files: (description, file text, line of the error, text stderr must contain)

BAD_CONFIGS = [
    ("JSON syntax error",
     '{\n  "allowNet": [\n    "a.test",,\n    "b.test"\n  ]\n}\n', 3, None),
    ("unknown key",
     '{\n  "allowNet": ["a.test"],\n  "alowNet": ["b.test"]\n}\n', 3, "alowNet"),
    ("invalid pattern",
     '{\n  "allowNet": [\n    "ok.test",\n    "https://bad.test"\n  ]\n}\n', 4, "https://bad.test"),
    ("allowNet of the wrong type",
     '{\n  "allowNet": "a.test"\n}\n', 2, None),
    ("secret with empty hosts",
     '{\n  "secrets": {\n    "API_KEY": {\n      "hosts": [],\n      "value": "x"\n    }\n  }\n}\n',
     None, "hosts"),
    ("secret name that is not an environment variable name",
     '{\n  "allowNet": [],\n  "secrets": {\n    "1BAD-NAME": { "hosts": ["a.test"], "value": "x" }\n  }\n}\n',
     4, "1BAD-NAME"),
]


def write(ctx, name, text):
    p = os.path.join(ctx.tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def bad_config_case(ctx, command, text, line, mention):
    path = write(ctx, "policy.json", text)
    if command == "serve":
        argv = ["serve", "--listen", "127.0.0.1:%d" % free_port(), "-c", path]
    else:
        argv = ["check", "-c", path, "a.test"]
    r = run_egressd(argv, timeout=10)
    ctx.note("exit %d\nstderr: %r" % (r.returncode, r.stderr))
    check_eq(r.returncode, 2, "exit status")
    m = re.search(re.escape(path) + r":(\d+):(\d+)", r.stderr)
    check(m, "stderr does not name %s:LINE:COL: %r" % (path, r.stderr))
    if line is not None:
        check_eq(int(m.group(1)), line, "line in %r" % m.group(0))
    check(int(m.group(2)) >= 1, "column %s" % m.group(2))
    if mention:
        check(mention in r.stderr, "stderr does not mention %r: %r" % (mention, r.stderr))


for command in ("serve", "check"):
    for desc, text, line, mention in BAD_CONFIGS:
        suite.add("%s -c with %s -> exit 2, stderr FILE:LINE:COL" % (command, desc),
                  bad_config_case, command, text, line, mention)


@suite.case("serve with a missing config file -> exit 2")
def _(ctx):
    p = os.path.join(ctx.tmp, "nope.json")
    r = run_egressd(["serve", "--listen", "127.0.0.1:%d" % free_port(), "-c", p], timeout=10)
    check_eq(r.returncode, 2, "exit status (stderr %r)" % r.stderr)
    check(p in r.stderr, "stderr does not name the file: %r" % r.stderr)


@suite.case("serve with an invalid --allow-net pattern -> exit 2")
def _(ctx):
    r = run_egressd(["serve", "--listen", "127.0.0.1:%d" % free_port(),
                     "--allow-net", "ok.test,a..b"], timeout=10)
    check_eq(r.returncode, 2, "exit status (stderr %r)" % r.stderr)
    check("a..b" in r.stderr, "stderr does not name the pattern: %r" % r.stderr)


@suite.case("check -c with a valid policy file uses its allowNet and denyNet")
def _(ctx):
    p = write(ctx, "ok.json", '{\n  "allowNet": ["allowed.test", "*.github.test"],\n'
              '  "denyNet": ["evil.github.test"]\n}\n')
    r = run_egressd(["check", "-c", p, "allowed.test", "api.github.test:443",
                     "evil.github.test", "other.test:80"])
    ctx.note("stdout %r stderr %r" % (r.stdout, r.stderr))
    check_eq(r.returncode, 1, "exit status")
    want = ['allowed.test:443 allow rule="allowed.test"',
            'api.github.test:443 allow rule="*.github.test"',
            "evil.github.test:443 deny reason=denied",
            "other.test:80 deny reason=not-allowed"]
    got = [l for l in r.stdout.split("\n") if l.strip()]
    check(len(got) == len(want) and all(line_matches(g, w) for g, w in zip(got, want)),
          "output %r, want %r" % (got, want))


# --------------------------------------------------------------------------
# --help, help COMMAND, usage errors, --version

COMMANDS = ("serve", "check", "env", "ca", "run")
# (command, option, its default as --help prints it): a sample of each kind
DEFAULTS = [
    ("serve", "listen", "127.0.0.1:3128"), ("serve", "max-connections", "10000"),
    ("serve", "header-timeout", "30"), ("serve", "idle-timeout", "300"),
    ("serve", "drain-timeout", "5"), ("serve", "max-buffer", "262144"),
    ("serve", "max-decode-memory", "512"),
    ("serve", "on-placeholder-leak", "log"), ("serve", "log-level", "info"),
    ("run", "log-level", "info"), ("run", "threads", "the number of cores"),
    ("check", "config", "none"), ("env", "listen", "127.0.0.1:3128"),
    ("ca", "ca-key", "ec (P-256)"),
    ("ca", "state-dir", "/var/lib/egressd as root, else ~/.local/state/egressd"),
]
# options a command must list (the ones it really uses) and must not
USES = {
    "serve": ["config", "allow-net", "listen", "transparent", "log", "log-level",
              "drain-timeout", "state-dir", "secret", "dns"],
    "check": ["config", "allow-net", "deny-net", "resolve", "allow-private", "secret"],
    "env": ["config", "secret", "state-dir", "listen", "upstream-ca"],
    "ca": ["state-dir", "ca-key"],
    "run": ["config", "allow-net", "log", "log-level", "state-dir", "threads"],
}
NOT_USED = {"check": ["listen", "log", "drain-timeout"], "ca": ["allow-net", "listen", "config"],
            "env": ["log", "threads"], "run": ["listen", "transparent", "drain-timeout"],
            "serve": ["ca-key"]}


def parse_help(text):
    """{option name: (argument or None, help text incl. continuation lines)}."""
    opts, cur = {}, None
    for l in text.split("\n"):
        m = re.match(r"^(?:  -\w, |      )--([a-z0-9-]+)(?: (\S+))?\s*(.*)$", l)
        if m:
            cur = m.group(1)
            check(cur not in opts, "--%s listed twice" % cur)
            opts[cur] = [m.group(2), m.group(3)]
        elif cur and l.startswith(" " * 28) and l.strip():
            opts[cur][1] += " " + l.strip()
        elif not l.strip() or not l.startswith(" "):
            cur = None
    return {k: (a, " ".join(h.split())) for k, (a, h) in opts.items()}


def command_help(cmd):
    r = run_egressd([cmd, "--help"])
    check_eq(r.returncode, 0, "%s --help exit" % cmd)
    check_eq(r.stderr, "", "%s --help stderr" % cmd)
    return r.stdout


for _cmd in COMMANDS:
    @suite.case("%s --help: exit 0, its usage line, the options it uses each with a default, "
                "none it does not use" % _cmd)
    def _(ctx, cmd=_cmd):
        out = command_help(cmd)
        want = "usage: egressd %s" % ("[serve]" if cmd == "serve" else cmd)
        check(out.startswith(want), "first line %r, want %r" % (out.split("\n")[0], want))
        opts = parse_help(out)
        ctx.note("options: %r" % opts)
        for o in USES[cmd]:
            check(o in opts, "%s --help lacks --%s" % (cmd, o))
        for o in NOT_USED[cmd]:
            check(o not in opts, "%s --help lists --%s, which it does not use" % (cmd, o))
        for o, (arg, text) in opts.items():
            if arg:
                check(re.search(r"\(default: .+\)$", text),
                      "--%s without a default in %s --help: %r" % (o, cmd, text))
        check("help" in opts and "version" in opts, "--help/--version not listed")
        for c, o, d in DEFAULTS:
            if c == cmd:
                check(opts[o][1].endswith("(default: %s)" % d),
                      "--%s: %r, want default %r" % (o, opts[o][1], d))


@suite.case("egressd --help: the overview names every command and points to COMMAND --help; "
            "egressd help is the same; help COMMAND is COMMAND --help; ca init --help too")
def _(ctx):
    r = run_egressd(["--help"])
    check_eq(r.returncode, 0, "exit")
    for c in COMMANDS[1:]:
        check(re.search(r"^  egressd %s " % c, r.stdout, re.M), "overview lacks %s" % c)
    check("egressd [serve]" in r.stdout and "'egressd COMMAND --help'" in r.stdout,
          "overview: %r" % r.stdout)
    check_eq(run_egressd(["help"]).stdout, r.stdout, "egressd help vs --help")
    check_eq(run_egressd(["-h"]).stdout, r.stdout, "egressd -h vs --help")
    for c in COMMANDS:
        h = run_egressd(["help", c])
        check_eq(h.returncode, 0, "help %s exit" % c)
        check_eq(h.stdout, command_help(c), "help %s vs %s --help" % (c, c))
    check_eq(run_egressd(["ca", "init", "--help"]).stdout, command_help("ca"), "ca init --help")


@suite.case("every option --help lists is one getopt knows: given without its value it "
            "gets 'needs an argument', never 'unknown option'")
def _(ctx):
    seen = {}
    for c in COMMANDS:
        for o, (arg, _) in parse_help(command_help(c)).items():
            seen[o] = arg
    check(len(seen) >= 20, "too few options: %r" % sorted(seen))
    for o, arg in sorted(seen.items()):
        if not arg:
            continue
        r = run_egressd(["check", "--" + o])
        check_eq(r.returncode, 2, "check --%s (no value) exit" % o)
        check("option '--%s' needs an argument" % o in r.stderr,
              "--%s: %r" % (o, r.stderr))


USAGE_ERRORS = [
    # (argv, exit status, text stderr must contain, the hint's command)
    (["frobnicate"], 2, "unknown command 'frobnicate'", ""),
    (["help", "frobnicate"], 2, "unknown command 'frobnicate'", ""),
    (["--frobnicate"], 2, "unknown option '--frobnicate'", ""),
    (["check", "--frobnicate", "a.test"], 2, "unknown option '--frobnicate'", "check "),
    (["check", "-x"], 2, "unknown option '-x'", "check "),
    (["serve", "--listen"], 2, "option '--listen' needs an argument", "serve "),
    (["env", "--nope"], 2, "unknown option '--nope'", "env "),
    (["ca", "show", "--nope"], 2, "unknown option '--nope'", "ca "),
    (["run", "--nope", "--", "true"], 125, "unknown option '--nope'", "run "),
    (["serve", "--log-level", "loud"], 2, 'invalid --log-level "loud"', None),
    (["run", "--log-level", "loud", "--", "true"], 125, 'invalid --log-level "loud"', None),
]


def usage_error_case(ctx, argv, status, text, hint):
    r = run_egressd(argv)
    ctx.note("stdout %r\nstderr %r" % (r.stdout, r.stderr))
    check_eq(r.returncode, status, "exit status")
    check_eq(r.stdout, "", "stdout")
    check(text in r.stderr, "stderr lacks %r" % text)
    lines = [l for l in r.stderr.split("\n") if l.strip()]
    check(len(lines) <= 2, "a usage error is a short hint, not the whole help: %r" % lines)
    if hint is not None:
        check_eq(lines[-1], "Try 'egressd %s--help'." % hint, "hint line")


for _argv, _st, _text, _hint in USAGE_ERRORS:
    suite.add("usage error: egressd %s -> exit %d, %s" % (" ".join(_argv), _st, _text),
              usage_error_case, _argv, _st, _text, _hint)


# the number options: (name, smallest, largest, unit in the refusal)
NUMBER_OPTIONS = [
    ("threads", 1, 64, ""),
    ("max-connections", 1, 1000000, ""),
    ("max-buffer", 16384, 67108864, " bytes"),
    ("header-timeout", 1, 86400, " seconds"),
    ("idle-timeout", 1, 86400, " seconds"),
    ("drain-timeout", 1, 3600, " seconds"),
    ("max-decode-memory", 1, 65536, " MiB"),
]


@suite.case("number options: both ends of the range are taken; below, above, not decimal "
            "-> exit 2 and one line naming the option and its range")
def _(ctx):
    for name, lo, hi, unit in NUMBER_OPTIONS:
        for v in (lo, hi):
            r = run_egressd(["check", "--" + name, str(v)])
            check_eq((r.returncode, r.stdout, r.stderr), (0, "policy ok\n", ""),
                     "--%s %d" % (name, v))
        for v in (str(lo - 1), str(hi + 1), "12x", "-5", ""):
            r = run_egressd(["check", "--" + name, v])
            want = 'egressd: invalid --%s "%s" (want %d..%d%s)\n' % (name, v, lo, hi, unit)
            check_eq((r.returncode, r.stdout, r.stderr), (2, "", want), "--%s %r" % (name, v))


@suite.case("choice options: a value outside the choices -> exit 2 and one line naming "
            "them; each choice is taken")
def _(ctx):
    for name, bad, want, good in [
            ("ca-key", "dsa", "ec or rsa", ["ec", "rsa"]),
            ("on-placeholder-leak", "drop", "log or block", ["log", "block"]),
            ("log-level", "loud", "error, warn, info or debug",
             ["error", "warn", "info", "debug"])]:
        r = run_egressd(["check", "--" + name, bad])
        check_eq((r.returncode, r.stdout, r.stderr),
                 (2, "", 'egressd: invalid --%s "%s" (want %s)\n' % (name, bad, want)), name)
        for v in good:
            r = run_egressd(["check", "--" + name, v])
            check_eq((r.returncode, r.stdout), (0, "policy ok\n"), "--%s %s" % (name, v))


@suite.case("--version: 'egressd X.Y.Z' first, then OpenSSL, libevent, llhttp, PCRE2, jansson "
            "with versions; the OpenSSL line is the one openssl(1) reports")
def _(ctx):
    r = run_egressd(["--version"])
    check_eq(r.returncode, 0, "exit")
    lines = r.stdout.rstrip("\n").split("\n")
    ctx.note("%r" % lines)
    check(re.fullmatch(r"egressd \d+\.\d+\.\d+", lines[0]), "first line %r" % lines[0])
    pats = [r"OpenSSL \d+\.\d+\.\d+\S* .*", r"libevent \d+\.\d+\.\d+\S*",
            r"llhttp \d+\.\d+\.\d+", r"PCRE2 \d+\.\d+ .*", r"jansson \d+\.\d+(\.\d+)?"]
    check_eq(len(lines), 1 + len(pats), "number of lines")
    for p, l in zip(pats, lines[1:]):
        check(re.fullmatch(p, l), "line %r does not match %r" % (l, p))
    o = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    if o.returncode == 0:
        check_eq(lines[1].split()[:2], o.stdout.split()[:2], "OpenSSL version")
    check_eq(run_egressd(["check", "--version"]).stdout, r.stdout, "check --version")


if __name__ == "__main__":
    sys.exit(suite.run())
