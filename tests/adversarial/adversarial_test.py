#!/usr/bin/env python3
"""adversarial_test.py -- what a hostile sandbox would try against egressd.

Each case is one attack, written as data where possible: what is sent, the
refusal expected (status + X-Egressd-Reason, or a TLS alert / close) and what
the upstreams must NOT have received (asserted on the upstreams' own records:
EchoHTTPServer.seen / .snis, raw byte recorders, canary TCP listeners).

Groups:
  sni        CONNECT target vs ClientHello SNI, both directions, tunnel and interception
  hostswitch a second request on a kept-alive connection naming another host
  smuggle    CL/TE conflicts, duplicate CL, obs-fold, bare LF/CR, NUL/CTL, bad chunk
             sizes -> 400, nothing of the request forwarded (plain and intercepted)
  hostform   userinfo, percent-encoded / Unicode / punycode names, suffix tricks
  numeric    numeric spellings of 127.0.0.1 -> private-address / not-allowed, canary silent
  dns        names resolving to 169.254.169.254, to public + private, IPv4-mapped AAAA
  port       CONNECT ports 0 / 65536 / words / empty -> 400
  leak       placeholders of secret A sent to host B (plain and intercepted), split
             placeholders, block mode
  echo       an approved upstream echoing the injected secret (headers, bodies, framing,
             base64) -> the client never sees the real value
  slow       never-finished TLS handshakes and slowloris heads vs --header-timeout 2; a
             request body dripped within --idle-timeout 2
  cut        a sandbox that hangs up mid-upload: the request is still logged
  reneg      TLS 1.2 renegotiation started by the sandbox (refused) or the upstream (done)
  window     a tiny-window sandbox reading a large redacted download slowly
  flood      10,000 half-open connections; --max-connections 100
  loop       egressd as its own target -> proxy-loop

Every case ends by checking that the real secret value appears in no byte a
client received, no audit-log line and neither egressd stream.

As root it re-executes itself inside `unshare --net` (lo up, 203.0.113.7/32 and
10.0.0.5/32 on lo); nothing is ever sent anywhere but loopback. Without root
the cases that need the namespace are skipped. egressd always gets --dns (the
suite's DNS server on 127.0.0.1).

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX,
EGRESSD_KEEP_TMP=1, EGRESSD_NO_NETNS=1.
"""

import atexit
import base64
import os
import re
import resource
import select
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer, TcpServer,  # noqa: E402
                     DNSServer, Reader, RecReader, got, read_response, connect_proxy, http_request,
                     client_ssl_context, run_egressd, free_port, maybe_reexec_in_netns,
                     wait_until, server_side_conns, accept_queue, next_head, spawn, EGRESSD_BIN, IO_TIMEOUT)

NETNS = maybe_reexec_in_netns(__file__)
# a private base for the suite's temp dir (nothing else's /tmp clean-up matches it)
_BASE = tempfile.mkdtemp(prefix="adversarial-")
tempfile.tempdir = _BASE
atexit.register(lambda: os.environ.get("EGRESSD_KEEP_TMP") or shutil.rmtree(_BASE, ignore_errors=True))
NEED_NS = None if NETNS else "needs root and a private network namespace (unshare --net)"
PUB, PRIV = "203.0.113.7", "10.0.0.5"

suite = Suite("adversarial")
W = {}   # the world, filled by setup()
REAL = {"A_KEY": "sk-REAL-A-" + uuid.uuid4().hex[:24]}
PH = {}  # placeholders, from `egressd env`
HOMOGRAPH = "\u0430llowed.test"                       # Cyrillic a
PUNY = HOMOGRAPH.encode("idna").decode()              # xn--llowed-2nf.test
HEADER_TIMEOUT = 2


def is_asan():
    try:
        with open(EGRESSD_BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# --------------------------------------------------------------------------
# upstreams that record what they received


class RawUpstream(TcpServer):
    """TCP (or TLS) server recording every byte of every connection; answers
    each blank line it sees with a tiny 200. .data() is everything received."""
    backlog = 128

    def __init__(self, tls=None, host="127.0.0.1"):
        self.conns = []
        super().__init__(host, tls=tls)

    def serve(self, c):
        buf = bytearray()
        self.conns.append(buf)
        pending = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            pending += d
            while b"\r\n\r\n" in pending:
                pending = pending.split(b"\r\n\r\n", 1)[1]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def data(self):
        return b"".join(bytes(b) for b in list(self.conns))


class Canary(TcpServer):
    """Dual-stack listener on every local address (:: with V6ONLY off, so also
    every IPv4 address): any connection at all is recorded and closed."""

    def __init__(self):
        self.hits = []
        super().__init__()

    def listen_socket(self, host, port):
        try:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        except OSError:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("0.0.0.0", 0))
        s.listen(self.backlog)
        return s

    def accepted(self, c, a):
        self.hits.append("%s -> %s" % (a[:2], c.getsockname()[:2]))
        c.close()


def b64_runs_hold(data, real):
    """True if some base64 run in data decodes (at any alignment) to bytes
    containing real."""
    for run in re.findall(rb"[A-Za-z0-9+/_-]{16,}={0,2}", data):
        for cut in range(4):
            chunk = run[cut:]
            chunk = chunk[:len(chunk) - len(chunk) % 4]
            for dec in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    if real in dec(chunk):
                        return True
                except Exception:
                    pass
    return False


class EvilUpstream(TcpServer):
    """TLS upstream for a.test that echoes the value it received in X-K back
    in the hostile ways listed in EVIL (path /evil/<name>), then closes."""

    def __init__(self, tls):
        self.got = []  # (path, X-K value) of each request
        super().__init__(tls=tls)

    def serve(self, c):
        try:
            self._evil(c)
        except (KeyError, IndexError):
            pass

    def _evil(self, c):
        buf = b""
        while True:
            head, buf = next_head(c, buf)
            if head is None:
                return
            lines = head.split(b"\r\n")
            path = lines[0].split(b" ")[1].decode("latin-1")
            v = b""
            for l in lines[1:]:
                k, _, val = l.partition(b":")
                if k.strip().lower() == b"x-k":
                    v = val.strip()
            self.got.append((path, v))
            name = path.rsplit("/", 1)[-1].split("?")[0]
            for piece in EVIL[name](v):
                if piece is None:
                    time.sleep(0.05)
                else:
                    c.sendall(piece)
            if name in CLOSE_AFTER:
                return


def _cl(body, head=b"HTTP/1.1 200 OK\r\n"):
    return [head + b"Content-Length: %d\r\n\r\n" % len(body) + body]


def _chunked(body, size, ext=b"", trailer=b""):
    out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    for i in range(0, len(body), size):
        p = body[i:i + size]
        out.append(b"%x%s\r\n%s\r\n" % (len(p), ext, p))
        out.append(None)  # a pause: the pieces travel in separate records
    out.append(b"0\r\n" + trailer + b"\r\n")
    return out


def _split_chunks(v):
    h = len(v) // 2
    return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"%x;ext=1\r\n%s\r\n" % (len(b"pre " + v[:h]), b"pre " + v[:h]), None,
            b"%x\r\n%s\r\n" % (len(v[h:] + b" post"), v[h:] + b" post"), None, b"0\r\n\r\n"]


def _basic_body(v):
    out = b""
    for pre in (b"", b"a", b"ab"):
        out += pre + base64.b64encode(b"user:" + v) + b"\n"
        out += pre + base64.b64encode(v) + b"\n"
        out += pre + base64.urlsafe_b64encode(b"user:" + v) + b"\n"
    return out


EVIL = {
    "hdr": lambda v: _cl(b"ok", b"HTTP/1.1 200 OK\r\nX-Echo: " + v + b"\r\nSet-Cookie: s=" + v +
                         b"; Path=/\r\nLocation: https://a.test/?k=" + v + b"\r\n"),
    "hdrname": lambda v: _cl(b"ok", b"HTTP/1.1 200 OK\r\nX-" + v + b": 1\r\n"),
    "reason": lambda v: _cl(b"ok", b"HTTP/1.1 200 " + v + b"\r\n"),
    "cl": lambda v: _cl(b"a=" + v + b"&b=" + v + b"\n" + v),
    "chunked1": lambda v: _chunked(b"x=" + v + b";y=" + v, 1),
    "chunked7": lambda v: _chunked(b"x=" + v + b";y=" + v, 7, ext=b";e=1"),
    "chunksplit": _split_chunks,
    "trailer": lambda v: _chunked(b"body", 4, trailer=b"X-T: " + v + b"\r\n"),
    "basic": lambda v: _cl(_basic_body(v)),
    "basicchunked": lambda v: _chunked(_basic_body(v), 5),
    "close": lambda v: [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", v[:5], None, v[5:] + b" " + v],
    "http10": lambda v: [b"HTTP/1.0 200 OK\r\n\r\n" + v[:9], None, v[9:] + b"\n" + v],
    "continue": lambda v: [b"HTTP/1.1 100 Continue\r\nX-E: " + v + b"\r\n\r\n"] + _cl(b"v=" + v),
    "notmod": lambda v: [b"HTTP/1.1 304 Not Modified\r\nETag: \"" + v + b"\"\r\n\r\n"],
    "big": lambda v: _cl(b"".join(b"." * (i % 977) + v for i in range(300))),
    "fold": lambda v: _cl(b"ok", b"HTTP/1.1 200 OK\r\nX-F: a\r\n " + v + b"\r\n"),
}
CLOSE_AFTER = {"close", "http10"}
# rows: (name, description, placeholder must appear in what the client got)
ECHO = [
    ("hdr", "response headers (X-Echo, Set-Cookie, Location) carry the value", True),
    ("hdrname", "a response header NAME carries the value", False),
    ("reason", "the status line's reason phrase is the value", False),
    ("cl", "Content-Length body carries the value 3 times", True),
    ("chunked1", "chunked body, 1-byte chunks, one TLS record each", True),
    ("chunked7", "chunked body, 7-byte chunks with extensions", True),
    ("chunksplit", "chunk boundary in the middle of the value", True),
    ("trailer", "the value in a chunked trailer", False),
    ("basic", "base64 of user:value and of value (std and url-safe, 3 alignments), CL", False),
    ("basicchunked", "base64 forms in a chunked body (5-byte chunks)", False),
    ("close", "close-delimited body, value split across writes", True),
    ("http10", "HTTP/1.0 close-delimited reply", True),
    ("continue", "an unsolicited 100 Continue whose header carries the value", True),
    ("notmod", "304 with the value in ETag", False),
    ("big", "300 copies across ~150 kB (many TLS records)", True),
    ("fold", "obs-folded response header line carrying the value", False),
]


class DNS6Server(DNSServer):
    """DNSServer plus AAAA answers from `records6` (name -> [ipv6...])."""

    def __init__(self, records, records6):
        self.records6 = {k.lower(): v for k, v in records6.items()}
        recs = dict(records)
        for k in records6:
            recs.setdefault(k, [])
        super().__init__(recs)

    def _answer(self, data):
        resp = super()._answer(data)
        if not resp:
            return resp
        i = 12
        labels = []
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode("ascii", "replace"))
            i += 1 + data[i]
        qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
        name = ".".join(labels).lower()
        if qtype != 28 or name not in self.records6:
            return resp
        ans = b""
        for a in self.records6[name]:
            ans += struct.pack(">HHHIH", 0xC00C, 28, 1, 5, 16) + socket.inet_pton(socket.AF_INET6, a)
        hdr = bytearray(resp[:12])
        hdr[6:8] = struct.pack(">H", len(self.records6[name]))
        return bytes(hdr) + resp[12:] + ans


def setup():
    names = ["allowed.test", "x.allowed.test", "a.test", "b.test", "evil.test",
             "allowed.test.evil.test", "evilallowed.test", "dnsloop.test"]
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:" + n for n in names + ["mixed.test", "mixed2.test",
                                                                 "mixed6.test", PUNY]])
    tls = (W["pki"]["cert"], W["pki"]["key"])
    W["tls"] = EchoHTTPServer("127.0.0.1", tls=tls)
    W["plain"] = EchoHTTPServer("127.0.0.1")
    W["raw_tls"] = RawUpstream(tls=tls)
    W["raw_plain"] = RawUpstream()
    W["evil"] = EvilUpstream(tls)
    W["canary"] = Canary()
    if NETNS:
        W["pub_tls"] = EchoHTTPServer(PUB, tls=tls)
        W["priv_tls"] = EchoHTTPServer(PRIV, tls=tls, port=W["pub_tls"].port)
        W["pub_plain"] = EchoHTTPServer(PUB)
        W["priv_plain"] = EchoHTTPServer(PRIV, port=W["pub_plain"].port)
    rec = {n: ["127.0.0.1"] for n in names + [PUNY]}
    rec.update({"meta.test": ["169.254.169.254"], "priv.test": [PRIV],
                "mixed.test": [PRIV, PUB], "mixed2.test": [PUB, PRIV], "mixed6.test": [PUB]})
    W["dns"] = DNS6Server(rec, {"mapped.test": ["::ffff:" + PRIV],
                                "meta6.test": ["::ffff:169.254.169.254"],
                                "mixed6.test": ["::ffff:" + PRIV]})
    if NETNS:
        # a global-scope IPv6 address, so egressd's resolver (AI_ADDRCONFIG) asks for AAAA
        # records too and the IPv4-mapped AAAA answers below are really seen
        p = subprocess.run(["ip", "-6", "addr", "add", "2001:db8::7/128", "dev", "lo"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print("# could not add 2001:db8::7 to lo (%s): AAAA cases may not see AAAA answers"
                  % p.stderr.strip(), flush=True)
    W["state"] = os.path.join(suite.tmp, "state")
    r = run_egressd(["env", "--state-dir", W["state"], "--secret", "A_KEY=a.test"],
                    env={"A_KEY": REAL["A_KEY"]})
    for l in r.stdout.splitlines():
        k, _, v = l.partition("=")
        if k == "A_KEY":
            PH["A_KEY"] = v
    if not re.fullmatch(r"egressd-ph-[0-9a-f]{32}", PH.get("A_KEY", "")):
        raise SystemExit("egressd env printed no placeholder for A_KEY: %r %r" % (r.stdout, r.stderr))


# --------------------------------------------------------------------------
# egressd and clients

LO = ["--allow-private", "127.0.0.0/8"]


def std_args(extra=()):
    """a.test holds secret A_KEY (intercepted), b.test is --intercept'ed, allowed
    names are allowed.test and *.allowed.test; loopback upstreams are allowed."""
    return ["--state-dir", W["state"], "--secret", "A_KEY=a.test", "--intercept", "b.test",
            "--upstream-ca", W["pki"]["ca"],
            "--allow-net", "allowed.test,*.allowed.test,a.test,b.test"] + LO + list(extra)


def start(ctx, args, **kw):
    return ctx.egressd(args, dns="127.0.0.1:%d" % W["dns"].port,
                       env={"A_KEY": REAL["A_KEY"]}, **kw)


def raw_conn(ctx, e):
    s = connect_proxy(ctx, e.port)
    return s, RecReader(ctx, s)


def do_connect(ctx, e, target):
    s, r = raw_conn(ctx, e)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode("utf-8", "surrogateescape"))
    return s, r, read_response(r, connect=True)


def ask(ctx, e, mode, target, path="/"):
    """One request for target: mode "connect" (CONNECT target) or "http"
    (absolute-form GET http://target/path). Returns the Response."""
    if mode == "connect":
        return do_connect(ctx, e, target)[2]
    s, r = raw_conn(ctx, e)
    s.sendall(("GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, path, target))
              .encode("utf-8", "surrogateescape"))
    return read_response(r)


def open_tls(ctx, e, host, port):
    """CONNECT host:port + TLS verified against egressd's CA. (ssl socket, RecReader)"""
    s, r, resp = do_connect(ctx, e, "%s:%d" % (host, port))
    check_eq(resp.status, 200, "CONNECT %s:%d status (%r)" % (host, port, resp))
    t = client_ssl_context(os.path.join(W["state"], "ca.crt")).wrap_socket(s, server_hostname=host)
    t.settimeout(IO_TIMEOUT)
    ctx.sock(t)
    return t, RecReader(ctx, t)


def make_client_hello(sni):
    inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    o = c.wrap_bio(inc, outb, server_hostname=sni)
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()


def token():
    return uuid.uuid4().hex[:16]


def expect_eof(r, secs=3):
    """The connection closes within secs (bytes before the EOF are returned)."""
    r.sock.settimeout(secs)
    try:
        return r.rest()
    except socket.timeout:
        raise AssertionError("connection still open %ds after the refusal" % secs)
    except (ssl.SSLError, OSError):
        return b""


def expect_refusal(resp, statuses, reasons, what="response"):
    """statuses: int or tuple; reasons: str, tuple, or None (no reason required)."""
    statuses = statuses if isinstance(statuses, tuple) else (statuses,)
    check(resp.status in statuses, "%s status %d, want %s; head %r body %r" % (
        what, resp.status, "/".join(map(str, statuses)), resp.raw_head[:300], resp.body[:200]))
    if reasons is not None:
        reasons = reasons if isinstance(reasons, tuple) else (reasons,)
        check(resp.header("X-Egressd-Reason") in reasons, "%s X-Egressd-Reason %r, want %s (%r)" % (
            what, resp.header("X-Egressd-Reason"), "/".join(reasons), resp.raw_head[:300]))


def tok_in_upstreams(tok, *keys):
    """Every record of tok at the named upstreams (default: all of them)."""
    keys = keys or ("tls", "plain", "raw_tls", "raw_plain", "evil", "pub_tls", "priv_tls",
                    "pub_plain", "priv_plain")
    hits = []
    for k in keys:
        srv = W.get(k)
        if srv is None:
            continue
        if isinstance(srv, RawUpstream):
            for c in list(srv.conns):
                if tok.encode() in c:
                    hits.append("%s received on one connection: %r" % (k, bytes(c[:800])))
        elif isinstance(srv, EvilUpstream):
            hits += ["%s got %s" % (k, p) for p, _ in list(srv.got) if tok in p]
        else:
            hits += ["%s got %s %s" % (k, i.get("method"), i.get("path")) for i in list(srv.seen)
                     if tok in i.get("path", "") or any(tok in v for _, v in i.get("headers", []))]
    return hits


def no_upstream_saw(tok, *keys, settle=0.3):
    time.sleep(settle)
    hits = tok_in_upstreams(tok, *keys)
    check(not hits, "the upstream received what must never reach it:\n" + "\n".join(hits))


def hdr(info, name):
    vals = [v for k, v in info["headers"] if k.lower() == name.lower()]
    return vals[0] if len(vals) == 1 else (vals or None)


def seen_one(srv_key, tok):
    hits = [i for i in list(W[srv_key].seen) if tok in i.get("path", "")]
    check_eq(len(hits), 1, "requests with token %s at upstream %s" % (tok, srv_key))
    return hits[0]


def no_real_values(ctx):
    places = [("bytes returned to the client", bytes(getattr(ctx, "client_bytes", b"")))]
    for e in ctx.egressds:
        e.stop()
        for what, path in (("audit log", e.log_path), ("stdout", e.out_path), ("stderr", e.err_path)):
            try:
                with open(path, "rb") as f:
                    places.append(("egressd#%d %s" % (e.idx, what), f.read()))
            except (OSError, TypeError):
                pass
    real = REAL["A_KEY"].encode()
    for where, data in places:
        i = data.find(real)
        if i >= 0:
            raise AssertionError("the real value of A_KEY is in %s: ...%r..." % (
                where, data[max(0, i - 200):i + 60]))
        if b64_runs_hold(data, real):
            raise AssertionError("a base64 run in %s decodes to the real value of A_KEY" % where)


def add(desc, fn, *args, timeout=25, skip=None):
    def run(ctx, *a):
        fn(ctx, *a)
        no_real_values(ctx)
    suite.add(desc, run, *args, timeout=timeout, skip=skip)


# --------------------------------------------------------------------------
# sni: CONNECT target vs ClientHello SNI


def sni_denied_connect_case(ctx, sni):
    """CONNECT a denied host, the ClientHello (naming an allowed / secret host)
    pipelined right behind it."""
    e = start(ctx, std_args())
    srv = W["tls"]
    n_sni, n_seen = len(srv.snis), len(srv.seen)
    s, r = raw_conn(ctx, e)
    target = "evil.test:%d" % srv.port
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode() +
              make_client_hello(sni))
    resp = read_response(r, connect=True)
    expect_refusal(resp, 403, "not-allowed", "CONNECT %s" % target)
    rest = expect_eof(r)
    check(rest == b"", "bytes after the refusal: %r" % rest[:200])
    time.sleep(0.3)
    check_eq(srv.snis[n_sni:], [], "ClientHellos (SNI) the upstream received")
    check_eq(len(srv.seen) - n_seen, 0, "requests the upstream received")


for sni, what in (("allowed.test", "an allowed (tunnelled) host"), ("a.test", "the secret host a.test"),
                  ("b.test", "the --intercept host b.test")):
    add("sni: CONNECT evil.test with a pipelined ClientHello naming %s -> 403 not-allowed, "
        "no handshake upstream" % what, sni_denied_connect_case, sni)


def sni_mismatch_case(ctx, host, sni, intercepted):
    e = start(ctx, std_args())
    srv = W["tls"]
    n_sni, n_seen = len(srv.snis), len(srv.seen)
    s, r, resp = do_connect(ctx, e, "%s:%d" % (host, srv.port))
    check_eq(resp.status, 200, "CONNECT %s status (%r)" % (host, resp))
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    try:
        t = c.wrap_socket(s, server_hostname=sni)
        t.settimeout(IO_TIMEOUT)
        t.sendall(http_request("GET", "/sni-" + token(), ["Host: " + sni, "X-K: " + PH["A_KEY"]]))
        data = t.recv(65536)
        got(ctx, data)
        raise AssertionError("TLS handshake with SNI %s through CONNECT %s succeeded; got %r" % (
            sni, host, data[:300]))
    except (ssl.SSLError, ConnectionError, socket.timeout, OSError) as ex:
        if isinstance(ex, socket.timeout):
            raise AssertionError("no alert/close within %ds after a ClientHello naming %s" % (
                IO_TIMEOUT, sni))
        ctx.note("as expected: %r" % ex)
    time.sleep(0.3)
    new_snis = srv.snis[n_sni:]
    want = [host] if intercepted else []   # interception handshakes upstream before the 200
    check_eq([x.lower() if x else x for x in new_snis], want, "SNIs the upstream saw")
    check_eq(len(srv.seen) - n_seen, 0, "requests the upstream received")
    ev = e.wait_log(lambda v: v.get("event") in ("refuse", "close", "connect") and
                    v.get("reason") == "sni-mismatch", what="sni-mismatch event")
    ctx.note("event %r" % ev[0])


SNI_ROWS = [
    ("allowed.test", "evil.test", False),
    ("allowed.test", "a.test", False),
    ("allowed.test", "allowed.test.evil.test", False),
    ("a.test", "evil.test", True),
    ("a.test", "b.test", True),
    ("a.test", "allowed.test", True),
    ("b.test", "a.test", True),
]
for host, sni, icpt in SNI_ROWS:
    add("sni: CONNECT %s (%s) then ClientHello SNI %s -> alert/close, nothing upstream" % (
        host, "intercepted" if icpt else "tunnel", sni), sni_mismatch_case, host, sni, icpt)


# --------------------------------------------------------------------------
# hostswitch: second request on a kept-alive connection


HOSTSWITCH_TLS = [
    # (description, second request target, Host header(s), accepted statuses)
    ("Host: b.test", "/{p}", ["b.test"], (421,)),
    ("Host: evil.test", "/{p}", ["evil.test"], (421,)),
    ("Host: a.test.evil.test", "/{p}", ["a.test.evil.test"], (421,)),
    ("Host: a.test:1 (other port)", "/{p}", ["a.test:1"], (421,)),
    ("absolute-form https://b.test:PORT/", "https://b.test:{port}/{p}", ["a.test"], (421, 400)),
    ("absolute-form with userinfo https://a.test@b.test/", "https://a.test@b.test:{port}/{p}",
     ["a.test"], (421, 400)),
    ("two Host headers, a.test then b.test", "/{p}", ["a.test", "b.test"], (400, 421)),
    ("Host: a.test@b.test", "/{p}", ["a.test@b.test"], (400, 421)),
]


def hostswitch_tls_case(ctx, target, hosts, statuses):
    e = start(ctx, std_args())
    tok = token()
    port = W["tls"].port
    t, r = open_tls(ctx, e, "a.test", port)
    second = target.format(p="h2-" + tok, port=port)
    t.sendall(http_request("GET", "/h1-" + tok, ["Host: a.test", "X-K: " + PH["A_KEY"]]) +
              http_request("GET", second, ["Host: " + h for h in hosts] + ["X-K: " + PH["A_KEY"]]))
    r1 = read_response(r)
    check_eq(r1.status, 200, "first (legitimate) request status")
    r2 = read_response(r)
    ctx.note("second -> %r" % r2)
    expect_refusal(r2, statuses, ("host-mismatch",) if r2.status == 421 else None, "second request")
    expect_eof(r)
    time.sleep(0.3)
    first = seen_one("tls", "h1-" + tok)
    check_eq(hdr(first, "X-K"), REAL["A_KEY"], "X-K of the first request upstream")
    check_eq(tok_in_upstreams("h2-" + tok), [], "the second request upstream")


for row in HOSTSWITCH_TLS:
    add("hostswitch: intercepted a.test, pipelined 2nd request with %s -> %s, never forwarded" % (
        row[0], "/".join(map(str, row[3]))), hostswitch_tls_case, *row[1:])


HOSTSWITCH_PLAIN = [
    # (description, second request bytes template, expected (statuses, reasons))
    ("absolute-form to evil.test", "GET http://evil.test:{port}/{p} HTTP/1.1\r\nHost: evil.test:{port}\r\n\r\n",
     (403, "not-allowed")),
    ("absolute-form to 127.0.0.1 (not on the list)",
     "GET http://127.0.0.1:{port}/{p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n", (403, "not-allowed")),
    ("origin-form with Host: evil.test", "GET /{p} HTTP/1.1\r\nHost: evil.test:{port}\r\n\r\n",
     (400, None)),
    ("absolute-form with userinfo allowed.test@evil.test",
     "GET http://allowed.test@evil.test:{port}/{p} HTTP/1.1\r\nHost: evil.test:{port}\r\n\r\n", (400, None)),
]


def hostswitch_plain_case(ctx, second, expect):
    e = start(ctx, std_args())
    tok = token()
    port = W["plain"].port
    s, r = raw_conn(ctx, e)
    s.sendall(http_request("GET", "http://allowed.test:%d/k1-%s" % (port, tok),
                           ["Host: allowed.test:%d" % port]) +
              second.format(port=port, p="k2-" + tok).encode())
    r1 = read_response(r)
    check_eq(r1.status, 200, "first request status")
    r2 = read_response(r)
    ctx.note("second -> %r" % r2)
    expect_refusal(r2, expect[0], expect[1], "second request")
    seen_one("plain", "k1-" + tok)
    no_upstream_saw("k2-" + tok)


for row in HOSTSWITCH_PLAIN:
    add("hostswitch: plain keep-alive allowed.test, pipelined 2nd request %s -> %d %s" % (
        row[0], row[2][0], row[2][1] or ""), hostswitch_plain_case, *row[1:])


@suite.case("hostswitch: absolute-form to allowed.test with Host: evil.test -> upstream sees "
            "Host allowed.test (client Host cannot steer)")
def _(ctx):
    e = start(ctx, std_args())
    tok = token()
    port = W["plain"].port
    s, r = raw_conn(ctx, e)
    s.sendall(http_request("GET", "http://allowed.test:%d/hs-%s" % (port, tok), ["Host: evil.test"]))
    resp = read_response(r)
    check_eq(resp.status, 200, "status")
    h = hdr(seen_one("plain", tok), "Host")
    check(h in ("allowed.test:%d" % port, "allowed.test"), "Host upstream %r" % h)


# --------------------------------------------------------------------------
# smuggle: ambiguous framing -> 400, nothing of that request forwarded.
# Templates: {T} target prefix ("" or http://host:port), {H} Host, {o} the outer
# request's path, {SMUG} a complete hidden request; <BODY> separates head from
# body and {n} is replaced with the body length.

SMUG = "GET {T}/{s} HTTP/1.1\r\nHost: {H}\r\nX-K: {ph}\r\n\r\n"
POST = "POST {T}/{o} HTTP/1.1\r\nHost: {H}\r\n"
SMUGGLE = [
    ("Content-Length and Transfer-Encoding (CL first)",
     POST + "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n<BODY>0\r\n\r\n" + SMUG),
    ("Transfer-Encoding and Content-Length (TE first)",
     POST + "Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n<BODY>0\r\n\r\n" + SMUG),
    ("Content-Length with Transfer-Encoding: identity",
     POST + "Content-Length: {n}\r\nTransfer-Encoding: identity\r\n\r\n<BODY>" + SMUG),
    ("two differing Content-Length headers",
     POST + "Content-Length: 0\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("two equal Content-Length headers",
     POST + "Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("Content-Length list '0, N'",
     POST + "Content-Length: 0, {n}\r\n\r\n<BODY>" + SMUG),
    ("obs-fold continuation line",
     POST + "X-Pad: a\r\n folded\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("obs-fold hiding Transfer-Encoding: chunked",
     POST + "Content-Length: {n}\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\n\r\n<BODY>0\r\n\r\n" + SMUG),
    ("Transfer-Encoding value on a folded line",
     POST + "Transfer-Encoding:\r\n chunked\r\n\r\n<BODY>0\r\n\r\n" + SMUG),
    ("bare LF ending a header line",
     POST + "X-A: b\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("bare LF ending the head",
     POST + "Content-Length: {n}\r\n\n<BODY>" + SMUG),
    ("bare LF ending the request line",
     "POST {T}/{o} HTTP/1.1\nHost: {H}\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("bare CR inside a header value",
     POST + "X-A: a\rTransfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("NUL inside a header value",
     POST + "X-A: a\x00b\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("control byte 0x01 inside a header value",
     POST + "X-A: a\x01b\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("DEL 0x7f inside a header value",
     POST + "X-A: a\x7fb\r\nContent-Length: {n}\r\n\r\n<BODY>" + SMUG),
    ("space before the colon of Transfer-Encoding",
     POST + "Content-Length: {n}\r\nTransfer-Encoding : chunked\r\n\r\n<BODY>0\r\n\r\n" + SMUG),
    ("Content-Length with a sign (+N)",
     POST + "Content-Length: +{n}\r\n\r\n<BODY>" + SMUG),
    ("Content-Length in hex (0x..)",
     POST + "Content-Length: 0x10\r\n\r\n<BODY>" + SMUG),
    ("invalid chunk size (zz)",
     POST + "Transfer-Encoding: chunked\r\n\r\n<BODY>zz\r\n" + SMUG + "\r\n0\r\n\r\n"),
    ("negative chunk size (-1)",
     POST + "Transfer-Encoding: chunked\r\n\r\n<BODY>-1\r\n" + SMUG + "\r\n0\r\n\r\n"),
    ("chunk size overflowing 64 bits",
     POST + "Transfer-Encoding: chunked\r\n\r\n<BODY>10000000000000000005\r\nhello\r\n0\r\n\r\n" + SMUG),
    ("chunk size with 0x prefix",
     POST + "Transfer-Encoding: chunked\r\n\r\n<BODY>0x5\r\nhello\r\n0\r\n\r\n" + SMUG),
    ("chunk data longer than its size (no CRLF after the data)",
     POST + "Transfer-Encoding: chunked\r\n\r\n<BODY>5\r\nhello" + SMUG + "\r\n0\r\n\r\n"),
]


def build_smuggle(tpl, T, H, o, s):
    head, body = tpl.split("<BODY>") if "<BODY>" in tpl else (tpl, "")
    kw = dict(T=T, H=H, o=o, s=s, ph=PH["A_KEY"], n="{n}")
    body = body.format(**kw)
    head = head.format(**kw)
    bb = body.encode("latin-1")
    return head.replace("{n}", str(len(bb))).encode("latin-1") + bb


def smuggle_case(ctx, mode, tpl):
    e = start(ctx, std_args())
    tok = token()
    o, s_ = "outer-" + tok, "smug-" + tok
    if mode == "plain":
        port = W["raw_plain"].port
        data = build_smuggle(tpl, "http://allowed.test:%d" % port, "allowed.test:%d" % port, o, s_)
        sock, r = raw_conn(ctx, e)
    else:
        data = build_smuggle(tpl, "", "a.test", o, s_)
        sock, r = open_tls(ctx, e, "a.test", W["raw_tls"].port)
    ctx.note("sent %r" % data[:600])
    sock.sendall(data)
    problems = []
    try:
        resp = read_response(r)
        ctx.note("got %r" % resp)
        if resp.status != 400:
            problems.append("response status %d, want 400: %r" % (resp.status, resp.raw_head[:200] + resp.body[:100]))
        try:
            rest = expect_eof(r)
            if b"HTTP/1." in rest:
                problems.append("a second response followed: %r" % rest[:300])
        except AssertionError as ex:
            problems.append(str(ex))
    except (ConnectionError, ssl.SSLError, OSError) as ex:
        problems.append("no response, connection closed (%r); want 400" % ex)
    time.sleep(0.4)
    problems += tok_in_upstreams(tok, "raw_tls", "raw_plain")
    check(not problems, "\n".join(problems))


for desc, tpl in SMUGGLE:
    for mode, mdesc in (("plain", "plain HTTP"), ("tls", "intercepted a.test")):
        add("smuggle (%s): %s -> 400, closed, nothing of the request upstream" % (mdesc, desc),
            smuggle_case, mode, tpl)


# --------------------------------------------------------------------------
# hostform: names that try to pass for allowed.test. Each target aims at the
# canary port (every name in the suite's DNS resolves to 127.0.0.1).
# (description, host[:port] template ({p} canary port), expected) where expected is
# ((statuses), (reasons) or None) for a refusal, or 200 (allowed; control rows)

REFUSED = ((400, 403), None)
NA = (403, "not-allowed")
HOSTFORM = [
    ("userinfo allowed.test@evil.test", "allowed.test@evil.test:{p}", (400, None)),
    ("userinfo with port allowed.test:{p}@evil.test", "allowed.test:{p}@evil.test:{p}", (400, None)),
    ("userinfo evil.test@allowed.test (userinfo itself refused)", "evil.test@allowed.test:{p}",
     (400, None)),
    ("percent-encoded dot allowed%2etest", "allowed%2etest:{p}", REFUSED),
    ("percent-encoded letter %61llowed.test", "%61llowed.test:{p}", REFUSED),
    ("encoded NUL allowed.test%00.evil.test", "allowed.test%00.evil.test:{p}", REFUSED),
    ("raw UTF-8 homograph (Cyrillic a)", HOMOGRAPH + ":{p}", REFUSED),
    ("punycode homograph " + PUNY, PUNY + ":{p}", (403, "not-allowed")),
    ("suffix trick allowed.test.evil.test (vs *.allowed.test)", "allowed.test.evil.test:{p}", NA),
    ("prefix trick evilallowed.test", "evilallowed.test:{p}", NA),
    ("evil.test", "evil.test:{p}", NA),
    ("two trailing dots allowed.test..", "allowed.test..:{p}", REFUSED),
    ("leading dot .allowed.test", ".allowed.test:{p}", REFUSED),
    ("backslash allowed.test\\evil.test", "allowed.test\\evil.test:{p}", REFUSED),
    ("control: ALLOWED.Test. is allowed (case, trailing dot)", "ALLOWED.Test.:{p}", 200),
    ("control: x.allowed.test is allowed", "x.allowed.test:{p}", 200),
]


def hostform_case(ctx, mode, target, expect):
    e = start(ctx, std_args())
    canary = W["canary"]
    n0 = len(canary.hits)
    target = target.format(p=canary.port)
    tok = token()
    resp = ask(ctx, e, mode, target, "/u-" + tok)
    ctx.note("%s %r -> %r" % (mode, target, resp))
    if expect == 200:
        check_eq(resp.status, 200, "CONNECT status")
        # the canary's accept thread records it (a loaded machine may take a moment)
        deadline = time.time() + 5
        while len(canary.hits) - n0 < 1 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # and no second one follows
        check_eq(len(canary.hits) - n0, 1, "connections at the canary (control)")
        return
    time.sleep(0.3)
    expect_refusal(resp, *expect, what="%s %r" % (mode, target))
    check_eq(canary.hits[n0:], [], "connections that reached the canary")
    no_upstream_saw(tok, settle=0)


for desc, target, expect in HOSTFORM:
    modes = ("connect",) if expect == 200 else ("connect", "http")
    for mode in modes:
        exp = expect
        if expect != 200:
            want = "/".join(map(str, exp[0] if isinstance(exp[0], tuple) else (exp[0],)))
            want += (" " + exp[1]) if exp[1] else ""
        else:
            want = "200"
        add("hostform (%s): %s -> %s, canary silent" % (
            "CONNECT" if mode == "connect" else "absolute-form", desc, want),
            hostform_case, mode, target, expect)


# --------------------------------------------------------------------------
# numeric: spellings of loopback / unspecified. Without --allow-private and
# without allowNet -> private-address; with allowNet [allowed.test] ->
# not-allowed (private-address accepted too). Nothing reaches the canary.

NUMERIC = ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
           "0x7f000001", "017700000001", "0x7F.0.0.1", "127.0.0.1.", "[0:0:0:0:0:ffff:127.0.0.1]",
           "[::127.0.0.1]", "[::1]", "0.0.0.0", "0", "[::]", "[::ffff:0.0.0.0]"]


def numeric_case(ctx, form):
    canary = W["canary"]
    n0 = len(canary.hits)
    e1 = start(ctx, ["--state-dir", W["state"]])
    e2 = start(ctx, ["--state-dir", W["state"], "--allow-net", "allowed.test"])
    target = "%s:%d" % (form, canary.port)
    bad = []
    for e, reasons in ((e1, ("private-address",)), (e2, ("not-allowed", "private-address"))):
        for mode in ("connect", "http"):
            resp = ask(ctx, e, mode, target, "/n")
            what = "%s %s via egressd %s" % (mode, target, " ".join(e.args[2:]) or "(no policy)")
            if resp.status != 403 or resp.header("X-Egressd-Reason") not in reasons:
                bad.append("%s -> %d %r (want 403 %s); body %r" % (
                    what, resp.status, resp.header("X-Egressd-Reason"), "/".join(reasons), resp.body[:150]))
    time.sleep(0.3)
    hits = canary.hits[n0:]
    check(not bad and not hits, "\n".join(bad + ["canary connections: %r" % hits] if hits else bad))


for form in NUMERIC:
    add("numeric: %s:CANARY (CONNECT and absolute-form) -> 403 private-address / not-allowed, "
        "canary silent" % form, numeric_case, form)


# --------------------------------------------------------------------------
# dns: what names resolve to (namespace only: 10.0.0.5 / 203.0.113.7 are local there)


def priv_hits():
    return (W["priv_tls"].requests + len(W["priv_tls"].snis) + W["priv_plain"].requests)


def dns_refused_case(ctx, name, port_key, args):
    e = start(ctx, ["--state-dir", W["state"]] + args)
    h0 = priv_hits()
    port = W[port_key].port if port_key else 443
    target = "%s:%d" % (name, port)
    for mode in ("connect", "http"):
        expect_refusal(ask(ctx, e, mode, target, "/d"), 403, "private-address", "%s %s" % (mode, target))
    time.sleep(0.3)
    check_eq(priv_hits() - h0, 0, "connections/requests that reached the private 10.0.0.5 upstreams")


DNS_REFUSED = [
    ("meta.test (A 169.254.169.254)", "meta.test", None, []),
    ("priv.test (A 10.0.0.5) with --allow-private 127.0.0.0/8 only", "priv.test", "priv_tls", LO),
    ("mapped.test (only AAAA ::ffff:10.0.0.5)", "mapped.test", "priv_tls", []),
    ("meta6.test (only AAAA ::ffff:169.254.169.254)", "meta6.test", None, []),
    ("IPv4-mapped literal [::ffff:10.0.0.5]", "[::ffff:10.0.0.5]", "priv_tls", []),
    ("IPv4-mapped literal [::ffff:a9fe:a9fe] (169.254.169.254)", "[::ffff:a9fe:a9fe]", None, []),
    ("NAT64 literal [64:ff9b::a00:5] (10.0.0.5)", "[64:ff9b::a00:5]", "priv_tls", []),
]
for desc, name, pk, args in DNS_REFUSED:
    add("dns: %s -> 403 private-address (CONNECT and absolute-form), private upstream untouched" % desc,
        dns_refused_case, name, pk, args, skip=NEED_NS)


def dns_mixed_case(ctx, name):
    e = start(ctx, ["--state-dir", W["state"]])
    h0 = priv_hits()
    for i in range(4):
        tok = token()
        s, r, resp = do_connect(ctx, e, "%s:%d" % (name, W["pub_tls"].port))
        check_eq(resp.status, 200, "CONNECT %s #%d (%r)" % (name, i, resp))
        c = client_ssl_context(W["pki"]["ca"])
        t = ctx.sock(c.wrap_socket(s, server_hostname=name))
        t.settimeout(IO_TIMEOUT)
        t.sendall(http_request("GET", "/m-" + tok, ["Host: " + name, "Connection: close"]))
        check_eq(read_response(RecReader(ctx, t)).status, 200, "GET through the tunnel")
        info = seen_one("pub_tls", tok)
        check(info["local"].startswith(PUB + ":"), "tunnel reached %s" % info["local"])
        tok = token()
        s, r = raw_conn(ctx, e)
        port = W["pub_plain"].port
        s.sendall(http_request("GET", "http://%s:%d/mp-%s" % (name, port, tok), ["Host: x"]))
        check_eq(read_response(r).status, 200, "absolute-form GET %s #%d" % (name, i))
        info = seen_one("pub_plain", tok)
    check_eq(priv_hits() - h0, 0, "connections/requests that reached the private 10.0.0.5 upstreams")
    evs = [v for v in e.log_events() if v.get("event") == "connect"]
    bad = [v for v in evs if v.get("addr") not in (None, PUB)]
    check(not bad, "connect events with another address: %r" % bad)


for name, desc in (("mixed.test", "A 10.0.0.5 then 203.0.113.7"), ("mixed2.test", "A 203.0.113.7 then 10.0.0.5"),
                   ("mixed6.test", "A 203.0.113.7, AAAA ::ffff:10.0.0.5")):
    add("dns: %s (%s) -> always the public address (4 CONNECTs, 4 plain GETs), never 10.0.0.5" % (
        name, desc), dns_mixed_case, name, skip=NEED_NS)


# --------------------------------------------------------------------------
# port: malformed CONNECT authorities -> 400

PORTS = ["allowed.test:0", "allowed.test:65536", "allowed.test:99999999999999999999", "allowed.test:http",
         "allowed.test:-1", "allowed.test:+443", "allowed.test:0x1bb", "allowed.test:", ":443", "",
         "allowed.test:443:443", "[::1", "allowed.test:4 43", "allowed.test:%34%34%33"]


def port_case(ctx, target):
    e = start(ctx, std_args())
    canary = W["canary"]
    s, r, resp = do_connect(ctx, e, target)
    ctx.note("CONNECT %r -> %r" % (target, resp))
    expect_refusal(resp, 400, None, "CONNECT %r" % target)
    expect_eof(r)
    evs = [v for v in e.log_events() if v.get("event") == "connect" and v.get("decision") == "allow"]
    check(not evs, "allowed connect events: %r" % evs)
    del canary


def port_abs_case(ctx, t):
    e = start(ctx, std_args())
    expect_refusal(ask(ctx, e, "http", t, "/p"), 400, None, "GET http://%s/p" % t)


for t in PORTS:
    add("port: CONNECT %r -> 400" % t, port_case, t)
for t in ("allowed.test:0", "allowed.test:65536", "allowed.test:http", "allowed.test:"):
    add("port: absolute-form http://%s/ -> 400" % t, port_abs_case, t)


# --------------------------------------------------------------------------
# leak: placeholder of A_KEY (hosts a.test) sent to b.test.
# (description, path template, [(header, value template)]); <PH> placeholder,
# <PCT> every byte percent-encoded, <PCTU> upper-case hex from the 6th byte,
# <PCT2> double-encoded, <BASIC> Basic credentials user:<PH>

def pct(s, upper=False):
    return "".join(("%%%02X" if upper else "%%%02x") % ord(c) for c in s)


def leak_sub(s):
    p = PH["A_KEY"]
    return (s.replace("<PCT2>", pct(p).replace("%", "%25")).replace("<PCTU>", p[:5] + pct(p[5:], True))
            .replace("<PCT>", pct(p)).replace("<BASIC>", "Basic " + base64.b64encode(("user:" + p).encode()).decode())
            .replace("<PH>", p))


LEAKS = [
    ("in a header", "/l", [("X-Leak", "<PH>")]),
    ("in a header with text around it", "/l", [("X-Leak", "Bearer <PH>; x=1")]),
    ("in a Cookie", "/l", [("Cookie", "a=1; k=<PH>")]),
    ("in the path", "/l/<PH>/x", []),
    ("in the query", "/l?k=<PH>", []),
    ("percent-encoded in the path", "/l/<PCT>", []),
    ("percent-encoded in the query", "/l?k=<PCT>", []),
    ("percent-encoded in a header", "/l", [("X-Leak", "<PCT>")]),
    ("upper-case hex percent-encoded in the query", "/l?k=<PCTU>", []),
    ("double percent-encoded in the query", "/l?k=<PCT2>", []),
    ("inside Authorization: Basic", "/l", [("Authorization", "<BASIC>")]),
]


def leak_case(ctx, mode, path_t, headers_t, block):
    e = start(ctx, std_args(["--on-placeholder-leak", "block"] if block else []))
    tok = token()
    path = leak_sub(path_t)
    path += ("&" if "?" in path else "?") + "t=" + tok
    hdrs = [(k, leak_sub(v)) for k, v in headers_t]
    if mode == "tls":
        t, r = open_tls(ctx, e, "b.test", W["tls"].port)
        target, host, srv = path, "b.test", "tls"
    else:
        t, r = raw_conn(ctx, e)
        host = "b.test:%d" % W["plain"].port
        target, srv = "http://" + host + path, "plain"
    t.sendall(http_request("GET", target, ["Host: " + host] + ["%s: %s" % h for h in hdrs]))
    resp = read_response(r)
    ctx.note("sent %s %r -> %r" % (target, hdrs, resp))
    ev = e.wait_log(lambda v: v.get("event") == "placeholder-leak", what="placeholder-leak event")[0]
    check_eq(ev.get("secrets"), ["A_KEY"], "placeholder-leak secrets")
    check_eq(str(ev.get("host")).lower(), "b.test", "placeholder-leak host")
    if block:
        expect_refusal(resp, 403, "placeholder-leak", "leaking request")
        no_upstream_saw(tok)
    else:
        check_eq(resp.status, 200, "status")
        info = seen_one(srv, tok)
        check_eq(info["path"], path, "path upstream (unchanged)")
        for k, v in hdrs:
            check_eq(hdr(info, k), v, "header %s upstream (unchanged)" % k)
        check(REAL["A_KEY"] not in repr(info), "the real value reached b.test: %r" % info)


for mode, mdesc in (("http", "plain HTTP"), ("tls", "intercepted b.test")):
    for desc, p, h in LEAKS:
        add("leak (%s): A's placeholder %s -> unchanged upstream, placeholder-leak logged" % (mdesc, desc),
            leak_case, mode, p, h, False)
    for desc, p, h in LEAKS:
        add("leak block (%s): A's placeholder %s -> 403 placeholder-leak, nothing upstream" % (mdesc, desc),
            leak_case, mode, p, h, True)


SPLITS = [
    ("first half in X-A, second half in X-B", lambda p: [("X-A", p[:16]), ("X-B", p[16:])]),
    ("halves in two X-A header lines", lambda p: [("X-A", p[:20]), ("X-A", p[20:])]),
    ("prefix in a header name, rest in its value", lambda p: [("X-" + p[:11].rstrip("-"), p[11:])]),
    ("halves in the two Basic fields", lambda p: [("Authorization", "Basic " + base64.b64encode(
        (p[:16] + ":" + p[16:]).encode()).decode())]),
]


def split_case(ctx, mode, mk):
    e = start(ctx, std_args())
    tok = token()
    hdrs = mk(PH["A_KEY"])
    if mode == "a.test":
        t, r = open_tls(ctx, e, "a.test", W["tls"].port)
        target, host, srv = "/split-" + tok, "a.test", "tls"
    elif mode == "b.test":
        t, r = open_tls(ctx, e, "b.test", W["tls"].port)
        target, host, srv = "/split-" + tok, "b.test", "tls"
    else:
        host = "a.test:%d" % W["plain"].port
        t, r = raw_conn(ctx, e)
        target, srv = "http://%s/split-%s" % (host, tok), "plain"
    t.sendall(http_request("GET", target, ["Host: " + host] + ["%s: %s" % h for h in hdrs]))
    resp = read_response(r)
    check_eq(resp.status, 200, "status (%r)" % resp)
    info = seen_one(srv, tok)
    check(REAL["A_KEY"] not in repr(info), "the real value reached the upstream: %r" % info["headers"])
    up = [(k.lower(), v) for k, v in info["headers"]]
    for k, v in hdrs:
        check((k.lower(), v) in up, "header %s: %s not received unchanged; upstream headers %r" % (k, v, up))


for mode, mdesc in (("a.test", "intercepted a.test (A's own host)"), ("b.test", "intercepted b.test"),
                    ("plain", "plain HTTP a.test")):
    for desc, mk in SPLITS:
        add("leak split (%s): placeholder %s -> never injected, halves arrive unchanged" % (mdesc, desc),
            split_case, mode, mk)


@suite.case("leak: placeholder in the path / query / body to A's own host a.test -> not injected "
            "(only header values are)")
def _(ctx):
    e = start(ctx, std_args())
    tok = token()
    t, r = open_tls(ctx, e, "a.test", W["tls"].port)
    p = PH["A_KEY"]
    path = "/own/%s/%s?k=%s" % (tok, p, p)
    t.sendall(http_request("POST", path, ["Host: a.test", "X-K: " + p], body=("k=" + p).encode()))
    resp = read_response(r)
    check_eq(resp.status, 200, "status")
    info = seen_one("tls", tok)
    check_eq(info["path"], path, "path upstream")
    check_eq(info["body"], "k=" + p, "body upstream")
    check_eq(hdr(info, "X-K"), REAL["A_KEY"], "X-K upstream (header injection works)")
    no_real_values(ctx)


# --------------------------------------------------------------------------
# echo: a.test's upstream echoes the injected value back


def echo_case(ctx, name, want_ph):
    e = start(ctx, std_args())
    n0 = len(W["evil"].got)
    t, r = open_tls(ctx, e, "a.test", W["evil"].port)
    t.sendall(http_request("GET", "/evil/" + name, ["Host: a.test", "X-K: " + PH["A_KEY"],
                                                    "Connection: close"]))
    t.settimeout(8)
    try:
        data = r.rest()
    except socket.timeout:
        data = r.buf
        ctx.note("no close within 8 s; checking the %d bytes received" % len(data))
    except (ssl.SSLError, OSError) as ex:
        data = r.buf
        ctx.note("read ended with %r" % ex)
    got_ = list(W["evil"].got)[n0:]
    check(got_, "the upstream received no request")
    check_eq(got_[0][1].decode("latin-1"), REAL["A_KEY"], "X-K the upstream received (injected)")
    real = REAL["A_KEY"].encode()
    # decode the chunked framing too: a value split by chunk framing is whole after decoding
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    decoded = body
    if re.search(rb"(?im)^transfer-encoding:.*chunked", data.split(b"\r\n\r\n", 1)[0]):
        decoded, rest = b"", body
        while True:
            m = re.match(rb"([0-9a-fA-F]+)[^\r\n]*\r\n", rest)
            if not m:
                break
            n = int(m.group(1), 16)
            if n == 0:
                decoded += rest[m.end():]   # trailers
                break
            decoded += rest[m.end():m.end() + n]
            rest = rest[m.end() + n + 2:]
    ctx.note("client received %d bytes: %r" % (len(data), data[:400]))
    for what, d in (("raw bytes", data), ("de-chunked body", decoded)):
        check(real not in d, "the client received the real value (%s): ...%r..." % (
            what, d[max(0, d.find(real) - 100):d.find(real) + 60]))
        check(not b64_runs_hold(d, real), "a base64 run the client received (%s) decodes to the real value" % what)
    if want_ph:
        check(PH["A_KEY"].encode() in decoded or PH["A_KEY"].encode() in data,
              "the reply did not arrive with the placeholder in place of the value: %r" % data[:400])


for name, desc, want_ph in ECHO:
    add("echo: a.test upstream echoes the injected value: %s -> client never sees it" % desc,
        echo_case, name, want_ph)


# --------------------------------------------------------------------------
# slow: --header-timeout 2


def normal_request_works(ctx, e, what):
    tok = token()
    t0 = time.time()
    s, r = raw_conn(ctx, e)
    port = W["plain"].port
    s.sendall(http_request("GET", "http://allowed.test:%d/ok-%s" % (port, tok),
                           ["Host: allowed.test", "Connection: close"]))
    resp = read_response(r)
    dt = time.time() - t0
    check_eq(resp.status, 200, "a normal request %s" % what)
    check(dt < 3, "a normal request %s took %.1fs" % (what, dt))
    s.close()
    return dt


def _drip(sock, data, stop, sent):
    for b in data:
        if stop.is_set():
            return
        try:
            sock.sendall(bytes([b]))
            sent.append(time.time())
        except (OSError, ssl.SSLError):
            return
        stop.wait(1.0)


def slow_case(ctx, kind):
    e = start(ctx, std_args(["--header-timeout", str(HEADER_TIMEOUT)]))
    t0 = time.time()
    drip = None
    if kind == "silent":
        s, r = raw_conn(ctx, e)
    elif kind == "connect-silent":
        s, r, resp = do_connect(ctx, e, "a.test:%d" % W["tls"].port)
        check_eq(resp.status, 200, "CONNECT status")
        t0 = time.time()
    elif kind == "half-handshake":
        s, r, resp = do_connect(ctx, e, "a.test:%d" % W["tls"].port)
        check_eq(resp.status, 200, "CONNECT status")
        t0 = time.time()
        s.sendall(make_client_hello("a.test"))   # and never the rest of the handshake
    elif kind in ("drip-hello", "drip-hello-tunnel"):
        host = "a.test" if kind == "drip-hello" else "allowed.test"
        s, r, resp = do_connect(ctx, e, "%s:%d" % (host, W["tls"].port))
        check_eq(resp.status, 200, "CONNECT status")
        t0 = time.time()
        drip = (s, make_client_hello(host))
    elif kind == "drip-connect":
        s, r = raw_conn(ctx, e)
        drip = (s, b"CONNECT allowed.test:%d HTTP/1.1\r\nHost: allowed.test\r\nX-Pad: %s\r\n\r\n" % (
            W["tls"].port, b"a" * 40))
    elif kind == "drip-http":
        s, r = raw_conn(ctx, e)
        drip = (s, b"GET http://allowed.test:%d/slow HTTP/1.1\r\nHost: allowed.test\r\nX-Pad: %s\r\n\r\n" % (
            W["plain"].port, b"a" * 40))
    elif kind == "drip-tls":
        t, r = open_tls(ctx, e, "a.test", W["tls"].port)
        s = t
        t0 = time.time()
        drip = (t, b"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Pad: %s\r\n\r\n" % (b"a" * 40))
    stop = threading.Event()
    sent = []
    if drip:
        th = threading.Thread(target=_drip, args=(drip[0], drip[1], stop, sent), daemon=True)
        th.start()
    try:
        time.sleep(1.0)
        normal_request_works(ctx, e, "while a slow client is connected")
        s.settimeout(HEADER_TIMEOUT + 4)
        closed_at = None
        try:
            while True:
                d = s.recv(4096)
                got(ctx, d)
                if not d:
                    closed_at = time.time()
                    break
        except socket.timeout:
            pass
        except (OSError, ssl.SSLError):
            closed_at = time.time()
    finally:
        stop.set()
    check(closed_at is not None, "the slow connection was still open %.1fs after it started "
          "(--header-timeout %d); %d bytes dripped" % (time.time() - t0, HEADER_TIMEOUT, len(sent)))
    dt = closed_at - t0
    ctx.note("closed after %.1fs (%d bytes dripped)" % (dt, len(sent)))
    check(dt <= HEADER_TIMEOUT + 2.5, "closed only after %.1fs (--header-timeout %d)" % (dt, HEADER_TIMEOUT))
    normal_request_works(ctx, e, "after the slow client was closed")


def quiet_open(t):
    """True if TLS socket t is open with nothing to read (records that carry
    no data, such as TLS 1.3 session tickets, are consumed)."""
    t.setblocking(False)
    try:
        t.recv(1)
        return False   # data, or EOF
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except (ssl.SSLError, OSError):
        return False
    finally:
        t.settimeout(IO_TIMEOUT)


def slow_body_case(ctx):
    idle = 2
    e = start(ctx, std_args(["--idle-timeout", str(idle)]))
    tok = token()
    t, r = open_tls(ctx, e, "a.test", W["tls"].port)
    t.sendall(("POST /slowbody-%s HTTP/1.1\r\nHost: a.test\r\nX-K: %s\r\nContent-Length: 64\r\n\r\n"
               % (tok, PH["A_KEY"])).encode())
    t0 = time.time()
    for i in range(8):   # one byte every 0.5 s: 4 s, twice --idle-timeout
        time.sleep(0.5)
        t.sendall(b"x")
        check(quiet_open(t), "egressd closed (or answered) the upload after %.1f s, %d body bytes, although "
              "no gap reached --idle-timeout %d" % (time.time() - t0, i + 1, idle))
    last = time.time()
    normal_request_works(ctx, e, "while a body drips")
    t.settimeout(idle + 4)
    try:
        rest = r.rest()
    except socket.timeout:
        raise AssertionError("the upload was still open %.1f s after its last byte (--idle-timeout %d)"
                             % (time.time() - last, idle))
    except (ssl.SSLError, OSError):
        rest = b""
    dt = time.time() - last
    ctx.note("closed %.1f s after the last body byte; the sandbox got %r" % (dt, rest[:200]))
    check(dt <= idle + 2.5, "closed only %.1f s after the last body byte (--idle-timeout %d)" % (dt, idle))
    whole = [i for i in list(W["tls"].seen) if tok in i.get("path", "") and i.get("body_len") == 64]
    check_eq(whole, [], "complete requests at the upstream")
    # the audit log still accounts for the request that went upstream, injected
    ev = e.wait_log(lambda v: v.get("event") == "request" and tok in (v.get("path") or ""),
                    what="request event of the cut-off upload")[0]
    check_eq((ev.get("status"), ev.get("incomplete"), ev.get("secrets")), (0, True, ["A_KEY"]),
             "request event (status, incomplete, secrets)")
    check(ev.get("bytes_up", 0) >= 8, "request event bytes_up %r" % ev.get("bytes_up"))
    to = e.wait_log(lambda v: v.get("event") == "timeout" and v.get("id") == ev.get("id"),
                    what="timeout event")[0]
    check_eq(to.get("phase"), "idle", "timeout event phase")
    cl = e.wait_log(lambda v: v.get("event") == "close" and v.get("id") == ev.get("id"),
                    what="close event")[0]
    check(cl.get("bytes_up", 0) >= ev["bytes_up"], "close event bytes_up %r" % cl.get("bytes_up"))
    normal_request_works(ctx, e, "after the dripping upload was closed")


add("slow: a request body one byte per 0.5 s on an intercepted upload (--idle-timeout 2) -> each "
    "byte restarts the idle timer (open after 4 s); closed within --idle-timeout (+2.5 s) of the "
    "last byte, the upstream never gets the whole body, the request is logged (incomplete, "
    "status 0) with a timeout event (idle); other requests served meanwhile",
    slow_body_case, timeout=30)


def hangup_case(ctx):
    e = start(ctx, std_args())
    tok = token()
    t, r = open_tls(ctx, e, "a.test", W["tls"].port)
    t.sendall(("PUT /hangup-%s HTTP/1.1\r\nHost: a.test\r\nX-K: %s\r\nContent-Length: 100000\r\n"
               "\r\n%s" % (tok, PH["A_KEY"], "y" * 1000)).encode())
    t.close()
    ev = e.wait_log(lambda v: v.get("event") == "request" and tok in (v.get("path") or ""),
                    what="request event of the abandoned upload")[0]
    check_eq((ev.get("status"), ev.get("incomplete"), ev.get("secrets")), (0, True, ["A_KEY"]),
             "request event (status, incomplete, secrets)")
    check(ev.get("bytes_up", 0) >= 1000, "request event bytes_up %r" % ev.get("bytes_up"))
    check_eq([i for i in list(W["tls"].seen) if tok in i.get("path", "") and i.get("body_len") == 100000],
             [], "complete requests at the upstream")


add("cut: a sandbox that hangs up mid-upload (an injected head, 1000 of 100000 body bytes) -> the request "
    "is still logged (incomplete, status 0, secrets A_KEY, the bytes sent)", hangup_case)


SLOW = [
    ("silent", "a client that connects and sends nothing"),
    ("connect-silent", "CONNECT a.test (intercepted), then no ClientHello"),
    ("half-handshake", "CONNECT a.test (intercepted), ClientHello, handshake never finished"),
    ("drip-hello", "CONNECT a.test (intercepted), the ClientHello one byte per second"),
    ("drip-hello-tunnel", "CONNECT allowed.test (tunnel, SNI check), the ClientHello one byte per second"),
    ("drip-connect", "slowloris: the CONNECT head one byte per second"),
    ("drip-http", "slowloris: an absolute-form request head one byte per second"),
    ("drip-tls", "slowloris: a request head inside an intercepted tunnel one byte per second"),
]
for kind, desc in SLOW:
    add("slow: %s -> closed within --header-timeout %d (+2.5 s); other requests served meanwhile" % (
        desc, HEADER_TIMEOUT), slow_case, kind, timeout=30)


# --------------------------------------------------------------------------
# reneg: TLS 1.2 renegotiation on an intercepted connection, started by either side


class Ossl:
    """A real `openssl s_client` / `s_server` driven through a pipe: stdin
    lines are typed into it (its command letters included), stdout and stderr
    are collected in .out by a thread."""

    def __init__(self, ctx, args):
        self.out = bytearray()
        self.p = spawn(["openssl"] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
        ctx.procs.append(self.p)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for d in iter(lambda: self.p.stdout.read1(65536), b""):
            self.out += d

    def type(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def text(self):
        return bytes(self.out).decode("latin-1")

    def wait_for(self, pattern, start=0, timeout=10, what=None):
        """Waits until regex pattern matches the output after offset start;
        returns the match's end offset."""
        rx = re.compile(pattern, re.S)
        m = wait_until(lambda: rx.search(self.text(), start), timeout,
                       what or "openssl printing %r; output:\n%s" % (pattern, self.text()[-1500:]))
        return m.end()


def reneg_client_case(ctx):
    e = start(ctx, std_args())
    tok = token()
    c = Ossl(ctx, ["s_client", "-tls1_2", "-proxy", e.addr, "-connect", "a.test:%d" % W["tls"].port,
                   "-servername", "a.test", "-CAfile", os.path.join(W["state"], "ca.crt"), "-crlf"])
    c.type(("GET /reneg-%s-1 HTTP/1.1\nHost: a.test\nX-K: %s\n\n" % (tok, PH["A_KEY"])).encode())
    at = c.wait_for(r'"path": "/reneg-%s-1"' % tok, what="the first response through s_client")
    check_eq(hdr(seen_one("tls", tok + "-1"), "X-K"), REAL["A_KEY"], "X-K upstream (injected)")
    c.type(b"R\n")   # s_client's command: renegotiate (a ClientHello inside the session)
    c.wait_for(r"RENEGOTIATING", at)
    try:
        c.type(("GET /reneg-%s-2 HTTP/1.1\nHost: a.test\nX-K: %s\n\n" % (tok, PH["A_KEY"])).encode())
    except OSError:
        pass   # s_client may already have given up
    # egressd answers the ClientHello with a no_renegotiation alert; OpenSSL's client
    # treats that as fatal (it asked for a reason) and ends the connection
    c.wait_for(r"no renegotiation", at, what="s_client reporting egressd's no_renegotiation alert")
    wait_until(lambda: c.p.poll() is not None, 10, "s_client exiting")
    wait_until(lambda: server_side_conns(e.port) <= 0, 10, "egressd closing the connection")
    got(ctx, bytes(c.out))
    ctx.note("s_client output (tail):\n" + c.text()[-800:])
    check_eq(tok_in_upstreams(tok + "-2"), [], "the request after the refused renegotiation, upstream")
    e.wait_log(lambda v: v.get("event") == "close", what="close event of the connection")
    normal_request_works(ctx, e, "after the refused renegotiation")
    t, r = open_tls(ctx, e, "a.test", W["tls"].port)
    t.sendall(http_request("GET", "/reneg-%s-3" % tok, ["Host: a.test", "X-K: " + PH["A_KEY"]]))
    check_eq(read_response(r).status, 200, "an intercepted request after the refused renegotiation")
    check_eq(hdr(seen_one("tls", tok + "-3"), "X-K"), REAL["A_KEY"], "X-K upstream")


add("reneg: the sandbox renegotiates TLS 1.2 inside an intercepted connection (openssl s_client "
    "'R') -> egressd refuses (no_renegotiation alert), the connection ends, nothing more reaches "
    "the upstream, egressd keeps serving", reneg_client_case)


def renegotiate(srv, at):
    """Types s_server's command r (a HelloRequest; with -no_resumption_on_reneg
    a full handshake follows, so egressd verifies the upstream's certificate
    again) and waits until egressd has completed the handshake."""
    srv.type(b"r\n")
    hr = srv.wait_for(r">>> TLS 1\.2, Handshake \[length 0004\], HelloRequest", at)
    return srv.wait_for(r"<<< TLS 1\.2, Handshake [^\n]*ClientHello.*>>> TLS 1\.2, Handshake "
                        r"[^\n]*Certificate.*<<< TLS 1\.2, Handshake [^\n]*Finished", hr,
                        what="egressd completing the renegotiation")


def reneg_upstream_case(ctx, mid):
    port = free_port()
    srv = Ossl(ctx, ["s_server", "-tls1_2", "-accept", "127.0.0.1:%d" % port, "-cert", W["pki"]["cert"],
                     "-key", W["pki"]["key"], "-naccept", "1", "-crlf", "-msg",
                     "-no_resumption_on_reneg"])
    srv.wait_for(r"ACCEPT", what="s_server listening")
    e = start(ctx, std_args())
    tok = token()
    t, r = open_tls(ctx, e, "a.test", port)
    for i in (1, 2):
        t.sendall(http_request("GET", "/reneg-%s-%d" % (tok, i), ["Host: a.test", "X-K: " + PH["A_KEY"]]))
        at = srv.wait_for(r"GET /reneg-%s-%d HTTP/1.1\r\n.*\r\n\r\n" % (tok, i),
                          what="request %d at s_server" % i)
        check(("X-K: " + REAL["A_KEY"]) in srv.text(), "request %d: the value was not injected" % i)
        if i == 1 and mid:   # renegotiate between two parts of the response body
            srv.type(b"HTTP/1.1 200 OK\nContent-Length: 11\n\nhello")
            sent = srv.wait_for(r">>> TLS 1\.2, RecordHeader [^\n]*\n *17 03 03", at,
                                what="s_server sending the first part")
            renegotiate(srv, sent)
            srv.type(b" world")
            want = b"hello world"
        else:
            srv.type(b"HTTP/1.1 200 OK\nContent-Length: 4\n\nok-%d" % i)
            want = b"ok-%d" % i
        resp = read_response(r)
        check_eq((resp.status, resp.body), (200, want), "response %d" % i)
        if i == 1 and not mid:
            renegotiate(srv, at)
    check(e.proc.poll() is None, "egressd died")
    evs = wait_until(lambda: [v for v in e.log_events() if v.get("event") == "request"
                              and tok in (v.get("path") or "")][1:] and
                     [v for v in e.log_events() if v.get("event") == "request"
                      and tok in (v.get("path") or "")], 5, "two request events")
    check_eq([(v.get("status"), v.get("secrets"), v.get("id")) for v in evs],
             [(200, ["A_KEY"], evs[0].get("id"))] * 2, "request events (one connection)")


add("reneg: a TLS 1.2 upstream of a secret's host renegotiates between two requests (openssl "
    "s_server 'r', full handshake) -> egressd completes it, verifying the certificate again; "
    "the next request is injected and answered on the same connection", reneg_upstream_case, False)
add("reneg: a TLS 1.2 upstream renegotiates in the middle of a response body -> egressd completes "
    "it, the body arrives whole, the next request is injected on the same connection",
    reneg_upstream_case, True)


# --------------------------------------------------------------------------
# window: a sandbox with a tiny TCP window reading a large redacted download slowly


def window_case(ctx):
    maxbuf = 65536
    e = start(ctx, std_args(["--max-buffer", str(maxbuf)]))
    W["tls"].values["A_KEY"] = REAL["A_KEY"]
    n = 300000   # a JSON echo of ~18 MB carrying the real value n times
    want = "".join(PH["A_KEY"] + "." * (i % 37) for i in range(n))
    s = ctx.sock(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)   # before connect: a tiny window
    s.settimeout(IO_TIMEOUT)
    s.connect(("127.0.0.1", e.port))
    s.sendall(b"CONNECT a.test:%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % W["tls"].port)
    r0 = RecReader(ctx, s)
    check_eq(read_response(r0, connect=True).status, 200, "CONNECT status")
    t = ctx.sock(client_ssl_context(os.path.join(W["state"], "ca.crt")).wrap_socket(
        s, server_hostname="a.test"))
    t.settimeout(30)
    tok = token()
    rss0 = e.rss_kb() or 0
    t.sendall(http_request("GET", "/win-%s?say=A_KEY&n=%d" % (tok, n),
                           ["Host: a.test", "X-K: " + PH["A_KEY"]]))
    r = Reader(t)   # not recorded: checked for the real value below, all of it
    head = r.until(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:60])
    # read slowly: 1 KiB every 20 ms for 3 s, while the upstream has ~15 MB to send
    peak = rss0
    t_end = time.time() + 3
    slow = bytearray(r.buf)
    r.buf = b""
    while time.time() < t_end:
        slow += t.recv(1024)
        peak = max(peak, e.rss_kb() or 0)
        time.sleep(0.02)
    ctx.note("read %d bytes slowly; egressd VmRSS %d KiB before, peak %d KiB" % (len(slow), rss0, peak))
    if not is_asan():
        check(peak - rss0 < 8 * 1024, "egressd's RSS grew by %d KiB for a sandbox reading slowly "
              "through a tiny window (--max-buffer %d)" % (peak - rss0, maxbuf))
    r.buf = bytes(slow)
    # now read fast (the window scale was fixed at connect: 64 KiB at most)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    resp_body = bytearray()
    if b"chunked" in head.lower():
        while True:
            k = int(r.until(b"\r\n").split(b";")[0], 16)
            if k == 0:
                r.until(b"\r\n")
                break
            resp_body += r.exactly(k)
            r.exactly(2)
    else:
        m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        resp_body = r.exactly(int(m.group(1)))
    ctx.note("body: %d bytes (%s)" % (len(resp_body), "chunked" if b"chunked" in head.lower() else "length"))
    check(REAL["A_KEY"].encode() not in head + resp_body, "the real value reached the sandbox")
    info = __import__("json").loads(resp_body)
    check(info["say"] == want, "the body is not the upstream's with every value redacted "
          "(%d bytes, want %d)" % (len(info["say"]), len(want)))
    check_eq(hdr(info, "X-K"), PH["A_KEY"], "X-K as echoed (redacted)")


add("window: a sandbox with a tiny TCP window (SO_RCVBUF 2 KiB) reading an 18 MB redacted download "
    "1 KiB per 20 ms: egressd's memory stays bounded (--max-buffer 65536, RSS < +8 MiB), the "
    "download completes with every value redacted", window_case, timeout=90)


# --------------------------------------------------------------------------
# flood


def accepted(port):
    """Connections egressd has accepted on port (held, less those still in the
    accept queue), from /proc/net/tcp: egressd is non-dumpable, so only root
    could count its descriptors."""
    return server_side_conns(port) - accept_queue(port)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    for lim in ((want, max(want, hard)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            return lim[0]
        except (ValueError, OSError):
            continue
    return soft


HALF_OPEN = 10000


@suite.case("flood: %d half-open connections (sending nothing) -> egressd keeps serving "
            "(plain and intercepted), bounded RSS" % HALF_OPEN, timeout=150)
def _(ctx):
    lim = raise_nofile(HALF_OPEN + 2000)
    n = min(HALF_OPEN, lim - 1000)
    if n < HALF_OPEN:
        ctx.note("RLIMIT_NOFILE is %d: using %d half-open connections instead of %d" % (lim, n, HALF_OPEN))
    e = start(ctx, std_args(["--max-connections", str(n + 1000), "--header-timeout", "100"]))
    time.sleep(0.2)
    rss0 = e.rss_kb() or 0
    socks = []
    t0 = time.time()
    try:
        pending = []
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", e.port))
            socks.append(s)
            pending.append(s)
            if len(pending) >= 250 or i == n - 1:
                p = select.poll()
                for x in pending:
                    p.register(x, select.POLLOUT)
                left = set(x.fileno() for x in pending)
                deadline = time.time() + 10
                while left and time.time() < deadline:
                    for fd, ev in p.poll(500):
                        left.discard(fd)
                        p.unregister(fd)
                pending = []
                # let egressd catch up with its accept queue before the next batch
                deadline = time.time() + 10
                while accepted(e.port) < len(socks) - 50 and time.time() < deadline:
                    time.sleep(0.05)
        bad = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0)
        opened = time.time() - t0
        # wait until egressd has accepted them
        deadline = time.time() + 30
        while accepted(e.port) < n - bad - 50 and time.time() < deadline:
            time.sleep(0.2)
        got = accepted(e.port)
        ctx.note("%d connections opened in %.1fs (%d failed); egressd accepted %d" % (
            n, opened, bad, got))
        check(bad == 0, "%d of %d connections failed to open" % (bad, n))
        check(got >= n - 50, "egressd accepted %d connections, expected about %d" % (got, n))
        rss1 = e.rss_kb() or 0   # the idle connections alone (before TLS work below)
        dt1 = normal_request_works(ctx, e, "with %d half-open connections" % n)
        tok = token()
        t, r = open_tls(ctx, e, "a.test", W["tls"].port)
        t.sendall(http_request("GET", "/flood-" + tok, ["Host: a.test", "X-K: " + PH["A_KEY"]]))
        check_eq(read_response(r).status, 200, "an intercepted request with %d half-open connections" % n)
        check_eq(hdr(seen_one("tls", tok), "X-K"), REAL["A_KEY"], "X-K upstream")
        t.close()
        rss2 = e.rss_kb() or 0
        per = (rss1 - rss0) * 1024.0 / max(n, 1)
        msg = ("RSS %d KiB before, %d KiB with %d half-open connections (%.0f bytes each), %d KiB after "
               "a plain and an intercepted request; plain request %.2fs" % (rss0, rss1, n, per, rss2, dt1))
        ctx.note(msg)
        print("# flood: " + msg + (" [ASan build]" if is_asan() else ""), flush=True)
        if not is_asan():
            check(per < 8192, "RSS grew by %.0f bytes per idle connection (limit 8192): %s" % (per, msg))
    finally:
        for s in socks:
            s.close()
    # egressd has thousands of EOFs to handle first: wait until it has (every
    # connection of this case is closed by now)
    wait_until(lambda: server_side_conns(e.port) <= 0, 60, "egressd closing the half-open connections",
               interval=0.2)
    normal_request_works(ctx, e, "after the half-open connections closed")


@suite.case("flood: --max-connections 100: the 101st gets 503 too-many-connections; the first 100 "
            "keep working; slots are freed on close", timeout=60)
def _(ctx):
    e = start(ctx, std_args(["--max-connections", "100"]))
    tok = token()
    port = W["plain"].port
    conns = []
    for i in range(100):
        s, r = raw_conn(ctx, e)
        s.sendall(http_request("GET", "http://allowed.test:%d/mc-%s-a%d" % (port, tok, i), ["Host: x"]))
        resp = read_response(r)
        check_eq(resp.status, 200, "status of connection #%d (%r)" % (i + 1, resp))
        conns.append((s, r))
    s, r = raw_conn(ctx, e)
    s.sendall(http_request("GET", "http://allowed.test:%d/mc-%s-x" % (port, tok), ["Host: x"]))
    try:
        resp = read_response(r)
    except (ConnectionError, OSError) as ex:
        raise AssertionError("connection #101: no response (%r), want 503" % ex)
    expect_refusal(resp, 503, "too-many-connections", "connection #101")
    expect_eof(r)
    for i, (s, r) in enumerate(conns):
        s.sendall(http_request("GET", "http://allowed.test:%d/mc-%s-b%d" % (port, tok, i), ["Host: x"]))
        check_eq(read_response(r).status, 200, "second request on connection #%d" % (i + 1))
    check_eq(len([i for i in W["plain"].seen if tok in i["path"]]), 200, "requests upstream")
    check_eq(tok_in_upstreams("mc-%s-x" % tok), [], "the refused request upstream")
    for s, r in conns[:10]:
        s.close()
    deadline = time.time() + 10
    while True:
        s, r = raw_conn(ctx, e)
        s.sendall(http_request("GET", "http://allowed.test:%d/mc-%s-c" % (port, tok), ["Host: x"]))
        resp = read_response(r)
        if resp.status == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    check_eq(resp.status, 200, "a new connection after 10 of the 100 closed (%r)" % resp)


# --------------------------------------------------------------------------
# loop: egressd as its own target

LOOP_TARGETS = [
    ("127.0.0.1:{e}", ("proxy-loop",)),
    ("0.0.0.0:{e}", ("proxy-loop", "private-address")),
    ("loop.test:{e} (--resolve to 127.0.0.1)", ("proxy-loop",)),
    ("dnsloop.test:{e} (DNS A 127.0.0.1)", ("proxy-loop",)),
    ("localhost:{e}", ("proxy-loop",)),
    ("2130706433:{e}", ("proxy-loop",)),
    ("127.1:{e}", ("proxy-loop",)),
    ("[::ffff:127.0.0.1]:{e}", ("proxy-loop",)),
]


def loop_case(ctx, target, reasons, extra):
    def make():
        port = free_port()
        return start(ctx, ["--state-dir", W["state"], "--resolve", "loop.test:%d:127.0.0.1" % port]
                     + LO + extra, listen_port=port)
    e = ctx.on_free_ports(make)
    port = e.port
    target = target.split(" ")[0].format(e=port)
    for mode in ("connect", "http"):
        expect_refusal(ask(ctx, e, mode, target, "/loop"), 403, reasons, "%s %s" % (mode, target))
    time.sleep(0.3)
    evs = [v for v in e.log_events() if v.get("event") == "connect"]
    check(len(evs) <= 2, "egressd saw %d connections for 2 requests (it connected to itself): %r" % (
        len(evs), evs))


for target, reasons in LOOP_TARGETS:
    add("loop: %s (CONNECT and absolute-form, --allow-private 127.0.0.0/8) -> 403 %s" % (
        target, "/".join(reasons)), loop_case, target, reasons, [])
add("loop: 0.0.0.0:{e} with --allow-private 0.0.0.0/8 too -> 403 proxy-loop",
    loop_case, "0.0.0.0:{e}", ("proxy-loop",), ["--allow-private", "0.0.0.0/8"])


def main():
    setup()
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
