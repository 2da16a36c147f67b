#!/usr/bin/env python3
"""metrics_test.py -- integration tests of `--metrics ADDR:PORT`: the Prometheus
text exposition is scraped before and after known traffic and the counters must
move by exactly what that traffic implies (tunnels, refusals by reason,
intercepted requests with secrets injected by name, plain HTTP, upstream errors,
the leaf cache, bytes, latency histograms, open connections back to 0). Every
scrape is parsed twice: with prometheus_client's parser (Debian package
python3-prometheus-client, installed by scripts/deps.sh test) and with the strict
checker below (HELP and TYPE for every family, valid names and escaped label
values, grouped families, no duplicate series, cumulative histogram buckets).
Also: 404/405 and HEAD on the scrape listener, the metrics port refused through
the proxy (proxy-loop), bounded label cardinality, bad --metrics values, and no
secret value ever in a scrape. Prints TAP; exits 1 if any case failed.

As root it re-executes itself inside a fresh network namespace (unshare --net).

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX,
EGRESSD_KEEP_TMP=1, EGRESSD_NO_NETNS=1.
"""

import http.client
import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import struct
import sys
import threading
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer,  # noqa: E402
                     TCPEchoServer, DNSServer, Reader, read_response, proxy_connect,
                     connect_proxy, http_request, client_ssl_context, run_egressd,
                     free_port, maybe_reexec_in_netns, IO_TIMEOUT)

NETNS = maybe_reexec_in_netns(__file__)
PUB_ADDR = "203.0.113.7"

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian installs it for the system python3; a python3 of another
    # installation (pyenv) finds it there too (pure Python)
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        text_string_to_metric_families = None

suite = Suite("metrics")
W = {}

_RND = uuid.uuid4().hex
REAL = {"A_KEY": "sk-REAL-A-" + _RND[:20], "B_TOKEN": "sk-REAL-B-" + _RND[12:32]}
PH_RE = r"egressd-ph-[0-9a-f]{32}"
MANY = 50  # distinct hostnames for the cardinality case


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:api.test", "DNS:other.test", "DNS:badca.test"])
    W["pki2"] = make_pki(os.path.join(suite.tmp, "pki2"))  # a CA nobody trusts
    tls = (W["pki"]["cert"], W["pki"]["key"])
    W["tls_srv"] = EchoHTTPServer("127.0.0.1", tls=tls)
    W["plain_srv"] = EchoHTTPServer("127.0.0.1")
    W["badca_srv"] = EchoHTTPServer("127.0.0.1", tls=(W["pki2"]["cert"], W["pki2"]["key"]))
    W["echo_srv"] = TCPEchoServer("127.0.0.1")
    names = ["api.test", "other.test", "tun.test", "plain.test", "badca.test"]
    names += ["h%d.many.test" % i for i in range(MANY)]
    recs = {n: ["127.0.0.1"] for n in names}
    recs["priv.test"] = ["10.0.0.5"]
    W["dns"] = DNSServer(recs)
    W["rst_sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    W["rst_sock"].bind(("127.0.0.1", 0))
    W["rst_sock"].listen(8)
    threading.Thread(target=rst_server, args=(W["rst_sock"],), daemon=True).start()
    W["closed_sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    W["closed_sock"].bind(("127.0.0.1", 0))  # bound, never listening: connect refused
    W["ports"] = {"tls": W["tls_srv"].port, "plain": W["plain_srv"].port,
                  "echo": W["echo_srv"].port, "badca": W["badca_srv"].port,
                  "closed": W["closed_sock"].getsockname()[1],
                  "rst": W["rst_sock"].getsockname()[1]}


def rst_server(ls):
    """Accepts, reads one chunk, then resets the connection (SO_LINGER 0)."""
    while True:
        try:
            c, _ = ls.accept()
        except OSError:
            return
        try:
            c.settimeout(10)
            c.recv(4096)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        c.close()


# --------------------------------------------------------------------------
# the strict exposition checker

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_labels(s, where):
    """s: the text between { and } of a sample. Returns an ordered list of
    (name, unescaped value); raises on anything the text format does not allow."""
    out = []
    i = 0
    while i < len(s):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        check(m is not None, "%s: bad label syntax at %r" % (where, s[i:]))
        name = m.group(1)
        check(not name.startswith("__"), "%s: reserved label name %r" % (where, name))
        i += m.end()
        val = []
        while True:
            check(i < len(s), "%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                check(i + 1 < len(s) and s[i + 1] in '\\"n',
                      "%s: bad escape %r in a label value" % (where, s[i:i + 2]))
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
                continue
            if c == '"':
                i += 1
                break
            check(c != "\n", "%s: raw newline in a label value" % where)
            val.append(c)
            i += 1
        out.append((name, "".join(val)))
        if i < len(s):
            check(s[i] == ",", "%s: expected ',' between labels, got %r" % (where, s[i:]))
            i += 1
            check(i < len(s), "%s: trailing comma in labels" % where)
    names = [n for n, _ in out]
    check(len(names) == len(set(names)), "%s: repeated label name" % where)
    return out


def parse_value(v, where):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    check(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", v) is not None,
          "%s: bad sample value %r" % (where, v))
    return float(v)


def strict_parse(text):
    """Checks the exposition line by line; returns {(name, labels tuple): value}
    and {family: type}."""
    check(text.endswith("\n"), "exposition does not end with a newline")
    samples, fam_type, fam_help, done = {}, {}, {}, set()
    cur = None  # the family whose samples are being read
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (n, line[:120])
        check(line != "", "%s: empty line" % where)
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.+)", line)
            check(m is not None, "%s: bad comment line" % where)
            kind, fam, rest = m.groups()
            check(NAME_RE.match(fam) is not None, "%s: bad family name" % where)
            check(fam.startswith("egressd_"), "%s: family without the egressd_ prefix" % where)
            check(fam not in done, "%s: family %s is not contiguous" % (where, fam))
            if kind == "HELP":
                check(fam not in fam_help, "%s: second HELP for %s" % (where, fam))
                check(fam not in fam_type, "%s: HELP after TYPE for %s" % (where, fam))
                fam_help[fam] = rest
            else:
                check(fam in fam_help, "%s: TYPE without HELP for %s" % (where, fam))
                check(fam not in fam_type, "%s: second TYPE for %s" % (where, fam))
                check(rest in TYPES, "%s: unknown type %r" % (where, rest))
                if rest == "counter":
                    check(fam.endswith("_total"), "%s: counter not ending in _total" % where)
                fam_type[fam] = rest
            if cur and cur != fam:
                done.add(cur)
            cur = fam
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        check(m is not None, "%s: bad sample line" % where)
        name, labels, value = m.group(1), m.group(2), m.group(3)
        check(cur in fam_type, "%s: sample before its family's TYPE" % where)
        if fam_type[cur] == "histogram":
            check(name in (cur + "_bucket", cur + "_sum", cur + "_count"),
                  "%s: sample %s does not belong to histogram %s" % (where, name, cur))
        else:
            check_eq(name, cur, "%s: sample name for family" % where)
        lab = tuple(sorted(parse_labels(labels, where))) if labels else ()
        check(all(LABEL_RE.match(k) for k, _ in lab), "%s: bad label name" % where)
        if name.endswith("_bucket") and fam_type[cur] == "histogram":
            check("le" in dict(lab), "%s: bucket without le" % where)
        key = (name, lab)
        check(key not in samples, "%s: duplicate series" % where)
        samples[key] = parse_value(value, where)
    for fam, t in fam_type.items():
        # a labelled family may be empty (no secrets configured), no other
        check(fam == "egressd_secret_injections_total" or
              any(k[0] == fam or k[0].startswith(fam + "_") for k in samples),
              "family %s has no samples" % fam)
        if t == "histogram":
            check_histogram(fam, samples)
    return samples, fam_type


def check_histogram(fam, samples):
    """Buckets per label set: ascending le, cumulative (monotone) counts, +Inf
    present and equal to _count; _sum present."""
    groups = {}
    for (name, lab), v in samples.items():
        if name == fam + "_bucket":
            d = dict(lab)
            le = d.pop("le")
            groups.setdefault(tuple(sorted(d.items())), []).append((float(le), v))
    check(groups, "histogram %s has no buckets" % fam)
    for rest, buckets in groups.items():
        buckets.sort()
        check(buckets[-1][0] == math.inf, "%s%r: no +Inf bucket" % (fam, rest))
        for (_, a), (_, b) in zip(buckets, buckets[1:]):
            check(a <= b, "%s%r: buckets not cumulative: %r" % (fam, rest, buckets))
        count = samples.get((fam + "_count", rest))
        check(count is not None and (fam + "_sum", rest) in samples,
              "%s%r: _count or _sum missing" % (fam, rest))
        check_eq(buckets[-1][1], count, "%s%r: +Inf bucket vs _count" % (fam, rest))


def lib_parse(text):
    """prometheus_client's view: {sample name + labels: value}."""
    check(text_string_to_metric_families is not None,
          "prometheus_client is not importable (Debian python3-prometheus-client; "
          "scripts/deps.sh test installs it)")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# --------------------------------------------------------------------------
# scraping


def get(port, method="GET", path="/metrics", raw=None):
    """One request to the scrape listener. Returns (status, headers dict, body)."""
    if raw is not None:
        s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        s.settimeout(IO_TIMEOUT)
        s.sendall(raw)
        r = Reader(s)
        resp = read_response(r, method="HEAD" if raw.startswith(b"HEAD") else "GET")
        s.close()
        return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


class Scrape:
    def __init__(self, text):
        self.text = text
        self.samples, self.types = strict_parse(text)
        lib = lib_parse(text)
        check_eq(len(lib), len(self.samples), "samples parsed by prometheus_client vs strict")
        for k, v in self.samples.items():
            check(k in lib, "prometheus_client does not see %r" % (k,))
            check(lib[k] == v, "prometheus_client reads %r as %r, strict as %r" % (k, lib[k], v))

    def get(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        check(key in self.samples, "no series %s%r in the scrape" % (name, labels))
        return self.samples[key]

    def series(self):
        return set(self.samples)


def scrape(e):
    status, hdrs, body = get(e.mport)
    check_eq(status, 200, "GET /metrics status")
    check_eq(hdrs.get("content-type"), "text/plain; version=0.0.4; charset=utf-8",
             "Content-Type of /metrics")
    return Scrape(body.decode("utf-8"))


def settle(e, want_open=0, timeout=10.0):
    """Scrapes until egressd_connections_open == want_open (connections the
    tests closed are freed asynchronously); returns that scrape."""
    deadline = time.time() + timeout
    while True:
        s = scrape(e)
        if s.get("egressd_connections_open") == want_open:
            return s
        if time.time() > deadline:
            raise AssertionError("egressd_connections_open stayed %r, want %r" % (
                s.get("egressd_connections_open"), want_open))
        time.sleep(0.05)


def delta(before, after, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)


def check_deltas(before, after, want):
    """want: [(name, labels dict, expected delta)]."""
    bad = []
    for name, labels, d in want:
        got = delta(before, after, name, **labels)
        if got != d:
            bad.append("%s%r moved by %r, want %r" % (name, labels, got, d))
    check(not bad, "; ".join(bad))


def hist_count(s, fam, **labels):
    return s.get(fam + "_count", **labels)


# --------------------------------------------------------------------------
# egressd


def policy_file(ctx, secrets=True, extra=None):
    pol = {"allowNet": ["api.test", "other.test", "tun.test", "plain.test", "priv.test",
                        "nx.test", "badca.test", "bad.test", "*.many.test", "127.0.0.0/8",
                        PUB_ADDR],
           "denyNet": ["bad.test"]}
    if secrets:
        pol["secrets"] = {"A_KEY": {"hosts": ["api.test"], "value": REAL["A_KEY"]},
                          "B_TOKEN": {"hosts": ["api.test"], "value": REAL["B_TOKEN"]}}
        pol["intercept"] = ["other.test", "badca.test"]
    pol.update(extra or {})
    path = os.path.join(ctx.tmp, "policy.json")
    with open(path, "w") as f:
        json.dump(pol, f)
    return path


def start(ctx, extra=(), secrets=True, threads=2, metrics=None):
    state = os.path.join(ctx.tmp, "state")
    pol = policy_file(ctx, secrets)

    def make():
        mport = int(metrics.rsplit(":", 1)[1]) if metrics else free_port()
        args = ["-c", pol, "--state-dir", state,
                "--allow-private", "127.0.0.0/8", "--upstream-ca", W["pki"]["ca"],
                "--metrics", metrics or "127.0.0.1:%d" % mport] + list(extra)
        e = ctx.egressd(args, dns="127.0.0.1:%d" % W["dns"].port, threads=threads)
        e.mport = mport
        return e
    # a port the caller chose itself (metrics=) is not picked again
    e = make() if metrics else ctx.on_free_ports(make)
    # the harness's readiness probe is a connection of its own: wait until it is
    # counted (it may still sit in the accept queue), so deltas start from rest
    deadline = time.time() + 10.0
    while True:
        try:
            s = scrape(e)
        except OSError:  # the metrics listener may open just after the proxy's
            check(time.time() < deadline, "the metrics port never answered")
            time.sleep(0.02)
            continue
        n = sum(v for k, v in s.samples.items() if k[0] == "egressd_connections_total")
        if n >= 1 and s.get("egressd_connections_open") == 0:
            break
        check(time.time() < deadline, "the readiness probe was never counted (%r)" % n)
        time.sleep(0.02)
    e.state = state
    e.ca = os.path.join(state, "ca.crt")
    e.policy = pol
    if secrets:
        r = run_egressd(["env", "-c", e.policy, "--state-dir", state])
        check_eq(r.returncode, 0, "egressd env (%s)" % r.stderr[-300:])
        e.ph = {}
        for l in r.stdout.splitlines():
            k, sep, v = l.partition("=")
            if sep and re.fullmatch(PH_RE, v):
                e.ph[k] = v
        check(set(REAL) <= set(e.ph), "placeholders %r" % sorted(e.ph))
    return e


def no_secret_values(*scrapes):
    for s in scrapes:
        for name, real in REAL.items():
            check(real not in s.text, "the real value of %s is in a scrape" % name)


def hp(host, key):
    return "%s:%d" % (host, W["ports"][key])


def connect_status(ctx, e, target):
    s, r, resp = proxy_connect(ctx, e.port, target)
    return resp, s, r


def open_intercepted(ctx, e, host="api.test"):
    resp, s, r = connect_status(ctx, e, hp(host, "tls"))
    check_eq(resp.status, 200, "CONNECT %s" % host)
    t = client_ssl_context(e.ca).wrap_socket(s, server_hostname=host)
    t.settimeout(IO_TIMEOUT)
    ctx.sock(t)
    return t, Reader(t)


# --------------------------------------------------------------------------
# cases

@suite.case("scrape: 200 text/plain 0.0.4, parsed by prometheus_client and the strict checker; "
            "every documented family present")
def _(ctx):
    e = start(ctx)
    s = settle(e)
    want = {"egressd_build_info": "gauge", "egressd_start_time_seconds": "gauge",
            "egressd_connections_total": "counter", "egressd_connections_open": "gauge",
            "egressd_requests_total": "counter", "egressd_secret_injections_total": "counter",
            "egressd_refusals_total": "counter", "egressd_upstream_errors_total": "counter",
            "egressd_client_timeouts_total": "counter",
            "egressd_cert_cache_hits_total": "counter",
            "egressd_cert_cache_misses_total": "counter",
            "egressd_cert_cache_entries": "gauge", "egressd_certs_minted_total": "counter",
            "egressd_decode_memory_bytes": "gauge",
            "egressd_bytes_total": "counter", "egressd_tls_handshake_seconds": "histogram",
            "egressd_request_duration_seconds": "histogram",
            "egressd_policy_reloads_total": "counter",
            "egressd_placeholder_leaks_total": "counter"}
    for fam, t in want.items():
        check_eq(s.types.get(fam), t, "TYPE of %s" % fam)
    check_eq(s.get("egressd_build_info", version=run_egressd(["--version"]).stdout.split()[1]),
             1.0, "build_info")
    check(abs(s.get("egressd_start_time_seconds") - time.time()) < 120, "start time is now-ish")
    for sec in ("A_KEY", "B_TOKEN"):
        check_eq(s.get("egressd_secret_injections_total", secret=sec), 0.0, "%s at start" % sec)
    for r in ("not-allowed", "denied", "private-address", "proxy-loop", "sni-mismatch",
              "host-mismatch", "placeholder-leak", "dns-failure", "connect-failed",
              "upstream-cert-invalid", "bad-request", "too-many-connections",
              "h2-prior-knowledge"):
        s.get("egressd_refusals_total", reason=r)
    for k in ("dns", "connect", "timeout", "tls", "cert", "reset", "protocol"):
        s.get("egressd_upstream_errors_total", kind=k)
    # requests: a fixed set of (mode, proto) series, h2 on intercepted connections only
    req = sorted(dict(k[1]).get("mode", "") + "/" + dict(k[1]).get("proto", "")
                 for k in s.series() if k[0] == "egressd_requests_total")
    check_eq(req, ["http/http1", "intercept/h2", "intercept/http1", "origin/http1"],
             "egressd_requests_total series (mode/proto)")
    for mode, proto in (("http", "http1"), ("intercept", "http1"), ("intercept", "h2"),
                        ("origin", "http1")):
        check_eq(s.get("egressd_request_duration_seconds_count", mode=mode, proto=proto), 0.0,
                 "request_duration{%s,%s} at start" % (mode, proto))
    for k in ("clienthello", "tls-handshake", "first-bytes", "request-head", "idle"):
        check_eq(s.get("egressd_client_timeouts_total", phase=k), 0.0, "timeouts{%s} at start" % k)
    no_secret_values(s)


def closed_within(sock, seconds):
    """True if the peer closes sock (EOF or reset) within seconds."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@suite.case("client timeouts by phase: a silent client -> request-head +1 (--header-timeout 1), "
            "a CONNECT tunnel with nothing moving -> idle +1 (--idle-timeout 3), a ClientHello "
            "that never comes -> clienthello +1")
def _(ctx):
    e = start(ctx, secrets=False, extra=["--header-timeout", "1", "--idle-timeout", "3"])
    b = settle(e)
    silent = connect_proxy(ctx, e.port)
    resp, tun, r = connect_status(ctx, e, hp("tun.test", "echo"))
    check_eq(resp.status, 200, "CONNECT tun.test")
    tun.sendall(b"ping")  # not TLS: tunnelled untouched, then nothing moves
    check_eq(r.exactly(4), b"ping", "echo")
    check(closed_within(silent, 6), "the silent client was closed")
    check(closed_within(tun, 10), "the idle tunnel was closed")
    a = settle(e)
    check_deltas(b, a, [
        ("egressd_client_timeouts_total", {"phase": "request-head"}, 1),
        ("egressd_client_timeouts_total", {"phase": "idle"}, 1),
        ("egressd_client_timeouts_total", {"phase": "clienthello"}, 0),
    ])
    b = a
    resp, hello, r = connect_status(ctx, e, hp("tun.test", "echo"))
    check_eq(resp.status, 200, "CONNECT tun.test (no ClientHello follows)")
    check(closed_within(hello, 6), "the tunnel waiting for its first bytes was closed")
    a = settle(e)
    check_deltas(b, a, [("egressd_client_timeouts_total", {"phase": "clienthello"}, 1)])


@suite.case("allowed CONNECT tunnel: connections{connect,allow} +1, bytes up/down exactly the "
            "payload, open 1 while held and 0 after")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    resp, s, r = connect_status(ctx, e, hp("tun.test", "echo"))
    check_eq(resp.status, 200, "CONNECT tun.test")
    payload = os.urandom(3000)  # not TLS: tunnelled to the checked address
    s.sendall(payload)
    echoed = r.exactly(len(payload))
    check(echoed == payload, "echo through the tunnel")
    held = settle(e, want_open=1)
    check_eq(held.get("egressd_connections_open"), 1.0, "open while held")
    s.close()
    a = settle(e)
    check_deltas(b, a, [
        ("egressd_connections_total", {"mode": "connect", "decision": "allow"}, 1),
        ("egressd_connections_total", {"mode": "connect", "decision": "deny"}, 0),
        ("egressd_connections_total", {"mode": "none", "decision": "none"}, 0),
        ("egressd_bytes_total", {"direction": "up"}, len(payload)),
        ("egressd_bytes_total", {"direction": "down"}, len(payload)),
        ("egressd_requests_total", {"mode": "http", "proto": "http1"}, 0),
    ])


@suite.case("CONNECT tunnel whose upstream resets after the first bytes: "
            "upstream_errors{reset} +1, the client's connection closed")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    resp, s, r = connect_status(ctx, e, hp("tun.test", "rst"))
    check_eq(resp.status, 200, "CONNECT tun.test")
    s.sendall(b"hello")
    s.settimeout(IO_TIMEOUT)
    try:
        got = s.recv(100)
    except OSError:
        got = b""
    check_eq(got, b"", "client connection closed after the reset")
    s.close()
    a = settle(e)
    check_deltas(b, a, [("egressd_upstream_errors_total", {"kind": "reset"}, 1),
                        ("egressd_connections_total", {"mode": "connect", "decision": "allow"}, 1)])


@suite.case("refusals by reason: not-allowed, denied, private-address, proxy-loop, dns-failure, "
            "connect-failed, upstream-cert-invalid each +1; connections{connect,deny} +7; "
            "upstream errors dns/connect/cert +1")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    cases = [("nope.example:443", 403, "not-allowed"),
             ("bad.test:443", 403, "denied"),
             ("priv.test:443", 403, "private-address"),
             ("127.0.0.1:%d" % e.port, 403, "proxy-loop"),
             ("nx.test:443", 502, "dns-failure"),
             (hp("tun.test", "closed"), 502, "connect-failed"),
             (hp("badca.test", "badca"), 502, "upstream-cert-invalid")]
    # (badca.test is intercepted: its upstream certificate is verified)
    for target, status, reason in cases:
        resp, s, r = connect_status(ctx, e, target)
        check_eq((resp.status, resp.header("X-Egressd-Reason")), (status, reason),
                 "CONNECT %s" % target)
        s.close()
    a = settle(e)
    want = [("egressd_refusals_total", {"reason": r}, 1) for _, _, r in cases]
    want += [("egressd_connections_total", {"mode": "connect", "decision": "deny"}, 6),
             ("egressd_connections_total", {"mode": "intercept", "decision": "deny"}, 1),
             ("egressd_connections_total", {"mode": "connect", "decision": "allow"}, 0),
             ("egressd_upstream_errors_total", {"kind": "dns"}, 1),
             ("egressd_upstream_errors_total", {"kind": "connect"}, 1),
             ("egressd_upstream_errors_total", {"kind": "cert"}, 1),
             ("egressd_upstream_errors_total", {"kind": "tls"}, 0),
             ("egressd_refusals_total", {"reason": "sni-mismatch"}, 0)]
    check_deltas(b, a, want)


@suite.case("intercepted: 2 requests on one keep-alive connection with A_KEY -> "
            "requests{intercept} +2, secret_injections{A_KEY} +2, B_TOKEN +0, handshakes "
            "and request histograms move; no secret value in the scrape")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    t, r = open_intercepted(ctx, e)
    for i in range(2):
        t.sendall(http_request("GET", "/m/%d" % i, ["Host: " + hp("api.test", "tls"),
                                                   "Authorization: Bearer " + e.ph["A_KEY"]]))
        resp = read_response(r)
        check_eq(resp.status, 200, "request %d" % i)
        got = dict((k.lower(), v) for k, v in resp.json()["headers"])
        check_eq(got.get("authorization"), "Bearer " + e.ph["A_KEY"],
                 "reply redacted back to the placeholder")
    mid = settle(e, want_open=1)
    t.close()
    a = settle(e)
    check_deltas(b, a, [
        ("egressd_requests_total", {"mode": "intercept", "proto": "http1"}, 2),
        ("egressd_requests_total", {"mode": "http", "proto": "http1"}, 0),
        ("egressd_secret_injections_total", {"secret": "A_KEY"}, 2),
        ("egressd_secret_injections_total", {"secret": "B_TOKEN"}, 0),
        ("egressd_connections_total", {"mode": "intercept", "decision": "allow"}, 1),
        ("egressd_tls_handshake_seconds_count", {"side": "client"}, 1),
        ("egressd_tls_handshake_seconds_count", {"side": "upstream"}, 1),
        ("egressd_request_duration_seconds_count", {"mode": "intercept", "proto": "http1"}, 2),
        ("egressd_request_duration_seconds_bucket", {"mode": "intercept", "proto": "http1", "le": "+Inf"}, 2),
    ])
    check(delta(b, a, "egressd_request_duration_seconds_sum", mode="intercept",
                proto="http1") > 0,
          "request duration _sum moved")
    check(delta(b, a, "egressd_bytes_total", direction="up") > 0 and
          delta(b, a, "egressd_bytes_total", direction="down") > 0, "bytes moved")
    no_secret_values(b, mid, a)
    check("A_KEY" in a.text and e.ph["A_KEY"] not in a.text,
          "the scrape names the secret, never its placeholder or value")


@suite.case("leaf cache (one worker): first intercepted connection a miss and a mint, the "
            "second a hit; entries 1")
def _(ctx):
    e = start(ctx, threads=1)
    b = settle(e)
    for i in range(2):
        t, r = open_intercepted(ctx, e)
        t.sendall(http_request("GET", "/c/%d" % i, ["Host: " + hp("api.test", "tls")]))
        check_eq(read_response(r).status, 200, "request %d" % i)
        t.close()
        s = settle(e)
        check_deltas(b, s, [("egressd_cert_cache_misses_total", {}, 1),
                            ("egressd_certs_minted_total", {}, 1),
                            ("egressd_cert_cache_hits_total", {}, i),
                            ("egressd_cert_cache_entries", {}, 1)])


@suite.case("plain HTTP absolute-form: requests{http} +1, connections{http,allow} +1, "
            "request_duration{http} _count +1, bytes moved")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    s = connect_proxy(ctx, e.port)
    s.sendall(http_request("GET", "http://%s/p" % hp("plain.test", "plain"),
                           ["Host: plain.test", "Connection: close"]))
    resp = read_response(Reader(s))
    check_eq(resp.status, 200, "plain GET")
    s.close()
    a = settle(e)
    check_deltas(b, a, [
        ("egressd_requests_total", {"mode": "http", "proto": "http1"}, 1),
        ("egressd_requests_total", {"mode": "intercept", "proto": "http1"}, 0),
        ("egressd_connections_total", {"mode": "http", "decision": "allow"}, 1),
        ("egressd_request_duration_seconds_count", {"mode": "http", "proto": "http1"}, 1),
        ("egressd_secret_injections_total", {"secret": "A_KEY"}, 0),
    ])
    check(delta(b, a, "egressd_bytes_total", direction="down") >= len(resp.body),
          "bytes down counts at least the body")


@suite.case("placeholder leak blocked: placeholder_leaks +1, refusals{placeholder-leak} +1, "
            "no injection counted")
def _(ctx):
    e = start(ctx, extra=["--on-placeholder-leak", "block"])
    b = settle(e)
    t, r = open_intercepted(ctx, e, host="other.test")
    t.sendall(http_request("GET", "/leak", ["Host: " + hp("other.test", "tls"),
                                           "X-K: " + e.ph["A_KEY"]]))
    resp = read_response(r)
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "placeholder-leak"), "blocked")
    t.close()
    a = settle(e)
    check_deltas(b, a, [
        ("egressd_placeholder_leaks_total", {}, 1),
        ("egressd_refusals_total", {"reason": "placeholder-leak"}, 1),
        ("egressd_requests_total", {"mode": "intercept", "proto": "http1"}, 0),
        ("egressd_secret_injections_total", {"secret": "A_KEY"}, 0),
        ("egressd_connections_total", {"mode": "intercept", "decision": "allow"}, 1),
    ])
    no_secret_values(a)


@suite.case("every connection is counted exactly once and open returns to 0 (20 clients: "
            "idle, malformed, tunnelled, denied)")
def _(ctx):
    e = start(ctx, secrets=False)
    b = settle(e)
    socks = []
    for i in range(20):
        s = connect_proxy(ctx, e.port)
        kind = i % 4
        if kind == 1:
            s.sendall(b"GARBAGE\r\n\r\n")
        elif kind == 2:
            s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % hp("tun.test", "echo").encode())
        elif kind == 3:
            s.sendall(b"CONNECT nope.example:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    # the 5 tunnels and 5 idle ones stay open (the 10 refused close): once egressd
    # has taken them all from its accept queue, open is at least 10
    deadline = time.time() + 10
    while True:
        held = scrape(e)
        if held.get("egressd_connections_open") >= 10 or time.time() > deadline:
            break
        time.sleep(0.05)
    check(held.get("egressd_connections_open") >= 10, "open while held: %r" %
          held.get("egressd_connections_open"))
    for s in socks:
        s.close()
    a = settle(e)
    total = sum(v - b.samples.get(k, 0) for k, v in a.samples.items()
                if k[0] == "egressd_connections_total")
    check_eq(total, 20.0, "sum of connections_total deltas")
    check_deltas(b, a, [
        ("egressd_connections_total", {"mode": "connect", "decision": "allow"}, 5),
        ("egressd_connections_total", {"mode": "connect", "decision": "deny"}, 5),
        ("egressd_connections_total", {"mode": "none", "decision": "none"}, 10),
        ("egressd_refusals_total", {"reason": "bad-request"}, 5),
        ("egressd_refusals_total", {"reason": "not-allowed"}, 5),
    ])


@suite.case("the metrics port is egressd's own: CONNECT and absolute-form to it -> 403 "
            "proxy-loop (a free port on the same address is allowed)")
def _(ctx):
    e = start(ctx, secrets=False)
    b = settle(e)
    resp, s, r = connect_status(ctx, e, "127.0.0.1:%d" % e.mport)
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "proxy-loop"),
             "CONNECT to the metrics port")
    s = connect_proxy(ctx, e.port)
    s.sendall(http_request("GET", "http://127.0.0.1:%d/metrics" % e.mport, ["Host: x"]))
    resp = read_response(Reader(s))
    check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "proxy-loop"),
             "GET http://metrics-port/metrics through the proxy")
    check(b"egressd_" not in resp.body, "no metrics text came back through the proxy")
    resp, s, r = connect_status(ctx, e, "127.0.0.1:%d" % W["ports"]["echo"])
    check_eq(resp.status, 200, "control: another port on 127.0.0.1 is allowed")
    s.close()
    a = settle(e)
    check_deltas(b, a, [("egressd_refusals_total", {"reason": "proxy-loop"}, 2)])


@suite.case("metrics on a wildcard address: 127.0.0.1 and local addresses at that port are "
            "proxy-loop")
def _(ctx):
    mport = free_port()
    e = start(ctx, secrets=False, metrics="0.0.0.0:%d" % mport)
    targets = ["127.0.0.1:%d" % mport, "127.0.0.2:%d" % mport]
    if NETNS:
        targets.append("%s:%d" % (PUB_ADDR, mport))
    for t in targets:
        resp, s, r = connect_status(ctx, e, t)
        check_eq((resp.status, resp.header("X-Egressd-Reason")), (403, "proxy-loop"),
                 "CONNECT %s" % t)
        s.close()


@suite.case("scrape listener: 404 other paths, 405 other methods (Allow), HEAD, query string, "
            "malformed request 400, one request per connection")
def _(ctx):
    e = start(ctx, secrets=False)
    st, h, body = get(e.mport, path="/metrics?name[]=x")
    check_eq(st, 200, "/metrics?query")
    check(b"egressd_connections_open" in body, "body")
    for path in ("/", "/metricsx", "/metrics/", "/other"):
        st, h, body = get(e.mport, path=path)
        check_eq(st, 404, "GET %s" % path)
    for m in ("POST", "PUT", "DELETE"):
        st, h, body = get(e.mport, method=m)
        check_eq(st, 405, "%s /metrics" % m)
        check_eq(h.get("allow"), "GET, HEAD", "Allow header")
    st, h, body = get(e.mport, raw=b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    check_eq((st, body), (200, b""), "HEAD: 200 without a body")
    check(int(h["content-length"]) > 1000, "HEAD has the GET's Content-Length")
    st, h, body = get(e.mport, raw=b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    check_eq(st, 400, "malformed head")
    s = socket.create_connection(("127.0.0.1", e.mport), timeout=IO_TIMEOUT)
    ctx.sock(s)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    r = Reader(s)
    first = read_response(r)
    check_eq(first.status, 200, "first of two pipelined scrapes")
    check_eq((first.header("Connection") or "").lower(), "close", "Connection: close")
    check_eq(r.rest(), b"", "nothing after the first response (connection closed)")
    s2 = socket.create_connection(("127.0.0.1", e.mport), timeout=IO_TIMEOUT)
    ctx.sock(s2)
    s2.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n")
    resp = read_response(Reader(s2))
    check(resp.status in (400, 431), "an oversized head is refused (%d)" % resp.status)


@suite.case("label cardinality stays bounded: 50 different hostnames (25 tunnels, 25 denied) "
            "add no series and no hostname")
def _(ctx):
    e = start(ctx, secrets=False)
    b = settle(e)
    for i in range(MANY):
        host = "h%d.many.test" % i if i % 2 == 0 else "h%d.denied.example" % i
        resp, s, r = connect_status(ctx, e, "%s:%d" % (host, W["ports"]["echo"]))
        check_eq(resp.status, 200 if i % 2 == 0 else 403, "CONNECT %s" % host)
        s.close()
    a = settle(e)
    check_eq(a.series(), b.series(), "series set after %d hostnames" % MANY)
    check("many.test" not in a.text and "denied.example" not in a.text, "no hostname in the scrape")
    check_deltas(b, a, [("egressd_connections_total", {"mode": "connect", "decision": "allow"}, 25),
                        ("egressd_connections_total", {"mode": "connect", "decision": "deny"}, 25)])


@suite.case("SIGHUP: reloads{ok} +1 and a secret added by the reload gets its series; a broken "
            "policy -> reloads{failed} +1")
def _(ctx):
    e = start(ctx)
    b = settle(e)
    check(("egressd_secret_injections_total", (("secret", "NEW_KEY"),)) not in b.samples,
          "no NEW_KEY before the reload")
    with open(e.policy) as f:
        pol = json.load(f)
    pol["secrets"]["NEW_KEY"] = {"hosts": ["api.test"], "value": "sk-new-" + _RND[:8]}
    with open(e.policy, "w") as f:
        json.dump(pol, f)
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while scrape(e).get("egressd_policy_reloads_total", result="ok") < 1:
        check(time.time() < deadline, "reloads{ok} did not move within 5 s")
        time.sleep(0.05)
    a = scrape(e)
    check_eq(a.get("egressd_secret_injections_total", secret="NEW_KEY"), 0.0, "NEW_KEY series")
    check_eq(a.get("egressd_secret_injections_total", secret="A_KEY"), 0.0, "A_KEY kept")
    check("sk-new-" not in a.text, "no value of the new secret")
    with open(e.policy, "w") as f:
        f.write("{ not json")
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while scrape(e).get("egressd_policy_reloads_total", result="failed") < 1:
        check(time.time() < deadline, "reloads{failed} did not move within 5 s")
        time.sleep(0.05)
    check_eq(scrape(e).get("egressd_policy_reloads_total", result="ok"), 1.0, "ok stays 1")


def redirected(ctx, port):
    """A socket from 10.0.0.5 to 203.0.113.7:port, which the namespace's nat
    OUTPUT rule (set by the transparent case) sends to egressd's transparent
    listener with that original destination."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.sock(s)
    s.settimeout(IO_TIMEOUT)
    s.bind(("10.0.0.5", 0))
    s.connect((PUB_ADDR, port))
    return s


@suite.case("transparent (iptables REDIRECT in the namespace): plain HTTP -> origin allow and "
            "requests{origin}; TLS tunnel -> transparent allow; TLS to a secret's host -> "
            "intercept allow with the secret counted; unknown SNI -> transparent deny, not-allowed",
            skip=lambda: None if NETNS else "needs root (a private network namespace)")
def _(ctx):
    tport = free_port()
    e = start(ctx, extra=["--transparent", "127.0.0.1:%d" % tport])
    rule = ["-t", "nat", "OUTPUT", "-p", "tcp", "-s", "10.0.0.5", "-d", PUB_ADDR,
            "-j", "REDIRECT", "--to-ports", str(tport)]
    add = subprocess.run(["iptables", rule[0], rule[1], "-A"] + rule[2:], capture_output=True)
    check_eq(add.returncode, 0, "iptables -A (%s)" % add.stderr.decode().strip())
    try:
        b = settle(e)
        s = redirected(ctx, W["ports"]["plain"])
        s.sendall(http_request("GET", "/t", ["Host: plain.test:%d" % W["ports"]["plain"],
                                            "Connection: close"]))
        check_eq(read_response(Reader(s)).status, 200, "transparent plain HTTP")
        s.close()
        s = redirected(ctx, W["ports"]["tls"])
        # (the upstream's certificate says *.test, which Python will not match to tun.test)
        t = client_ssl_context(W["pki"]["ca"], check_hostname=False).wrap_socket(
            s, server_hostname="tun.test")
        ctx.sock(t)
        t.sendall(http_request("GET", "/tun", ["Host: tun.test", "Connection: close"]))
        check_eq(read_response(Reader(t)).status, 200, "transparent TLS tunnel")
        t.close()
        s = redirected(ctx, W["ports"]["tls"])
        t = client_ssl_context(e.ca).wrap_socket(s, server_hostname="api.test")
        ctx.sock(t)
        t.sendall(http_request("GET", "/icpt", ["Host: api.test:%d" % W["ports"]["tls"],
                                               "Authorization: Bearer " + e.ph["B_TOKEN"],
                                               "Connection: close"]))
        check_eq(read_response(Reader(t)).status, 200, "transparent intercepted")
        t.close()
        s = redirected(ctx, W["ports"]["tls"])
        try:
            client_ssl_context(W["pki"]["ca"]).wrap_socket(s, server_hostname="nope.example")
            raise AssertionError("TLS to an SNI that is not allowed succeeded")
        except (ssl.SSLError, OSError):
            pass
        s.close()
        a = settle(e)
    finally:
        subprocess.run(["iptables", rule[0], rule[1], "-D"] + rule[2:], capture_output=True)
    check_deltas(b, a, [
        ("egressd_connections_total", {"mode": "origin", "decision": "allow"}, 1),
        ("egressd_connections_total", {"mode": "transparent", "decision": "allow"}, 1),
        ("egressd_connections_total", {"mode": "intercept", "decision": "allow"}, 1),
        ("egressd_connections_total", {"mode": "transparent", "decision": "deny"}, 1),
        ("egressd_connections_total", {"mode": "none", "decision": "none"}, 0),
        ("egressd_requests_total", {"mode": "origin", "proto": "http1"}, 1),
        ("egressd_requests_total", {"mode": "intercept", "proto": "http1"}, 1),
        ("egressd_secret_injections_total", {"secret": "B_TOKEN"}, 1),
        ("egressd_refusals_total", {"reason": "not-allowed"}, 1),
        ("egressd_tls_handshake_seconds_count", {"side": "client"}, 1),
    ])
    no_secret_values(b, a)


BAD_METRICS = [
    ("not an address", "nonsense"),
    ("a name instead of an IP", "localhost:9090"),
    ("no port", "127.0.0.1"),
    ("port out of range", "127.0.0.1:70000"),
]


def bad_metrics_case(ctx, value):
    lp = free_port()
    r = run_egressd(["serve", "--listen", "127.0.0.1:%d" % lp, "--allow-net", "x.test",
                     "--metrics", value], timeout=10)
    ref = run_egressd(["serve", "--listen", "nonsense", "--allow-net", "x.test"], timeout=10)
    ctx.note("stderr: %r" % r.stderr)
    check(r.returncode != 0, "egressd started with --metrics %r" % value)
    check_eq(r.returncode, ref.returncode, "exit status like a bad --listen")
    check("--metrics" in r.stderr and value in r.stderr,
          "the error names --metrics and the value: %r" % r.stderr)


for desc, value in BAD_METRICS:
    suite.add("bad --metrics (%s): clear error, exit status like a bad --listen" % desc,
              bad_metrics_case, value)


@suite.case("--metrics on a port in use: clear error naming the address, non-zero exit")
def _(ctx):
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.sock(hold)
    hold.bind(("127.0.0.1", 0))
    hold.listen(1)
    port = hold.getsockname()[1]
    r = run_egressd(["serve", "--listen", "127.0.0.1:%d" % free_port(), "--allow-net", "x.test",
                     "--metrics", "127.0.0.1:%d" % port], timeout=10)
    ctx.note("stderr: %r" % r.stderr)
    check(r.returncode != 0, "egressd started on a metrics port in use")
    check("in use" in r.stderr and "127.0.0.1:%d" % port in r.stderr,
          "error says the address is in use: %r" % r.stderr)


def main():
    setup()
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
