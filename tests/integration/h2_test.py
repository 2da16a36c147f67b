#!/usr/bin/env python3
"""h2_test.py -- HTTP/2 clients through egressd, against an upstream that speaks
both HTTP/2 and HTTP/1.1 and one that speaks HTTP/1.1 only
(tests/integration/h2echo.js, Node): a tunnel carries HTTP/2 end to end; an
intercepted host whose upstream chose h2 is served over HTTP/2 on both sides
by default (the h2 relay: the secret injected, a `request` event with
"proto":"h2"), to an HTTP/1.1 sandbox by the bridge (HTTP/1.1 requests on
upstream h2 streams, "upstream_proto":"h2"), over HTTP/1.1 with --no-http2; an
intercepted host whose upstream speaks HTTP/1.1 only is served over HTTP/1.1
(curl falls back), and a client that offers only h2 (Node's http2, gRPC) gets
the no_application_protocol alert and a refuse event; HTTP/2 with prior
knowledge where egressd reads HTTP/1 gets 400 h2-prior-knowledge and a refuse
event. Prints TAP.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, DNSServer, curl, spawn,  # noqa: E402
                     run_egressd, free_port, wait_until, EGRESSD_BIN, connect_proxy, proxy_connect,
                     client_ssl_context, Reader, http_request, read_response, read_head, ws_accept,
                     ws_read_frame, IO_TIMEOUT)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node")
GO = shutil.which("go")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
suite = Suite("h2")
W = {}
REAL = "sk-REAL-H2-" + uuid.uuid4().hex[:24]
OTHER = "sk-OTHER-H2-" + uuid.uuid4().hex[:24]


def setup():
    if not NODE:
        return
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:api.test", "DNS:tun.test", "DNS:h1.test"])
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in ["api.test", "tun.test", "h1.test"]})
    for name, extra in (("srv", []), ("h1srv", ["h1"])):
        p = spawn([NODE, os.path.join(HERE, "h2echo.js"), W["pki"]["key"], W["pki"]["cert"]] +
                  extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        W[name] = p
        W[name + "_port"] = int(p.stdout.readline())
    W["port"] = W["srv_port"]


def is_asan():
    with open(EGRESSD_BIN, "rb") as f:
        return b"__asan_init" in f.read()


def no_node():
    return None if NODE else "node is not installed"


def start(ctx, http2=True, extra=()):
    args = ["--allow-net", "api.test,tun.test,h1.test", "--allow-private", "127.0.0.0/8",
            "--secret", "API_KEY=api.test,h1.test", "--secret", "OTHER_KEY=other.test",
            "--upstream-ca", W["pki"]["ca"], "--state-dir", os.path.join(ctx.tmp, "state")]
    env = {"API_KEY": REAL, "OTHER_KEY": OTHER}
    e = ctx.egressd(args + ([] if http2 else ["--no-http2"]) + list(extra),
                    dns="127.0.0.1:%d" % W["dns"].port, env=env)
    e.ca = os.path.join(ctx.tmp, "state", "ca.crt")
    r = run_egressd(["env", "--format", "json"] + args, env=env)
    check_eq(r.returncode, 0, "egressd env: %s" % r.stderr)
    e.ph = json.loads(r.stdout)["API_KEY"]
    e.other_ph = json.loads(r.stdout)["OTHER_KEY"]
    return e


def port_of(host):
    return W["h1srv_port"] if host == "h1.test" else W["srv_port"]


def url(host, path="/x"):
    return "https://%s:%d%s" % (host, port_of(host), path)


def pcurl(ctx, e, *args):
    r = curl(ctx, "-x", "http://" + e.addr, "--cacert", e.ca, "-w", "\n%{http_version}", *args)
    check(REAL.encode() not in r.stdout, "curl saw the real value")
    return r


def node_client(ctx, e, host, header=None):
    cmd = [NODE, os.path.join(HERE, "h2client.js"), e.addr, "%s:%d" % (host, port_of(host)), "/n",
           e.ca if host != "tun.test" else W["pki"]["ca"]] + ([header] if header else [])
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.procs.append(p)
    out, err = p.communicate(timeout=30)
    out = out.decode("utf-8", "replace")
    ctx.note("%s -> %d\n%s%s" % (" ".join(cmd[2:]), p.returncode, out[-500:], err[-300:]))
    check(REAL not in out, "the Node client saw the real value")
    return p.returncode, out


@suite.case("a tunnelled host: curl --http2 speaks HTTP/2 with the upstream end to end",
            skip=no_node)
def _(ctx):
    e = start(ctx)
    r = pcurl(ctx, e, "--http2", "--cacert", W["pki"]["ca"], url("tun.test"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    check_eq(ver, b"2", "curl's HTTP version")
    check_eq(json.loads(body)["proto"], "2.0", "the upstream's view")


AUTH_SHA = hashlib.sha256(("Bearer " + REAL).encode()).hexdigest()


def curl_authed(ctx, e, flag, host, want):
    """curl FLAG (--http2/--http1.1) with the placeholder in Authorization to host:
    checks curl's and the upstream's HTTP versions (want: (curl's, the upstream's))
    and that the upstream got the real value; returns the upstream's JSON."""
    r = pcurl(ctx, e, flag, "-H", "Authorization: Bearer " + e.ph, url(host))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    got = json.loads(body)
    check_eq((ver.decode(), got["proto"]), want, "curl's and the upstream's HTTP versions")
    check_eq(got["auth_sha256"], AUTH_SHA, "what the upstream received: the real value")
    return got


@suite.case("an intercepted host whose upstream speaks h2: curl --http2 speaks HTTP/2 on both "
            "sides, the secret injected (the upstream's hash) and never seen by curl; the "
            "request event says proto h2", skip=no_node)
def _(ctx):
    e = start(ctx)
    curl_authed(ctx, e, "--http2", "api.test", ("2", "2.0"))
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("proto") == "h2")
    check_eq((ev[0]["method"], ev[0]["path"], ev[0]["status"]), ("GET", "/x", 200),
             "request event %r" % ev[0])
    check_eq(ev[0].get("secrets"), ["API_KEY"], "the secret injected, by name")


@suite.case("an intercepted host whose upstream speaks h2: Node's http2 client (ALPN h2 only) "
            "gets 200 over HTTP/2, the secret injected", skip=no_node)
def _(ctx):
    e = start(ctx)
    rc, out = node_client(ctx, e, "api.test", "authorization: Bearer " + e.ph)
    check_eq(rc, 0, "exit (%s)" % out)
    status, body = out.split("\n", 1)
    got = json.loads(body)
    check_eq(status, "200", "status")
    check_eq(got["proto"], "2.0", "the upstream's view")
    check_eq(got["auth_sha256"], AUTH_SHA, "what the upstream received: the real value")
    check_eq(got["headers"]["authorization"], "Bearer " + e.ph,
             "the reply's DATA echoing the real value reached the client redacted")


@suite.case("an intercepted host over HTTP/2: an 8 MiB reply through the relay "
            "(flow control and --max-buffer 65536 on both sockets), its tail redacted",
            skip=no_node)
def _(ctx):
    e = start(ctx, extra=["--max-buffer", "65536"])
    n = 8 << 20
    r = pcurl(ctx, e, "--http2", "-H", "Authorization: Bearer " + e.ph,
              url("api.test", "/big/%d" % n))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    check_eq(ver, b"2", "curl's HTTP version")
    check_eq(len(body), n + len("Bearer " + e.ph), "bytes received")
    check(body.endswith(("Bearer " + e.ph).encode()), "the tail: the placeholder, not the value")
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("proto") == "h2")
    check_eq(ev[0]["bytes_down"], len(body), "the request event's bytes_down")


@suite.case("an intercepted host over HTTP/2: a 4 MiB request body reaches the "
            "upstream whole (--max-buffer 65536)", skip=no_node)
def _(ctx):
    e = start(ctx, extra=["--max-buffer", "65536"])
    n = 4 << 20
    path = os.path.join(ctx.tmp, "up.bin")
    with open(path, "wb") as f:
        f.write(b"u" * n)
    r = pcurl(ctx, e, "--http2", "--data-binary", "@" + path, url("api.test", "/up"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    got = json.loads(body)
    check_eq((ver, got["method"], got["body"]), (b"2", "POST", n), "version, method, bytes upstream")
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("proto") == "h2")
    check_eq(ev[0]["bytes_up"], n, "the request event's bytes_up")


def requests_total(mport, proto="h2"):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10).read()
    for line in body.decode().splitlines():
        if line.startswith('egressd_requests_total{mode="intercept",proto="%s"} ' % proto):
            return int(float(line.split()[-1]))
    raise AssertionError("no egressd_requests_total{mode=intercept,proto=%s} in the scrape" % proto)


@suite.case("an intercepted host over HTTP/2: two requests on one connection are "
            "two request events (streams 1 and 3) and egressd_requests_total{mode=intercept,"
            "proto=h2} 2 (proto=http1 0)",
            skip=no_node)
def _(ctx):
    def make():
        mport = free_port()
        e = start(ctx, extra=["--metrics", "127.0.0.1:%d" % mport])
        e.mport = mport
        return e
    e = ctx.on_free_ports(make)
    r = pcurl(ctx, e, "--http2", "-H", "Authorization: Bearer " + e.ph, url("api.test", "/a"),
              url("api.test", "/b"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    ev = [e.wait_log(lambda v, p=p: v.get("event") == "request" and v.get("proto") == "h2" and
                     v.get("path") == p)[0] for p in ("/a", "/b")]
    check_eq(len({v["id"] for v in ev}), 1, "one connection")
    deadline = time.time() + 10
    while requests_total(e.mport) < 2 and time.time() < deadline:
        time.sleep(0.05)
    check_eq(requests_total(e.mport), 2, "egressd_requests_total{mode=intercept,proto=h2}")
    check_eq(requests_total(e.mport, "http1"), 0,
             "egressd_requests_total{mode=intercept,proto=http1}")


@suite.case("an intercepted host over HTTP/2, --on-placeholder-leak block: a "
            "placeholder of another host's secret gets 403 placeholder-leak on its stream, a "
            "placeholder-leak event, and the next stream on the connection is served",
            skip=no_node)
def _(ctx):
    e = start(ctx, extra=["--on-placeholder-leak", "block"])
    r = pcurl(ctx, e, "--http2", "-H", "X-Other: " + e.other_ph, url("api.test", "/leak"),
              "-o", "/dev/null", "-w", "%{http_code}\n", "--next", "-x", "http://" + e.addr,
              "--cacert", e.ca, "--http2", "-o", "/dev/null", "-w", "%{http_code}",
              url("api.test", "/fine"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    codes = r.stdout.split(b"\n")
    check_eq((codes[0], codes[-1]), (b"403", b"200"), "statuses %r" % r.stdout[-200:])
    lk = e.wait_log(lambda v: v.get("event") == "placeholder-leak")
    check_eq((lk[0].get("action"), lk[0].get("secrets"), lk[0].get("path")),
             ("block", ["OTHER_KEY"], "/leak"), "placeholder-leak event %r" % lk[0])
    ev = [e.wait_log(lambda v, p=p: v.get("event") == "request" and v.get("path") == p)[0]
          for p in ("/leak", "/fine")]
    check_eq((ev[0]["status"], ev[0].get("reason"), ev[1]["status"]),
             (403, "placeholder-leak", 200), "request events %r" % ev)
    check_eq(ev[0]["id"], ev[1]["id"], "one connection")


def node_multi(ctx, e, host, reqs):
    """Node's http2 client: reqs (header objects) one after the other on one
    HTTP/2 connection through egressd; returns one dict per request."""
    cmd = [NODE, os.path.join(HERE, "h2multi.js"), e.addr, "%s:%d" % (host, port_of(host)), e.ca,
           json.dumps(reqs)]
    p = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.procs.append(p)
    out, err = p.communicate(timeout=30)
    out = out.decode("utf-8", "replace")
    ctx.note("h2multi %s -> %d\n%s%s" % (reqs, p.returncode, out[-1500:], err[-300:]))
    check(REAL not in out and OTHER not in out, "the Node client saw a real value")
    check_eq(p.returncode, 0, "h2multi exit (%s)" % out[-300:])
    return [json.loads(line) for line in out.splitlines()]


def h2_events(e, paths):
    """The `request` event (proto h2) of each path, waited for."""
    return [e.wait_log(lambda v, p=p: v.get("event") == "request" and v.get("proto") == "h2" and
                       v.get("path") == p)[0] for p in paths]


@suite.case("an intercepted host over HTTP/2 with request rules: a stream the rules "
            "deny gets 403 rule-denied with HTTP/1's one-line body, and the next stream on the "
            "same connection is served", skip=no_node)
def _(ctx):
    policy = os.path.join(ctx.tmp, "rules.json")
    with open(policy, "w") as f:
        json.dump({"rules": [{"host": "api.test", "method": "GET", "path": "^/ok",
                              "action": "allow"},
                             {"host": "api.test", "action": "deny"}]}, f)
    e = start(ctx, extra=["-c", policy])
    res = node_multi(ctx, e, "api.test", [{":path": "/denied"}, {":path": "/ok"}])
    check_eq((res[0].get("status"), res[0].get("reason")), (403, "rule-denied"),
             "the denied stream: %r" % res[0])
    check(res[0].get("body", "").startswith("egressd: GET https://api.test") and
          "refused by rule 1" in res[0].get("body", ""), "its body: %r" % res[0])
    check_eq(res[1].get("status"), 200, "the next stream: %r" % res[1])
    check_eq(json.loads(res[1]["body"])["path"], "/ok", "what the upstream got")
    ev = h2_events(e, ("/denied", "/ok"))
    check_eq((ev[0]["status"], ev[0].get("reason"), ev[0].get("decision"), ev[0].get("rule")),
             (403, "rule-denied", "deny", 1), "the denied stream's event %r" % ev[0])
    check_eq((ev[1]["status"], ev[1].get("decision"), ev[1].get("rule")), (200, "allow", 0),
             "the allowed stream's event %r" % ev[1])
    check_eq(ev[0]["id"], ev[1]["id"], "one connection")


@suite.case("an intercepted host over HTTP/2: an :authority naming another host gets "
            "421 host-mismatch on that stream only; the next stream is served", skip=no_node)
def _(ctx):
    e = start(ctx)
    res = node_multi(ctx, e, "api.test", [
        {":path": "/elsewhere", ":authority": "tun.test:%d" % W["srv_port"],
         "authorization": "Bearer " + e.ph},
        {":path": "/here", "authorization": "Bearer " + e.ph}])
    check_eq((res[0].get("status"), res[0].get("reason")), (421, "host-mismatch"),
             "the stream naming tun.test: %r" % res[0])
    check_eq(res[1].get("status"), 200, "the next stream: %r" % res[1])
    got = json.loads(res[1]["body"])
    check_eq((got["path"], got["auth_sha256"]), ("/here", AUTH_SHA),
             "the upstream got the next stream, the secret injected")
    ev = h2_events(e, ("/elsewhere", "/here"))
    check_eq((ev[0]["status"], ev[0].get("reason"), ev[1]["status"]), (421, "host-mismatch", 200),
             "request events %r" % ev)
    check(not ev[0].get("secrets"), "nothing injected into the refused stream: %r" % ev[0])
    check_eq(ev[0]["id"], ev[1]["id"], "one connection")


@suite.case("an intercepted host over HTTP/2, --on-placeholder-leak log: a "
            "placeholder for another host's secret in an h2 header reaches the upstream "
            "unchanged (never replaced by that secret's value), with a placeholder-leak event",
            skip=no_node)
def _(ctx):
    e = start(ctx)
    res = node_multi(ctx, e, "api.test", [{":path": "/other", "x-other": e.other_ph,
                                           "authorization": "Bearer " + e.ph}])
    check_eq(res[0].get("status"), 200, "status: %r" % res[0])
    got = json.loads(res[0]["body"])
    check_eq(got["headers"].get("x-other"), e.other_ph,
             "the upstream's echo: the other host's placeholder, unchanged")
    check_eq(got["auth_sha256"], AUTH_SHA, "this host's placeholder was injected")
    lk = e.wait_log(lambda v: v.get("event") == "placeholder-leak")
    check_eq((lk[0].get("action"), lk[0].get("secrets"), lk[0].get("path"), lk[0].get("proto")),
             ("log", ["OTHER_KEY"], "/other", "h2"), "placeholder-leak event %r" % lk[0])
    check(OTHER not in "\n".join(e.log_lines()), "the other value in egressd's log")


GO_H2 = """package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

func main() {
	req, _ := http.NewRequest("GET", os.Args[1], nil)
	req.Header.Set("Authorization", "Bearer "+os.Getenv("API_KEY"))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	fmt.Println(r.StatusCode, r.Proto)
	fmt.Println(string(b))
}
"""


def no_go():
    return no_node() or (None if GO else "go (golang-go) is not installed")


@suite.case("Go's default transport (HTTPS_PROXY, SSL_CERT_FILE) to an intercepted host, "
            "--http2: HTTP/2 on both sides, the secret injected, the echo redacted",
            skip=no_go, timeout=240)
def _(ctx):
    e = start(ctx)
    d = os.path.join(ctx.tmp, "go")
    os.makedirs(d)
    with open(os.path.join(d, "main.go"), "w") as f:
        f.write(GO_H2)
    # std only: no module is fetched (GOPROXY=off, GOFLAGS=-mod=mod), caches in
    # the case's directory
    env = {"PATH": os.environ["PATH"], "HOME": d, "GOCACHE": os.path.join(d, "cache"),
           "GOPATH": os.path.join(d, "gopath"), "GOPROXY": "off", "GOFLAGS": "-mod=mod",
           "GOTOOLCHAIN": "local", "GO111MODULE": "on", "CGO_ENABLED": "0",
           "HTTPS_PROXY": "http://" + e.addr, "SSL_CERT_FILE": e.ca, "API_KEY": e.ph}
    p = subprocess.run([GO, "run", os.path.join(d, "main.go"), url("api.test", "/go")], cwd=d,
                       env=env, capture_output=True, text=True, timeout=200)
    ctx.note("go run -> %d\n%s\n%s" % (p.returncode, p.stdout[-600:], p.stderr[-600:]))
    check(REAL not in p.stdout + p.stderr, "Go's client saw the real value")
    check_eq(p.returncode, 0, "go run exit (%s)" % p.stderr[-300:])
    head, body = p.stdout.split("\n", 1)
    check_eq(head, "200 HTTP/2.0", "Go's status and protocol")
    got = json.loads(body)
    check_eq((got["proto"], got["path"]), ("2.0", "/go"), "the upstream's view")
    check_eq(got["auth_sha256"], AUTH_SHA, "what the upstream received: the real value")
    check_eq(got["headers"]["authorization"], "Bearer " + e.ph,
             "the reply echoing the value reached Go redacted")
    ev = h2_events(e, ("/go",))
    check_eq((ev[0]["status"], ev[0].get("secrets")), (200, ["API_KEY"]), "request event %r" % ev[0])


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
error_log %(d)s/error.log;
pid %(d)s/nginx.pid;
events { worker_connections 64; }
http {
    log_format seen '$server_protocol $request_uri $http_authorization';
    access_log %(d)s/access.log seen;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server {
        listen 127.0.0.1:%(port)d ssl http2;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        location / {
            default_type text/plain;
            return 200 "proto=$server_protocol auth=$http_authorization\n";
        }
    }
}
"""


def no_nginx():
    return no_node() or (None if NGINX else "nginx is not installed")


def start_nginx(ctx):
    """nginx (Debian 1.22, `listen ... ssl http2`) on a free loopback port, in
    the foreground, its files in the case's directory; returns (port, dir).
    Another socket may take the port first: nginx then exits, and a new one
    is tried."""
    d = os.path.join(ctx.tmp, "nginx")
    os.makedirs(d)
    for _ in range(3):
        port = free_port()
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF % {"d": d, "port": port, "cert": W["pki"]["cert"],
                                  "key": W["pki"]["key"]})
        p = spawn([NGINX, "-p", d, "-e", os.path.join(d, "error.log"), "-c",
                   os.path.join(d, "nginx.conf")], stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE)
        ctx.procs.append(p)

        def state():
            if p.poll() is not None:
                return "exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return "up"
            except OSError:
                return None
        if wait_until(state, timeout=10, what="nginx listening or exited") == "up":
            return port, d
    check(False, "nginx did not start: %r" % p.stderr.read()[-500:])


@suite.case("nginx with `listen ssl http2` as the upstream of an intercepted host, --http2: "
            "curl --http2 gets HTTP/2 on both sides, nginx saw HTTP/2.0 and the real value, "
            "the reply echoing it is redacted", skip=no_nginx)
def _(ctx):
    port, d = start_nginx(ctx)
    e = start(ctx)
    r = pcurl(ctx, e, "--http2", "-H", "Authorization: Bearer " + e.ph,
              "https://api.test:%d/ngx" % port)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    check_eq(ver, b"2", "curl's HTTP version")
    check_eq(body.decode(), "proto=HTTP/2.0 auth=Bearer %s\n" % e.ph,
             "nginx's reply: HTTP/2.0, the echoed value redacted")
    log = os.path.join(d, "access.log")
    line = wait_until(lambda: os.path.exists(log) and open(log).read().strip(), timeout=10,
                      what="nginx's access log line")
    check_eq(line, "HTTP/2.0 /ngx Bearer " + REAL, "what nginx received (protocol, value)")
    ev = h2_events(e, ("/ngx",))
    check_eq((ev[0]["status"], ev[0].get("secrets"), ev[0]["port"]), (200, ["API_KEY"], port),
             "request event %r" % ev[0])


@suite.case("an intercepted host over HTTP/2: a sandbox that stops reading a 100 MB "
            "reply; egressd holds it back by flow control (RSS grows by less than 16 MiB while "
            "the upstream is ready to send all of it)", skip=no_node, timeout=60)
def _(ctx):
    e = start(ctx)
    base = e.rss_kb()
    cmd = [NODE, os.path.join(HERE, "h2stall.js"), e.addr, "api.test:%d" % W["srv_port"],
           "/big/%d" % (100 << 20), e.ca]
    p = spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.procs.append(p)
    line = p.stdout.readline().decode()
    check(line.startswith("paused"), "the client paused after its first DATA: %r" % line)
    # the relay's bounds are about 4 x --max-buffer per direction: sample egressd's
    # RSS for two seconds after the stall (a relay that buffered would take ~100 MB)
    peak, end = 0, time.time() + 2
    while time.time() < end:
        peak = max(peak, e.rss_kb() or 0)
        time.sleep(0.05)
    print("# egressd VmRSS %d KiB before, peak %d KiB stalled" % (base, peak))
    if not is_asan():  # ASan's quarantine keeps freed memory
        check(peak - base < 16 * 1024, "RSS grew by %d KiB" % (peak - base))
    p.stdin.close()
    p.wait(timeout=10)


@suite.case("the bridge: an intercepted host whose upstream chose h2, curl --http1.1: one "
            "HTTP/1.1 request on an upstream h2 stream, the secret injected (the upstream's "
            "hash), the echo of it redacted, the request event says upstream_proto h2",
            skip=no_node)
def _(ctx):
    e = start(ctx)
    got = curl_authed(ctx, e, "--http1.1", "api.test", ("1.1", "2.0"))
    check_eq(got["headers"]["authorization"], "Bearer " + e.ph, "the echo, redacted")
    ev = e.wait_log(lambda v: v.get("event") == "request")
    check_eq((ev[0]["method"], ev[0]["path"], ev[0]["status"], ev[0].get("upstream_proto")),
             ("GET", "/x", 200, "h2"), "request event %r" % ev[0])
    check_eq(ev[0].get("secrets"), ["API_KEY"], "the secret injected, by name")


# ---- the bridge: an HTTP/1.1 sandbox, an upstream that chose h2 ----

def h1_open(ctx, e, host="api.test"):
    """CONNECT host through egressd, then TLS with no ALPN offered (python's
    ssl, as python requests and most HTTP/1 clients): (ssl socket, Reader)."""
    s, r, resp = proxy_connect(ctx, e.port, "%s:%d" % (host, port_of(host)))
    check_eq(resp.status, 200, "CONNECT status (%r)" % resp.raw_head[:200])
    t = client_ssl_context(e.ca).wrap_socket(s, server_hostname=host)
    t.settimeout(IO_TIMEOUT)
    ctx.sock(t)
    check_eq(t.selected_alpn_protocol(), None, "no ALPN on the sandbox's side")
    return t, Reader(t)


def h1_req(t, r, method, path, headers=(), body=None, chunked=None):
    t.sendall(http_request(method, path, ["Host: api.test"] + list(headers), body=body,
                           chunked_body=chunked))
    return read_response(r, method=method)


def read_chunked(r):
    """A chunked body and its trailers (a list of (name, value))."""
    body, trailers = bytearray(), []
    while True:
        size = int(r.until(b"\r\n").split(b";")[0].strip(), 16)
        if size == 0:
            break
        body += r.exactly(size)
        check_eq(r.exactly(2), b"\r\n", "chunk end")
    while True:
        line = r.until(b"\r\n")
        if line == b"\r\n":
            return bytes(body), trailers
        k, _, v = line.decode("latin-1").strip().partition(":")
        trailers.append((k.strip().lower(), v.strip()))


@suite.case("the bridge: python requests (a Session, ALPN http/1.1) makes three requests on "
            "one sandbox connection: three streams on one upstream h2 connection, the secret "
            "injected in each, three request events on one connection id", skip=no_node)
def _(ctx):
    import requests
    e = start(ctx)
    sess = requests.Session()
    sess.proxies = {"https": "http://" + e.addr}
    sess.verify = e.ca
    got = []
    for i in range(3):
        resp = sess.get(url("api.test", "/k%d" % i), headers={"Authorization": "Bearer " + e.ph},
                        timeout=IO_TIMEOUT, verify=e.ca)  # (the env's CA bundle wins otherwise)
        check_eq(resp.status_code, 200, "status")
        check(REAL not in resp.text, "requests saw the real value")
        got.append(resp.json())
    sess.close()
    check_eq([g["proto"] for g in got], ["2.0"] * 3, "the upstream's view")
    check_eq([g["auth_sha256"] for g in got], [AUTH_SHA] * 3, "the real value upstream")
    check_eq(len({g["conn"] for g in got}), 1, "one upstream connection (%r)" % got)
    ev = [e.wait_log(lambda v, p=p: v.get("event") == "request" and v.get("path") == p)[0]
          for p in ("/k0", "/k1", "/k2")]
    check_eq(len({v["id"] for v in ev}), 1, "one sandbox connection")
    check_eq([v.get("upstream_proto") for v in ev], ["h2"] * 3, "upstream_proto")


@suite.case("the bridge (python ssl, no ALPN): a reply without a length becomes chunked with "
            "the h2 trailers as chunked trailers; the secret's value echoed in the head, both "
            "DATA frames and the trailer reaches the sandbox as the placeholder", skip=no_node)
def _(ctx):
    e = start(ctx)
    t, r = h1_open(ctx, e)
    t.sendall(http_request("GET", "/chunked", ["Host: api.test", "TE: trailers",
                                               "Authorization: Bearer " + e.ph]))
    status, _, headers, head = read_head(r)
    check_eq(status, 200, "status")
    hd = {k.lower(): v for k, v in headers}
    check_eq(hd.get("transfer-encoding"), "chunked", "framing (%r)" % head)
    body, trailers = read_chunked(r)
    want = ("first Bearer %s\nsecond Bearer %s\n" % (e.ph, e.ph)).encode()
    check_eq(body, want, "the body, redacted")
    check_eq(dict(trailers).get("x-echo"), "Bearer " + e.ph, "the trailer, redacted")
    check(REAL.encode() not in head + body, "the real value reached the sandbox")


@suite.case("the bridge (python ssl, no ALPN), one connection: HEAD, 204, 304 (no body, no "
            "chunked framing), then a GET still framed right", skip=no_node)
def _(ctx):
    e = start(ctx)
    t, r = h1_open(ctx, e)
    resp = h1_req(t, r, "HEAD", "/x")
    check_eq((resp.status, resp.header("Transfer-Encoding")), (200, None), "HEAD")
    for code in (204, 304):
        resp = h1_req(t, r, "GET", "/status/%d" % code)
        check_eq((resp.status, resp.header("Transfer-Encoding")), (code, None), "GET %d" % code)
    resp = h1_req(t, r, "GET", "/after")
    check_eq((resp.status, json.loads(resp.body)["path"]), (200, "/after"), "the GET after them")


@suite.case("the bridge, --max-buffer 65536: 4 MiB POST bodies with Content-Length (curl "
            "--http1.1) and chunked (python ssl) reach the upstream whole as DATA",
            skip=no_node, timeout=60)
def _(ctx):
    e = start(ctx, extra=["--max-buffer", "65536"])
    n = 4 << 20
    path = os.path.join(ctx.tmp, "up.bin")
    with open(path, "wb") as f:
        f.write(b"u" * n)
    r = pcurl(ctx, e, "--http1.1", "--data-binary", "@" + path, "-H", "Expect:",
              url("api.test", "/up"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, ver = r.stdout.rsplit(b"\n", 1)
    got = json.loads(body)
    check_eq((ver, got["proto"], got["method"], got["body"]), (b"1.1", "2.0", "POST", n),
             "Content-Length: versions, method, bytes upstream")
    t, rd = h1_open(ctx, e)
    piece = b"c" * 65000
    resp = h1_req(t, rd, "POST", "/upc", chunked=[piece] * (n // len(piece)) + [b"c" * (n % len(piece))])
    got = json.loads(resp.body)
    check_eq((resp.status, got["method"], got["body"]), (200, "POST", n), "chunked: bytes upstream")
    check("transfer-encoding" not in got["headers"], "no Transfer-Encoding on the h2 stream")


@suite.case("the bridge: Expect: 100-continue -- the upstream's 100 reaches the sandbox as "
            "an HTTP/1.1 100 before it sends the body, then the final reply", skip=no_node)
def _(ctx):
    e = start(ctx)
    t, r = h1_open(ctx, e)
    data = b"d" * 1000
    t.sendall(http_request("POST", "/cont", ["Host: api.test", "Expect: 100-continue",
                                            "Content-Length: %d" % len(data)]))
    status, _, _, _ = read_head(r)  # blocks (IO_TIMEOUT) if the 100 never comes
    check_eq(status, 100, "the interim reply")
    t.sendall(data)
    resp = read_response(r)
    got = json.loads(resp.body)
    check_eq((resp.status, got["body"], got["headers"].get("expect")), (200, 1000, "100-continue"),
             "the final reply")


@suite.case("the bridge: an upstream that resets the stream gets the sandbox 502 (an error "
            "event, the request event incomplete); the next connection is served", skip=no_node)
def _(ctx):
    e = start(ctx)
    r = pcurl(ctx, e, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url("api.test", "/reset"))
    check_eq(r.stdout.split(b"\n")[0], b"502", "status (%r)" % r.stdout)
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("path") == "/reset")
    check_eq((ev[0].get("incomplete"), ev[0].get("upstream_proto")), (True, "h2"),
             "request event %r" % ev[0])
    er = e.wait_log(lambda v: v.get("event") == "error")
    check_eq((er[0]["status"], er[0]["reason"]), (502, "connect-failed"), "error event %r" % er[0])
    r = pcurl(ctx, e, "--http1.1", url("api.test", "/again"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)


@suite.case("an HTTP/1.1 upstream that closes the connection after a request without "
            "answering: the sandbox gets 502, as on an h2 stream reset", skip=no_node)
def _(ctx):
    e = start(ctx)
    r = pcurl(ctx, e, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url("h1.test", "/reset"))
    check_eq(r.stdout.split(b"\n")[0], b"502", "status (%r %r)" % (r.stdout, r.stderr))
    er = e.wait_log(lambda v: v.get("event") == "error")
    check_eq((er[0]["status"], er[0]["reason"]), (502, "connect-failed"), "error event %r" % er[0])


@suite.case("the bridge: a GOAWAY between requests -- the next request on the same sandbox "
            "connection goes on a new upstream connection (as after an HTTP/1.1 upstream "
            "closed a kept-alive connection), the one after that on the same new one",
            skip=no_node)
def _(ctx):
    e = start(ctx)
    t, r = h1_open(ctx, e)
    conns = []
    for path in ("/goaway", "/next", "/third"):
        resp = h1_req(t, r, "GET", path, ["Authorization: Bearer " + e.ph])
        check_eq(resp.status, 200, "%s status" % path)
        got = json.loads(resp.body)
        check_eq(got["auth_sha256"], AUTH_SHA, "%s: the real value upstream" % path)
        conns.append(got["conn"])
    check(conns[1] != conns[0] and conns[2] == conns[1], "upstream connections %r" % conns)


@suite.case("the bridge: a WebSocket upgrade after a request on an h2 upstream connection "
            "re-dials the upstream offering http/1.1 only: 101, the handshake's secret "
            "injected, the upstream saw HTTP/1.1; also when a GOAWAY had already dropped "
            "the h2 upstream", skip=no_node)
def _(ctx):
    import base64
    e = start(ctx)
    for first in ("/first", "/goaway"):
        t, r = h1_open(ctx, e)
        resp = h1_req(t, r, "GET", first)
        check_eq(json.loads(resp.body)["proto"], "2.0", "%s went on h2" % first)
        key = base64.b64encode(os.urandom(16)).decode()
        t.sendall(http_request("GET", "/ws", ["Host: api.test", "Upgrade: websocket",
                                              "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
                                              "Sec-WebSocket-Version: 13",
                                              "Authorization: Bearer " + e.ph]))
        resp = read_response(r)
        check_eq(resp.status, 101, "after %s: status (%r)" % (first, resp.raw_head))
        check_eq(resp.header("Sec-WebSocket-Accept"), ws_accept(key), "Sec-WebSocket-Accept")
        op, payload = ws_read_frame(r.exactly)[:2]
        got = json.loads(payload)
        check_eq((op, got["proto"], got["auth_sha256"]), (1, "1.1", AUTH_SHA),
                 "after %s: the upstream's view" % first)


@suite.case("the bridge: a request rule's 403 (rule-denied) comes from egressd, not the "
            "upstream; a placeholder for another host goes upstream unchanged, with a "
            "placeholder-leak event", skip=no_node)
def _(ctx):
    pol = os.path.join(ctx.tmp, "rules.json")
    with open(pol, "w") as f:
        json.dump({"rules": [{"host": "api.test", "path": "^/ok", "action": "allow"}],
                   "rulesDefault": "deny"}, f)
    e = start(ctx, extra=["-c", pol])
    t, r = h1_open(ctx, e)
    resp = h1_req(t, r, "GET", "/denied")
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "rule-denied"), "the denied one")
    resp = h1_req(t, r, "GET", "/ok", ["X-Other: " + e.other_ph])
    got = json.loads(resp.body)
    check_eq((resp.status, got["proto"], got["headers"].get("x-other")), (200, "2.0", e.other_ph),
             "the other host's placeholder, unchanged upstream")
    check(OTHER not in json.dumps(got), "the other secret's value never sent")
    lk = e.wait_log(lambda v: v.get("event") == "placeholder-leak")
    check_eq(lk[0].get("secrets"), ["OTHER_KEY"], "placeholder-leak event %r" % lk[0])
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("path") == "/denied")
    check_eq((ev[0]["status"], ev[0].get("reason")), (403, "rule-denied"), "request event")


@suite.case("--no-http2: an intercepted host whose upstream speaks h2 is served over "
            "HTTP/1.1 on both sides (curl --http2 falls back, the secret injected)",
            skip=no_node)
def _(ctx):
    e = start(ctx, http2=False)
    curl_authed(ctx, e, "--http2", "api.test", ("1.1", "1.1"))


@suite.case("an intercepted host whose upstream speaks HTTP/1.1 only: curl --http2 is served "
            "over HTTP/1.1 on both sides, the secret injected", skip=no_node)
def _(ctx):
    e = start(ctx)
    curl_authed(ctx, e, "--http2", "h1.test", ("1.1", "1.1"))


@suite.case("an intercepted host whose upstream speaks HTTP/1.1 only: Node's http2 client "
            "(ALPN h2 only) gets the no_application_protocol alert, and egressd's refuse "
            "event says why", skip=no_node)
def _(ctx):
    e = start(ctx)
    rc, out = node_client(ctx, e, "h1.test", "authorization: Bearer " + e.ph)
    check(rc != 0 and out.startswith("error") and "no application protocol" in out.lower(),
          "the client's error: %r" % out)
    ev = e.wait_log(lambda v: v.get("event") == "refuse" and
                    v.get("reason") == "client-tls-failed")
    check('ALPN "h2"' in ev[0].get("detail", ""), "refuse event %r" % ev[0])


@suite.case("a tunnelled host: Node's http2 client gets HTTP/2 end to end", skip=no_node)
def _(ctx):
    e = start(ctx)
    rc, out = node_client(ctx, e, "tun.test")
    check_eq(rc, 0, "exit (%s)" % out)
    status, body = out.split("\n", 1)
    check_eq(status, "200", "status")
    check_eq(json.loads(body)["proto"], "2.0", "the upstream's view")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def check_preface_refused(ctx, e, sock, reader, target, count=1):
    """Sends the HTTP/2 connection preface on sock (where egressd reads HTTP/1):
    a 400 h2-prior-knowledge with a sentence, then the close; a refuse event
    (method PRI, target when the connection has one; count such events in all)
    and no error event."""
    sock.sendall(PREFACE)
    resp = read_response(reader)
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (400, "h2-prior-knowledge"),
             "the reply to the preface (%r)" % resp)
    check(b"HTTP/2 with prior knowledge is not served" in resp.body and b"HPE_" not in resp.body,
          "the reply's sentence: %r" % resp.body)
    check_eq(reader.rest(), b"", "then the connection closes")
    def refused(v):
        return v.get("event") == "refuse" and v.get("reason") == "h2-prior-knowledge"
    ev = e.wait_log(refused, what="a refuse event h2-prior-knowledge")
    deadline = time.time() + 10
    while len(ev) < count and time.time() < deadline:
        time.sleep(0.05)
        ev = [v for v in e.log_events() if refused(v)]
    check_eq(len(ev), count, "refuse events h2-prior-knowledge")
    for v in ev:
        check_eq((v.get("method"), v.get("path"), v.get("status"), v.get("host"), v.get("port")),
                 ("PRI", "*", 400) + target, "the refuse event %r" % v)
        check("HTTP/2" in v.get("detail", "") and "HPE_" not in json.dumps(v),
              "the event's detail: %r" % v)
    check_eq([v for v in e.log_events() if v.get("event") == "error"], [], "error events")


@suite.case("HTTP/2 with prior knowledge to the explicit proxy port (origin-form): curl "
            "--http2-prior-knowledge gets no HTTP/2 there, egressd answers 400 "
            "h2-prior-knowledge with a sentence and logs a refuse event", skip=no_node)
def _(ctx):
    e = start(ctx)
    r = curl(ctx, "--http2-prior-knowledge", "http://%s/x" % e.addr)
    check(r.returncode != 0, "curl --http2-prior-knowledge succeeded: %r" % r.stdout[:200])
    e.wait_log(lambda v: v.get("event") == "refuse" and v.get("reason") == "h2-prior-knowledge",
               what="curl's refuse event")
    s = connect_proxy(ctx, e.port)  # the same preface, to read egressd's answer
    check_preface_refused(ctx, e, s, Reader(s), (None, None), count=2)


@suite.case("HTTP/2 with prior knowledge inside an intercepted CONNECT (TLS, ALPN http/1.1): "
            "400 h2-prior-knowledge with a sentence and a refuse event naming the host",
            skip=no_node)
def _(ctx):
    e = start(ctx, http2=False)
    target = "api.test:%d" % W["srv_port"]
    s, _r, resp = proxy_connect(ctx, e.port, target)
    check_eq(resp.status, 200, "CONNECT %s" % target)
    c = client_ssl_context(e.ca)
    c.set_alpn_protocols(["http/1.1"])
    t = ctx.sock(c.wrap_socket(s, server_hostname="api.test"))
    t.settimeout(IO_TIMEOUT)
    check_eq(t.selected_alpn_protocol(), "http/1.1", "ALPN")
    check_preface_refused(ctx, e, t, Reader(t), ("api.test", W["srv_port"]))


Q_REAL = "qk-REAL-H2-" + uuid.uuid4().hex[:24]


@suite.case("a secret that opts in to query injection (done on HTTP/1.1 requests only): its "
            "host is offered http/1.1 only, so curl --http2 gets HTTP/1.1 on both sides and "
            "the placeholder in ?key= is replaced (request event: in query), never carried "
            "on an h2 stream unreplaced", skip=no_node)
def _(ctx):
    args = ["--allow-net", "api.test", "--allow-private", "127.0.0.0/8",
            "--secret", "Q_KEY=api.test", "--secret-inject", "Q_KEY=query:key",
            "--upstream-ca", W["pki"]["ca"], "--state-dir", os.path.join(ctx.tmp, "state")]
    env = {"Q_KEY": Q_REAL}
    e = ctx.egressd(args, dns="127.0.0.1:%d" % W["dns"].port, env=env)
    ca = os.path.join(ctx.tmp, "state", "ca.crt")
    r = run_egressd(["env", "--format", "json"] + args, env=env)
    check_eq(r.returncode, 0, "egressd env: %s" % r.stderr)
    ph = json.loads(r.stdout)["Q_KEY"]
    r = curl(ctx, "-x", "http://" + e.addr, "--cacert", ca, "-w", "\n%{http_version}", "--http2",
             url("api.test", "/q?key=" + ph))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    check(Q_REAL.encode() not in r.stdout, "curl saw the real value")
    body, ver = r.stdout.rsplit(b"\n", 1)
    check_eq((ver, json.loads(body)["proto"]), (b"1.1", "1.1"), "curl's and the upstream's HTTP version")
    ev = e.wait_log(lambda v: v.get("event") == "request" and (v.get("path") or "").startswith("/q"))
    check_eq((ev[0].get("secrets"), ev[0].get("in"), ev[0].get("proto")), (["Q_KEY"], ["query"], None),
             "request event %r" % ev[0])


def main():
    setup()
    try:
        return suite.run()
    finally:
        for name in ("srv", "h1srv"):
            if W.get(name):
                W[name].kill()


if __name__ == "__main__":
    sys.exit(main())
