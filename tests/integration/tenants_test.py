#!/usr/bin/env python3
"""tenants_test.py -- integration tests of many sandboxes in one egressd: the
policy file's "sandboxes" section maps client source ranges and listeners to
policies. Two sandboxes live in two real network namespaces (veth pairs,
10.200.x.x), a third is claimed by a listener, a fourth namespace belongs to
no sandbox. Each sandbox gets its own allowNet and its own value for the same
secret name (and its own placeholder); a connection from an unknown source is
refused; SIGHUP reloads each sandbox's policy on its own. Real curl and Python
clients run inside the namespaces; the upstream is a TLS echo server that
records what it received. Prints TAP; exits 1 if any case failed.

As root it re-executes itself inside a fresh network namespace (unshare
--net): nothing can leave the machine. Without root (or `ip netns`) the cases
that need namespaces are skipped.
"""

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer, DNSServer,  # noqa: E402
                     run_egressd, spawn, free_port, clean_env, maybe_reexec_in_netns,
                     read_response, Reader, connect_proxy, proxy_connect, http_request)

NETNS = maybe_reexec_in_netns(__file__)

suite = Suite("tenants")
W = {}
_RND = uuid.uuid4().hex
REAL = {"a": "sk-REAL-SBA-" + _RND[:20], "b": "sk-REAL-SBB-" + _RND[12:32],
        "c": "sk-REAL-SBC-" + _RND[6:26]}
# namespaces: sandbox a, sandbox b, and one no sandbox claims (x)
NS = {k: "egt%s%d" % (k, os.getpid()) for k in ("a", "b", "x")}
NET = {"a": 101, "b": 102, "x": 103}
PH_RE = r"egressd-ph-[0-9a-f]{32}"


def host_ip(k):
    return "10.200.%d.1" % NET[k]


def ns_ip(k):
    return "10.200.%d.2" % NET[k]


def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("%s: %s" % (cmd, r.stderr.strip()))


def make_namespaces():
    for k, ns in NS.items():
        n = NET[k]
        sh("ip netns add %s" % ns)
        atexit.register(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
        sh("ip link add vh%d type veth peer name vj%d" % (n, n))
        sh("ip link set vj%d netns %s" % (n, ns))
        sh("ip addr add %s/30 dev vh%d && ip link set vh%d up" % (host_ip(k), n, n))
        sh("ip netns exec %s sh -c 'ip addr add %s/30 dev vj%d && ip link set vj%d up && "
           "ip link set lo up && ip route add default via %s'" % (ns, ns_ip(k), n, n, host_ip(k)))


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:api.test", "DNS:a-only.test", "DNS:b-only.test",
                                    "DNS:c-only.test", "DNS:a-new.test"])
    pki = W["pki"]
    W["srv"] = EchoHTTPServer("127.0.0.1", tls=(pki["cert"], pki["key"]))
    W["srv"].values.update(REAL)
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in
                          ["api.test", "a-only.test", "b-only.test", "c-only.test", "a-new.test"]})
    W["port"] = W["srv"].port
    if NETNS:
        make_namespaces()


def write(path, obj):
    with open(path, "w") as f:
        if isinstance(obj, str):
            f.write(obj)
        else:
            json.dump(obj, f, indent=1)


def policy_a(allow=("api.test", "a-only.test")):
    return {"allowNet": list(allow),
            "secrets": {"API_KEY": {"hosts": ["api.test"], "value": REAL["a"]}}}


def policy_b():
    return {"allowNet": ["api.test", "b-only.test"],
            "secrets": {"API_KEY": {"hosts": ["api.test"], "valueFromEnv": "B_SRC"}}}


def config(ctx, lport, extra=None, a=None, b=None):
    """The main file (sandboxes a and b from namespaces, c on the loopback
    listener) with a's and b's policies in their own files."""
    d = ctx.tmp
    write(os.path.join(d, "a.json"), a if a is not None else policy_a())
    write(os.path.join(d, "b.json"), b if b is not None else policy_b())
    sbs = {
        "a": {"source": ns_ip("a"), "policy": "a.json"},
        "b": {"source": [ns_ip("b") + "/32"], "policy": os.path.join(d, "b.json")},
        "c": {"listen": "127.0.0.1:%d" % lport, "source": "127.0.0.0/8",
              "policy": {"allowNet": ["api.test", "c-only.test"],
                         "secrets": {"API_KEY": {"hosts": ["api.test"], "value": REAL["c"]}}}},
    }
    sbs.update(extra or {})
    path = os.path.join(d, "egressd.json")
    write(path, {"sandboxes": sbs})
    return path


def start(ctx, extra=None, extra_args=()):
    state = os.path.join(ctx.tmp, "state")

    def make():
        lport, sport = free_port(), free_port()
        cfg = config(ctx, lport, extra)
        args = ["-c", cfg, "--state-dir", state, "--allow-private", "127.0.0.0/8",
                "--upstream-ca", W["pki"]["ca"], "--listen", "0.0.0.0:%d" % sport] + list(extra_args)
        e = ctx.egressd(args, listen_port=lport, dns="127.0.0.1:%d" % W["dns"].port,
                        env={"B_SRC": REAL["b"]})
        e.cfg, e.sport = cfg, sport
        return e
    e = ctx.on_free_ports(make)
    e.state = state
    cfg = e.cfg
    e.ca = os.path.join(state, "ca.crt")
    e.ph = {}
    for k in ("a", "b", "c"):
        r = run_egressd(["env", "-c", cfg, "--state-dir", state, "--sandbox", k,
                         "--upstream-ca", W["pki"]["ca"]], env={"B_SRC": REAL["b"]})
        check(r.returncode == 0, "egressd env --sandbox %s: %s" % (k, r.stderr))
        e.ph[k] = dict(l.split("=", 1) for l in r.stdout.split("\n") if "=" in l)["API_KEY"]
    return e


def ns_curl(ctx, k, e, url, *args):
    """curl inside namespace k through egressd's host-side address."""
    cmd = ["ip", "netns", "exec", NS[k], "curl", "-q", "-sS", "--max-time", "10",
           "-x", "http://%s:%d" % (host_ip(k), e.sport),
           "--cacert", os.path.join(e.state, "ca-bundle.pem"),
           "-o", "-", "-D", "-", url] + list(args)
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    ctx.procs.append(p)
    out, err = p.communicate(timeout=20)
    ctx.note("%s -> %d %s" % (" ".join(cmd[4:]), p.returncode, err.decode()[:200]))
    return p.returncode, out.decode("utf-8", "replace")


def status_of(out):
    """The status of the last response head curl printed (-D -)."""
    codes = [l.split()[1] for l in out.split("\r\n") if l.startswith("HTTP/")]
    return int(codes[-1]) if codes else None


def seen_since(n):
    return W["srv"].seen[n:]


def auth_seen(n):
    return [v for s in seen_since(n) for k, v in s["headers"] if k.lower() == "authorization"]


def no_real_values(ctx, e, outputs):
    blob = "\n".join(outputs) + e.stderr() + "\n".join(e.log_lines())
    for k, v in REAL.items():
        check(v not in blob, "sandbox %s's real value reached a client or a log" % k)


need_ns = None if NETNS else "needs root and network namespaces"
U = "https://api.test:%d/echo"


@suite.case("each sandbox's secret: its own value injected for its own placeholder", skip=need_ns)
def t_own_values(ctx):
    e = start(ctx)
    check(len(set(e.ph.values())) == 3, "three sandboxes, three placeholders: %r" % e.ph)
    outs = []
    for k in ("a", "b"):
        n = len(W["srv"].seen)
        rc, out = ns_curl(ctx, k, e, U % W["port"], "-H", "Authorization: Bearer " + e.ph[k])
        outs.append(out)
        check(rc == 0 and status_of(out) == 200, "sandbox %s request: rc %d %s" % (k, rc, out[:300]))
        check_eq(auth_seen(n), ["Bearer " + REAL[k]], "what the upstream got from sandbox %s" % k)
        check(e.ph[k] in out, "sandbox %s's echoed value is its placeholder again" % k)
    no_real_values(ctx, e, outs)


@suite.case("another sandbox's placeholder is just a string: never its value", skip=need_ns)
def t_cross_placeholder(ctx):
    e = start(ctx)
    n = len(W["srv"].seen)
    rc, out = ns_curl(ctx, "a", e, U % W["port"], "-H", "Authorization: Bearer " + e.ph["b"])
    check(rc == 0 and status_of(out) == 200, "request: %s" % out[:300])
    check_eq(auth_seen(n), ["Bearer " + e.ph["b"]], "the upstream got b's placeholder untouched")
    no_real_values(ctx, e, [out])


@suite.case("each sandbox's allowNet: a-only for a, b-only for b", skip=need_ns)
def t_allownet(ctx):
    e = start(ctx)
    want = {("a", "a-only.test"): 200, ("a", "b-only.test"): 403,
            ("b", "b-only.test"): 200, ("b", "a-only.test"): 403}
    for (k, host), code in want.items():
        rc, out = ns_curl(ctx, k, e, "https://%s:%d/x" % (host, W["port"]))
        if code == 200:
            check(status_of(out) == 200, "%s -> %s: want 200, got %s" % (k, host, out[:200]))
        else:
            check("403" in out.split("\r\n")[0] and "X-Egressd-Reason: not-allowed" in out,
                  "%s -> %s: want 403 not-allowed, got %r" % (k, host, out[:300]))


def scrape(port):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for l in text.split("\n"):
        if l.startswith("egressd_sandbox_connections_total{") or \
                l.startswith('egressd_refusals_total{reason="unknown-source"}'):
            k, v = l.rsplit(" ", 1)
            out[k] = int(float(v))
    return out


@suite.case("metrics: connections by sandbox and decision; unknown sources as refusals",
            skip=need_ns)
def t_metrics(ctx):
    mport = free_port()
    e = start(ctx, extra_args=["--metrics", "127.0.0.1:%d" % mport])
    for k, host in (("a", "a-only.test"), ("a", "a-only.test"), ("a", "b-only.test"),
                    ("b", "b-only.test"), ("x", "api.test")):
        ns_curl(ctx, k, e, "https://%s:%d/x" % (host, W["port"]))
    deadline, got = time.time() + 3, {}
    want = {'egressd_sandbox_connections_total{sandbox="a",decision="allow"}': 2,
            'egressd_sandbox_connections_total{sandbox="a",decision="deny"}': 1,
            'egressd_sandbox_connections_total{sandbox="b",decision="allow"}': 1,
            'egressd_sandbox_connections_total{sandbox="b",decision="deny"}': 0,
            'egressd_sandbox_connections_total{sandbox="c",decision="allow"}': 0,
            'egressd_sandbox_connections_total{sandbox="c",decision="deny"}': 0,
            'egressd_refusals_total{reason="unknown-source"}': 1}
    while time.time() < deadline:
        got = scrape(mport)
        if got == want:
            break
        time.sleep(0.1)
    check_eq(got, want, "sandbox series (c: only the harness's probe, never decided)")


@suite.case("a source no sandbox claims: 403 unknown-source, logged", skip=need_ns)
def t_unknown_source(ctx):
    e = start(ctx)
    n = len(W["srv"].seen)
    rc, out = ns_curl(ctx, "x", e, U % W["port"])
    check("403" in out.split("\r\n")[0] and "X-Egressd-Reason: unknown-source" in out,
          "want 403 unknown-source, got %r" % out[:300])
    check_eq(len(seen_since(n)), 0, "requests the upstream got")
    ev = e.wait_log(lambda v: v.get("event") == "connect" and v.get("reason") == "unknown-source")
    check(ev[0]["client"].startswith(ns_ip("x") + ":") and ev[0]["decision"] == "deny",
          "connect event: %r" % ev[0])


@suite.case("a listener-claimed sandbox: loopback clients on its listener get c's policy",
            skip=need_ns)
def t_listener(ctx):
    e = start(ctx)
    # plain CONNECT on the 127.0.0.1 listener: c allows c-only.test, not a-only.test
    for host, want in (("c-only.test", 200), ("a-only.test", 403)):
        s = ctx.sock(connect_proxy(ctx, e.port))
        s.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" %
                   (host, W["port"], host, W["port"])).encode())
        st = read_response(Reader(s), connect=True).status
        check_eq(st, want, "CONNECT %s on sandbox c's listener" % host)
    # the 0.0.0.0 listener from loopback: no sandbox claims 127.0.0.1 there
    s = ctx.sock(connect_proxy(ctx, e.sport))
    s.sendall(("CONNECT c-only.test:%d HTTP/1.1\r\nHost: c-only.test\r\n\r\n" % W["port"]).encode())
    st = read_response(Reader(s), connect=True).status
    check_eq(st, 403, "CONNECT on the other listener from loopback")


@suite.case("transparent listener: a's redirected TLS gets a's secret; x's gets a TLS alert "
            "(unknown-source)", skip=need_ns)
def t_transparent(ctx):
    tport = free_port()
    e = start(ctx, extra_args=["--transparent", "0.0.0.0:%d" % tport])
    for k in ("a", "x"):
        rule = ["-t", "nat", "PREROUTING", "-i", "vh%d" % NET[k], "-p", "tcp", "-j", "REDIRECT",
                "--to-ports", str(tport)]
        sh("iptables -w " + " ".join(rule[:2]) + " -A " + " ".join(rule[2:]))
    try:
        outs = {}
        for k in ("a", "x"):
            n = len(W["srv"].seen)
            # any address routes to the host end, where the rule redirects it
            cmd = ["ip", "netns", "exec", NS[k], "curl", "-q", "-sS", "--max-time", "10",
                   "--resolve", "api.test:%d:198.51.100.1" % W["port"], "--cacert", e.ca,
                   "-H", "Authorization: Bearer " + e.ph["a"], U % W["port"]]
            p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
            ctx.procs.append(p)
            out, err = p.communicate(timeout=20)
            outs[k] = (p.returncode, out.decode("utf-8", "replace"), err.decode(), auth_seen(n))
            ctx.note("%s: %r" % (k, outs[k]))
        rc, out, err, seen = outs["a"]
        check(rc == 0 and e.ph["a"] in out, "a through the transparent listener: %d %r" % (rc, err))
        check_eq(seen, ["Bearer " + REAL["a"]], "what the upstream got from a")
        rc, out, err, seen = outs["x"]
        check(rc != 0 and "alert" in err.lower(), "x: want a TLS alert, got %d %r" % (rc, err))
        check_eq(seen, [], "what the upstream got from x")
        ev = e.wait_log(lambda v: v.get("event") == "connect" and v.get("mode") == "transparent"
                        and v.get("reason") == "unknown-source")
        check(ev[0]["client"].startswith(ns_ip("x") + ":"), "x's connect event: %r" % ev[0])
        no_real_values(ctx, e, [outs["a"][1], outs["x"][1]])
    finally:
        for k in ("a", "x"):
            subprocess.run("iptables -w -t nat -D PREROUTING -i vh%d -p tcp -j REDIRECT "
                           "--to-ports %d" % (NET[k], tport), shell=True, capture_output=True)


@suite.case("request rules are per sandbox: inline rules for a, a file's rules for b", skip=need_ns)
def t_rules(ctx):
    lport, sport = free_port(), free_port()
    write(os.path.join(ctx.tmp, "rb.json"), {
        "allowNet": ["api.test"],
        "rules": [{"host": "api.test", "method": "POST", "action": "allow"}]})
    cfg = os.path.join(ctx.tmp, "r.json")
    write(cfg, {"sandboxes": {
        "a": {"source": ns_ip("a"), "policy": {
            "allowNet": ["api.test"], "rulesDefault": "deny",
            "rules": [{"host": "api.test", "method": "GET", "path": "^/ok", "action": "allow"}]}},
        "b": {"source": ns_ip("b"), "policy": "rb.json"}}})
    state = os.path.join(ctx.tmp, "state")
    e = ctx.egressd(["-c", cfg, "--state-dir", state, "--allow-private", "127.0.0.0/8",
                     "--upstream-ca", W["pki"]["ca"], "--listen", "0.0.0.0:%d" % sport],
                    listen_port=lport, dns="127.0.0.1:%d" % W["dns"].port)
    e.sport, e.state = sport, state
    e.ca = os.path.join(state, "ca.crt")
    got = {}
    for k, method, path in (("a", "GET", "/ok"), ("a", "GET", "/no"), ("a", "POST", "/ok"),
                            ("b", "GET", "/ok"), ("b", "POST", "/ok")):
        rc, out = ns_curl(ctx, k, e, "https://api.test:%d%s" % (W["port"], path), "-X", method)
        got[(k, method, path)] = (status_of(out), "rule-denied" in out)
    check_eq(got, {("a", "GET", "/ok"): (200, False), ("a", "GET", "/no"): (403, True),
                   ("a", "POST", "/ok"): (403, True), ("b", "GET", "/ok"): (403, True),
                   ("b", "POST", "/ok"): (200, False)}, "statuses (and rule-denied) per sandbox")


@suite.case("the log names each connection's and request's sandbox", skip=need_ns)
def t_log_sandbox(ctx):
    e = start(ctx)
    ns_curl(ctx, "a", e, U % W["port"], "-H", "Authorization: Bearer " + e.ph["a"])
    ns_curl(ctx, "b", e, "https://b-only.test:%d/x" % W["port"])
    ca = e.wait_log(lambda v: v.get("event") == "connect" and v.get("sandbox") == "a")
    cb = e.wait_log(lambda v: v.get("event") == "connect" and v.get("sandbox") == "b")
    check(ca[0]["client"].startswith(ns_ip("a")) and cb[0]["client"].startswith(ns_ip("b")),
          "clients: %r %r" % (ca[0], cb[0]))
    ra = e.wait_log(lambda v: v.get("event") == "request" and v.get("sandbox") == "a")
    check_eq(ra[0].get("secrets"), ["API_KEY"], "secrets of a's request")


KEEPALIVE_CLIENT = r'''
import http.client, json, ssl, sys
proxy, port, ca, ph = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
host, p = proxy.rsplit(":", 1)
conn = http.client.HTTPSConnection(host, int(p), timeout=10,
                                   context=ssl.create_default_context(cafile=ca))
conn.set_tunnel("api.test", port)
for line in sys.stdin:
    conn.request("GET", "/" + line.strip(), headers={"Authorization": "Bearer " + ph})
    r = conn.getresponse()
    r.read()
    print(json.dumps({"status": str(r.status), "sock": id(conn.sock)}), flush=True)
'''


def ka_request(p, path):
    """One request on the keep-alive client's connection; its JSON answer."""
    p.stdin.write(path.encode() + b"\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        p.wait(5)
        check(False, "keep-alive client: no answer; stderr: %s" % p.stderr.read())
    return json.loads(line)


@suite.case("SIGHUP per sandbox: a's new policy applies, b's broken file keeps b's old "
            "policy, b's open connection carries on, a new sandbox appears", skip=need_ns)
def t_reload(ctx):
    e = start(ctx)
    # b: an open keep-alive intercepted connection, one request before the reload
    script = os.path.join(ctx.tmp, "ka.py")
    write(script, KEEPALIVE_CLIENT)
    p = spawn(["ip", "netns", "exec", NS["b"], sys.executable, script,
               "%s:%d" % (host_ip("b"), e.sport), str(W["port"]), e.ca, e.ph["b"]],
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
              env=clean_env())
    ctx.procs.append(p)
    first = ka_request(p, "one")
    check_eq(first["status"], "200", "b's first keep-alive request")
    rc, out = ns_curl(ctx, "x", e, U % W["port"])
    check("unknown-source" in out, "x is unknown before the reload: %r" % out[:200])
    # a: drop a-only.test, allow a-new.test; b: a broken file; x becomes sandbox d
    write(os.path.join(ctx.tmp, "a.json"), policy_a(allow=("api.test", "a-new.test")))
    write(os.path.join(ctx.tmp, "b.json"), '{"allowNet": ["b-only.test",]}')
    config(ctx, e.port, extra={"d": {"source": ns_ip("x"), "policy": {"allowNet": ["api.test"]}}},
           a=policy_a(allow=("api.test", "a-new.test")), b='{"allowNet": ["b-only.test",]}')
    e.proc.send_signal(signal.SIGHUP)
    ev = e.wait_log(lambda v: v.get("event") == "reload" and v.get("sandbox") == "b", timeout=5)
    check(ev[0]["ok"] is False and "b.json" in ev[0].get("error", ""), "b's reload event: %r" % ev[0])
    deadline = time.time() + 5
    while "SIGHUP" not in e.stderr() and time.time() < deadline:
        time.sleep(0.05)
    check("sandbox b: keeping its current policy" in e.stderr(), "stderr: %s" % e.stderr()[-500:])
    got = {}
    for k, host in (("a", "a-only.test"), ("a", "a-new.test"), ("b", "b-only.test"),
                    ("b", "a-only.test"), ("x", "api.test")):
        rc, out = ns_curl(ctx, k, e, "https://%s:%d/x" % (host, W["port"]))
        got[(k, host)] = status_of(out)
    check_eq(got, {("a", "a-only.test"): 403, ("a", "a-new.test"): 200,
                   ("b", "b-only.test"): 200, ("b", "a-only.test"): 403,
                   ("x", "api.test"): 200}, "statuses after the reload")
    # b's open connection: still b's generation, still injecting b's value
    n = len(W["srv"].seen)
    second = ka_request(p, "two")
    check_eq(second["status"], "200", "b's second keep-alive request")
    check_eq(second["sock"], first["sock"], "the same connection (socket) for both requests")
    check_eq(auth_seen(n), ["Bearer " + REAL["b"]], "b's value on the old connection")
    p.stdin.close()
    p.wait(timeout=10)


@suite.case("check and env with sandboxes: --sandbox chooses, placeholders differ",
            skip=None)
def t_check_env(ctx):
    cfg = config(ctx, 3128)
    r = run_egressd(["check", "-c", cfg])
    check(r.returncode == 0 and "policy ok: 3 sandboxes" in r.stdout, "check: %r %r" % (r.stdout, r.stderr))
    r = run_egressd(["check", "-c", cfg, "a-only.test"])
    check(r.returncode == 2 and "--sandbox NAME: a b c" in r.stderr, "no --sandbox: %r" % r.stderr)
    r = run_egressd(["check", "-c", cfg, "--sandbox", "a", "a-only.test", "b-only.test"])
    check(r.returncode == 1 and "a-only.test:443 allow" in r.stdout and
          "b-only.test:443 deny reason=not-allowed" in r.stdout, "check a: %r" % r.stdout)
    r = run_egressd(["check", "-c", cfg, "--sandbox", "b", "b-only.test", "api.test"],
                    env={"B_SRC": "x"})
    check(r.returncode == 0 and "api.test:443 allow" in r.stdout and "secrets=API_KEY" in r.stdout,
          "check b: %r %r" % (r.stdout, r.stderr))
    r = run_egressd(["check", "-c", cfg, "--sandbox", "zz", "api.test"])
    check(r.returncode == 2 and 'no sandbox named "zz"' in r.stderr, "unknown sandbox: %r" % r.stderr)
    state = os.path.join(ctx.tmp, "state")
    phs = {}
    for k in ("a", "b", "c"):
        r = run_egressd(["env", "-c", cfg, "--state-dir", state, "--sandbox", k])
        check(r.returncode == 0, "env %s: %r" % (k, r.stderr))
        phs[k] = [l for l in r.stdout.split("\n") if l.startswith("API_KEY=")][0]
        check(REAL["a"] not in r.stdout and REAL["c"] not in r.stdout, "env printed a value")
    check(len(set(phs.values())) == 3, "placeholders per sandbox differ: %r" % phs)
    r = run_egressd(["env", "-c", cfg, "--state-dir", state, "--sandbox", "a"])
    check("API_KEY=" in r.stdout and [l for l in r.stdout.split("\n") if l.startswith("API_KEY=")][0]
          == phs["a"], "a's placeholder is stable")
    r = run_egressd(["env", "-c", cfg, "--state-dir", state])
    check(r.returncode == 2 and "--sandbox" in r.stderr, "env without --sandbox: %r" % r.stderr)
    r = run_egressd(["run", "-c", cfg, "--", "true"])
    check(r.returncode == 125 and "not \"sandboxes\"" in r.stderr, "run with sandboxes: %r" % r.stderr)


BAD = [
    ({"sandboxes": {"a": {"source": "10.0.0.0/8", "policy": {}},
                    "b": {"source": "10.1.0.0/16", "policy": {}}}},
     'sandboxes "a" and "b" can both claim one connection'),
    ({"sandboxes": {"a": {"policy": {}}}}, 'has neither "source" nor "listen"'),
    ({"allowNet": [], "sandboxes": {"a": {"source": "10.0.0.1", "policy": {}}}},
     '"allowNet" next to "sandboxes"'),
    ({"sandboxes": {"a": {"source": "10.0.0.1", "policy": {"sandboxes": {}}}}},
     "belongs at the top level"),
    ({"sandboxes": {"a": {"source": "10.0.0.1/8", "policy": {}}}},
     "host bits set after the prefix"),
    ({"sandboxes": {"a b": {"source": "10.0.0.1", "policy": {}}}}, 'invalid sandbox name "a b"'),
    ({"sandboxes": {"a": {"source": "10.0.0.1", "policy": "missing.json"}}},
     "missing.json: No such file or directory"),
    ({"sandboxes": {"a": {"source": "10.0.0.1", "policy": {"allowNet": ["x..y"]}}}},
     "sandboxes.a.policy.allowNet[0]: invalid pattern"),
    ({"sandboxes": {"a": {"source": "10.0.0.1", "policy": {}, "extra": 1}}}, 'unknown key "extra"'),
    ({"sandboxes": {"a": {"source": "10.0.0.1"}}}, 'has no "policy"'),
    ({"sandboxes": {"a": {"source": [], "policy": {}}}}, "sandboxes.a.source is an empty array"),
    ({"sandboxes": {"a": {"source": 7, "policy": {}}}},
     "sandboxes.a.source must be an address or CIDR or an array of them, not a number"),
    ({"sandboxes": {"a": {"listen": "127.0.0.1", "policy": {}}}}, 'invalid listen "127.0.0.1"'),
    ({"sandboxes": {}}, "non-empty object"),
]


def t_bad(ctx, cfg, want):
    path = os.path.join(ctx.tmp, "bad.json")
    write(path, cfg)
    r = run_egressd(["check", "-c", path])
    check(r.returncode == 2 and want in r.stderr and path + ":" in r.stderr,
          "want exit 2 and %r with FILE:LINE:COL, got %d %r" % (want, r.returncode, r.stderr))


for _cfg, _want in BAD:
    suite.add("bad sandboxes config refused: %s" % _want, t_bad, _cfg, _want)


@suite.case("serve: a sandbox naming a listener egressd does not have is refused")
def t_bad_listener(ctx):
    path = os.path.join(ctx.tmp, "l.json")
    write(path, {"sandboxes": {"a": {"listen": "127.0.0.1:1", "policy": {}}}})
    r = run_egressd(["serve", "-c", path, "--listen", "127.0.0.1:%d" % free_port(),
                     "--state-dir", os.path.join(ctx.tmp, "st")])
    check(r.returncode == 1 and "names listener 127.0.0.1:1, which is not" in r.stderr,
          "got %d %r" % (r.returncode, r.stderr))


@suite.case("a second -c next to a sandboxes file is refused")
def t_two_configs(ctx):
    cfg = config(ctx, 3128)
    other = os.path.join(ctx.tmp, "o.json")
    write(other, {"allowNet": []})
    for order in ([cfg, other], [other, cfg]):
        r = run_egressd(["check", "-c", order[0], "-c", order[1]])
        check(r.returncode == 2 and "must be the only -c" in r.stderr, "%r: %r" % (order, r.stderr))


if __name__ == "__main__":
    try:
        setup()
    except Exception as ex:  # setup failures fail every case visibly
        print("# setup failed: %r" % (ex,), flush=True)
        print("1..1\nnot ok 1 - setup: %r" % (ex,), flush=True)
        sys.exit(1)
    sys.exit(suite.run())
