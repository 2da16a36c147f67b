#!/usr/bin/env python3
"""logging_test.py -- integration tests of egressd's log: --log-level
filtering (info shows connect events, warn hides them but shows a denied
connection, debug adds upstream detail, error shows only errors), the level on
every line, process events (start, listen, reload, drain, stop), plain text on
stderr without --log and JSON only with --log -, reopening the log file on
SIGHUP after logrotate renamed it, libevent's own messages routed the same way, and no secret value in a debug log.

Everything runs on loopback: the upstream is a local HTTP server reached
through a --resolve pin (no DNS is asked; --dns points at a closed port). As
root it re-executes itself inside a fresh network namespace.
Prints TAP; exits 1 if any case failed."""

import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, EchoHTTPServer, curl,  # noqa: E402
                     maybe_reexec_in_netns, run_egressd, wait_until, server_side_conns)

NETNS = maybe_reexec_in_netns(__file__)
suite = Suite("logging")
W = {}
LEVELS = ("error", "warn", "info", "debug")


def upstream():
    if "srv" not in W:
        W["srv"] = EchoHTTPServer("127.0.0.1")
    return W["srv"]


def policy_args():
    port = upstream().port
    return ["--allow-net", "ok.test", "--resolve", "ok.test:%d:127.0.0.1" % port,
            "--allow-private", "127.0.0.0/8", "--dns", "127.0.0.1:1"]


def get(ctx, e, host, want):
    """A plain-HTTP request through egressd; checks the status."""
    url = "http://%s:%d/log-test" % (host, upstream().port)
    r = curl(ctx, "-x", "http://" + e.addr, "-o", "/dev/null", "-w", "%{http_code}", url)
    check_eq(r.stdout.decode().strip(), str(want), "status for %s" % url)


def traffic(ctx, e):
    """One allowed request (connect info, request info, close info) and one
    denied one (connect warn), then waits until both connections closed."""
    get(ctx, e, "ok.test", 200)
    get(ctx, e, "bad.test", 403)
    conns_closed(e)


def conns_closed(e):
    """Waits until egressd closed every client connection (curl has already
    closed its end): their close lines are written before the socket is."""
    wait_until(lambda: server_side_conns(e.port) <= 0, 10,
               "egressd closing the connections curl closed")


def events(e, name=None):
    return [v for v in e.log_events() if name is None or v.get("event") == name]


def json_lines(text):
    """Every non-empty line of text as JSON (an assertion names the first that is not)."""
    evs = []
    for l in text.split("\n"):
        if not l.strip():
            continue
        try:
            evs.append(json.loads(l))
        except ValueError:
            raise AssertionError("stderr line is not JSON: %r" % l)
    return evs


def start(ctx, level=None, extra=(), **kw):
    args = policy_args() + list(extra)
    if level:
        args += ["--log-level", level]
    return ctx.egressd(args, **kw)


@suite.case("default level info: allowed connect, request and close are info; "
            "a denied connect is warn; start and listen events; every line has a level")
def _(ctx):
    e = start(ctx)
    traffic(ctx, e)
    evs = e.wait_log(lambda v: v.get("event") == "connect" and v.get("host") == "bad.test",
                     what="denied connect")
    check_eq(evs[0].get("level"), "warn", "level of the denied connect")
    check_eq(evs[0].get("decision"), "deny", "decision")
    ok = [v for v in events(e, "connect") if v.get("host") == "ok.test"]
    check(ok and ok[0].get("level") == "info", "allowed connect at info: %r" % ok)
    req = events(e, "request")
    check(req and req[0].get("level") == "info" and req[0].get("status") == 200,
          "request event at info: %r" % req)
    check(any(v.get("level") == "info" for v in events(e, "close")), "no info close event")
    st = events(e, "start")
    check(st and st[0].get("level") == "info" and st[0].get("pid") == e.proc.pid,
          "start event with pid: %r" % st)
    ls = events(e, "listen")
    check(ls and ls[0].get("addr") == e.addr, "listen event naming %s: %r" % (e.addr, ls))
    check(not [v for v in e.log_events() if v.get("level") == "debug"],
          "debug lines at level info")
    for v in e.log_events():
        check(v.get("level") in LEVELS, "line without a valid level: %r" % v)


@suite.case("--log-level warn: no connect/request/close of allowed traffic, "
            "but the denied connection is logged")
def _(ctx):
    e = start(ctx, "warn")
    traffic(ctx, e)
    e.wait_log(lambda v: v.get("event") == "connect" and v.get("host") == "bad.test",
               what="denied connect")
    time.sleep(0.2)
    evs = e.log_events()
    check(not [v for v in evs if v.get("level") in ("info", "debug")],
          "info/debug lines at level warn: %r" % [v for v in evs if v.get("level") in ("info", "debug")])
    check(not [v for v in evs if v.get("host") == "ok.test"],
          "the allowed connection shows up at level warn: %r" % evs)
    check(not events(e, "request") and not events(e, "start"), "request/start lines at warn")


@suite.case("--log-level debug: resolve and upstream-connect lines for the allowed "
            "request, on top of the info events")
def _(ctx):
    e = start(ctx, "debug")
    traffic(ctx, e)
    up = e.wait_log(lambda v: v.get("event") == "upstream-connect", what="upstream-connect")[0]
    check_eq(up.get("level"), "debug", "level")
    check_eq((up.get("host"), up.get("port"), up.get("addr")),
             ("ok.test", upstream().port, "127.0.0.1"), "upstream-connect target")
    res = events(e, "resolve")
    check(res and res[0].get("level") == "debug" and res[0].get("host") == "ok.test",
          "resolve debug line: %r" % res)
    conn = [v for v in events(e, "connect") if v.get("host") == "ok.test"]
    check(conn and conn[0].get("id") == up.get("id"), "connect (info) for the same id: %r" % conn)
    check(not [v for v in events(e, "upstream-connect") if v.get("host") == "bad.test"],
          "an upstream connect attempt for the denied host")


@suite.case("--log-level debug: a refused upstream connection logs upstream-failed")
def _(ctx):
    closed = EchoHTTPServer("127.0.0.1")
    port = closed.port
    closed.shutdown()
    closed.server_close()
    e = ctx.egressd(["--allow-net", "gone.test", "--resolve", "gone.test:%d:127.0.0.1" % port,
                     "--allow-private", "127.0.0.0/8", "--dns", "127.0.0.1:1",
                     "--log-level", "debug"])
    r = curl(ctx, "-x", "http://" + e.addr, "-o", "/dev/null", "-w", "%{http_code}",
             "http://gone.test:%d/" % port)
    check_eq(r.stdout.decode().strip(), "502", "status")
    f = e.wait_log(lambda v: v.get("event") == "upstream-failed", what="upstream-failed")[0]
    check_eq(f.get("level"), "debug", "level")
    check(f.get("detail"), "upstream-failed without a detail: %r" % f)
    d = e.wait_log(lambda v: v.get("event") == "connect" and v.get("reason") == "connect-failed",
                   what="connect-failed")[0]
    check_eq(d.get("level"), "warn", "level of the refused connect")


@suite.case("--log-level error: neither traffic nor a denied connection; a refused "
            "reload is logged at error")
def _(ctx):
    pol = os.path.join(ctx.tmp, "policy.json")
    with open(pol, "w") as f:
        f.write('{"denyNet": ["x.test"]}\n')
    e = start(ctx, "error", ["-c", pol])
    traffic(ctx, e)
    check(not e.log_events(), "lines at level error: %r" % e.log_events())
    with open(pol, "w") as f:
        f.write('{"denyNet": [}\n')
    e.proc.send_signal(signal.SIGHUP)
    ev = e.wait_log(lambda v: v.get("event") == "reload", what="reload event")[0]
    check_eq((ev.get("level"), ev.get("ok")), ("error", False), "refused reload")
    check(pol in (ev.get("error") or ""), "the reload error does not name the file: %r" % ev)
    check("reload refused" in e.stderr(), "stderr lacks the refused reload: %r" % e.stderr())


@suite.case("SIGHUP after the log was renamed: later lines go to a new file at the "
            "same path, the renamed file keeps the earlier ones")
def _(ctx):
    e = start(ctx)
    get(ctx, e, "ok.test", 200)
    e.wait_log(lambda v: v.get("event") == "close", what="first close")
    rotated = e.log_path + ".1"
    os.rename(e.log_path, rotated)
    get(ctx, e, "bad.test", 403)  # written to the renamed file: not reopened yet
    conns_closed(e)  # its close line too
    e.proc.send_signal(signal.SIGHUP)
    e.wait_log(lambda v: v.get("event") == "reload", what="reload in the new file")
    check_eq(os.stat(e.log_path).st_mode & 0o777, 0o600, "mode of the new log file")
    get(ctx, e, "ok.test", 200)
    new = e.wait_log(lambda v: v.get("event") == "request", what="request in the new file")
    with open(rotated) as f:
        old = [json.loads(l) for l in f if l.strip()]
    check([v for v in old if v.get("event") == "start"], "renamed file lost the start line")
    check([v for v in old if v.get("host") == "bad.test"],
          "the line written between rename and SIGHUP is not in the renamed file")
    check(not [v for v in old if v.get("event") == "reload"], "reload line in the renamed file")
    old_ids = {v.get("id") for v in old if v.get("id")}
    check(all(v.get("id") not in old_ids for v in new), "new file repeats old connections")
    check(not [v for v in e.log_events() if v.get("event") == "start"],
          "the new file has a start line (it should only have lines after the reopen)")


@suite.case("without --log: operational messages on stderr as text; no JSON there")
def _(ctx):
    e = start(ctx, log=False)
    traffic(ctx, e)
    err = e.stderr()
    check("egressd: listening on %s" % e.addr in err, "stderr lacks the listening line: %r" % err)
    check("{" not in err, "JSON on stderr without --log: %r" % err)


@suite.case("--log -: JSON lines on stderr (start, listen, connect), no plain text "
            "duplicates; --log-level warn hides the info ones")
def _(ctx):
    e = start(ctx, extra=["--log", "-"], log=False)
    traffic(ctx, e)
    w = start(ctx, "warn", ["--log", "-"], log=False)
    traffic(ctx, w)
    time.sleep(0.2)
    for inst, want, unwanted in ((e, ("start", "listen", "connect", "close"), ()),
                                 (w, ("connect",), ("start", "listen", "close"))):
        evs = json_lines(inst.stderr())
        names = {v.get("event") for v in evs}
        check(all(n in names for n in want), "events %r, want %r" % (names, want))
        check(not any(n in names for n in unwanted), "events %r, none of %r" % (names, unwanted))


@suite.case("debug log and stderr never hold a secret value (plain request to the "
            "secret's host, where nothing is injected)")
def _(ctx):
    value = "sk-logging-test-secret-7f3a9c"
    e = start(ctx, "debug", ["--secret", "LOGTEST_KEY=ok.test",
                             "--state-dir", os.path.join(ctx.tmp, "state")],
              env={"LOGTEST_KEY": value})
    traffic(ctx, e)
    e.wait_log(lambda v: v.get("event") == "upstream-connect", what="debug lines")
    with open(e.log_path) as f:
        log = f.read()
    check(value not in log and value not in e.stderr(), "the secret value was logged")


@suite.case("libevent's own messages (a DNS server that does not answer): a JSON "
            "'libevent' line with --log -, nothing else on stderr; 'egressd: libevent:' "
            "text without --log")
def _(ctx):
    def nameserver_failed(e, as_json):
        r = curl(ctx, "-x", "http://" + e.addr, "-o", "/dev/null", "-w", "%{http_code}",
                 "http://nodns.test/")
        check_eq(r.stdout.decode().strip(), "502", "status without DNS")
        wait_until(lambda: "has failed" in e.stderr(), 20, "libevent's nameserver message")
        lines = [l for l in e.stderr().split("\n") if l.strip()]
        if not as_json:
            check(any(l.startswith("egressd: libevent: Nameserver 127.0.0.1:1 has failed")
                      for l in lines), "stderr: %r" % lines)
            check(not any(l.startswith("[") for l in lines), "raw libevent line: %r" % lines)
            return
        evs = json_lines(e.stderr())
        lib = [v for v in evs if v.get("event") == "libevent"]
        check(lib and lib[0].get("level") == "warn" and "has failed" in lib[0].get("msg", ""),
              "libevent event: %r" % evs)

    args = ["--allow-net", "nodns.test", "--dns", "127.0.0.1:1"]
    nameserver_failed(ctx.egressd(args + ["--log", "-"], log=False), True)
    nameserver_failed(ctx.egressd(args, log=False), False)


@suite.case("--log-level with an unknown level: exit 2 naming the accepted ones")
def _(ctx):
    r = run_egressd(["serve", "--log-level", "verbose"])
    check_eq(r.returncode, 2, "exit status")
    check("verbose" in r.stderr and "debug" in r.stderr, "stderr: %r" % r.stderr)


if __name__ == "__main__":
    rc = suite.run()
    if "srv" in W:
        W["srv"].shutdown()
    sys.exit(rc)
