#!/usr/bin/env python3
"""ops_test.py -- integration tests of egressd's operational behaviour
(SPEC "Reliability"): SIGHUP policy reload (good, refused, connections keep
the policy and secrets they started with), SIGTERM/SIGINT drain (active
requests finish, idle connections close, second signal stops at once),
--max-connections, --header-timeout (slowloris) and --idle-timeout,
descriptor exhaustion (EMFILE under prlimit) and a 1,000-connection mixed run
of the ASan build ending in SIGTERM with no sanitizer report.

Prints TAP; exits 1 if any case failed. As root it re-executes itself inside a
fresh network namespace (unshare --net): nothing can leave the machine, and
egressd always gets --dns (the suite's DNS server on loopback).

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX,
EGRESSD_KEEP_TMP=1, EGRESSD_NO_NETNS=1.
"""

import concurrent.futures
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, Skip, check, check_eq, make_pki, EchoHTTPServer,  # noqa: E402
                     TcpServer, TCPEchoServer, DNSServer, Egressd, Reader, read_response,
                     read_head, proxy_connect, connect_proxy, http_request, tls_over,
                     client_ssl_context, run_egressd, maybe_reexec_in_netns,
                     wait_until, server_side_conns, accept_queue, free_port,
                     EGRESSD_BIN, IO_TIMEOUT, SANITIZER_MARKERS)

NETNS = maybe_reexec_in_netns(__file__)

suite = Suite("ops")
W = {}  # the world: certificates, upstreams, DNS; filled by setup()

LO = ["--allow-private", "127.0.0.0/8"]
REFUSED_LINE = "SIGHUP: reload refused, keeping the current policy"
_RND = uuid.uuid4().hex
OLD_VALUE = "sk-OLD-" + _RND[:20]
NEW_VALUE = "sk-NEW-" + _RND[12:32]
LEAK_VALUE = "sk-LEAK-" + _RND[4:24]


def is_asan():
    try:
        with open(EGRESSD_BIN, "rb") as f:
            data = f.read()
        return b"__asan_init" in data
    except OSError:
        return False


# --------------------------------------------------------------------------
# a raw TCP upstream that trickles


class DripServer(TcpServer):
    """Raw TCP on 127.0.0.1. Per connection, line by line:
      'DRIP N S\\n'  -> N bytes b'x', one every S seconds (then the next line)
      'SINK\\n' then '....END\\n' -> 'got <number of dots>\\n'
      'GET /drip?n=N&every=S HTTP/1.1' + head -> 200, Content-Length N, one
                    byte every S seconds (keep-alive: then the next request)
      'GET /quick ...' -> 200 'ok' at once."""
    backlog = 128
    conn_timeout = 30

    def serve(self, c):
        f = c.makefile("rb")
        while True:
            line = f.readline(65536)
            if not line:
                break
            if line.startswith(b"DRIP "):
                _, n, every = line.split()
                for _ in range(int(n)):
                    time.sleep(float(every))
                    c.sendall(b"x")
            elif line.startswith(b"SINK"):
                data = f.readline(1 << 20)
                c.sendall(b"got %d\n" % data.count(b"."))
            elif line.startswith(b"GET "):
                u = urllib.parse.urlsplit(line.split()[1].decode())
                while f.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                q = urllib.parse.parse_qs(u.query)
                if u.path == "/drip":
                    n = int(q.get("n", ["8"])[0])
                    every = float(q.get("every", ["0.25"])[0])
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                              b"Content-Length: %d\r\n\r\n" % n)
                    for _ in range(n):
                        time.sleep(every)
                        c.sendall(b"x")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                break


# --------------------------------------------------------------------------
# setup and helpers


NAMES = ["a.test", "b.test", "c.test", "cli.test", "allowed.test", "other.test",
         "api.test", "denied.test"]


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"), extra_sans=["DNS:api.test"])
    tls = (W["pki"]["cert"], W["pki"]["key"])
    W["tls_srv"] = EchoHTTPServer("127.0.0.1", tls=tls)
    W["plain_srv"] = EchoHTTPServer("127.0.0.1")
    W["echo_srv"] = TCPEchoServer("127.0.0.1")
    W["drip_srv"] = DripServer("127.0.0.1")
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in NAMES})
    W["ports"] = {"tls": W["tls_srv"].port, "plain": W["plain_srv"].port,
                  "echo": W["echo_srv"].port, "drip": W["drip_srv"].port}
    W["hello"] = {}


def hp(host, key):
    return "%s:%d" % (host, W["ports"][key])


def start(ctx, args, **kw):
    """egressd with the suite's DNS server and loopback allowed."""
    return ctx.egressd(list(args) + LO,
                       dns="127.0.0.1:%d" % W["dns"].port, **kw)


def write_policy(ctx, obj, name="policy.json"):
    """Writes the policy file atomically (rename); obj: dict or raw str."""
    path = os.path.join(ctx.tmp, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj, indent=1))
    os.replace(tmp, path)
    return path


def sanitizer_problems(e):
    err = e.stderr()
    for m in SANITIZER_MARKERS:
        if m in err:
            i = err.index(m)
            return ["sanitizer report in egressd stderr:\n" + err[max(0, i - 200):i + 3000]]
    return []


def wait_exit(e, timeout):
    """Waits for egressd to exit on its own (after a signal the case sent).
    Returns (status or None if still running, seconds waited). Once it exited,
    the harness is told so (and only sanitizer findings are reported)."""
    t0 = time.time()
    try:
        rc = e.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.time() - t0
    dt = time.time() - t0
    e.stopped = True
    e.exit_problems = sanitizer_problems(e)
    return rc, dt


def signal_egressd(e, sig):
    check(e.proc.poll() is None, "egressd is not running (status %s) before %s" % (
        e.proc.returncode, signal.Signals(sig).name))
    e.proc.send_signal(sig)


def reload_events(e):
    return [v for v in e.log_events() if v.get("event") == "reload"]


def sighup(e, timeout=5.0):
    """SIGHUP, then waits for the next reload event; returns it."""
    n = len(reload_events(e))
    signal_egressd(e, signal.SIGHUP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        evs = reload_events(e)
        if len(evs) > n:
            return evs[n]
        time.sleep(0.03)
    raise AssertionError("no reload event in the audit log within %.0f s of SIGHUP; log tail:\n%s"
                         % (timeout, "\n".join(e.log_lines()[-8:])))


def connect_status(ctx, e, target):
    """CONNECT target; returns (status, reason header, sock, Reader)."""
    s, r, resp = proxy_connect(ctx, e.port, target)
    return resp.status, resp.header("X-Egressd-Reason"), s, r


def expect_connect(ctx, e, target, want, what=""):
    """want: 200 or a reason string (403 refusal). Closes the connection."""
    st, reason, s, _ = connect_status(ctx, e, target)
    s.close()
    if want == 200:
        check_eq(st, 200, "CONNECT %s status%s (reason %r)" % (target, what, reason))
    else:
        check_eq((st, reason), (403, want), "CONNECT %s status, reason%s" % (target, what))


def echo_roundtrip(sock, reader, payload):
    sock.sendall(payload)
    got = reader.exactly(len(payload))
    check_eq(got, payload, "echo through the tunnel")


READERS = {}  # id(socket) -> its Reader, for keep-alive connections


def plain_get(ctx, e, host="allowed.test", path="/x", sock=None, keep=True):
    """absolute-form GET to the plain upstream; returns (sock, Reader, Response)."""
    s = sock or connect_proxy(ctx, e.port)
    hdrs = ["Host: " + hp(host, "plain")]
    if not keep:
        hdrs.append("Connection: close")
    s.sendall(http_request("GET", "http://%s%s" % (hp(host, "plain"), path), hdrs))
    r = READERS.get(id(s))
    if r is None or r.sock is not s:
        r = READERS[id(s)] = Reader(s)
    return s, r, read_response(r)


def client_hello(sni):
    """The bytes of a real TLS ClientHello for sni (Python's defaults)."""
    if sni in W["hello"]:
        return W["hello"][sni]
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = c.wrap_bio(inc, out, server_hostname=sni)
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    W["hello"][sni] = out.read()
    return W["hello"][sni]


def drip(sock, data, every, limit):
    """Sends data one byte every `every` seconds (nothing for b"") while
    watching for the peer to close. Returns (seconds until closed or None if
    still open after `limit` s, bytes received, bytes sent)."""
    t0 = time.time()
    got = b""
    i = 0
    next_send = t0
    while True:
        now = time.time()
        if now - t0 >= limit:
            return None, got, i
        if i < len(data) and now >= next_send:
            try:
                sock.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.time() - t0, got, i
            except ssl.SSLError:
                return time.time() - t0, got, i
            i += 1
            next_send += every
        until = min(next_send if i < len(data) else t0 + limit, t0 + limit)
        r, _, _ = select.select([sock], [], [], max(0.0, until - time.time()))
        if r:
            sock.settimeout(0.2)
            try:
                d = sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                return time.time() - t0, got, i
            if not d:
                return time.time() - t0, got, i
            got += d


def wait_closed(sock, limit):
    """Seconds until the peer closes sock (EOF or reset), or None. Data read
    meanwhile is returned too."""
    dt, got, _ = drip(sock, b"", 1, limit)
    return dt, got


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def placeholder(ctx, args, name):
    r = run_egressd(["env"] + list(args))
    check_eq(r.returncode, 0, "egressd env status (stderr %r)" % r.stderr[-300:])
    for l in r.stdout.splitlines():
        k, sep, v = l.partition("=")
        if sep and k == name and re.fullmatch(r"egressd-ph-[0-9a-f]{32}", v):
            return v
    raise AssertionError("egressd env printed no placeholder for %s:\n%s" % (name, r.stdout))


def hdr(info, name):
    for k, v in info["headers"]:
        if k.lower() == name.lower():
            return v
    return None


def seen_with(srv, tok):
    hits = [i for i in list(srv.seen) if tok in i.get("path", "")]
    check(len(hits) == 1, "upstream received %d requests with token %s, want 1" % (len(hits), tok))
    return hits[0]


def intercepted(ctx, e, ca, host="api.test"):
    """CONNECT host:{tls} + TLS verified against egressd's CA; (ssl sock, Reader)."""
    s, r, resp = proxy_connect(ctx, e.port, hp(host, "tls"))
    check_eq(resp.status, 200, "CONNECT %s status (%r)" % (host, resp.raw_head[:200]))
    t = client_ssl_context(ca, check_hostname=True).wrap_socket(s, server_hostname=host)
    t.settimeout(IO_TIMEOUT)
    ctx.sock(t)
    return t, Reader(t)


def inject_get(t, r, ph, tok, host="api.test"):
    t.sendall(http_request("GET", "/inj/" + tok, ["Host: " + hp(host, "tls"), "X-Key: " + ph]))
    resp = read_response(r)
    check_eq(resp.status, 200, "intercepted GET status (%r)" % resp)
    return resp


# --------------------------------------------------------------------------
# SIGHUP reload


@suite.case("reload: a valid new policy applies to new connections at once; "
            "command-line patterns stay; audit {event:reload, ok:true}")
def _(ctx):
    pol = write_policy(ctx, {"allowNet": ["a.test"]})
    e = start(ctx, ["-c", pol, "--allow-net", "cli.test"])
    expect_connect(ctx, e, hp("a.test", "echo"), 200, " before the reload")
    expect_connect(ctx, e, hp("b.test", "echo"), "not-allowed", " before the reload")
    expect_connect(ctx, e, hp("cli.test", "echo"), 200, " before the reload")
    write_policy(ctx, {"allowNet": ["b.test"]})
    ev = sighup(e)
    ctx.note("reload event: %r" % ev)
    check(ev.get("ok") is True, "reload event %r, want ok:true" % ev)
    check(REFUSED_LINE not in e.stderr(), "stderr says the good reload was refused:\n%s"
          % e.stderr()[-800:])
    expect_connect(ctx, e, hp("b.test", "echo"), 200, " after the reload")
    expect_connect(ctx, e, hp("a.test", "echo"), "not-allowed", " after the reload")
    expect_connect(ctx, e, hp("cli.test", "echo"), 200, " after the reload (--allow-net)")
    # and once more: reloads are repeatable
    write_policy(ctx, {"allowNet": ["c.test"], "denyNet": ["cli.test"]})
    ev = sighup(e)
    check(ev.get("ok") is True, "second reload event %r, want ok:true" % ev)
    expect_connect(ctx, e, hp("c.test", "echo"), 200, " after the second reload")
    expect_connect(ctx, e, hp("b.test", "echo"), "not-allowed", " after the second reload")
    expect_connect(ctx, e, hp("cli.test", "echo"), "denied", " after the second reload")


# bad reloads, as data: (description, starting policy, with interception,
# the new file content (str; None = file removed))
BASE = {"allowNet": ["a.test"]}
BASE_SECRETS = {"allowNet": ["a.test", "api.test"],
                "secrets": {"OK_KEY": {"hosts": ["api.test"], "value": "v-ok"}}}
BAD_RELOADS = [
    ("not JSON", BASE, False, '{"allowNet": ["a.test", "b.test"'),
    ("unknown key", BASE, False, '{"allowNet": ["a.test", "b.test"], "allowNets": []}'),
    ("duplicate key", BASE, False, '{"allowNet": ["b.test"], "allowNet": ["a.test", "b.test"]}'),
    ("wrong type", BASE, False, '{"allowNet": "b.test"}'),
    ("invalid pattern", BASE, False, '{"allowNet": ["a.test", "b.test", "*.*bad"]}'),
    ("file removed", BASE, False, None),
    ("secrets added to an egressd started without secrets or intercept",
     BASE, False, json.dumps({"allowNet": ["a.test", "b.test"],
                              "secrets": {"NEW_KEY": {"hosts": ["b.test"], "value": "v"}}})),
    ("intercept added to an egressd started without secrets or intercept",
     BASE, False, json.dumps({"allowNet": ["a.test", "b.test"], "intercept": ["b.test"]})),
    ("secret with both value and valueFromEnv", BASE_SECRETS, True,
     json.dumps({"allowNet": ["a.test", "b.test", "api.test"],
                 "secrets": {"OK_KEY": {"hosts": ["api.test"], "value": "v",
                                        "valueFromEnv": "HOME"}}})),
    ("secret whose valueFromFile does not exist", BASE_SECRETS, True,
     json.dumps({"allowNet": ["a.test", "b.test", "api.test"],
                 "secrets": {"OK_KEY": {"hosts": ["api.test"],
                                        "valueFromFile": "/nonexistent/egressd-ops-secret"}}})),
    ("secret whose valueFromEnv is not set in egressd's environment", BASE_SECRETS, True,
     json.dumps({"allowNet": ["a.test", "b.test", "api.test"],
                 "secrets": {"OK_KEY": {"hosts": ["api.test"],
                                        "valueFromEnv": "EGRESSD_OPS_UNSET_VAR"}}})),
]


def bad_reload_case(ctx, base, interception, content, need_reason):
    pol = write_policy(ctx, base)
    args = ["-c", pol]
    if interception:
        args += ["--state-dir", os.path.join(ctx.tmp, "state"), "--upstream-ca", W["pki"]["ca"]]
    e = start(ctx, args)
    expect_connect(ctx, e, hp("a.test", "echo"), 200, " before the reload")
    expect_connect(ctx, e, hp("b.test", "echo"), "not-allowed", " before the reload")
    if content is None:
        os.unlink(pol)
    else:
        write_policy(ctx, content)
    ev = sighup(e)
    ctx.note("reload event: %r" % ev)
    check(ev.get("ok") is False, "reload event %r, want ok:false" % ev)
    check(isinstance(ev.get("error"), str) and ev["error"].strip(),
          "reload event without a non-empty error: %r" % ev)
    if need_reason:
        check(re.search(r"secret|intercept", ev["error"], re.I),
              "reload error does not say why (secrets/intercept): %r" % ev["error"])
    deadline = time.time() + 3
    while REFUSED_LINE not in e.stderr() and time.time() < deadline:
        time.sleep(0.03)
    err = e.stderr()
    check(REFUSED_LINE in err, "stderr lacks %r:\n%s" % (REFUSED_LINE, err[-1200:]))
    check(e.proc.poll() is None, "egressd exited (status %s) after a refused reload" %
          e.proc.returncode)
    expect_connect(ctx, e, hp("a.test", "echo"), 200, " after the refused reload")
    expect_connect(ctx, e, hp("b.test", "echo"), "not-allowed", " after the refused reload")
    # a refused reload does not wedge reloading: a good file now applies
    good = dict(base)
    good["allowNet"] = list(base["allowNet"]) + ["b.test"]
    write_policy(ctx, good)
    ev = sighup(e)
    check(ev.get("ok") is True, "reload of a good file after a refused one: %r" % ev)
    expect_connect(ctx, e, hp("b.test", "echo"), 200, " after the good reload")


for _desc, _base, _icpt, _content in BAD_RELOADS:
    suite.add("reload refused (%s): old policy stays, stderr and audit ok:false say so" % _desc,
              bad_reload_case, _base, _icpt, _content,
              "added to an egressd started without" in _desc)


@suite.case("reload: a tunnel opened before a reload that removes its host keeps working")
def _(ctx):
    pol = write_policy(ctx, {"allowNet": ["allowed.test", "other.test"]})
    e = start(ctx, ["-c", pol])
    # a raw tunnel in use, and a tunnel whose TLS starts only after the reload
    st, reason, s1, r1 = connect_status(ctx, e, hp("allowed.test", "echo"))
    check_eq(st, 200, "CONNECT allowed.test (echo) before the reload (%r)" % reason)
    echo_roundtrip(s1, r1, b"before the reload\n")
    st, reason, s2, r2 = connect_status(ctx, e, hp("allowed.test", "tls"))
    check_eq(st, 200, "CONNECT allowed.test (tls) before the reload (%r)" % reason)
    write_policy(ctx, {"allowNet": ["other.test"]})
    ev = sighup(e)
    check(ev.get("ok") is True, "reload event %r, want ok:true" % ev)
    echo_roundtrip(s1, r1, b"after the reload, same tunnel\n")
    t = tls_over(ctx, s2, "allowed.test", W["pki"]["ca"], check_hostname=True)
    t.sendall(http_request("GET", "/after-reload", ["Host: allowed.test", "Connection: close"]))
    resp = read_response(Reader(t))
    check_eq(resp.status, 200, "GET through the TLS tunnel opened before the reload")
    echo_roundtrip(s1, r1, b"and still\n")
    expect_connect(ctx, e, hp("allowed.test", "echo"), "not-allowed", " (new) after the reload")
    expect_connect(ctx, e, hp("other.test", "echo"), 200, " (new) after the reload")


@suite.case("reload: an absolute-form keep-alive connection opened before the reload keeps "
            "its policy; a new connection gets the new one")
def _(ctx):
    pol = write_policy(ctx, {"allowNet": ["allowed.test", "other.test"]})
    e = start(ctx, ["-c", pol])
    s, r, resp = plain_get(ctx, e, "allowed.test", "/ka1")
    check_eq(resp.status, 200, "GET allowed.test before the reload")
    write_policy(ctx, {"allowNet": ["other.test"]})
    ev = sighup(e)
    check(ev.get("ok") is True, "reload event %r, want ok:true" % ev)
    _, _, resp = plain_get(ctx, e, "allowed.test", "/ka2", sock=s)
    check_eq(resp.status, 200, "GET allowed.test on the old keep-alive connection after the "
             "reload (X-Egressd-Reason %r)" % resp.header("X-Egressd-Reason"))
    _, _, resp = plain_get(ctx, e, "allowed.test", "/new")
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "not-allowed"),
             "GET allowed.test on a new connection after the reload")
    _, _, resp = plain_get(ctx, e, "other.test", "/new2")
    check_eq(resp.status, 200, "GET other.test on a new connection after the reload")


@suite.case("reload: a secret's new value (valueFromFile changed) is used by new intercepted "
            "connections; an old keep-alive intercepted connection still injects the old value")
def _(ctx):
    vf = os.path.join(ctx.tmp, "f_key.secret")
    with open(vf, "w") as f:
        f.write(OLD_VALUE + "\n")
    os.chmod(vf, 0o600)
    policy = {"allowNet": ["api.test"],
              "secrets": {"F_KEY": {"hosts": ["api.test"], "valueFromFile": vf}}}
    pol = write_policy(ctx, policy)
    state = os.path.join(ctx.tmp, "state")
    args = ["-c", pol, "--state-dir", state, "--upstream-ca", W["pki"]["ca"]]
    e = start(ctx, args)
    ca = os.path.join(state, "ca.crt")
    ph = placeholder(ctx, args + LO, "F_KEY")
    srv = W["tls_srv"]

    t1, r1 = intercepted(ctx, e, ca)
    tok = uuid.uuid4().hex
    inject_get(t1, r1, ph, tok + "-old1")
    check_eq(hdr(seen_with(srv, tok + "-old1"), "X-Key"), OLD_VALUE,
             "upstream X-Key before the reload")

    with open(vf + ".tmp", "w") as f:
        f.write(NEW_VALUE + "\n")
    os.chmod(vf + ".tmp", 0o600)
    os.replace(vf + ".tmp", vf)
    ev = sighup(e)
    check(ev.get("ok") is True, "reload event %r, want ok:true" % ev)
    check_eq(placeholder(ctx, args + LO, "F_KEY"), ph, "placeholder after the value changed")

    t2, r2 = intercepted(ctx, e, ca)
    inject_get(t2, r2, ph, tok + "-new")
    check_eq(hdr(seen_with(srv, tok + "-new"), "X-Key"), NEW_VALUE,
             "upstream X-Key on a new intercepted connection after the reload")
    inject_get(t1, r1, ph, tok + "-old2")
    check_eq(hdr(seen_with(srv, tok + "-old2"), "X-Key"), OLD_VALUE,
             "upstream X-Key on the keep-alive connection opened before the reload")
    # neither value is ever shown in the log or on stderr
    e.stop()
    for what, data in (("audit log", "\n".join(e.log_lines())), ("stderr", e.stderr())):
        for v in (OLD_VALUE, NEW_VALUE):
            check(v not in data, "a real secret value appears in egressd's %s" % what)


# --------------------------------------------------------------------------
# SIGTERM / SIGINT drain


def drip_url(n, every):
    return "http://%s/drip?n=%d&every=%s" % (hp("allowed.test", "drip"), n, every)


def start_download(ctx, e, n, every):
    """absolute-form GET of a trickling body; returns (sock, Reader) after the
    head and the first body byte arrived."""
    s = connect_proxy(ctx, e.port)
    s.sendall(http_request("GET", drip_url(n, every), ["Host: " + hp("allowed.test", "drip")]))
    r = Reader(s)
    status, _, headers, head = read_head(r)
    check_eq(status, 200, "download status (%r)" % head[:200])
    r.exactly(1)
    return s, r


def drain_case(ctx, sig):
    """Every expectation is checked (a failure does not hide the next one)."""
    drain_s = 3
    name = signal.Signals(sig).name
    e = start(ctx, ["--allow-net", "allowed.test", "--drain-timeout", str(drain_s)])
    n, every = 8, 0.25  # a 2 s body
    idle, _, resp = plain_get(ctx, e, "allowed.test", "/idle-keepalive")
    check_eq(resp.status, 200, "keep-alive GET before the signal")
    dl, dr = start_download(ctx, e, n, every)
    fails = []
    t0 = time.time()
    signal_egressd(e, sig)
    # the idle keep-alive connection is closed quickly
    dt, got = wait_closed(idle, 2.0)
    if dt is None:
        fails.append("idle keep-alive connection still open 2 s after %s" % name)
    else:
        ctx.note("idle keep-alive closed %.2fs after the signal (read %r)" % (time.time() - t0,
                                                                             got[:100]))
    # new connections are refused: the listener is closed "at once" (polled, so a
    # loaded machine's scheduling is not mistaken for a listener left open)
    while True:
        t_new = time.time() - t0
        try:
            s = socket.create_connection(("127.0.0.1", e.port), timeout=1)
        except (ConnectionRefusedError, ConnectionResetError):
            ctx.note("new connection %.2fs after the signal: refused" % t_new)
            break
        ctx.sock(s)
        if t_new < 1.5:
            s.close()
            time.sleep(0.05)
            continue
        s.sendall(http_request("GET", "http://%s/late" % hp("allowed.test", "plain"),
                               ["Host: " + hp("allowed.test", "plain"), "Connection: close"]))
        s.settimeout(0.5)
        try:
            data = s.recv(4096)
        except socket.timeout:
            data = "(nothing within 0.5 s)"
        except OSError as ex:
            data = repr(ex)
        fails.append("a new connection %.2f s after %s was accepted (connect() succeeded; a GET "
                     "on it got %r), want it refused" % (t_new, name, data))
        break
    # the active download finishes
    dl.settimeout(drain_s + 2)
    try:
        body = dr.exactly(n - 1)
        ctx.note("download finished %.2fs after the signal (%d bytes)" % (
            time.time() - t0, len(body) + 1))
    except (OSError, ConnectionError) as ex:
        fails.append("the active download did not finish: %r after %.2f s (%d of %d body bytes)"
                     % (ex, time.time() - t0, 1 + len(dr.buf), n))
    rc, _ = wait_exit(e, max(0.1, drain_s + 1.3 - (time.time() - t0)))
    t_exit = time.time() - t0
    if rc is None:
        fails.append("egressd still running %.1f s after %s (drain-timeout %d)" % (
            t_exit, name, drain_s))
    else:
        ctx.note("egressd exited %.2fs after the signal, status %s" % (t_exit, rc))
        if rc != 0:
            fails.append("egressd exit status %s after %s, want 0" % (rc, name))
        if t_exit > drain_s + 1 + 0.3:
            fails.append("egressd exited %.2f s after %s" % (t_exit, name))
    check(not fails, "\n".join(fails))


suite.add("drain on SIGTERM: listener closed, idle keep-alive closed, active slow download "
          "finishes, exit 0 within drain-timeout + 1 s", drain_case, signal.SIGTERM)
suite.add("drain on SIGINT: the same as SIGTERM", drain_case, signal.SIGINT)


@suite.case("drain: a download longer than --drain-timeout is cut; egressd exits 0 within "
            "drain-timeout + 1 s")
def _(ctx):
    e = start(ctx, ["--allow-net", "allowed.test", "--drain-timeout", "1"])
    dl, dr = start_download(ctx, e, 40, 0.25)  # 10 s
    t0 = time.time()
    signal_egressd(e, signal.SIGTERM)
    rc, _ = wait_exit(e, 2.5)
    t_exit = time.time() - t0
    check(rc is not None, "egressd still running %.1f s after SIGTERM (drain-timeout 1)" % t_exit)
    check_eq(rc, 0, "egressd exit status")
    check(t_exit <= 2.0 + 0.3, "egressd exited %.2f s after SIGTERM (drain-timeout 1)" % t_exit)
    dt, got = wait_closed(dl, 2)
    check(dt is not None, "the download's connection still open after egressd exited")
    check(len(got) + 1 < 40, "download completed (%d bytes) in spite of the cut" % (len(got) + 1))


@suite.case("drain: a second signal stops at once")
def _(ctx):
    e = start(ctx, ["--allow-net", "allowed.test", "--drain-timeout", "20"])
    dl, dr = start_download(ctx, e, 60, 0.25)  # 15 s
    signal_egressd(e, signal.SIGTERM)
    rc, _ = wait_exit(e, 0.7)
    check(rc is None, "egressd exited (status %s) 0.7 s after the first SIGTERM with a download "
          "in progress and --drain-timeout 20" % rc)
    t0 = time.time()
    signal_egressd(e, signal.SIGINT)
    # "at once": well before the download (15 s) or --drain-timeout (20 s) would end
    # it; the bound leaves room for LeakSanitizer's exit scan on a loaded machine
    rc, _ = wait_exit(e, 4)
    t_exit = time.time() - t0
    check(rc is not None, "egressd still running 4 s after the second signal")
    check(t_exit <= 2.0, "egressd took %.2f s to stop after the second signal" % t_exit)
    check_eq(rc, 0, "egressd exit status after the second signal")
    dt, _ = wait_closed(dl, 2)
    check(dt is not None, "the download's connection still open after egressd stopped")


# --------------------------------------------------------------------------
# --max-connections


def expect_503(ctx, e, what):
    s = connect_proxy(ctx, e.port)
    s.settimeout(1.5)
    r = Reader(s)
    sent = False
    try:
        r._fill()
    except socket.timeout:
        # nothing unprompted: ask, as a real client would
        s.settimeout(IO_TIMEOUT)
        s.sendall(http_request("GET", "http://%s/over" % hp("allowed.test", "plain"),
                               ["Host: " + hp("allowed.test", "plain")]))
        sent = True
    s.settimeout(IO_TIMEOUT)
    resp = read_response(r)
    ctx.note("%s: %s%r" % (what, "(after sending a GET) " if sent else "", resp))
    check_eq((resp.status, resp.reason, resp.header("X-Egressd-Reason")),
             (503, "Service Unavailable", "too-many-connections"),
             "%s: status, reason phrase, X-Egressd-Reason" % what)
    dt, got = wait_closed(s, 3)
    check(dt is not None, "%s: connection still open 3 s after the 503" % what)


@suite.case("--max-connections 4: a 5th connection gets 503 too-many-connections and is closed; "
            "the 4 open ones are unharmed; a freed slot is usable again")
def _(ctx):
    e = start(ctx, ["--allow-net", "allowed.test", "--max-connections", "4"])
    k1, _, resp = plain_get(ctx, e, "allowed.test", "/k1")
    check_eq(resp.status, 200, "keep-alive 1")
    k2, _, resp = plain_get(ctx, e, "allowed.test", "/k2")
    check_eq(resp.status, 200, "keep-alive 2")
    st, reason, t1, tr1 = connect_status(ctx, e, hp("allowed.test", "echo"))
    check_eq(st, 200, "tunnel (%r)" % reason)
    echo_roundtrip(t1, tr1, b"tunnel up\n")
    i1 = connect_proxy(ctx, e.port)  # open, nothing sent
    # egressd has taken it (and counted it) before the 5th connects
    wait_until(lambda: accept_queue(e.port) == 0, 10, "egressd accepting the 4th connection")
    expect_503(ctx, e, "5th connection")
    expect_503(ctx, e, "6th connection")
    _, _, resp = plain_get(ctx, e, sock=k1, path="/k1b")
    check_eq(resp.status, 200, "keep-alive 1 after the refusals")
    echo_roundtrip(t1, tr1, b"tunnel still up\n")
    _, _, resp = plain_get(ctx, e, sock=k2, path="/k2b")
    check_eq(resp.status, 200, "keep-alive 2 after the refusals")
    i1.sendall(http_request("GET", "http://%s/i1" % hp("allowed.test", "plain"),
                            ["Host: " + hp("allowed.test", "plain"), "Connection: close"]))
    resp = read_response(Reader(i1))
    check_eq(resp.status, 200, "the idle 4th connection's first request")
    i1.close()
    # egressd closed it (Connection: close): k1, k2 and the tunnel are all it holds
    wait_until(lambda: server_side_conns(e.port) <= 3, 10, "egressd closing the 4th connection")
    _, _, resp = plain_get(ctx, e, "allowed.test", "/after-free", keep=False)
    check_eq(resp.status, 200, "a new connection after one was closed (X-Egressd-Reason %r)"
             % resp.header("X-Egressd-Reason"))


# --------------------------------------------------------------------------
# --header-timeout (slowloris) and --idle-timeout

HEAD_S = 1
SLOW = 0.5  # seconds per byte


def ht_plain(ctx, e):
    s = connect_proxy(ctx, e.port)
    return s, http_request("GET", "http://%s/slowloris" % hp("allowed.test", "plain"),
                           ["Host: " + hp("allowed.test", "plain"), "User-Agent: slowloris",
                            "Accept: */*"])


def ht_silent(ctx, e):
    return connect_proxy(ctx, e.port), b""


def ht_connect_head(ctx, e):
    s = connect_proxy(ctx, e.port)
    t = hp("allowed.test", "tls")
    return s, ("CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: slowloris\r\n\r\n" % (t, t)).encode()


def ht_keepalive(ctx, e):
    s, r, resp = plain_get(ctx, e, "allowed.test", "/first")
    check_eq(resp.status, 200, "first request on the keep-alive connection")
    return s, http_request("GET", "http://%s/second" % hp("allowed.test", "plain"),
                           ["Host: " + hp("allowed.test", "plain"), "User-Agent: slowloris"])


def ht_tunnel_silent(ctx, e):
    st, reason, s, _ = connect_status(ctx, e, hp("allowed.test", "tls"))
    check_eq(st, 200, "CONNECT status (%r)" % reason)
    return s, b""


def ht_tunnel_hello(ctx, e):
    st, reason, s, _ = connect_status(ctx, e, hp("allowed.test", "tls"))
    check_eq(st, 200, "CONNECT status (%r)" % reason)
    return s, client_hello("allowed.test")


def ht_intercept_hello(ctx, e):
    st, reason, s, _ = connect_status(ctx, e, hp("api.test", "tls"))
    check_eq(st, 200, "CONNECT api.test status (%r)" % reason)
    return s, client_hello("api.test")


def ht_intercept_head(ctx, e):
    t, _ = intercepted(ctx, e, os.path.join(e.state, "ca.crt"))
    return t, http_request("GET", "/slowloris", ["Host: " + hp("api.test", "tls"),
                                                 "User-Agent: slowloris"])


# (description, setup(ctx, e) -> (socket, bytes to drip), intercept)
HEADER_TIMEOUTS = [
    ("silent client (nothing sent)", ht_silent, False),
    ("absolute-form request head, 1 byte per 0.5 s", ht_plain, False),
    ("CONNECT request head, 1 byte per 0.5 s", ht_connect_head, False),
    ("keep-alive: second request head, 1 byte per 0.5 s", ht_keepalive, False),
    ("CONNECT tunnel, no ClientHello", ht_tunnel_silent, False),
    ("CONNECT tunnel, ClientHello 1 byte per 0.5 s", ht_tunnel_hello, False),
    ("intercepted CONNECT, TLS ClientHello 1 byte per 0.5 s", ht_intercept_hello, True),
    ("intercepted connection, request head inside TLS 1 byte per 0.5 s", ht_intercept_head, True),
]


def header_timeout_case(ctx, setup_fn, intercept):
    args = ["--allow-net", "allowed.test,api.test", "--header-timeout", str(HEAD_S)]
    state = os.path.join(ctx.tmp, "state")
    if intercept:
        args += ["--intercept", "api.test", "--state-dir", state, "--upstream-ca", W["pki"]["ca"]]
    e = start(ctx, args)
    e.state = state
    s, data = setup_fn(ctx, e)
    limit = HEAD_S + 3  # the claim is that it closes (not how soon): room for a loaded machine
    dt, got, nsent = drip(s, data, SLOW, limit)
    ctx.note("sent %d of %d bytes; received %r" % (nsent, len(data), got[:200]))
    check(dt is not None, "connection still open %.1f s into the phase (--header-timeout %d; "
          "%d of %d bytes sent %s s apart, received %r)" % (
              limit, HEAD_S, nsent, len(data), SLOW, got[:200]))
    check(dt >= HEAD_S - 0.3, "closed after %.2f s, before --header-timeout %d (received %r)" % (
        dt, HEAD_S, got[:200]))
    ctx.note("closed after %.2f s" % dt)


for _desc, _fn, _icpt in HEADER_TIMEOUTS:
    suite.add("--header-timeout %d closes: %s" % (HEAD_S, _desc), header_timeout_case, _fn, _icpt)


IDLE_S = 1


def idle_egressd(ctx):
    return start(ctx, ["--allow-net", "allowed.test", "--idle-timeout", str(IDLE_S),
                       "--header-timeout", "30"])


@suite.case("--idle-timeout 1: a CONNECT tunnel quiet both ways is closed")
def _(ctx):
    e = idle_egressd(ctx)
    st, reason, s, r = connect_status(ctx, e, hp("allowed.test", "echo"))
    check_eq(st, 200, "CONNECT status (%r)" % reason)
    echo_roundtrip(s, r, b"hello, then silence\n")
    dt, got = wait_closed(s, IDLE_S + 2.5)
    check(dt is not None, "quiet tunnel still open %.1f s later (--idle-timeout %d)" % (
        IDLE_S + 2.5, IDLE_S))
    check(dt >= IDLE_S - 0.3, "quiet tunnel closed after %.2f s, before --idle-timeout" % dt)


@suite.case("--idle-timeout 1 (--header-timeout 30): an intercepted CONNECT whose client never "
            "starts its TLS handshake is closed, logged as client-tls-failed: handshake aborted")
def _(ctx):
    state = os.path.join(ctx.tmp, "state")
    e = start(ctx, ["--allow-net", "api.test", "--intercept", "api.test", "--state-dir", state,
                    "--upstream-ca", W["pki"]["ca"], "--idle-timeout", str(IDLE_S),
                    "--header-timeout", "30"])
    st, reason, s, _ = connect_status(ctx, e, hp("api.test", "tls"))
    check_eq(st, 200, "CONNECT api.test status (%r)" % reason)
    dt, got = wait_closed(s, IDLE_S + 2.5)
    check(dt is not None, "quiet handshake still open %.1f s later (--idle-timeout %d)" % (
        IDLE_S + 2.5, IDLE_S))
    check(dt >= IDLE_S - 0.3, "closed after %.2f s, before --idle-timeout" % dt)
    ev = e.wait_log(lambda v: v.get("event") == "refuse" and v.get("reason") == "client-tls-failed",
                    what="a client-tls-failed refuse event")
    check_eq(ev[0].get("detail"), "handshake aborted", "its detail")


@suite.case("--idle-timeout 1: a CONNECT tunnel download moving (1 byte / 0.4 s for 3.2 s) "
            "is not closed; closed once quiet")
def _(ctx):
    e = idle_egressd(ctx)
    st, reason, s, r = connect_status(ctx, e, hp("allowed.test", "drip"))
    check_eq(st, 200, "CONNECT status (%r)" % reason)
    s.sendall(b"DRIP 8 0.4\n")
    s.settimeout(3)
    got = r.exactly(8)
    check_eq(got, b"x" * 8, "downloaded bytes")
    dt, _ = wait_closed(s, IDLE_S + 2.5)
    check(dt is not None, "tunnel still open %.1f s after the download stopped" % (IDLE_S + 2.5))


@suite.case("--idle-timeout 1: a CONNECT tunnel upload moving (1 byte / 0.4 s, nothing back) "
            "is not closed")
def _(ctx):
    e = idle_egressd(ctx)
    st, reason, s, r = connect_status(ctx, e, hp("allowed.test", "drip"))
    check_eq(st, 200, "CONNECT status (%r)" % reason)
    s.sendall(b"SINK\n")
    dt, got, nsent = drip(s, b"." * 8, 0.4, 3.3)
    check(dt is None, "tunnel closed %.2f s into an upload moving every 0.4 s (%d bytes sent)" % (
        dt or 0, nsent))
    s.sendall(b"END\n")
    s.settimeout(3)
    check_eq(r.until(b"\n"), b"got 8\n", "upstream's count of the uploaded bytes")


@suite.case("--idle-timeout 1: an absolute-form response trickling (1 byte / 0.4 s for 3.2 s) "
            "is not cut")
def _(ctx):
    e = idle_egressd(ctx)
    s, r = start_download(ctx, e, 8, 0.4)
    s.settimeout(3)
    check_eq(r.exactly(7), b"x" * 7, "the rest of the body")


# --------------------------------------------------------------------------
# descriptor exhaustion


class LimitedEgressd(Egressd):
    """egressd started under `prlimit --nofile=N:N` (prlimit execs it: same pid)."""
    nofile = 64

    def command(self):
        return ["prlimit", "--nofile=%d:%d" % (self.nofile, self.nofile), "--"] + super().command()


@suite.case("EMFILE under prlimit --nofile=64:64: 150 connections; egressd does not spin "
            "(< 0.5 s CPU in 2 s) and serves a normal request once they close", timeout=40)
def _(ctx):
    if not shutil.which("prlimit"):
        raise Skip("prlimit (util-linux) not installed")
    e = LimitedEgressd(ctx, ["--allow-net", "allowed.test", "--threads", "1"] + LO,
                       dns="127.0.0.1:%d" % W["dns"].port)
    ctx.egressds.append(e)
    e.start()
    pid = e.proc.pid
    if nfds(pid) < 0 and os.geteuid() != 0:
        raise Skip("egressd is non-dumpable: only root may count its descriptors (/proc/PID/fd)")
    with open("/proc/%d/limits" % pid) as f:
        lim = [l for l in f if l.startswith("Max open files")]
    ctx.note("egressd %s; %d descriptors at start" % (lim[0].strip() if lim else "?", nfds(pid)))
    held = []
    for i in range(150):
        try:
            s = socket.create_connection(("127.0.0.1", e.port), timeout=2)
        except OSError as ex:
            ctx.note("connection %d: %r" % (i, ex))
            break
        held.append(ctx.sock(s))
    ctx.note("%d client connections open" % len(held))
    # egressd takes connections until it runs out of descriptors
    deadline = time.time() + 10
    peak = nfds(pid)
    while peak < e.nofile - 4 and time.time() < deadline:
        time.sleep(0.05)
        peak = max(peak, nfds(pid))
    c0 = cpu_seconds(pid)
    time.sleep(2.0)
    c1 = cpu_seconds(pid)
    peak = max(peak, nfds(pid))
    ctx.note("egressd descriptors %d; CPU %.3f s in 2 s" % (peak, c1 - c0))
    check(peak >= e.nofile - 4, "egressd never got near its descriptor limit (%d open, limit %d): "
          "the case did not produce EMFILE" % (peak, e.nofile))
    check(e.proc.poll() is None, "egressd exited (status %s) under EMFILE" % e.proc.returncode)
    check(c1 - c0 < 0.5, "egressd used %.2f s of CPU in 2 s at EMFILE (spinning)" % (c1 - c0))
    for s in held:
        s.close()
    _, _, resp = plain_get(ctx, e, "allowed.test", "/after-emfile", keep=False)
    check_eq(resp.status, 200, "a normal request after the descriptors were freed (%r)" % resp)
    # the closed clients still queued are accepted (EOF) and closed in turn
    deadline = time.time() + 10
    while nfds(pid) >= e.nofile // 2 and time.time() < deadline:
        time.sleep(0.05)
    ctx.note("egressd descriptors after: %d" % nfds(pid))
    check(nfds(pid) < e.nofile // 2, "egressd still holds %d descriptors after every client "
          "closed" % nfds(pid))


# --------------------------------------------------------------------------
# 1,000 mixed connections, then SIGTERM: exit 0, no sanitizer report

LEAK_N = 1000


def _rst(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass


def _raw(e):
    s = socket.create_connection(("127.0.0.1", e.port), timeout=IO_TIMEOUT)
    s.settimeout(IO_TIMEOUT)
    return s


def _connect(e, target):
    s = _raw(e)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    r = Reader(s)
    return s, r, read_response(r, connect=True)


def op_tunnel_tls(e, k, L):
    s, r, resp = _connect(e, hp("allowed.test", "tls"))
    with s:
        check_eq(resp.status, 200, "CONNECT status")
        t = client_ssl_context(W["pki"]["ca"], True).wrap_socket(s, server_hostname="allowed.test")
        t.settimeout(IO_TIMEOUT)
        with t:
            t.sendall(http_request("GET", "/leak/t%d" % k, ["Host: allowed.test",
                                                           "Connection: close"]))
            check_eq(read_response(Reader(t)).status, 200, "GET through the tunnel")


def op_tunnel_echo(e, k, L):
    s, r, resp = _connect(e, hp("allowed.test", "echo"))
    with s:
        check_eq(resp.status, 200, "CONNECT status")
        p = (b"echo %d " % k) * 100
        s.sendall(p)
        check_eq(r.exactly(len(p)), p, "echo")


def op_denied(e, k, L):
    s, r, resp = _connect(e, "denied.test:443")
    with s:
        check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "not-allowed"), "refusal")


def op_intercept(e, k, L):
    s, r, resp = _connect(e, hp("api.test", "tls"))
    with s:
        check_eq(resp.status, 200, "CONNECT api.test status")
        t = client_ssl_context(L["ca"], True).wrap_socket(s, server_hostname="api.test")
        t.settimeout(IO_TIMEOUT)
        with t:
            tr = Reader(t)
            for j in range(1 + k % 2):
                tok = "%s-i%d-%d" % (L["run"], k, j)
                t.sendall(http_request("GET", "/leak/" + tok, ["Host: " + hp("api.test", "tls"),
                                                              "X-Key: " + L["ph"]]))
                resp = read_response(tr)
                check_eq(resp.status, 200, "intercepted GET")
                check_eq(hdr(resp.json(), "X-Key"), L["ph"], "X-Key echoed back (redacted)")
                check_eq(hdr(seen_with(W["tls_srv"], tok), "X-Key"), LEAK_VALUE,
                         "X-Key the upstream received")


def op_plain(e, k, L):
    with _raw(e) as s:
        s.sendall(http_request("GET", "http://%s/leak/p%d" % (hp("allowed.test", "plain"), k),
                               ["Host: " + hp("allowed.test", "plain"), "Connection: close"]))
        check_eq(read_response(Reader(s)).status, 200, "plain GET")


def op_abort_post_body(e, k, L):
    s = _raw(e)
    s.sendall(http_request("POST", "http://%s/leak/ab%d" % (hp("allowed.test", "plain"), k),
                           ["Host: " + hp("allowed.test", "plain"),
                            "Content-Length: 100000"]) + b"y" * 5000)
    time.sleep(0.01)
    if k % 2:
        _rst(s)
    s.close()


def op_abort_response(e, k, L):
    s = _raw(e)
    s.sendall(http_request("GET", "http://%s/big?size=2000000" % hp("allowed.test", "plain"),
                           ["Host: " + hp("allowed.test", "plain")]))
    r = Reader(s)
    status, _, _, _ = read_head(r)
    check_eq(status, 200, "big GET status")
    r.exactly(min(65536, 1000 + k * 37 % 60000))
    if k % 2:
        _rst(s)
    s.close()


def op_abort_intercept_handshake(e, k, L):
    s, r, resp = _connect(e, hp("api.test", "tls"))
    check_eq(resp.status, 200, "CONNECT api.test status")
    h = client_hello("api.test")
    s.sendall(h[:len(h) // 2 if k % 3 else len(h)])  # half, or a whole ClientHello
    if k % 3 == 0:
        time.sleep(0.005)
    if k % 2:
        _rst(s)
    s.close()


def op_abort_tunnel_handshake(e, k, L):
    s, r, resp = _connect(e, hp("allowed.test", "tls"))
    check_eq(resp.status, 200, "CONNECT status")
    h = client_hello("allowed.test")
    s.sendall(h[:len(h) // 3])
    if k % 2:
        _rst(s)
    s.close()


def op_abort_intercept_body(e, k, L):
    s, r, resp = _connect(e, hp("api.test", "tls"))
    check_eq(resp.status, 200, "CONNECT api.test status")
    t = client_ssl_context(L["ca"], True).wrap_socket(s, server_hostname="api.test")
    t.settimeout(IO_TIMEOUT)
    t.sendall(http_request("POST", "/leak/ib%d" % k, ["Host: " + hp("api.test", "tls"),
                                                      "X-Key: " + L["ph"],
                                                      "Content-Length: 50000"]) + b"z" * 3000)
    time.sleep(0.01)
    if k % 2:
        _rst(t)
    t.close()


def op_abort_connect_head(e, k, L):
    s = _raw(e)
    s.sendall(b"CONNECT allowed.te")
    if k % 2:
        _rst(s)
    s.close()


LEAK_OPS = [op_tunnel_tls, op_tunnel_echo, op_denied, op_intercept, op_plain,
            op_abort_post_body, op_abort_response, op_abort_intercept_handshake,
            op_abort_tunnel_handshake, op_abort_intercept_body, op_abort_connect_head,
            op_intercept]


@suite.case("1,000 mixed connections (tunnels, denied, intercepted with a secret, plain HTTP, "
            "aborts mid-handshake and mid-body), then SIGTERM: exit 0, no sanitizer report%s" % (
                "" if is_asan() else " (non-ASan binary: no LeakSanitizer)"), timeout=80)
def _(ctx):
    vf = os.path.join(ctx.tmp, "l_key.secret")
    with open(vf, "w") as f:
        f.write(LEAK_VALUE)
    os.chmod(vf, 0o600)
    pol = write_policy(ctx, {"allowNet": ["allowed.test", "api.test"],
                             "secrets": {"L_KEY": {"hosts": ["api.test"], "valueFromFile": vf}}})
    state = os.path.join(ctx.tmp, "state")
    args = ["-c", pol, "--state-dir", state, "--upstream-ca", W["pki"]["ca"]]
    e = start(ctx, args + ["--drain-timeout", "5"])
    L = {"ca": os.path.join(state, "ca.crt"), "ph": placeholder(ctx, args + LO, "L_KEY"),
         "run": uuid.uuid4().hex[:8]}
    rnd = random.Random(1000)
    plan = [LEAK_OPS[i % len(LEAK_OPS)] for i in range(LEAK_N)]
    rnd.shuffle(plan)
    errors = []
    t0 = time.time()

    def one(k):
        if ctx.timed_out:
            return
        fn = plan[k]
        try:
            fn(e, k, L)
        except Exception as ex:  # noqa: BLE001 -- every outcome is reported
            errors.append("#%d %s: %s: %s" % (k, fn.__name__, type(ex).__name__, ex))

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(LEAK_N)))
    ctx.note("%d connections in %.1f s" % (LEAK_N, time.time() - t0))
    check(e.proc.poll() is None, "egressd died during the run (status %s)" % e.proc.returncode)
    check(not errors, "%d of %d connections did not behave:\n%s" % (
        len(errors), LEAK_N, "\n".join(errors[:15])))
    time.sleep(0.3)
    t1 = time.time()
    signal_egressd(e, signal.SIGTERM)
    rc, _ = wait_exit(e, 5 + 1 + 2)
    ctx.note("egressd exited %.2f s after SIGTERM with status %s" % (time.time() - t1, rc))
    check(rc is not None, "egressd still running 8 s after SIGTERM")
    check_eq(rc, 0, "egressd exit status after SIGTERM")
    probs = sanitizer_problems(e)
    check(not probs, "\n".join(probs))
    check(LEAK_VALUE not in e.stderr() and LEAK_VALUE not in "\n".join(e.log_lines()),
          "the secret's real value appears in egressd's stderr or audit log")

# --------------------------------------------------------------------------
# serve --report / --learn (issue 18)


def read_json_when(path, pred, what, timeout=10.0):
    """Waits until path holds JSON for which pred is true; returns it."""
    got = [None]

    def ready():
        try:
            with open(path) as f:
                got[0] = json.load(f)
        except (OSError, ValueError):
            return False
        return pred(got[0])
    wait_until(ready, timeout=timeout, what=what)
    return got[0]


def report_hosts(rep):
    return {(d["host"], d["port"]): d for d in rep["destinations"]}


@suite.case("serve --report=FILE --learn FILE: SIGUSR1 writes both from the counters so far, "
            "SIGTERM again at exit; learning allows, denyNet still refuses")
def _(ctx):
    pol = write_policy(ctx, {"allowNet": ["allowed.test"], "denyNet": ["denied.test"]})
    rep = os.path.join(ctx.tmp, "report.json")
    learned = os.path.join(ctx.tmp, "learned.json")
    e = start(ctx, ["-c", pol, "--report=" + rep, "--report-format", "json", "--learn", learned])
    st, reason, s, r = connect_status(ctx, e, hp("allowed.test", "echo"))
    check_eq(st, 200, "CONNECT allowed.test (%r)" % reason)
    echo_roundtrip(s, r, b"counted\n")
    s.close()
    expect_connect(ctx, e, hp("other.test", "echo"), 200, " (learn mode)")
    expect_connect(ctx, e, hp("denied.test", "echo"), "denied", " (learn mode: denyNet)")
    # the closes are counted once egressd saw them
    wait_until(lambda: len([v for v in e.log_events() if v.get("event") == "close"]) >= 3,
               what="three close events")
    signal_egressd(e, signal.SIGUSR1)
    got = read_json_when(rep, lambda j: len(j["destinations"]) >= 3, "the report after SIGUSR1")
    rows = report_hosts(got)
    a = rows.get(("allowed.test", W["ports"]["echo"]))
    check(a and a["decision"] == "allow" and a["rule"] == "allowed.test" and
          a["bytes_up"] == 8 and a["bytes_down"] == 8, "allowed.test row: %r" % a)
    o = rows.get(("other.test", W["ports"]["echo"]))
    check(o and o["decision"] == "learned" and o["reason"] == "not-allowed", "other.test: %r" % o)
    d = rows.get(("denied.test", W["ports"]["echo"]))
    check(d and d["decision"] == "deny" and d["reason"] == "denied", "denied.test: %r" % d)
    check_eq(got["destinations"][0]["host"], "denied.test", "refusals first")
    pat = "other.test:%d" % W["ports"]["echo"]
    doc = read_json_when(learned, lambda j: pat in j.get("allowNet", []),
                         "the learned policy after SIGUSR1")
    check_eq(doc["denyNet"], ["denied.test"], "denyNet kept")
    check("denied.test:%d" % W["ports"]["echo"] not in doc["allowNet"], "a refusal learned")
    expect_connect(ctx, e, hp("c.test", "echo"), 200, " (learn mode)")
    wait_until(lambda: len([v for v in e.log_events() if v.get("event") == "close"]) >= 4,
               what="four close events")
    check_eq(e.stop(), [], "problems at exit")
    got = read_json_when(rep, lambda j: ("c.test", W["ports"]["echo"]) in report_hosts(j),
                         "the report rewritten at exit")
    doc = read_json_when(learned, lambda j: "c.test:%d" % W["ports"]["echo"] in j["allowNet"],
                         "the learned policy rewritten at exit")
    r = run_egressd(["check", "-c", learned, hp("other.test", "echo"), hp("a.test", "echo")])
    check_eq(r.returncode, 1, "egressd check -c LEARNED: one allowed, one refused (%s)" % r.stdout)
    check(re.search(r"^other\.test:\d+ allow", r.stdout, re.M) and
          re.search(r"^a\.test:\d+ deny reason=not-allowed", r.stdout, re.M),
          "check's lines: %r" % r.stdout)



@suite.case("serve --learn with a sandboxes file: each sandbox learns only what it used, "
            "its policy written inline; the file loads and keeps the sandboxes apart")
def _(ctx):
    with open(os.path.join(ctx.tmp, "b.json"), "w") as f:
        json.dump({"allowNet": ["allowed.test"]}, f)
    learned = os.path.join(ctx.tmp, "learned.json")

    def make():
        lport, bport = free_port(), free_port()
        cfg = write_policy(ctx, {"sandboxes": {
            "a": {"listen": "127.0.0.1:%d" % lport, "source": "127.0.0.0/8",
                  "policy": {"allowNet": ["keep-a.test"]}},
            "b": {"listen": "127.0.0.1:%d" % bport, "source": "127.0.0.0/8", "policy": "b.json"}}})
        e = start(ctx, ["-c", cfg, "--listen", "127.0.0.1:%d" % bport, "--learn", learned],
                  listen_port=lport)
        e.bport = bport
        return e
    e = ctx.on_free_ports(make)
    expect_connect(ctx, e, hp("other.test", "echo"), 200, " (sandbox a, learn mode)")
    s, _, resp = proxy_connect(ctx, e.bport, hp("c.test", "echo"))
    s.close()
    check_eq(resp.status, 200, "CONNECT c.test through sandbox b's listener (learn mode)")
    wait_until(lambda: len([v for v in e.log_events() if v.get("event") == "close"]) >= 2,
               what="two close events")
    check_eq(e.stop(), [], "problems at exit")
    doc = read_json_when(learned, lambda j: "sandboxes" in j, "the learned policy at exit")
    check_eq(sorted(doc), ["sandboxes"], "the learned file's keys")
    a = doc["sandboxes"]["a"]["policy"]["allowNet"]
    b = doc["sandboxes"]["b"]["policy"]["allowNet"]
    check_eq(sorted(a), sorted(["keep-a.test", hp("other.test", "echo")]), "a's allowNet")
    check_eq(sorted(b), sorted(["allowed.test", hp("c.test", "echo")]), "b's allowNet")
    check_eq(doc["sandboxes"]["b"]["listen"], "127.0.0.1:%d" % e.bport, "b's selector kept")
    for sb, target, want in (("a", hp("other.test", "echo"), "allow"),
                             ("a", hp("c.test", "echo"), "deny"),
                             ("b", hp("c.test", "echo"), "allow"),
                             ("b", hp("other.test", "echo"), "deny")):
        r = run_egressd(["check", "-c", learned, "--sandbox", sb, target])
        check(re.search(r"^%s %s" % (re.escape(target), want), r.stdout, re.M),
              "egressd check -c LEARNED --sandbox %s %s: %s expected, got %r %r"
              % (sb, target, want, r.stdout, r.stderr))


def main():
    setup()
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
