#!/usr/bin/env python3
"""control.py -- the control API at scale (issue 16), on loopback:

  1. N sandboxes (default 10,000), each with one secret and its own source
     address, created one PUT at a time over the unix socket: p50/p99/max
     create latency (connect to answer, as the client sees it) and egressd's
     RSS growth per sandbox;
  2. then 1,000 create + delete cycles while another sandbox carries
     keep-alive traffic (absolute-form GETs on one connection, through the
     proxy, to a loopback upstream): create/delete p99, and that connection's
     requests, errors, whether it was ever closed, and its latency p99 before
     and during the churn.

Prints a markdown table (and writes bench/results/control.md). Root only (the
socket is root's). Knobs: CONTROL_N (sandboxes, default 10000), CONTROL_CHURN
(cycles, default 1000), EGRESSD_BIN (default build/egressd).
"""

import json
import os
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.dont_write_bytecode = True
from harness import DNSServer, spawn, clean_env, wait_until, EGRESSD_BIN  # noqa

N = int(os.environ.get("CONTROL_N", "10000"))
CHURN = int(os.environ.get("CONTROL_CHURN", "1000"))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def call(path, method, url, body=b""):
    """One request on the control socket; (status, seconds)."""
    t0 = time.perf_counter()
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" %
              (method.encode(), url.encode(), len(body)) + body)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return int(got[9:12]), time.perf_counter() - t0


class Upstream(threading.Thread):
    """A keep-alive HTTP upstream that answers each request head with one
    write (the harness's Python server writes head and body apart, and
    Nagle + delayed ACK then add 40 ms to every request)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]

    def run(self):
        while True:
            c, _ = self.ls.accept()
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            d = c.recv(65536)
            if not d:
                return
            buf += d
            while b"\r\n\r\n" in buf:
                _, _, buf = buf.partition(b"\r\n\r\n")
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0.0


class KeepAlive(threading.Thread):
    """GETs over one proxy connection from src until stopped."""

    def __init__(self, proxy_port, src, upstream):
        super().__init__(daemon=True)
        self.proxy_port, self.src, self.upstream = proxy_port, src, upstream
        self.lat, self.errors, self.closed = [], [], False
        self.phase = "idle"
        self.by_phase = {"idle": [], "creating": [], "churn": [], "after": []}
        self.stop = False

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.proxy_port), source_address=(self.src, 0))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(10)
        req = ("GET http://api.test:%d/x HTTP/1.1\r\nHost: api.test:%d\r\n\r\n"
               % (self.upstream, self.upstream)).encode()
        buf = b""
        while not self.stop:
            t0 = time.perf_counter()
            try:
                s.sendall(req)
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        self.closed = True
                        return
                    buf += d
                head, _, rest = buf.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    self.errors.append(head[:80])
                cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:")][0]
                while len(rest) < cl:
                    d = s.recv(65536)
                    if not d:
                        self.closed = True
                        return
                    rest += d
                buf = rest[cl:]
            except OSError as e:
                self.errors.append(repr(e))
                self.closed = True
                return
            self.by_phase[self.phase].append(time.perf_counter() - t0)
        s.close()


def main():
    if os.geteuid() != 0:
        print("control.py: run as root (the control socket is root's)")
        return 0
    tmp = tempfile.mkdtemp(prefix="egressd-bench-control-")
    up = Upstream()
    up.start()
    dns = DNSServer({"api.test": ["127.0.0.1"]})
    ctl = os.path.join(tmp, "c.sock")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    lsock.close()
    e = spawn([EGRESSD_BIN, "serve", "--listen", "127.0.0.1:%d" % port, "--control", "unix:" + ctl,
               "--state-dir", os.path.join(tmp, "state"), "--allow-private", "127.0.0.0/8",
               "--dns", "127.0.0.1:%d" % dns.port, "--threads", "2"],
              stdout=open(os.path.join(tmp, "out"), "wb"), stderr=open(os.path.join(tmp, "err"), "wb"),
              env=clean_env())
    try:
        wait_until(lambda: os.path.exists(ctl), 10, "the control socket")
        st, _ = call(ctl, "PUT", "/v1/sandboxes/traffic", json.dumps(
            {"source": "127.0.0.2", "allowNet": ["api.test"]}).encode())
        assert st == 201, st
        ka = KeepAlive(port, "127.0.0.2", up.port)
        ka.start()
        time.sleep(1.0)
        rss0 = rss_kb(e.pid)
        ka.phase = "creating"
        create = []
        t0 = time.time()
        for i in range(N):
            body = ('{"source":"127.3.%d.%d","allowNet":["api.test"],"secrets":{"K":{"hosts":'
                    '["api.test"],"value":"sk-bench-%08d"}}}' % (i >> 8, i & 255, i)).encode()
            st, dt = call(ctl, "PUT", "/v1/sandboxes/s%d" % i, body)
            assert st == 201, (i, st)
            create.append(dt)
        took = time.time() - t0
        time.sleep(0.5)
        rss1 = rss_kb(e.pid)
        ka.phase = "churn"
        churn_put, churn_del = [], []
        t1 = time.time()
        for i in range(CHURN):
            body = ('{"source":"127.4.%d.%d","allowNet":["api.test"],"secrets":{"K":{"hosts":'
                    '["api.test"],"value":"sk-churn-%08d"}}}' % (i >> 8, i & 255, i)).encode()
            st, dt = call(ctl, "PUT", "/v1/sandboxes/c%d" % i, body)
            assert st == 201, (i, st)
            churn_put.append(dt)
            st, dt = call(ctl, "DELETE", "/v1/sandboxes/c%d" % i)
            assert st == 200, (i, st)
            churn_del.append(dt)
        churn_s = time.time() - t1
        ka.phase = "after"
        time.sleep(0.5)
        ka.stop = True
        ka.join(15)
        ms = lambda x: "%.2f" % (x * 1000)  # noqa: E731
        rows = [
            ("sandboxes created (each: 1 secret, own source)", "%d in %.1f s (%.0f/s)" % (N, took, N / took)),
            ("create latency p50 / p99 / max (ms)", "%s / %s / %s" % (ms(pct(create, .5)), ms(pct(create, .99)), ms(max(create)))),
            ("create latency p99, first 1,000 vs last 1,000 (ms)", "%s vs %s" % (ms(pct(create[:1000], .99)), ms(pct(create[-1000:], .99)))),
            ("memory per idle sandbox (RSS growth / N)", "%.1f KiB (%d → %d KiB)" % ((rss1 - rss0) / N, rss0, rss1)),
            ("churn: %d create+delete cycles beside %d sandboxes" % (CHURN, N), "%.1f s" % churn_s),
            ("churn create p99 / delete p99 (ms)", "%s / %s" % (ms(pct(churn_put, .99)), ms(pct(churn_del, .99)))),
            ("keep-alive sandbox: requests idle (1 s) / while creating / churn / after", "%d / %d / %d / %d" % tuple(len(ka.by_phase[k]) for k in ("idle", "creating", "churn", "after"))),
            ("keep-alive sandbox: errors, connection closed", "%d, %s" % (len(ka.errors), "yes" if ka.closed else "no")),
            ("keep-alive latency p50 / p99: idle, creating, churn (ms)", ", ".join("%s / %s" % (ms(pct(ka.by_phase[k], .5)), ms(pct(ka.by_phase[k], .99))) for k in ("idle", "creating", "churn"))),
        ]
        out = ["| control API (%s, 2 threads, loopback) | |" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "|---|---|"] + ["| %s | %s |" % r for r in rows]
        text = "\n".join(out) + "\n"
        print(text)
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        with open(os.path.join(HERE, "results", "control.md"), "w") as f:
            f.write(text)
        return 1 if ka.errors or ka.closed else 0
    finally:
        e.terminate()
        e.wait(10)


if __name__ == "__main__":
    sys.exit(main())
