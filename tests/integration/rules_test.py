#!/usr/bin/env python3
"""rules_test.py -- integration tests of request rules ("rules" and
"rulesDefault" in the policy file): allow/deny by method and path inside
CONNECT-intercepted TLS (real curl and Python ssl) and on plain HTTP, first
match wins, the default, path normalisation against bypasses, a catastrophic
pattern against a long path, keep-alive connections alternating allowed and
refused requests (bodies of refused requests discarded, the upstream seeing
only the allowed ones), the audit log, `egressd check METHOD URL`, config
errors, SIGHUP reload. TLS and plain echo upstreams and a DNS server on
loopback (tests/integration/harness.py). Prints TAP; exits 1 if any case failed.

As root it re-executes itself inside a fresh network namespace (unshare --net):
nothing can leave the machine. egressd always gets --dns (the suite's DNS server).

Environment: EGRESSD_BIN (default build/egressd), EGRESSD_TEST_ONLY=REGEX,
EGRESSD_KEEP_TMP=1, EGRESSD_NO_NETNS=1.
"""

import json
import os
import re
import signal
import socket
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Suite, check, check_eq, make_pki, EchoHTTPServer, DNSServer,  # noqa: E402
                     Reader, read_response, proxy_connect, connect_proxy, http_request,
                     client_ssl_context, curl, run_egressd, free_port, maybe_reexec_in_netns,
                     IO_TIMEOUT)

NETNS = maybe_reexec_in_netns(__file__)

suite = Suite("rules")
W = {}  # the world: certificates, upstreams, DNS; filled by setup()
SECRET = "sk-REAL-RULES-" + uuid.uuid4().hex[:16]


def setup():
    W["pki"] = make_pki(os.path.join(suite.tmp, "pki"),
                        extra_sans=["DNS:api.test", "DNS:files.test", "DNS:free.test",
                                    "DNS:plain.test"])
    pki = W["pki"]
    W["tls"] = EchoHTTPServer("127.0.0.1", tls=(pki["cert"], pki["key"]))
    W["plain"] = EchoHTTPServer("127.0.0.1")
    W["dns"] = DNSServer({n: ["127.0.0.1"] for n in
                          ("api.test", "files.test", "free.test", "plain.test")})


# the example, on the suite's names
GITHUB_RULES = [
    {"host": "api.test", "method": "GET", "path": "^/repos/acme/", "action": "allow"},
    {"host": "api.test", "action": "deny"},
]


def hp(host, key="tls"):
    return "%s:%d" % (host, W[key].port)


def token():
    return uuid.uuid4().hex[:16]


def write_policy(ctx, policy, name="policy.json"):
    path = os.path.join(ctx.tmp, name)
    with open(path, "w") as f:
        json.dump(policy, f, indent=1)
    return path


def start(ctx, rules, default=None, extra_policy=None, extra=()):
    """egressd with these rules (and rulesDefault), the test CA upstream,
    loopback allowed, the suite's DNS, a fresh state dir, an audit log."""
    policy = {"rules": rules}
    if default is not None:
        policy["rulesDefault"] = default
    policy.update(extra_policy or {})
    path = write_policy(ctx, policy)
    state = os.path.join(ctx.tmp, "state")
    e = ctx.egressd(["--state-dir", state, "-c", path, "--allow-private", "127.0.0.0/8",
                     "--upstream-ca", W["pki"]["ca"]] + list(extra),
                    dns="127.0.0.1:%d" % W["dns"].port,
                    env={"RULES_SECRET": SECRET})
    e.ca = os.path.join(state, "ca.crt")
    e.policy_path = path
    return e


def open_tls(ctx, e, host):
    """CONNECT host through egressd, then TLS verified against egressd's CA."""
    s, r, resp = proxy_connect(ctx, e.port, hp(host))
    check_eq(resp.status, 200, "CONNECT %s status (%r)" % (host, resp.raw_head[:200]))
    t = client_ssl_context(e.ca).wrap_socket(s, server_hostname=host)
    t.settimeout(IO_TIMEOUT)
    ctx.sock(t)
    return t, Reader(t)


def req(t, r, method, path, host="api.test", body=None, chunked=None, headers=()):
    t.sendall(http_request(method, path, ["Host: " + host] + list(headers), body=body,
                           chunked_body=chunked))
    return read_response(r, method=method)


def after_connect(out):
    """curl -i output without the proxy's answer to CONNECT."""
    out = out.decode("latin-1")
    head = "HTTP/1.1 200 Connection established\r\n\r\n"
    return out[len(head):] if out.startswith(head) else out


def seen(srv, tok):
    return [i for i in list(srv.seen) if tok in i.get("path", "")]


def expect_refused(resp, rule, what, method=None, url=None):
    """403 rule-denied; the body names the rule (an int, "rulesDefault" or a
    phrase) and, if given, the method and URL."""
    check_eq(resp.status, 403, what + ": status (%r)" % resp.body[:200])
    check_eq(resp.header("X-Egressd-Reason"), "rule-denied", what + ": X-Egressd-Reason")
    body = resp.body.decode("latin-1")
    if method == "HEAD" or (method is None and what.startswith("HEAD ")):
        check_eq(body, "", what + ": no body in a reply to HEAD")
        check(int(resp.header("Content-Length") or "0") > 0, what + ": Content-Length")
        return
    check(body.endswith("\n") and body.count("\n") == 1, what + ": one-line body %r" % body)
    if isinstance(rule, int):
        check(" refused by rule %d (rule-denied)" % rule in body,
              what + ": body names rule %d: %r" % (rule, body))
    else:
        check(rule in body, what + ": body mentions %r: %r" % (rule, body))
    if method and url:
        check(body.startswith("egressd: %s %s " % (method, url)),
              what + ": body names %s %s: %r" % (method, url, body))


# --------------------------------------------------------------------------
# allow / deny by method and path


@suite.case("curl through CONNECT interception: GET allowed by rule 0, POST and other paths "
            "refused by rule 1 (403 rule-denied naming the rule), upstream sees only the GET")
def _(ctx):
    e = start(ctx, GITHUB_RULES)
    tok = token()
    base = "https://%s" % hp("api.test")
    ok = curl(ctx, "-x", "http://" + e.addr, "--cacert", e.ca, "-i",
              base + "/repos/acme/x?t=" + tok)
    check_eq(ok.returncode, 0, "curl GET exit (%s)" % ok.stderr)
    check(after_connect(ok.stdout).startswith("HTTP/1.1 200"), "GET status: %r" % ok.stdout[:100])
    check_eq(len(seen(W["tls"], tok)), 1, "upstream requests for the GET")
    for method, path, rule in (("POST", "/repos/acme/x", 1), ("GET", "/repos/other/x", 1),
                               ("DELETE", "/repos/acme/x", 1)):
        t2 = token()
        c = curl(ctx, "-x", "http://" + e.addr, "--cacert", e.ca, "-i", "-X", method,
                 base + path + "?t=" + t2)
        check_eq(c.returncode, 0, "curl %s exit (%s)" % (method, c.stderr))
        out = after_connect(c.stdout)
        check(out.startswith("HTTP/1.1 403"), "%s %s status: %r" % (method, path, out[:200]))
        check(re.search(r"(?im)^X-Egressd-Reason: rule-denied\r?$", out),
              "%s %s: X-Egressd-Reason header: %r" % (method, path, out[:400]))
        want = "egressd: %s %s%s?t=%s refused by rule %d (rule-denied)" % (
            method, base, path, t2, rule)
        check(want in out, "%s %s: body %r, want %r" % (method, path, out[-300:], want))
        check_eq(len(seen(W["tls"], t2)), 0, "upstream requests for %s %s" % (method, path))


# (method, target sent, expected: "allow" or the rule index / phrase, description)
PYTHON_CASES = [
    ("GET", "/repos/acme/issues", "allow", "exact allowed prefix"),
    ("GET", "/repos/acme/x?q=/../admin", "allow", "query not matched, dot-segments in it harmless"),
    ("GET", "/%72epos/acme/x", "allow", "percent-encoded unreserved letter decoded before matching"),
    ("HEAD", "/repos/acme/x", 1, "HEAD is not GET"),
    ("get", "/repos/acme/x", None, "lower-case method is not a method (400 from the parser)"),
    ("PUT", "/repos/acme/x", 1, "PUT refused by the catch-all"),
    ("GET", "/Repos/acme/x", 1, "paths are case-sensitive"),
    ("GET", "/repos/acme/../../admin", "ambiguous path: dot-segment", "dot-dot segment"),
    ("GET", "/repos/acme/%2e%2e/%2E%2E/admin", "ambiguous path: dot-segment", "encoded dot-dot"),
    ("GET", "/repos/acme/..;/..;/admin", "ambiguous path: dot-segment with parameters",
     "dot-dot with ;parameters (Tomcat reads /admin)"),
    ("GET", "/repos/;x/acme/x", "ambiguous path: empty segment with parameters",
     "segment of ;parameters alone"),
    ("GET", "/repos;v=1/acme/x", 1, "matrix parameters: matched as sent, not "
     "stripped (the allow rule does not match; the catch-all refuses)"),
    ("GET", "//repos/acme/x", "ambiguous path: empty segment", "double slash"),
    ("GET", "/repos/acme%2Fx", "ambiguous path: encoded slash", "encoded slash"),
    ("GET", "/repos/acme/x%00", "ambiguous path: encoded NUL", "encoded NUL"),
    ("GET", "/repos/acme/x%zz", "ambiguous path: malformed", "malformed escape"),
    ("GET", "https://api.test/repos/acme/x", "allow", "absolute-form inside the tunnel reduced to its path"),
]


def python_case(ctx, method, target, want, desc):
    e = start(ctx, GITHUB_RULES)
    tok = token()
    t, r = open_tls(ctx, e, "api.test")
    sep = "&" if "?" in target else "?"
    full = target + sep + "t=" + tok
    resp = req(t, r, method, full)
    ctx.note("%s %s -> %r" % (method, full, resp))
    if want == "allow":
        check_eq(resp.status, 200, "status")
        check_eq(len(seen(W["tls"], tok)), 1, "upstream requests")
        return
    if want is None:
        check_eq(resp.status, 400, "status")
    else:
        expect_refused(resp, want, "%s %s" % (method, target))
    check_eq(len(seen(W["tls"], tok)), 0, "upstream requests")
    if want is not None:
        tok2 = token()
        check_eq(req(t, r, "GET", "/repos/acme/next?t=" + tok2).status, 200,
                 "next request on the same connection")
        check_eq(len(seen(W["tls"], tok2)), 1, "upstream requests for the next one")


for m, tg, w, d in PYTHON_CASES:
    suite.add("Python ssl, rules GET ^/repos/acme/ allow + catch-all deny: %s %s -> %s (%s)" % (
        m, tg, "200" if w == "allow" else "400" if w is None else "403 %s" % w, d),
        python_case, m, tg, w, d)


@suite.case("method lists and host lists: one rule for GET,DELETE on two hosts; other hosts "
            "are not subject to rules")
def _(ctx):
    rules = [{"host": ["api.test", "files.test"], "method": ["GET", "DELETE"],
              "path": "\\.json$", "action": "allow"}]
    e = start(ctx, rules, extra_policy={"intercept": ["free.test"]})
    for host in ("api.test", "files.test"):
        t, r = open_tls(ctx, e, host)
        check_eq(req(t, r, "GET", "/a.json", host).status, 200, "GET %s/a.json" % host)
        check_eq(req(t, r, "DELETE", "/a.json", host).status, 200, "DELETE %s/a.json" % host)
        expect_refused(req(t, r, "POST", "/a.json", host, body=b"x"), "rulesDefault",
                       "POST %s/a.json" % host)
        expect_refused(req(t, r, "GET", "/a.jsonx", host), "rulesDefault", "GET %s/a.jsonx" % host)
    t, r = open_tls(ctx, e, "free.test")
    tok = token()
    check_eq(req(t, r, "DELETE", "/anything/" + tok, "free.test").status, 200,
             "DELETE on a host no rule names")
    check_eq(len(seen(W["tls"], tok)), 1, "upstream requests to free.test")


@suite.case("first match wins: the same request is allowed or refused by the order of two "
            "overlapping rules")
def _(ctx):
    allow_first = [{"host": "api.test", "path": "^/a/b", "action": "allow"},
                   {"host": "api.test", "path": "^/a", "action": "deny"}]
    deny_first = list(reversed(allow_first))
    e1 = start(ctx, allow_first)
    t, r = open_tls(ctx, e1, "api.test")
    check_eq(req(t, r, "GET", "/a/b/c").status, 200, "allow-first: /a/b/c")
    expect_refused(req(t, r, "GET", "/a/c"), 1, "allow-first: /a/c")
    e1.stop()
    e2 = start(ctx, deny_first)
    t, r = open_tls(ctx, e2, "api.test")
    expect_refused(req(t, r, "GET", "/a/b/c"), 0, "deny-first: /a/b/c")
    expect_refused(req(t, r, "GET", "/a/c"), 0, "deny-first: /a/c")
    expect_refused(req(t, r, "GET", "/z"), "rulesDefault", "deny-first: /z (default deny)")


@suite.case("rulesDefault: absent = deny, \"deny\", \"allow\" for a request no rule matches; "
            "rule matches unaffected")
def _(ctx):
    rules = [{"host": "api.test", "method": "DELETE", "action": "deny"},
             {"host": "api.test", "path": "^/ok", "action": "allow"}]
    for default, want in ((None, 403), ("deny", 403), ("allow", 200)):
        e = start(ctx, rules, default=default)
        t, r = open_tls(ctx, e, "api.test")
        resp = req(t, r, "GET", "/other")
        check_eq(resp.status, want, "rulesDefault %r: GET /other" % default)
        if want == 403:
            expect_refused(resp, "refused by rulesDefault: no rule matches",
                           "rulesDefault %r" % default)
        check_eq(req(t, r, "GET", "/ok").status, 200, "rulesDefault %r: GET /ok" % default)
        expect_refused(req(t, r, "DELETE", "/ok"), 0, "rulesDefault %r: DELETE /ok" % default)
        e.stop()


# --------------------------------------------------------------------------
# catastrophic patterns


@suite.case("catastrophic pattern ^/(a|aa)+$ against a 60 KB path: refused cleanly (match "
            "limit) within 5 s, the same connection and new ones keep working", timeout=60)
def _(ctx):
    rules = [{"host": "api.test", "path": "^/(a|aa)+$", "action": "allow"},
             {"host": "api.test", "path": "(x+x+)+y", "action": "deny"},
             {"host": "api.test", "action": "allow"}]
    e = start(ctx, rules)
    t, r = open_tls(ctx, e, "api.test")
    path = "/" + "a" * 60000 + "b"
    t0 = time.time()
    resp = req(t, r, "GET", path)
    dt = time.time() - t0
    expect_refused(resp, "rule 0's path pattern hit the match limit", "60 KB path")
    check(dt < 5.0, "refusal took %.2fs" % dt)
    tok = token()
    check_eq(req(t, r, "GET", "/aaaa?t=" + tok).status, 200, "a short matching path next")
    check_eq(len(seen(W["tls"], tok)), 1, "upstream saw the short path")
    t0 = time.time()
    resp = req(t, r, "GET", "/" + "x" * 30000 + "zy")
    dt = time.time() - t0
    expect_refused(resp, "rule 1's path pattern hit the match limit", "(x+x+)+y, 30 KB")
    check(dt < 5.0, "second refusal took %.2fs" % dt)
    for _ in range(3):
        t2, r2 = open_tls(ctx, e, "api.test")
        check_eq(req(t2, r2, "GET", "/fine").status, 200, "new connection after the refusals")
    ev = e.wait_log(lambda v: v.get("event") == "request" and v.get("status") == 403)
    check_eq(ev[0].get("rule"), 0, "audit rule of the match-limit refusal")
    check("match limit" in (ev[0].get("detail") or ""), "audit detail %r" % ev[0].get("detail"))


# --------------------------------------------------------------------------
# keep-alive


@suite.case("keep-alive: one TLS connection alternates allowed and refused requests (refused "
            "ones with Content-Length and chunked bodies); the upstream sees exactly the "
            "allowed ones, with their bodies intact")
def _(ctx):
    rules = [{"host": "api.test", "method": "GET", "path": "^/repos/acme/", "action": "allow"},
             {"host": "api.test", "method": "POST", "path": "^/repos/acme/issues$",
              "action": "allow"},
             {"host": "api.test", "action": "deny"}]
    e = start(ctx, rules)
    t, r = open_tls(ctx, e, "api.test")
    allowed, refused = [], []
    # a refused body that looks like a request: if it were parsed as the next
    # request, egressd would forward it
    trap = b"GET /repos/acme/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n"
    steps = [
        ("GET", "/repos/acme/1", None, None, None),
        ("POST", "/repos/other", trap * 50, None, 2),
        ("GET", "/repos/acme/2", None, None, None),
        ("PUT", "/repos/acme/3", None, [trap, b"y" * 70000, trap], 2),
        ("POST", "/repos/acme/issues", b"z" * 5000, None, None),
        ("DELETE", "/repos/acme/4", b"", None, 2),
        ("GET", "/repos/acme/5", None, None, None),
    ]
    for method, path, body, chunked, rule in steps:
        tok = token()
        resp = req(t, r, method, path + "?t=" + tok, body=body, chunked=chunked)
        if rule is None:
            check_eq(resp.status, 200, "%s %s status" % (method, path))
            info = resp.json()
            check_eq(info["method"], method, "method the upstream saw")
            if body is not None:
                check_eq(info["body_len"], len(body), "body length the upstream saw")
            allowed.append(tok)
        else:
            expect_refused(resp, rule, "%s %s" % (method, path), method,
                           "https://%s%s?t=%s" % (hp("api.test"), path, tok))
            refused.append(tok)
    time.sleep(0.2)
    for tok in allowed:
        check_eq(len(seen(W["tls"], tok)), 1, "upstream requests for allowed %s" % tok)
    for tok in refused:
        check_eq(len(seen(W["tls"], tok)), 0, "upstream requests for refused %s" % tok)
    check_eq(len([i for i in W["tls"].seen if "smuggled" in i["path"]]), 0,
             "requests smuggled in refused bodies")
    evs = [v for v in e.log_events() if v.get("event") == "request"]
    check_eq([v.get("status") for v in evs], [200, 403, 200, 403, 200, 403, 200],
             "request events in order")


@suite.case("a refused request that waits for 100-continue gets 403 with Connection: close, "
            "and the connection closes (its body will not come)")
def _(ctx):
    e = start(ctx, GITHUB_RULES)
    t, r = open_tls(ctx, e, "api.test")
    t.sendall(b"POST /repos/acme/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n"
              b"Expect: 100-continue\r\n\r\n")
    resp = read_response(r, method="POST")
    expect_refused(resp, 1, "POST with Expect")
    check_eq((resp.header("Connection") or "").lower(), "close", "Connection header")
    check_eq(r.rest(), b"", "bytes after the 403 (then EOF)")


# --------------------------------------------------------------------------
# audit log


@suite.case("audit log: request events carry decision, reason rule-denied and the rule index "
            "(refused), decision allow and the rule (allowed), rule \"default\", detail for "
            "ambiguous paths; secrets still injected on allowed requests")
def _(ctx):
    rules = GITHUB_RULES + [{"host": "files.test", "path": "^/pub/", "action": "allow"}]
    e = start(ctx, rules, extra_policy={
        "secrets": {"RULES_SECRET": {"hosts": ["api.test"], "valueFromEnv": "RULES_SECRET"}}})
    envr = run_egressd(["env", "--state-dir", os.path.dirname(e.ca), "-c", e.policy_path],
                       env={"RULES_SECRET": SECRET})
    ph = re.search(r"^RULES_SECRET=(egressd-ph-[0-9a-f]{32})$", envr.stdout, re.M)
    check(ph, "placeholder in egressd env output: %r" % envr.stdout)
    t, r = open_tls(ctx, e, "api.test")
    tok = token()
    resp = req(t, r, "GET", "/repos/acme/a?t=" + tok, headers=["X-Key: " + ph.group(1)])
    check_eq(resp.status, 200, "allowed GET")
    info = seen(W["tls"], tok)[0]
    check_eq(dict((k.lower(), v) for k, v in info["headers"]).get("x-key"), SECRET,
             "secret injected on the allowed request")
    expect_refused(req(t, r, "POST", "/repos/acme/b", body=b"x" * 10,
                       headers=["X-Key: " + ph.group(1)]), 1, "POST")
    expect_refused(req(t, r, "GET", "/repos/acme/../b"), "ambiguous path", "dot-dot")
    t2, r2 = open_tls(ctx, e, "files.test")
    expect_refused(req(t2, r2, "GET", "/priv/x", "files.test"), "rulesDefault", "files.test")
    e.stop()
    evs = [v for v in e.log_events() if v.get("event") == "request"]
    check_eq(len(evs), 4, "request events (%r)" % evs)
    a, p, amb, d = evs
    check_eq((a.get("decision"), a.get("rule"), a.get("status"), a.get("secrets")),
             ("allow", 0, 200, ["RULES_SECRET"]), "allowed request event")
    check("reason" not in a, "no reason on an allowed request: %r" % a)
    check_eq((p.get("decision"), p.get("reason"), p.get("rule"), p.get("status"), p.get("method"),
              p.get("path")), ("deny", "rule-denied", 1, 403, "POST", "/repos/acme/b"),
             "refused request event")
    check_eq(p.get("secrets"), [], "nothing injected into the refused request")
    check_eq((amb.get("decision"), amb.get("reason"), amb.get("detail")),
             ("deny", "rule-denied", "dot-segment"), "ambiguous path event")
    check("rule" not in amb, "no rule on an ambiguous path event: %r" % amb)
    check_eq((d.get("decision"), d.get("reason"), d.get("rule"), d.get("host")),
             ("deny", "rule-denied", "default", "files.test"), "rulesDefault event")
    with open(e.log_path, "rb") as f:
        log = f.read()
    check(SECRET.encode() not in log, "the secret value is in the audit log")
    check(SECRET.encode() not in (e.stderr() + e.stdout()).encode(), "secret value on stdout/err")


# --------------------------------------------------------------------------
# plain HTTP


@suite.case("plain HTTP (absolute-form through the proxy): rules apply per request on a "
            "keep-alive connection; a refused request's body is discarded")
def _(ctx):
    rules = [{"host": "plain.test", "method": "GET", "path": "^/pub/", "action": "allow"},
             {"host": "plain.test", "action": "deny"}]
    e = start(ctx, rules)
    s = connect_proxy(ctx, e.port)
    r = Reader(s)
    base = "http://" + hp("plain.test", "plain")
    toks = []
    for method, path, body, want in (("GET", "/pub/a", None, 200),
                                     ("POST", "/pub/b", b"GET /pub/x HTTP/1.1\r\n\r\n" * 20, 1),
                                     ("GET", "/pub/c", None, 200),
                                     ("GET", "/private", None, 1),
                                     ("GET", "/pub/d", None, 200)):
        tok = token()
        s.sendall(http_request(method, base + path + "?t=" + tok, ["Host: " + hp("plain.test", "plain")],
                               body=body))
        resp = read_response(r, method=method)
        if want == 200:
            check_eq(resp.status, 200, "%s %s" % (method, path))
            check_eq(len(seen(W["plain"], tok)), 1, "upstream saw %s %s" % (method, path))
        else:
            expect_refused(resp, want, "%s %s" % (method, path), method,
                           "%s%s?t=%s" % (base, path, tok))
            toks.append(tok)
    time.sleep(0.2)
    for tok in toks:
        check_eq(len(seen(W["plain"], tok)), 0, "upstream saw a refused request")
    check_eq(len([i for i in W["plain"].seen if i["path"].startswith("/pub/x")]), 0,
             "requests smuggled in a refused body")


# --------------------------------------------------------------------------
# egressd check


CHECK_POLICY = {
    "allowNet": ["api.test", "plain.test"],
    "rules": GITHUB_RULES + [{"host": "plain.test", "method": ["GET", "HEAD"], "action": "allow"}],
    "rulesDefault": "deny",
}

CHECK_CASES = [
    (["api.test"], 0, ['api.test:443 allow rule="api.test" intercept']),
    (["GET", "https://api.test/repos/acme/x"], 0,
     ['api.test:443 allow rule="api.test" intercept request GET /repos/acme/x allow by rule 0']),
    (["POST", "https://api.test/repos/acme/x"], 1,
     ['api.test:443 allow rule="api.test" intercept request POST /repos/acme/x deny by rule 1 '
      'reason=rule-denied']),
    (["GET", "https://api.test/%72epos/acme/x?a=b#frag"], 0,
     ['api.test:443 allow rule="api.test" intercept request GET /%72epos/acme/x?a=b allow by '
      'rule 0 (path matched as /repos/acme/x)']),
    (["GET", "https://api.test/repos/acme/../x"], 1,
     ['api.test:443 allow rule="api.test" intercept request GET /repos/acme/../x deny '
      'reason=rule-denied (ambiguous path: dot-segment)']),
    (["GET", "http://plain.test"], 0,
     ['plain.test:80 allow rule="plain.test" intercept request GET / allow by rule 2']),
    (["DELETE", "http://plain.test:8080/x"], 1,
     ['plain.test:8080 allow rule="plain.test" intercept request DELETE /x deny by '
      'rulesDefault reason=rule-denied']),
    (["GET", "https://other.test/"], 1, ["other.test:443 deny reason=not-allowed"]),
    (["api.test", "GET", "https://api.test/repos/acme/", "plain.test:80"], 0,
     ['api.test:443 allow rule="api.test" intercept',
      'api.test:443 allow rule="api.test" intercept request GET /repos/acme/ allow by rule 0',
      'plain.test:80 allow rule="plain.test" intercept']),
]


def check_cmd_case(ctx, argv, status, lines):
    path = write_policy(ctx, CHECK_POLICY)
    res = run_egressd(["check", "-c", path] + argv)
    ctx.note("stdout: %r\nstderr: %r" % (res.stdout, res.stderr))
    check_eq(res.returncode, status, "exit status")
    check_eq(res.stdout.splitlines(), lines, "output")


for argv, st, lines in CHECK_CASES:
    suite.add("check %s -> exit %d" % (" ".join(argv), st), check_cmd_case, argv, st, lines)


@suite.case("check: a malformed METHOD URL pair or a URL without a method exits 2 with a message")
def _(ctx):
    path = write_policy(ctx, CHECK_POLICY)
    for argv, mention in ((["get", "https://api.test/"], "invalid method \"get\""),
                          (["https://api.test/"], "egressd check METHOD https://api.test/"),
                          (["GET", "https://user@api.test/"], "userinfo"),
                          (["GET", "https://api.test:0/"], "")):
        res = run_egressd(["check", "-c", path] + argv)
        check_eq(res.returncode, 2, "exit status for %r (%r)" % (argv, res.stderr))
        check(mention in res.stderr, "stderr for %r mentions %r: %r" % (argv, mention, res.stderr))


# --------------------------------------------------------------------------
# config errors and reload


@suite.case("a bad regex is a config error naming FILE:LINE:COL, the pattern, PCRE2's message "
            "and offset; serve and check exit 2")
def _(ctx):
    text = ('{\n  "rules": [\n    {"host": "api.test", "action": "deny"},\n'
            '    {"host": "api.test", "path": "^/repos/(acme", "action": "allow"}\n  ]\n}\n')
    path = os.path.join(ctx.tmp, "bad.json")
    with open(path, "w") as f:
        f.write(text)
    want = ('%s:4:34: rules[1].path "^/repos/(acme": invalid regular expression: missing '
            'closing parenthesis at offset 13' % path)
    for argv in (["check", "-c", path], ["serve", "--listen", "127.0.0.1:%d" % free_port(),
                                         "-c", path]):
        res = run_egressd(argv, timeout=10)
        check_eq(res.returncode, 2, "%s exit status (%r)" % (argv[0], res.stderr))
        check(want in res.stderr, "%s stderr %r, want %r" % (argv[0], res.stderr, want))
    with open(path, "w") as f:
        f.write('{"rules": [{"host": "api.test", "method": "post", "action": "deny"}]}')
    res = run_egressd(["check", "-c", path])
    check_eq(res.returncode, 2, "lower-case method: exit status")
    check(":1:43: rules[0].method: invalid method \"post\"" in res.stderr,
          "lower-case method: %r" % res.stderr)


@suite.case("SIGHUP reload changes a rule: new connections get the new rule, an open "
            "connection keeps the policy it started with")
def _(ctx):
    deny_post = [{"host": "api.test", "method": "POST", "action": "deny"},
                 {"host": "api.test", "action": "allow"}]
    e = start(ctx, deny_post)
    t_old, r_old = open_tls(ctx, e, "api.test")
    expect_refused(req(t_old, r_old, "POST", "/x", body=b"1"), 0, "before reload")
    check_eq(req(t_old, r_old, "GET", "/x").status, 200, "GET before reload")
    allow_post = [{"host": "api.test", "method": "POST", "path": "^/x$", "action": "allow"},
                  {"host": "api.test", "method": "GET", "action": "deny"}]
    write_policy(ctx, {"rules": allow_post})
    n = len([v for v in e.log_events() if v.get("event") == "reload"])
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while len([v for v in e.log_events() if v.get("event") == "reload"]) <= n:
        check(time.time() < deadline, "no reload event")
        time.sleep(0.05)
    ev = [v for v in e.log_events() if v.get("event") == "reload"][-1]
    check_eq(ev.get("ok"), True, "reload ok (%r)" % ev)
    t, r = open_tls(ctx, e, "api.test")
    resp = req(t, r, "POST", "/x?query=is-not-matched", body=b"2")
    check_eq(resp.status, 200, "POST after reload (new connection)")
    expect_refused(req(t, r, "GET", "/x"), 1, "GET after reload (new connection)")
    expect_refused(req(t_old, r_old, "POST", "/x", body=b"3"), 0,
                   "POST on the connection opened before the reload")
    # a reload that breaks the regex is refused; the rules stay
    with open(e.policy_path, "w") as f:
        f.write('{"rules": [{"host": "api.test", "path": "(", "action": "allow"}]}')
    e.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while not [v for v in e.log_events() if v.get("event") == "reload" and v.get("ok") is False]:
        check(time.time() < deadline, "no failed reload event")
        time.sleep(0.05)
    t, r = open_tls(ctx, e, "api.test")
    expect_refused(req(t, r, "GET", "/x"), 1, "GET after the refused reload")


def main():
    setup()
    return suite.run()


if __name__ == "__main__":
    sys.exit(main())
