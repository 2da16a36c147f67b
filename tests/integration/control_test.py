#!/usr/bin/env python3
"""control_test.py -- integration tests of the control API (--control
unix:PATH): sandboxes created, listed, replaced and deleted at runtime, with
real clients (curl --unix-socket, Python's http.client over AF_UNIX) on the
control socket and real proxied traffic (curl, Python) through the sandboxes
the API created. Sandboxes are told apart by their client source address on
loopback (127.0.0.0/8 is all local: a client binds 127.0.0.N). The upstream
is the harness's TLS echo server behind a test DNS server. Prints TAP; exits
1 if any case failed.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer, DNSServer,  # noqa: E402
                     spawn, clean_env, wait_until, egressd_bin_for_anyone,
                     run_egressd)

suite = Suite("control")
W = {}
REAL = "sk-REAL-CTL-" + uuid.uuid4().hex[:24]


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:api.test", "DNS:other.test"])
    W["srv"] = EchoHTTPServer("127.0.0.1", tls=(W["pki"]["cert"], W["pki"]["key"]))
    W["srv"].values[REAL] = REAL
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in ["api.test", "other.test"]})
    W["port"] = W["srv"].port
    W["plain"] = EchoHTTPServer("127.0.0.1")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def api(e, method, path, body=None, raw=None):
    """One request on the control socket: (status, parsed JSON or text, headers)."""
    c = UnixHTTP(e.ctl)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data is not None else {})
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        try:
            return r.status, json.loads(text), dict(r.getheaders())
        except ValueError:
            return r.status, text, dict(r.getheaders())
    finally:
        c.close()


def start(ctx, extra_args=(), config=None):
    state = os.path.join(ctx.tmp, "state")
    ctl = os.path.join(ctx.tmp, "control.sock")
    args = ["--control", "unix:" + ctl, "--state-dir", state, "--allow-private", "127.0.0.0/8",
            "--upstream-ca", W["pki"]["ca"]] + list(extra_args)
    if config:
        args = ["-c", config] + args
    e = ctx.egressd(args, dns="127.0.0.1:%d" % W["dns"].port)
    e.ctl, e.state = ctl, state
    wait_until(lambda: os.path.exists(ctl), 5, "the control socket")
    return e


def sandbox(src, allow=("api.test",), secret=True, **extra):
    body = {"source": src, "allowNet": list(allow)}
    if secret:
        body["secrets"] = {"API_KEY": {"hosts": ["api.test"], "value": REAL}}
    body.update(extra)
    return body


def curl_via(ctx, env, src, url, *args):
    """curl with nothing but the environment the API answered, from source src."""
    e = clean_env()
    for k in list(e):
        if "proxy" in k.lower() or k in ("SSL_CERT_FILE", "CURL_CA_BUNDLE"):
            del e[k]
    e.update(env)
    cmd = ["curl", "-q", "-sS", "--max-time", "10", "--interface", src, "-o", "-", "-D", "-",
           url] + list(args)
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    ctx.procs.append(p)
    out, err = p.communicate(timeout=20)
    ctx.note("%s -> %d %s" % (" ".join(cmd), p.returncode, err.decode()[:200]))
    return p.returncode, out.decode("utf-8", "replace")


def status_of(out):
    codes = [l.split()[1] for l in out.split("\r\n") if l.startswith("HTTP/")]
    return int(codes[-1]) if codes else None


def auth_seen(n):
    return [v for s in W["srv"].seen[n:] for k, v in s["headers"] if k.lower() == "authorization"]


def no_real_value(e, *texts):
    blob = "\n".join(texts) + e.stderr() + "\n".join(e.log_lines())
    check(REAL not in blob, "the real secret value reached a client, an answer or a log")
    for root, _, files in os.walk(e.state):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                check(REAL.encode() not in fh.read(), "the real value is on disk in %s" % f)


U = "https://api.test:%d/echo"


@suite.case("PUT creates a sandbox: its env works with curl; secret injected, value never shown")
def t_put_traffic(ctx):
    e = start(ctx)
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/sb-1", sandbox("127.0.0.21"))
    check_eq(st, 201, "PUT status")
    env = ans["env"]
    check(env["API_KEY"].startswith("egressd-ph-") and env["HTTPS_PROXY"] == "http://" + e.addr,
          "env: %r" % env)
    check("BEGIN CERTIFICATE" in ans["ca"], "the CA's PEM is in the answer")
    n = len(W["srv"].seen)
    rc, out = curl_via(ctx, env, "127.0.0.21", U % W["port"],
                       "-H", "Authorization: Bearer " + env["API_KEY"])
    check(rc == 0 and status_of(out) == 200, "allowed request: rc %d %s" % (rc, out[:300]))
    check_eq(auth_seen(n), ["Bearer " + REAL], "what the upstream received")
    rc, out2 = curl_via(ctx, env, "127.0.0.21", "https://other.test:%d/x" % W["port"])
    check(status_of(out2) == 403 and "not-allowed" in out2, "denied host: %r" % out2[:300])
    st, one, _ = api(e, "GET", "/v1/sandboxes/sb-1")
    check(st == 200 and one["secrets"]["API_KEY"] == {"hosts": ["api.test"]} and
          one["connections"] >= 1, "GET: the policy without the value, counters: %r" % one)
    st, lst, _ = api(e, "GET", "/v1/sandboxes")
    check(st == 200 and [s["name"] for s in lst["sandboxes"]] == ["sb-1"], "list: %r" % lst)
    put = [ev for ev in e.log_events() if ev["event"] == "sandbox-put"]
    check(put and put[0]["uid"] == 0 and put[0]["created"] is True, "audit event: %r" % put)
    no_real_value(e, json.dumps(ans), out, out2, json.dumps(one), json.dumps(lst))


@suite.case("curl --unix-socket: replace (200), delete; a deleted sandbox refuses new connections")
def t_replace_delete(ctx):
    e = start(ctx)

    def ccurl(*args):
        r = subprocess.run(["curl", "-sS", "--unix-socket", e.ctl, "-w", "\n%{http_code}"] +
                           list(args), capture_output=True, text=True, timeout=20)
        body, code = r.stdout.rsplit("\n", 1)
        return int(code), body
    body = json.dumps(sandbox("127.0.0.22", secret=False))
    code, out = ccurl("-X", "PUT", "--data-binary", body, "http://x/v1/sandboxes/sb-2")
    check_eq(code, 201, "create")
    env = json.loads(out)["env"]
    rc, o = curl_via(ctx, env, "127.0.0.22", "https://other.test:%d/x" % W["port"])
    check(status_of(o) == 403, "other.test not allowed yet: %r" % o[:200])
    body = json.dumps(sandbox("127.0.0.22", allow=("other.test",), secret=False))
    code, out = ccurl("-X", "PUT", "--data-binary", body, "http://x/v1/sandboxes/sb-2")
    check_eq(code, 200, "replace")
    rc, o = curl_via(ctx, env, "127.0.0.22", "https://other.test:%d/x" % W["port"])
    check(status_of(o) == 200, "other.test allowed after the replace: %r" % o[:200])
    code, out = ccurl("-X", "DELETE", "http://x/v1/sandboxes/sb-2")
    check_eq(code, 200, "delete")
    rc, o = curl_via(ctx, env, "127.0.0.22", "https://other.test:%d/x" % W["port"])
    check(status_of(o) == 403 and "unknown-source" in o, "after delete: %r" % o[:300])
    code, out = ccurl("-X", "DELETE", "http://x/v1/sandboxes/sb-2")
    check_eq(code, 404, "delete again")
    code, out = ccurl("http://x/v1/sandboxes/sb-2")
    check_eq(code, 404, "GET a deleted sandbox")


@suite.case("a replace applies to new connections; an open one keeps the policy it started with")
def t_keep_generation(ctx):
    e = start(ctx)
    st, _, _ = api(e, "PUT", "/v1/sandboxes/kg", sandbox("127.0.0.26", secret=False))
    check_eq(st, 201, "create")
    req = ("GET http://api.test:%d/x HTTP/1.1\r\nHost: api.test\r\n\r\n" % W["plain"].port).encode()

    def get(s):
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(65536)
            if not d:
                break
            head += d
        h, _, body = head.partition(b"\r\n\r\n")
        cl = [int(l.split(b":")[1]) for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        while cl and len(body) < cl[0]:
            body += s.recv(65536)
        return h.split(b"\r\n")[0]
    old = ctx.sock(socket.create_connection(("127.0.0.1", e.port), timeout=10,
                                            source_address=("127.0.0.26", 0)))
    check(b" 200 " in get(old), "first request allowed")
    st, _, _ = api(e, "PUT", "/v1/sandboxes/kg", sandbox("127.0.0.26", allow=("other.test",),
                                                         secret=False))
    check_eq(st, 200, "replace: api.test no longer allowed")
    check(b" 200 " in get(old), "the open connection keeps its generation")
    new = ctx.sock(socket.create_connection(("127.0.0.1", e.port), timeout=10,
                                            source_address=("127.0.0.26", 0)))
    check(b" 403 " in get(new), "a new connection gets the new policy")


@suite.case("DELETE closes the sandbox's open connections, says so in the log; others untouched")
def t_delete_closes(ctx):
    e = start(ctx)
    for name, src in (("gone", "127.0.0.23"), ("stays", "127.0.0.24")):
        st, _, _ = api(e, "PUT", "/v1/sandboxes/" + name, sandbox(src, secret=False))
        check_eq(st, 201, "create " + name)
    socks = {}
    for name, src in (("gone", "127.0.0.23"), ("stays", "127.0.0.24")):
        s = ctx.sock(socket.create_connection(("127.0.0.1", e.port), timeout=10,
                                              source_address=(src, 0)))
        t = "api.test:%d" % W["port"]
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (t, t)).encode())
        head = s.recv(4096)
        check(head.startswith(b"HTTP/1.1 200"), "tunnel for %s: %r" % (name, head[:100]))
        socks[name] = s
    st, ans, _ = api(e, "DELETE", "/v1/sandboxes/gone")
    check(st == 200 and ans["closing"] == 1, "DELETE answer: %r" % ans)
    socks["gone"].settimeout(5)
    check_eq(socks["gone"].recv(100), b"", "the deleted sandbox's tunnel was closed by egressd")
    e.wait_log(lambda ev: ev.get("event") == "sandbox-delete" and ev.get("closing") == 1,
               what="sandbox-delete with closing 1")
    wait_until(lambda: "closed 1 connection(s) of a deleted sandbox" in e.stderr() or any(
        "closed 1 connection(s) of a deleted sandbox" in l for l in e.log_lines()), 5,
        "the worker's log line")
    socks["stays"].settimeout(0.3)
    try:
        got = socks["stays"].recv(100)
        check(False, "the other sandbox's tunnel got %r" % got)
    except socket.timeout:
        pass


@suite.case("DELETE closes an intercepted keep-alive connection (TLS to egressd, secret injected)")
def t_delete_intercepted(ctx):
    import ssl
    e = start(ctx)
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/ic", sandbox("127.0.0.27"))
    check_eq(st, 201, "create")
    tls = ssl.create_default_context(cafile=os.path.join(e.state, "ca-bundle.pem"))
    c = http.client.HTTPSConnection("127.0.0.1", e.port, context=tls, timeout=10,
                                    source_address=("127.0.0.27", 0))
    c.set_tunnel("api.test", W["port"])
    n = len(W["srv"].seen)
    c.request("GET", "/echo", headers={"Authorization": "Bearer " + ans["env"]["API_KEY"]})
    r = c.getresponse()
    body = r.read().decode()
    check(r.status == 200 and auth_seen(n) == ["Bearer " + REAL], "intercepted request: %d" % r.status)
    st, d, _ = api(e, "DELETE", "/v1/sandboxes/ic")
    check(st == 200 and d["closing"] == 1, "DELETE: %r" % d)
    c.sock.settimeout(5)
    try:
        got = c.sock.recv(100)
    except (ssl.SSLError, OSError) as ex:
        got = b""
        ctx.note("recv: %r" % ex)
    check_eq(got, b"", "the intercepted connection was closed")
    c.close()
    no_real_value(e, body)


@suite.case("bad JSON, bad policy, unknown key, no selector: 400 with the path of the bad value")
def t_bad_bodies(ctx):
    e = start(ctx)
    cases = [
        (b'{"source": "127.0.0.30", ', None, "expected"),
        (b'{"source": "127.0.0.30", "secrets": {"K": {"hosts": ["api.test"], "value": "' +
         REAL.encode(), None, "premature end of input"),
        (json.dumps({"source": "127.0.0.30", "secrets": {"K": {"hosts": ["api.test", "a..b"],
                                                               "value": REAL}}}).encode(),
         "secrets.K.hosts[1]", "invalid pattern"),
        (json.dumps({"source": "127.0.0.30", "allowNet": "api.test"}).encode(), "allowNet",
         "must be an array"),
        (json.dumps({"source": "127.0.0.30", "secrets": {"K": {"hosts": ["api.test"],
                                                               "value": REAL, "valueFromEnv": "X"}}}).encode(),
         "secrets.K.valueFromEnv", "both"),
        (json.dumps({"source": "10.0.0.0/33"}).encode(), "source", "invalid source"),
        (json.dumps({"source": "127.0.0.30", "alowNet": []}).encode(), "alowNet", "unknown key"),
        (json.dumps({"allowNet": ["api.test"]}).encode(), None, "neither"),
        (json.dumps({"source": "127.0.0.30", "listen": "127.0.0.1:1"}).encode(), None,
         "not a --listen"),
        (b'{"source": "127.0.0.30", "source": "127.0.0.31"}', None, "duplicate"),
        (b"[]", None, "must be a JSON object"),
    ]
    for raw, path, words in cases:
        st, ans, _ = api(e, "PUT", "/v1/sandboxes/bad", raw=raw)
        check(st == 400 and isinstance(ans, dict), "%r: want 400, got %s %r" % (raw[:60], st, ans))
        check(words in ans["error"], "%r: error %r lacks %r" % (raw[:60], ans["error"], words))
        check_eq(ans.get("path"), path, "path for %r" % raw[:60])
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/bad%20name", sandbox("127.0.0.30"))
    check(st == 400 and ans.get("path") == "name", "bad name: %s %r" % (st, ans))
    st, lst, _ = api(e, "GET", "/v1/sandboxes")
    check_eq(lst["sandboxes"], [], "nothing was created")
    no_real_value(e)


@suite.case("wrong methods and paths: 405 with Allow, 404; a malformed request: 400")
def t_methods(ctx):
    e = start(ctx)
    for m, p, code, allow in (("POST", "/v1/sandboxes/x", 405, "PUT, GET, DELETE"),
                              ("PATCH", "/v1/sandboxes/x", 405, "PUT, GET, DELETE"),
                              ("DELETE", "/v1/sandboxes", 405, "GET"),
                              ("PUT", "/v1/health", 405, "GET"),
                              ("GET", "/v2/sandboxes", 404, None),
                              ("GET", "/", 404, None)):
        st, ans, h = api(e, m, p)
        check(st == code, "%s %s: want %d, got %s" % (m, p, code, st))
        if allow:
            check_eq(h.get("Allow"), allow, "Allow of %s %s" % (m, p))
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(e.ctl)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    got = s.recv(4096)
    s.close()
    check(got.startswith(b"HTTP/1.1 400"), "duplicate Content-Length: %r" % got[:100])
    st, ans, _ = api(e, "GET", "/v1/health")
    check(st == 200 and ans["ok"] is True, "health: %r" % ans)


@suite.case("a body over 1 MiB: 413, nothing created")
def t_too_large(ctx):
    e = start(ctx)
    big = json.dumps(sandbox("127.0.0.31", allow=["h%d.test" % i for i in range(80000)])).encode()
    check(len(big) > 1 << 20, "the body is over 1 MiB")
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/big", raw=big)
    check_eq(st, 413, "status")
    st, _, _ = api(e, "GET", "/v1/sandboxes/big")
    check_eq(st, 404, "not created")


@suite.case("409: overlapping sources, a name of the policy file; SIGHUP keeps API sandboxes")
def t_conflicts_sighup(ctx):
    cfg = os.path.join(ctx.tmp, "sandboxes.json")
    with open(cfg, "w") as f:
        json.dump({"sandboxes": {"filebox": {"source": "127.0.0.40", "policy": {
            "allowNet": ["api.test"]}}}}, f)
    e = start(ctx, config=cfg)
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/filebox", sandbox("127.0.0.41"))
    check(st == 409 and "policy file" in ans["error"], "same name as the file's: %s %r" % (st, ans))
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/x1", sandbox("127.0.0.32/28"))
    check(st == 409 and "filebox" in ans["error"], "overlaps the file's: %s %r" % (st, ans))
    st, ans, _ = api(e, "PUT", "/v1/sandboxes/api1", sandbox("127.0.0.42"))
    check_eq(st, 201, "api1")
    st, ans2, _ = api(e, "PUT", "/v1/sandboxes/api2", sandbox(["127.0.0.50", "127.0.0.42"]))
    check(st == 409 and "api1" in ans2["error"], "overlaps api1: %s %r" % (st, ans2))
    st, _, _ = api(e, "PUT", "/v1/sandboxes/wide", sandbox("127.0.0.64/26"))
    check_eq(st, 201, "a range that meets nobody")
    st, ans3, _ = api(e, "PUT", "/v1/sandboxes/api3", sandbox("127.0.0.70"))
    check(st == 409 and "wide" in ans3["error"], "inside the range: %s %r" % (st, ans3))
    env = ans["env"]
    e.proc.send_signal(signal.SIGHUP)
    e.wait_log(lambda ev: ev.get("event") == "reload" and ev.get("ok") is True, what="reload ok")
    rc, out = curl_via(ctx, env, "127.0.0.42", U % W["port"])
    check(status_of(out) == 200, "api1 still serves after SIGHUP: %r" % out[:200])
    with open(cfg, "w") as f:
        json.dump({"sandboxes": {"filebox": {"source": "127.0.0.40", "policy": {}},
                                 "api1": {"source": "127.0.0.99", "policy": {}}}}, f)
    e.proc.send_signal(signal.SIGHUP)
    ev = e.wait_log(lambda ev: ev.get("event") == "reload" and ev.get("ok") is False,
                    what="reload refused")
    check("api1" in ev[-1]["error"], "the refusal names the conflict: %r" % ev[-1])
    rc, out = curl_via(ctx, env, "127.0.0.42", U % W["port"])
    check(status_of(out) == 200, "api1 still serves after the refused reload: %r" % out[:200])


@suite.case("two writers at once: concurrent PUTs and DELETEs; one of two overlapping PUTs wins")
def t_two_writers(ctx):
    e = start(ctx)
    results = []

    def writer(k):
        for i in range(40):
            name = "w%d-%d" % (k, i % 10)
            st, _, _ = api(e, "PUT", "/v1/sandboxes/" + name,
                           sandbox("127.1.%d.%d" % (k, i % 10), secret=False))
            results.append(st)
            if i % 3 == 0:
                st, _, _ = api(e, "DELETE", "/v1/sandboxes/" + name)
                results.append(st)
    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    [t.start() for t in ts]
    [t.join(60) for t in ts]
    check(set(results) <= {200, 201} and len(results) > 160, "statuses: %r" % sorted(set(results)))
    st, lst, _ = api(e, "GET", "/v1/sandboxes")
    st, h, _ = api(e, "GET", "/v1/health")
    check_eq(h["sandboxes_api"], len(lst["sandboxes"]), "health and the list agree")
    race = []

    def racer(name):
        race.append(api(e, "PUT", "/v1/sandboxes/" + name, sandbox("127.0.0.77", secret=False))[0])
    ts = [threading.Thread(target=racer, args=(n,)) for n in ("r1", "r2")]
    [t.start() for t in ts]
    [t.join(20) for t in ts]
    check_eq(sorted(race), [201, 409], "two overlapping creates at once")


@suite.case("a peer without permission: the socket is 0600 root; user tester cannot connect")
def t_permission(ctx):
    e = start(ctx)
    st = os.stat(e.ctl)
    check_eq(oct(st.st_mode & 0o777), "0o600", "socket mode")
    check_eq(st.st_uid, 0, "socket owner")
    os.chmod(ctx.tmp, 0o755)  # tester may reach the directory; only the socket's mode stops it
    r = subprocess.run(["runuser", "-u", "tester", "--", "curl", "-sS", "--unix-socket", e.ctl,
                        "-X", "PUT", "--data-binary", json.dumps(sandbox("127.0.0.80")),
                        "http://x/v1/sandboxes/evil"], capture_output=True, text=True, timeout=20)
    ctx.note("tester: rc %d %s %s" % (r.returncode, r.stdout, r.stderr))
    check(r.returncode == 7, "tester's curl could not connect (curl exit 7), got %d" % r.returncode)
    st, _, _ = api(e, "GET", "/v1/sandboxes/evil")
    check_eq(st, 404, "nothing was created by tester")


@suite.case("10,000 sandboxes created through the API; one of them carries traffic", timeout=120)
def t_ten_thousand(ctx):
    e = start(ctx)
    N = 10000
    t0 = time.time()
    worst = 0.0
    for i in range(N):
        body = ('{"source":"127.2.%d.%d","allowNet":["api.test"],"secrets":{"K":{"hosts":'
                '["api.test"],"value":"%s"}}}' % (i >> 8, i & 255, REAL)).encode()
        s = socket.socket(socket.AF_UNIX)
        s.connect(e.ctl)
        t1 = time.time()
        s.sendall(b"PUT /v1/sandboxes/s%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % (i, len(body)) + body)
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(65536)
            if not d:
                break
            got += d
        worst = max(worst, time.time() - t1)
        s.close()
        if not got.startswith(b"HTTP/1.1 201"):
            check(False, "sandbox %d: %r" % (i, got[:200]))
    took = time.time() - t0
    ctx.note("created %d sandboxes in %.2f s (worst %.1f ms), RSS %s KiB" % (
        N, took, worst * 1000, e.rss_kb()))
    st, h, _ = api(e, "GET", "/v1/health")
    check_eq(h["sandboxes_api"], N, "sandboxes")
    st, one, _ = api(e, "GET", "/v1/sandboxes/s9999")
    check_eq(one["source"], "127.2.39.15", "the last one")
    env = {"HTTPS_PROXY": "http://" + e.addr, "CURL_CA_BUNDLE": os.path.join(e.state, "ca-bundle.pem")}
    rc, out = curl_via(ctx, env, "127.2.39.15", U % W["port"])
    check(status_of(out) == 200, "traffic through the 10,000th sandbox: %r" % out[:200])


@suite.case("metrics: sandboxes by origin, control requests by code")
def t_metrics(ctx):
    import urllib.request
    from harness import free_port
    mport = free_port()
    e = start(ctx, extra_args=["--metrics", "127.0.0.1:%d" % mport])
    api(e, "PUT", "/v1/sandboxes/m1", sandbox("127.0.0.90"))
    api(e, "PUT", "/v1/sandboxes/m2", sandbox("127.0.0.90"))
    api(e, "POST", "/v1/sandboxes/m1")
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as r:
        text = r.read().decode()
    for line in ('egressd_sandboxes{origin="api"} 1', 'egressd_sandboxes{origin="file"} 0',
                 'egressd_control_requests_total{code="201"} 1',
                 'egressd_control_requests_total{code="409"} 1',
                 'egressd_control_requests_total{code="405"} 1'):
        check(line in text.split("\n"), "metrics lack %r" % line)


@suite.case("--control with a single-policy -c is refused; a live socket is not taken over")
def t_startup_refusals(ctx):
    pol = os.path.join(ctx.tmp, "p.json")
    with open(pol, "w") as f:
        json.dump({"allowNet": ["api.test"]}, f)
    r = run_egressd(["serve", "-c", pol, "--control", "unix:" + os.path.join(ctx.tmp, "c.sock"),
                     "--state-dir", os.path.join(ctx.tmp, "s"), "--listen", "127.0.0.1:0"])
    check(r.returncode == 2 and "sandboxes" in r.stderr, "single policy: %d %r" % (
        r.returncode, r.stderr))
    e = start(ctx)
    r = run_egressd(["serve", "--control", "unix:" + e.ctl, "--state-dir", e.state,
                     "--listen", "127.0.0.1:0"])
    check(r.returncode == 1 and "another process" in r.stderr, "live socket: %d %r" % (
        r.returncode, r.stderr))
    st, _, _ = api(e, "GET", "/v1/health")
    check_eq(st, 200, "the first egressd still answers")


@suite.case("egressd sandbox put|ls|env|rm: a client of the socket (flags or a JSON file)")
def t_cli(ctx):
    e = start(ctx)
    ctl = "unix:" + e.ctl
    r = run_egressd(["sandbox", "put", "cli-1", "--control", ctl, "--source", "127.0.0.60",
                     "--allow-net", "api.test,other.test", "--secret", "API_KEY=api.test"],
                    env={"API_KEY": REAL})
    check(r.returncode == 0, "put: %d %s" % (r.returncode, r.stderr))
    env = dict(l.split("=", 1) for l in r.stdout.split("\n") if "=" in l)
    check(env.get("API_KEY", "").startswith("egressd-ph-") and
          env.get("HTTPS_PROXY") == "http://" + e.addr, "put printed the env: %r" % r.stdout)
    n = len(W["srv"].seen)
    rc, out = curl_via(ctx, env, "127.0.0.60", U % W["port"],
                       "-H", "Authorization: Bearer " + env["API_KEY"])
    check(status_of(out) == 200 and auth_seen(n) == ["Bearer " + REAL], "traffic: %r" % out[:200])
    spec = os.path.join(ctx.tmp, "cli-2.json")
    with open(spec, "w") as f:
        json.dump({"source": "127.0.0.61", "allowNet": ["api.test"]}, f)
    r = run_egressd(["sandbox", "put", "cli-2", "-f", spec, "--control", ctl])
    check(r.returncode == 0 and "HTTPS_PROXY=" in r.stdout, "put -f: %d %s" % (r.returncode, r.stderr))
    r = run_egressd(["sandbox", "ls", "--control", ctl])
    names = sorted(l.split()[0] for l in r.stdout.strip().split("\n"))
    check(r.returncode == 0 and names == ["cli-1", "cli-2"], "ls: %r" % r.stdout)
    r = run_egressd(["sandbox", "env", "cli-1", "--control", ctl])
    check(r.returncode == 0 and "API_KEY=" + env["API_KEY"] in r.stdout, "env: %r" % r.stdout)
    r = run_egressd(["sandbox", "put", "cli-3", "--control", ctl, "--source", "127.0.0.60"])
    check(r.returncode == 1 and "409" in r.stderr, "conflict: %d %r" % (r.returncode, r.stderr))
    r = run_egressd(["sandbox", "put", "cli-3", "--control", ctl, "--source", "127.0.0.62",
                     "--allow-net", "a..b"])
    check(r.returncode == 1 and "allowNet[0]" in r.stderr, "bad pattern: %r" % r.stderr)
    r = run_egressd(["sandbox", "rm", "cli-1", "--control", ctl])
    check(r.returncode == 0 and "deleted cli-1" in r.stdout, "rm: %d %r" % (r.returncode, r.stderr))
    r = run_egressd(["sandbox", "rm", "cli-1", "--control", ctl])
    check(r.returncode == 1 and "404" in r.stderr, "rm again: %r" % r.stderr)
    r = run_egressd(["sandbox", "frob", "--control", ctl])
    check_eq(r.returncode, 2, "an unknown subcommand")
    no_real_value(e, r.stdout)


@suite.case("--control IP:PORT: needs a token file; 401 without or with a wrong token; "
            "the CLI sends it; the port is egressd's own for sandboxes (proxy-loop)")
def t_tcp(ctx):
    from harness import free_port
    tok = os.path.join(ctx.tmp, "token")
    with open(tok, "w") as f:
        f.write("tok-" + uuid.uuid4().hex + "\n")
    token = open(tok).read().strip()
    for addr in ("127.0.0.1:%d" % free_port(), "0.0.0.0:%d" % free_port()):
        r = run_egressd(["serve", "--control", addr, "--state-dir", os.path.join(ctx.tmp, "s0"),
                         "--listen", "127.0.0.1:0"])
        check(r.returncode == 1 and "--control-token-file" in r.stderr,
              "%s without a token: %d %r" % (addr, r.returncode, r.stderr))
    short = os.path.join(ctx.tmp, "short")
    with open(short, "w") as f:
        f.write("abc\n")
    r = run_egressd(["serve", "--control", "127.0.0.1:%d" % free_port(), "--control-token-file",
                     short, "--state-dir", os.path.join(ctx.tmp, "s0"), "--listen", "127.0.0.1:0"])
    check(r.returncode == 1 and "16" in r.stderr, "a short token: %r" % r.stderr)

    def make():
        port = free_port()
        e = ctx.egressd(["--control", "127.0.0.1:%d" % port, "--control-token-file", tok,
                         "--state-dir", os.path.join(ctx.tmp, "state"),
                         "--allow-private", "127.0.0.0/8", "--upstream-ca", W["pki"]["ca"]],
                        dns="127.0.0.1:%d" % W["dns"].port)
        e.cport, e.state = port, os.path.join(ctx.tmp, "state")
        return e
    e = ctx.on_free_ports(make)

    def req(method, path, body=None, auth=None):
        c = http.client.HTTPConnection("127.0.0.1", e.cport, timeout=10)
        h = {"Authorization": auth} if auth else {}
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        out = r.status, r.read().decode(), r.getheader("WWW-Authenticate")
        c.close()
        return out
    st, body, wa = req("GET", "/v1/health")
    check(st == 401 and wa == "Bearer", "no token: %s %r" % (st, body))
    st, body, _ = req("PUT", "/v1/sandboxes/t1", sandbox("127.0.0.100"), "Bearer " + token + "x")
    check_eq(st, 401, "wrong token")
    st, body, _ = req("PUT", "/v1/sandboxes/t1", sandbox("127.0.0.100", allow=("api.test", "127.0.0.1")), "Bearer " + token)
    check_eq(st, 201, "right token")
    r = run_egressd(["sandbox", "ls", "--control", "127.0.0.1:%d" % e.cport,
                     "--control-token-file", tok])
    check(r.returncode == 0 and r.stdout.startswith("t1 "), "CLI over TCP: %r %r" % (
        r.stdout, r.stderr))
    r = run_egressd(["sandbox", "ls", "--control", "127.0.0.1:%d" % e.cport])
    check(r.returncode == 1 and "401" in r.stderr, "CLI without the token: %r" % r.stderr)
    s = ctx.sock(socket.create_connection(("127.0.0.1", e.port), timeout=10,
                                          source_address=("127.0.0.100", 0)))
    t = "127.0.0.1:%d" % e.cport
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (t, t)).encode())
    got = s.recv(4096)
    check(b" 403 " in got.split(b"\r\n")[0] and b"proxy-loop" in got,
          "a sandbox reaching the control port: %r" % got[:200])
    refused = [ev for ev in e.log_events() if ev.get("event") == "control-refused"]
    check(len(refused) >= 2 and all(ev.get("uid") == -1 for ev in refused),
          "refusals logged: %r" % refused)
    no_real_value(e)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("1..0 # SKIP the control socket is root's; run as root")
        sys.exit(0)
    setup()
    sys.exit(suite.run())
