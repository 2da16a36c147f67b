#!/usr/bin/env python3
"""proxy_test.py -- integration tests of egressd's explicit proxy (CONNECT and
absolute-form HTTP) against real TLS/HTTP upstreams, a real DNS server and the
real curl. Prints TAP; exits 1 if any case failed.

As root it re-executes itself inside a fresh network namespace (unshare --net)
so that a documentation address (203.0.113.7) can be local and nothing can
leave the machine; otherwise the namespace-only cases are skipped.

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX to run
a subset, EGRESSD_KEEP_TMP=1 to keep the temp dir, EGRESSD_NO_NETNS=1.
"""

import hashlib
import os
import re
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, Skip, check, check_eq, make_pki, EchoHTTPServer,  # noqa: E402
                     TCPEchoServer, DNSServer, Reader, read_response, proxy_connect,
                     connect_proxy, http_request, tls_over, curl, big_sha256,
                     free_port, maybe_reexec_in_netns, IO_TIMEOUT)

NETNS = maybe_reexec_in_netns(__file__)
PUB_ADDR = "203.0.113.7"
PRIV_ADDR = "10.0.0.5"
PROCESS_EVENTS = ("start", "listen", "reload", "drain", "stop")

suite = Suite("proxy")
W = {}  # the world: certificates, upstreams, DNS; filled by setup()


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"))
    tls = (W["pki"]["cert"], W["pki"]["key"])
    W["tls_srv"] = EchoHTTPServer("127.0.0.1", tls=tls)
    W["plain_srv"] = EchoHTTPServer("127.0.0.1")
    W["echo_srv"] = TCPEchoServer("127.0.0.1")
    W["pub_srv"] = EchoHTTPServer(PUB_ADDR, tls=tls) if NETNS else None
    # in the namespace 10.0.0.5 is local too, listening on the same port: a
    # proxy that connected to the private answer would reach it, not fail
    W["priv_srv"] = EchoHTTPServer(PRIV_ADDR, tls=tls, port=W["pub_srv"].port) if NETNS else None
    W["dns"] = DNSServer({
        "allowed.test": ["127.0.0.1"],
        "priv.test": ["10.0.0.5"],
        "mixed.test": ["10.0.0.5", PUB_ADDR],
        "meta.test": ["169.254.169.254"],
    })
    # a port that is bound but never listens: connecting to it is refused,
    # and no other socket of the suite can take it
    W["closed_sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    W["closed_sock"].bind(("127.0.0.1", 0))
    W["ports"] = {
        "tls": W["tls_srv"].port,
        "plain": W["plain_srv"].port,
        "echo": W["echo_srv"].port,
        "pub": W["pub_srv"].port if NETNS else 1,
        "closed": W["closed_sock"].getsockname()[1],
    }


def fmt(s, ports):
    return s.format(**ports)


def start(ctx, args, **kw):
    """egressd with the test DNS server (no lookup ever reaches the machine's
    resolver); `args` may use {tls} {plain} {echo} {pub} {closed} {proxy}."""
    def make():
        port = free_port()
        ports = dict(W["ports"], proxy=port)
        e = ctx.egressd([fmt(a, ports) for a in args], listen_port=port,
                        dns="127.0.0.1:%d" % W["dns"].port, **kw)
        e.ports = ports
        return e
    return ctx.on_free_ports(make)


def close_event_of(e, pred):
    """The close event of the connection whose connect event satisfies pred."""
    conn = e.wait_log(lambda v: v.get("event") == "connect" and pred(v), what="connect event")[0]
    return e.wait_log(lambda v: v.get("event") == "close" and v.get("id") == conn.get("id"),
                      what="close event for id %r" % conn.get("id"))[0]


def ca():
    return W["pki"]["ca"]


# short spellings for the tables
LO = ["--allow-private", "127.0.0.0/8"]
PIN = ["--resolve", "allowed.test:{tls}:127.0.0.1"]
ALLOW = lambda p: ["--allow-net", p]  # noqa: E731
PRIVATE = (403, "private-address")
NOT_ALLOWED = (403, "not-allowed")
DENIED = (403, "denied")
LOOP = (403, "proxy-loop")


def is_ip_like(host):
    return host.startswith("[") or re.match(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*$",
                                             host, re.I) is not None


def check_refusal(resp, r, status, reason, names):
    """The contract for every refusal: status, X-Egressd-Reason, Connection:
    close, one-line text/plain body naming the target and the reason, then EOF."""
    check_eq(resp.status, status, "status (response %r)" % resp.raw_head[:200])
    check_eq(resp.header("X-Egressd-Reason"), reason, "X-Egressd-Reason")
    check((resp.header("Connection") or "").lower() == "close",
          "refusal lacks 'Connection: close': %r" % resp.headers)
    ct = (resp.header("Content-Type") or "").lower()
    check(ct.startswith("text/plain"), "refusal Content-Type %r, want text/plain" % ct)
    body = resp.body.decode("utf-8", "replace")
    check(body.strip() and "\n" not in body.strip(),
          "refusal body is not one line: %r" % body)
    check(reason in body, "refusal body %r does not contain the reason %r" % (body, reason))
    check(any(n.lower() in body.lower() for n in names),
          "refusal body %r names none of %r" % (body, names))
    r.sock.settimeout(3)
    try:
        extra = r.rest()
    except socket.timeout:
        raise AssertionError("connection still open 3 s after a refusal with Connection: close")
    check(extra == b"", "bytes after the refusal body: %r" % extra[:200])


def https_get_through(ctx, sock, sni, path="/", host_header="x"):
    """TLS (chain verified against the test CA, hostname not checked) over an
    established tunnel, one GET; returns the echo JSON."""
    t = tls_over(ctx, sock, sni, ca())
    t.sendall(http_request("GET", path, ["Host: %s" % host_header, "Connection: close"]))
    resp = read_response(Reader(t))
    check_eq(resp.status, 200, "upstream status through the tunnel")
    return resp.json()


# --------------------------------------------------------------------------
# CONNECT decisions as data:
#   (description, egressd args, CONNECT target, expected, options)
# expected: 200 (tunnel; a TLS GET through it must reach the upstream) or
# (status, reason). options: sni= name for the ClientHello (default the target
# host, none for IP-like targets); names= spellings the refusal body may use;
# netns=True needs the private namespace; local= upstream address expected.

DECISIONS = [
    ("CONNECT exact name on the list is allowed",
     ALLOW("allowed.test") + PIN + LO, "allowed.test:{tls}", 200, {}),
    ("CONNECT name not on the list -> 403 not-allowed",
     ALLOW("allowed.test"), "evil.test:443", NOT_ALLOWED, {}),
    ("CONNECT deny pattern beats a matching allow pattern",
     ALLOW("*.test") + ["--deny-net", "evil.test"] + LO, "evil.test:{tls}", DENIED, {}),
    ("CONNECT deny wildcard beats a more specific name:port allow",
     ALLOW("allowed.test:{tls}") + ["--deny-net", "*.allowed.test,allowed.test"] + PIN + LO,
     "allowed.test:{tls}", DENIED, {}),
    ("CONNECT *.allowed.test allows a.b.allowed.test",
     ALLOW("*.allowed.test") + ["--resolve", "a.b.allowed.test:{tls}:127.0.0.1"] + LO,
     "a.b.allowed.test:{tls}", 200, {}),
    ("CONNECT *.allowed.test does not allow allowed.test itself",
     ALLOW("*.allowed.test") + PIN + LO, "allowed.test:{tls}", NOT_ALLOWED, {}),
    ("CONNECT port pattern allowed.test:PORT allows that port",
     ALLOW("allowed.test:{tls}") + PIN + LO, "allowed.test:{tls}", 200, {}),
    ("CONNECT port pattern allowed.test:PORT refuses another port",
     ALLOW("allowed.test:{tls}") + ["--resolve", "allowed.test:{echo}:127.0.0.1"] + LO,
     "allowed.test:{echo}", NOT_ALLOWED, {}),
    ("CONNECT target compares case-insensitively with trailing dot ignored",
     ALLOW("allowed.test") + PIN + LO, "ALLOWED.Test.:{tls}", 200,
     {"sni": "allowed.test", "names": ["allowed.test:"]}),
    ("CONNECT with --allow-net '' denies everything",
     ALLOW("") + PIN + LO, "allowed.test:{tls}", NOT_ALLOWED, {}),
    ("CONNECT without any allowNet is unrestricted",
     PIN + LO, "allowed.test:{tls}", 200, {}),
    ("CONNECT uses the --resolve pin (name unknown to DNS)",
     ALLOW("pin.test") + ["--resolve", "pin.test:{tls}:127.0.0.1"] + LO, "pin.test:{tls}", 200, {}),
    ("CONNECT name pinned to 127.0.0.1 -> 403 private-address",
     ALLOW("allowed.test") + PIN, "allowed.test:{tls}", PRIVATE, {}),
    ("CONNECT name pinned to 127.0.0.1 allowed with --allow-private 127.0.0.0/8",
     ALLOW("allowed.test") + PIN + LO, "allowed.test:{tls}", 200, {}),
    ("CONNECT name pinned to 127.0.0.1 allowed by CIDR allow pattern 127.0.0.0/8",
     ALLOW("allowed.test,127.0.0.0/8") + PIN, "allowed.test:{tls}", 200, {}),
    ("CONNECT name pinned to 169.254.169.254 -> private-address",
     ["--resolve", "meta.test:80:169.254.169.254"], "meta.test:80", PRIVATE, {}),
    ("CONNECT name pinned to 10.0.0.5 refused despite --allow-private 127.0.0.0/8",
     ["--resolve", "ten.test:443:10.0.0.5"] + LO, "ten.test:443", PRIVATE, {}),
    ("CONNECT IP literal 127.0.0.1 -> private-address",
     [], "127.0.0.1:{tls}", PRIVATE, {}),
    ("CONNECT IP literal 127.0.0.1 allowed with --allow-private 127.0.0.0/8",
     LO, "127.0.0.1:{tls}", 200, {}),
    ("CONNECT IP literal 127.0.0.1 allowed by explicit IP pattern",
     ALLOW("127.0.0.1"), "127.0.0.1:{tls}", 200, {}),
    ("CONNECT IP literal on another port than its IP:PORT pattern -> not-allowed",
     ALLOW("127.0.0.1:{echo}"), "127.0.0.1:{tls}", NOT_ALLOWED, {}),
    ("CONNECT numeric 2130706433 is 127.0.0.1: private-address",
     [], "2130706433:{tls}", PRIVATE, {"names": ["2130706433:{tls}", "127.0.0.1:{tls}"]}),
    ("CONNECT numeric 2130706433 matches IP pattern 127.0.0.1",
     ALLOW("127.0.0.1"), "2130706433:{tls}", 200, {}),
    ("CONNECT numeric 0x7f.1 allowed with --allow-private 127.0.0.0/8",
     LO, "0x7f.1:{tls}", 200, {}),
    ("CONNECT numeric 2130706433 is an address, not a name: not-allowed by name list",
     ALLOW("allowed.test,2130706433.test"), "2130706433:{tls}", NOT_ALLOWED,
     {"names": ["2130706433:{tls}", "127.0.0.1:{tls}"]}),
    ("CONNECT IPv6 loopback [::1] -> private-address",
     [], "[::1]:{tls}", PRIVATE, {"names": ["[::1]:{tls}", "::1"]}),
    ("CONNECT IPv4-mapped [::ffff:127.0.0.1] -> private-address",
     [], "[::ffff:127.0.0.1]:{tls}", PRIVATE,
     {"names": ["[::ffff:127.0.0.1]:{tls}", "127.0.0.1:{tls}"]}),
    ("CONNECT to egressd's own listener -> proxy-loop (even with --allow-private)",
     LO, "127.0.0.1:{proxy}", LOOP, {}),
    ("CONNECT to a name pinned to egressd's own listener -> proxy-loop",
     ["--resolve", "loop.test:{proxy}:127.0.0.1"] + LO, "loop.test:{proxy}", LOOP, {}),
    ("CONNECT to a closed port -> 502 connect-failed",
     ["--resolve", "down.test:{closed}:127.0.0.1"] + LO, "down.test:{closed}",
     (502, "connect-failed"), {}),
    ("CONNECT name with NXDOMAIN from --dns server -> 502 dns-failure",
     ALLOW("*.test"), "nx.test:443", (502, "dns-failure"), {}),
    ("CONNECT name whose DNS answer is only 10.0.0.5 -> private-address",
     ALLOW("*.test"), "priv.test:{pub}", PRIVATE, {}),
    ("CONNECT name whose DNS answer is only 169.254.169.254 -> private-address",
     ALLOW("*.test") + LO, "meta.test:443", PRIVATE, {}),
    ("CONNECT mixed.test (DNS: 10.0.0.5 and 203.0.113.7) goes to 203.0.113.7",
     ALLOW("mixed.test"), "mixed.test:{pub}", 200, {"netns": True, "local": PUB_ADDR}),
    ("CONNECT name pinned to documentation address 203.0.113.7 is public",
     ALLOW("pub.test") + ["--resolve", "pub.test:{pub}:" + PUB_ADDR], "pub.test:{pub}", 200,
     {"netns": True, "local": PUB_ADDR}),
    ("CONNECT IP literal 203.0.113.7 (documentation range) is public",
     [], PUB_ADDR + ":{pub}", 200, {"netns": True, "local": PUB_ADDR}),
]


def priv_hits():
    return W["priv_srv"].requests + len(W["priv_srv"].snis) if W["priv_srv"] else 0


def decision_case(ctx, args, target, expect, opts):
    hits0 = priv_hits()
    e = start(ctx, args)
    target = fmt(target, e.ports)
    host = target.rsplit(":", 1)[0]
    s, r, resp = proxy_connect(ctx, e.port, target)
    ctx.note("CONNECT %s -> %r" % (target, resp.raw_head[:300]))
    if expect == 200:
        check_eq(resp.status, 200, "CONNECT status (head %r, body %r)" % (resp.raw_head, resp.body[:200]))
        sni = opts.get("sni", None if is_ip_like(host) else host)
        info = https_get_through(ctx, s, sni, "/decision", host)
        check_eq(info["path"], "/decision", "path seen upstream")
        if "local" in opts:
            check(info["local"].startswith(opts["local"] + ":"),
                  "upstream reached at %s, want %s" % (info["local"], opts["local"]))
        if NETNS:
            check_eq(priv_hits() - hits0, 0,
                     "requests/handshakes that reached the private 10.0.0.5 upstream")
        if opts.get("netns"):
            # and the audit log names the checked address
            ev = e.wait_log(lambda v: v.get("event") == "connect", what="connect event")[0]
            check_eq(ev.get("addr"), opts["local"], "connect event addr")
    else:
        status, reason = expect
        if resp.status == 200:
            raise AssertionError("CONNECT %s was allowed, want %d %s" % (target, status, reason))
        if resp.header("Content-Length") is None and resp.header("Transfer-Encoding") is None:
            pass  # body read until close by read_response
        names = [fmt(n, e.ports) for n in opts.get("names", [target])]
        check_refusal(resp, r, status, reason, names)
        if NETNS:
            check_eq(priv_hits() - hits0, 0,
                     "requests/handshakes that reached the private 10.0.0.5 upstream")


for desc, args, target, expect, opts in DECISIONS:
    skip = None
    if opts.get("netns") and not NETNS:
        skip = "needs root and a private network namespace (unshare --net)"
    suite.add(desc, decision_case, args, target, expect, opts, skip=skip)


# absolute-form requests are checked like CONNECT
HTTP_REFUSALS = [
    ("absolute-form GET to a name not on the list -> 403 not-allowed",
     ALLOW("allowed.test"), "http://evil.test/x", NOT_ALLOWED, ["evil.test:80"]),
    ("absolute-form GET denied by --deny-net",
     ALLOW("*.test") + ["--deny-net", "plain.test"] + LO, "http://plain.test:{plain}/x", DENIED,
     ["plain.test:{plain}"]),
    ("absolute-form GET to 127.0.0.1 without --allow-private -> private-address",
     [], "http://127.0.0.1:{plain}/x", PRIVATE, ["127.0.0.1:{plain}"]),
    ("absolute-form GET to egressd itself -> proxy-loop",
     LO, "http://127.0.0.1:{proxy}/x", LOOP, ["127.0.0.1:{proxy}"]),
    ("absolute-form GET to an NXDOMAIN name -> 502 dns-failure",
     [], "http://nx.test/x", (502, "dns-failure"), ["nx.test:80"]),
]


def http_refusal_case(ctx, args, url, expect, names):
    e = start(ctx, args)
    url = fmt(url, e.ports)
    hostport = re.match(r"http://([^/]+)", url).group(1)
    s = connect_proxy(ctx, e.port)
    s.sendall(http_request("GET", url, ["Host: " + hostport, "User-Agent: t"]))
    r = Reader(s)
    resp = read_response(r)
    ctx.note("GET %s -> %r" % (url, resp))
    check(resp.status != 200, "request was forwarded: %r" % resp)
    check_refusal(resp, r, expect[0], expect[1], [fmt(n, e.ports) for n in names])


for desc, args, url, expect, names in HTTP_REFUSALS:
    suite.add(desc, http_refusal_case, args, url, expect, names)


# --------------------------------------------------------------------------
# curl over CONNECT


@suite.case("curl https through CONNECT: 200 and the upstream's body (hostname verified)")
def _(ctx):
    e = start(ctx, ALLOW("allowed.test") + PIN + LO)
    url = "https://allowed.test:%d/hello?x=1" % W["ports"]["tls"]
    r = curl(ctx, "-x", "http://" + e.addr, "--cacert", ca(), "-w", "\n%{http_code} %{http_connect}", url)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    body, _, codes = r.stdout.rpartition(b"\n")
    check_eq(codes.decode(), "200 200", "http_code http_connect")
    info = __import__("json").loads(body)
    check_eq(info["path"], "/hello?x=1", "path seen upstream")
    check(info["tls"], "upstream did not see TLS")
    check(any(k.lower() == "host" and v == "allowed.test:%d" % W["ports"]["tls"]
              for k, v in info["headers"]), "Host header upstream: %r" % info["headers"])


@suite.case("curl https through CONNECT refused: curl sees 403 with X-Egressd-Reason")
def _(ctx):
    e = start(ctx, ALLOW("allowed.test"))
    r = curl(ctx, "-x", "http://" + e.addr, "--cacert", ca(), "-D", "-", "-o", os.devnull,
             "-w", "\nconnect=%{http_connect}", "https://evil.test/")
    out = r.stdout.decode("latin-1")
    check(r.returncode != 0, "curl succeeded through a refused CONNECT")
    check("connect=403" in out, "curl's http_connect is not 403: %r" % out)
    check(re.search(r"(?im)^x-egressd-reason: *not-allowed\r?$", out),
          "no X-Egressd-Reason: not-allowed in %r" % out)


@suite.case("curl: 8 MiB download through a CONNECT tunnel arrives intact (sha256)", timeout=40)
def _(ctx):
    size = (8 << 20) + 12345
    e = start(ctx, ALLOW("allowed.test") + PIN + LO)
    out = os.path.join(ctx.tmp, "big")
    r = curl(ctx, "-x", "http://" + e.addr, "--cacert", ca(), "-o", out,
             "https://allowed.test:%d/big?size=%d" % (W["ports"]["tls"], size), timeout=35)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    check_eq(os.path.getsize(out), size, "downloaded size")
    with open(out, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    check_eq(got, big_sha256(size), "sha256 of the download")
    ev = close_event_of(e, lambda v: v.get("host") == "allowed.test")
    check(isinstance(ev.get("bytes_down"), int) and ev["bytes_down"] >= size,
          "close event bytes_down %r < %d" % (ev.get("bytes_down"), size))


# --------------------------------------------------------------------------
# SNI check


@suite.case("SNI mismatch: CONNECT allowed.test then ClientHello for evil.test is cut; log sni-mismatch")
def _(ctx):
    e = start(ctx, ALLOW("allowed.test,evil.test") + PIN + LO)
    before = list(W["tls_srv"].snis)
    s, r, resp = proxy_connect(ctx, e.port, "allowed.test:%d" % W["ports"]["tls"])
    check_eq(resp.status, 200, "CONNECT status")
    try:
        t = tls_over(ctx, s, "evil.test", ca())
        # the handshake completed: the tunnel was not cut
        raise AssertionError("TLS handshake with SNI evil.test succeeded through a tunnel "
                             "to allowed.test (cipher %r)" % (t.cipher(),))
    except socket.timeout:
        raise AssertionError("handshake neither completed nor was refused in %ds" % IO_TIMEOUT)
    except (ssl.SSLError, ConnectionError, OSError) as ex:
        ctx.note("handshake failed as expected: %r" % ex)
    e.wait_log(lambda v: "sni-mismatch" in (v.get("reason") or ""), what="sni-mismatch reason")
    new = W["tls_srv"].snis[len(before):]
    check("evil.test" not in new, "the upstream received the ClientHello for evil.test: %r" % new)


SNI_OK = [
    ("SNI match ignores case: CONNECT allowed.test, SNI ALLOWED.TEST", "allowed.test", "ALLOWED.TEST"),
    ("SNI match ignores case of the CONNECT host: CONNECT Allowed.TEST, SNI allowed.test",
     "Allowed.TEST", "allowed.test"),
    ("SNI match ignores a trailing dot: CONNECT allowed.test., SNI allowed.test",
     "allowed.test.", "allowed.test"),
    ("SNI match ignores a trailing dot in the SNI: CONNECT allowed.test, SNI allowed.test.",
     "allowed.test", "allowed.test."),
    ("ClientHello without SNI is tunnelled", "allowed.test", None),
]


def sni_ok_case(ctx, connect_host, sni):
    e = start(ctx, ALLOW("allowed.test") + PIN + LO)
    s, r, resp = proxy_connect(ctx, e.port, "%s:%d" % (connect_host, W["ports"]["tls"]))
    check_eq(resp.status, 200, "CONNECT status")
    info = https_get_through(ctx, s, sni, "/sni")
    check_eq(info["path"], "/sni", "path seen upstream")
    ctx.note("upstream saw SNI %r" % info.get("sni"))


for desc, host, sni in SNI_OK:
    suite.add(desc, sni_ok_case, host, sni)


@suite.case("non-TLS bytes through a CONNECT tunnel reach a TCP echo server and come back")
def _(ctx):
    e = start(ctx, ALLOW("echo.test") + ["--resolve", "echo.test:{echo}:127.0.0.1"] + LO)
    s, r, resp = proxy_connect(ctx, e.port, "echo.test:%d" % W["ports"]["echo"])
    check_eq(resp.status, 200, "CONNECT status")
    hello = b"SSH-2.0-egressd_test\r\n"
    s.sendall(hello)
    check_eq(r.exactly(len(hello)), hello, "echoed banner")
    blob = os.urandom(300000)
    s.sendall(blob)
    check(r.exactly(len(blob)) == blob, "300 kB of random bytes did not come back intact")
    s.shutdown(socket.SHUT_WR)
    check_eq(r.rest(), b"", "bytes after our half-close")
    ev = close_event_of(e, lambda v: v.get("host") == "echo.test")
    up, down = ev.get("bytes_up"), ev.get("bytes_down")
    check(up == len(hello) + len(blob) and down == up,
          "close event bytes_up=%r bytes_down=%r, want %d each" % (up, down, len(hello) + len(blob)))


@suite.case("every socket of a connection (sandbox side and upstream) is close-on-exec: "
            "helper commands and sandboxes egressd starts never inherit one")
def _(ctx):
    e = start(ctx, ALLOW("echo.test") + ["--resolve", "echo.test:{echo}:127.0.0.1"] + LO)
    s, r, resp = proxy_connect(ctx, e.port, "echo.test:%d" % W["ports"]["echo"])
    check_eq(resp.status, 200, "CONNECT status")
    s.sendall(b"ping")
    check_eq(r.exactly(4), b"ping", "echoed")
    fd_dir = "/proc/%d/fd" % e.proc.pid
    if not os.access(fd_dir, os.R_OK) and os.geteuid() != 0:
        raise Skip("egressd is non-dumpable: only root may read its /proc/PID/fd")
    socks = {}
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
            with open("/proc/%d/fdinfo/%s" % (e.proc.pid, fd)) as f:
                flags = [l.split()[1] for l in f if l.startswith("flags:")][0]
        except OSError:
            continue
        if target.startswith("socket:"):
            socks[int(fd)] = int(flags, 8)
    # the listener, the resolver's, the sandbox's and the upstream's
    check(len(socks) >= 3, "egressd has only %d sockets while a tunnel is open" % len(socks))
    leaky = sorted(fd for fd, fl in socks.items() if not fl & os.O_CLOEXEC)
    check(not leaky, "sockets without close-on-exec: fds %r of %r" % (leaky, sorted(socks)))


# --------------------------------------------------------------------------
# absolute-form HTTP


def plain_url(path):
    return "http://plain.test:%d%s" % (W["ports"]["plain"], path)


PLAIN = ALLOW("plain.test") + ["--resolve", "plain.test:{plain}:127.0.0.1"] + LO


def headers_of(info):
    return {k.lower(): v for k, v in info["headers"]}


@suite.case("absolute-form GET via curl: origin-form upstream, Proxy-* headers removed")
def _(ctx):
    e = start(ctx, PLAIN)
    r = curl(ctx, "-x", "http://" + e.addr, "--proxy-user", "u:p", "-H", "X-Test: 1",
             "-H", "Proxy-Connection: keep-alive", plain_url("/some/path?q=1&r=%20"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    info = __import__("json").loads(r.stdout)
    check_eq(info["method"], "GET", "method")
    check_eq(info["path"], "/some/path?q=1&r=%20", "request target upstream (origin-form)")
    h = headers_of(info)
    check("proxy-authorization" not in h, "Proxy-Authorization forwarded: %r" % h)
    check("proxy-connection" not in h, "Proxy-Connection forwarded: %r" % h)
    check_eq(h.get("x-test"), "1", "X-Test header")
    check_eq(h.get("host"), "plain.test:%d" % W["ports"]["plain"], "Host header")


@suite.case("absolute-form GET raw: Proxy-Connection/Proxy-Authorization removed, others kept")
def _(ctx):
    e = start(ctx, PLAIN)
    s = connect_proxy(ctx, e.port)
    s.sendall(http_request("GET", plain_url("/raw"), [
        "Host: plain.test:%d" % W["ports"]["plain"], "Proxy-Connection: keep-alive",
        "Proxy-Authorization: Basic dTpw", "X-Keep: yes", "Accept: */*"]))
    resp = read_response(Reader(s))
    check_eq(resp.status, 200, "status")
    info = resp.json()
    check_eq(info["path"], "/raw", "path upstream")
    h = headers_of(info)
    for gone in ("proxy-connection", "proxy-authorization"):
        check(gone not in h, "%s forwarded: %r" % (gone, h))
    check_eq(h.get("x-keep"), "yes", "X-Keep")
    check_eq(h.get("accept"), "*/*", "Accept")


@suite.case("absolute-form POST with Content-Length body (curl, 300 kB) reaches upstream intact")
def _(ctx):
    e = start(ctx, PLAIN)
    data = os.urandom(300000)
    path = os.path.join(ctx.tmp, "post")
    with open(path, "wb") as f:
        f.write(data)
    r = curl(ctx, "-x", "http://" + e.addr, "--data-binary", "@" + path,
             "-H", "Content-Type: application/octet-stream", plain_url("/post-cl"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    info = __import__("json").loads(r.stdout)
    check_eq(info["method"], "POST", "method")
    check_eq(info["body_len"], len(data), "body length upstream")
    check_eq(info["body_sha256"], hashlib.sha256(data).hexdigest(), "body sha256 upstream")


@suite.case("absolute-form POST with chunked body (curl, 2 MB) reaches upstream intact")
def _(ctx):
    e = start(ctx, PLAIN)
    data = os.urandom(2000000)
    r = curl(ctx, "-x", "http://" + e.addr, "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
             "--data-binary", "@-", plain_url("/post-chunked"), input=data)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    info = __import__("json").loads(r.stdout)
    check_eq(info["method"], "POST", "method")
    check_eq(info["body_len"], len(data), "body length upstream (framing %s)" % info["framing"])
    check_eq(info["body_sha256"], hashlib.sha256(data).hexdigest(), "body sha256 upstream")


@suite.case("absolute-form POST with Expect: 100-continue (curl default for 2 MB) completes")
def _(ctx):
    e = start(ctx, PLAIN)
    data = os.urandom(2000000)
    r = curl(ctx, "-x", "http://" + e.addr, "-H", "Expect: 100-continue", "--expect100-timeout", "8",
             "--data-binary", "@-", plain_url("/post-expect"), input=data)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    info = __import__("json").loads(r.stdout)
    check_eq(info["body_len"], len(data), "body length upstream")
    check_eq(info["body_sha256"], hashlib.sha256(data).hexdigest(), "body sha256 upstream")


@suite.case("absolute-form keep-alive: GET, POST (Content-Length), POST (chunked), GET on one connection")
def _(ctx):
    e = start(ctx, PLAIN)
    s = connect_proxy(ctx, e.port)
    r = Reader(s)
    host = "Host: plain.test:%d" % W["ports"]["plain"]
    reqs = [
        (http_request("GET", plain_url("/one"), [host]), "/one", 0),
        (http_request("POST", plain_url("/two"), [host], body=b"a" * 5000), "/two", 5000),
        (http_request("POST", plain_url("/three"), [host],
                      chunked_body=[b"x" * 10, b"y" * 7000, b"z"]), "/three", 7011),
        (http_request("GET", plain_url("/four"), [host]), "/four", 0),
    ]
    peers = []
    for i, (raw, path, blen) in enumerate(reqs):
        s.sendall(raw)
        try:
            resp = read_response(r)
        except (ConnectionError, OSError) as ex:
            raise AssertionError("request %d (%s) on the kept-alive connection: %r" % (i + 1, path, ex))
        ctx.note("response %d head: %r" % (i + 1, resp.raw_head))
        check_eq(resp.status, 200, "status of request %d" % (i + 1))
        info = resp.json()
        check_eq(info["path"], path, "path of request %d" % (i + 1))
        check_eq(info["body_len"], blen, "body length of request %d" % (i + 1))
        check((resp.header("Connection") or "").lower() != "close",
              "response %d says Connection: close" % (i + 1))
        peers.append(info["peer"])
    ctx.note("upstream connections used: %r" % peers)


@suite.case("absolute-form: curl fetches two URLs over one proxy connection")
def _(ctx):
    e = start(ctx, PLAIN)
    r = curl(ctx, "-x", "http://" + e.addr, "-w", "\nconnects=%{num_connects}\n",
             plain_url("/a"), plain_url("/b"))
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    out = r.stdout.decode()
    check('"/a"' in out and '"/b"' in out, "responses: %r" % out)
    check(re.search(r"connects=0", out), "curl opened a second connection: %r" % out)


@suite.case("absolute-form: chunked 5 MB response streamed intact (sha256)", timeout=40)
def _(ctx):
    size = 5 * 1000 * 1000 + 7
    e = start(ctx, PLAIN)
    out = os.path.join(ctx.tmp, "big")
    r = curl(ctx, "-x", "http://" + e.addr, "-o", out, plain_url("/big?size=%d&chunked=1" % size), timeout=35)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    with open(out, "rb") as f:
        data = f.read()
    check_eq(len(data), size, "size")
    check_eq(hashlib.sha256(data).hexdigest(), big_sha256(size), "sha256")


@suite.case("absolute-form: 9 MB Content-Length response streamed intact (sha256)", timeout=40)
def _(ctx):
    size = 9 * 1000 * 1000 + 3
    e = start(ctx, PLAIN)
    out = os.path.join(ctx.tmp, "big")
    r = curl(ctx, "-x", "http://" + e.addr, "-o", out, plain_url("/big?size=%d" % size), timeout=35)
    check_eq(r.returncode, 0, "curl exit (%s)" % r.stderr)
    with open(out, "rb") as f:
        data = f.read()
    check_eq(len(data), size, "size")
    check_eq(hashlib.sha256(data).hexdigest(), big_sha256(size), "sha256")


@suite.case("absolute-form: upstream status and chunked response pass through")
def _(ctx):
    e = start(ctx, PLAIN)
    s = connect_proxy(ctx, e.port)
    r = Reader(s)
    s.sendall(http_request("GET", plain_url("/status/404?chunked=1"),
                           ["Host: plain.test:%d" % W["ports"]["plain"]]))
    resp = read_response(r)
    check_eq(resp.status, 404, "status")
    check_eq(resp.json()["path"], "/status/404?chunked=1", "path")


@suite.case("origin-form request to the proxy -> 400 saying egressd is a proxy")
def _(ctx):
    e = start(ctx, LO)
    s = connect_proxy(ctx, e.port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % e.addr.encode())
    resp = read_response(Reader(s))
    check_eq(resp.status, 400, "status (%r)" % resp)
    check("proxy" in resp.body.decode("utf-8", "replace").lower(),
          "400 body does not say it is a proxy: %r" % resp.body)


# --------------------------------------------------------------------------
# audit log


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


@suite.case("audit log: JSON lines with connect/request/close events and byte counts")
def _(ctx):
    e = start(ctx, ALLOW("allowed.test,plain.test") + PIN +
              ["--resolve", "plain.test:{plain}:127.0.0.1"] + LO)
    tls_url = "https://allowed.test:%d/log-tunnel" % W["ports"]["tls"]
    r1 = curl(ctx, "-x", "http://" + e.addr, "--cacert", ca(), tls_url)
    check_eq(r1.returncode, 0, "curl CONNECT exit (%s)" % r1.stderr)
    r2 = curl(ctx, "-x", "http://" + e.addr, plain_url("/log-http"))
    check_eq(r2.returncode, 0, "curl absolute-form exit (%s)" % r2.stderr)
    s, r, resp = proxy_connect(ctx, e.port, "evil.test:443")
    check_eq(resp.status, 403, "denied CONNECT status")
    s.close()
    # the connections are closed: give egressd a moment to log their close events
    deadline = time.time() + 3
    while True:
        evs = e.log_events()  # raises if any line is not JSON
        ids = [v.get("id") for v in evs if v.get("event") == "connect" and v.get("decision") == "allow"]
        closed = [v.get("id") for v in evs if v.get("event") == "close"]
        if (len(ids) >= 2 and all(i in closed for i in ids)) or time.time() > deadline:
            break
        time.sleep(0.05)
    for v in evs:
        # process events (start, listen, reload, drain, stop) carry no connection id
        check(isinstance(v.get("ts"), str) and isinstance(v.get("event"), str) and
              (is_int(v.get("id")) or v.get("event") in PROCESS_EVENTS),
              "event without ts/event/id: %r" % v)
        check(v.get("level") in ("error", "warn", "info", "debug"), "event without a level: %r" % v)
    connects = [v for v in evs if v["event"] == "connect"]
    closes = {v["id"]: v for v in evs if v["event"] == "close"}

    def find(**kw):
        hits = [v for v in connects if all(v.get(k) == x for k, x in kw.items())]
        check(len(hits) == 1, "want one connect event with %r, got %r in %r" % (kw, hits, connects))
        return hits[0]

    tun = find(mode="connect", host="allowed.test")
    check_eq(tun.get("port"), W["ports"]["tls"], "tunnel port")
    check_eq(tun.get("addr"), "127.0.0.1", "tunnel addr")
    check_eq(tun.get("decision"), "allow", "tunnel decision")
    check_eq(tun.get("rule"), "allowed.test", "tunnel rule")
    check(tun.get("intercept") is False, "tunnel intercept %r, want false" % tun.get("intercept"))
    check(re.match(r"^127\.0\.0\.1:\d+$", str(tun.get("client"))), "client %r" % tun.get("client"))
    c = closes.get(tun["id"])
    check(c is not None, "no close event for tunnel id %r" % tun["id"])
    for k in ("bytes_up", "bytes_down", "ms"):
        check(is_int(c.get(k)) and c[k] >= 0, "close %s=%r" % (k, c.get(k)))
    check(c["bytes_up"] > 200 and c["bytes_down"] > 500,
          "tunnel close byte counts look wrong (a TLS session moved more): %r" % c)

    http = find(mode="http", host="plain.test")
    check_eq(http.get("port"), W["ports"]["plain"], "http port")
    check_eq(http.get("decision"), "allow", "http decision")
    check_eq(http.get("rule"), "plain.test", "http rule")
    reqs = [v for v in evs if v["event"] == "request" and v.get("id") == http["id"]]
    check(len(reqs) == 1, "want one request event for id %r: %r" % (http["id"], evs))
    q = reqs[0]
    for k, want in (("method", "GET"), ("path", "/log-http"), ("status", 200),
                    ("host", "plain.test"), ("port", W["ports"]["plain"])):
        check_eq(q.get(k), want, "request event %s" % k)
    c = closes.get(http["id"])
    check(c is not None, "no close event for http id %r" % http["id"])
    check(c["bytes_up"] > 50 and c["bytes_down"] > 200, "http close byte counts: %r" % c)

    den = find(mode="connect", host="evil.test")
    check_eq(den.get("port"), 443, "denied port")
    check_eq(den.get("decision"), "deny", "denied decision")
    check_eq(den.get("reason"), "not-allowed", "denied reason")
    check(len(set(v["id"] for v in connects)) == len(connects), "connect ids not unique")


def main():
    setup()
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
