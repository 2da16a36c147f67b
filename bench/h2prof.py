#!/usr/bin/env python3
"""h2prof.py -- where an intercepted request's proxy CPU goes, HTTP/2 against HTTP/1.1:
`perf record` (DWARF stacks) of one egressd during bench.py's HTTP/2 cell (h2gen, 64
streams on one connection, egressd --http2) or its HTTP/1.1 comparison (loadgen keep-alive
c=64), a secret injected on every request. Prints Markdown: the samples by the library
their leaf is in, the top leaf symbols, and egressd's own functions inclusive (a sample
counts for every egressd function on its stack), scaled to µs per request by the cell's
measured CPU.

    bench/h2prof.py [h2|h1|bridge] [BINARY]      (root: perf; H2PROF_SECONDS, default 5)

bridge: loadgen keep-alive c=64 (HTTP/1.1) through egressd's HTTP/1.1-to-h2 bridge to
nginx's HTTP/2 port; h1 is the same load with --no-http2 (an HTTP/1.1 upstream).
"""
import collections
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from hsprof import stacks  # noqa: E402


def lib(dso):
    if dso.startswith("[kernel"):
        return "kernel"
    for name in ("libcrypto", "libssl", "libnghttp2", "libevent", "libc.so", "libpcre2", "libjansson"):
        if dso.startswith(name):
            return name.replace(".so", "")
    return dso


def resolve(st):
    """perf names an inlined frame's DSO "inlined": glibc's internals (names starting with
    "_", unlink_chunk) are libc's, anything else its containing function's DSO."""
    out, dso = [], "?"
    for f, d in reversed(st):
        if d != "inlined":
            dso = d
        out.append((f, d if d != "inlined" else "libc.so.6" if f.startswith("_") or f == "unlink_chunk"
                    else dso))
    return out[::-1]


def table(title, counter, n, per_req, top=None):
    print("| %s | share | µs/req |" % title)
    print("|---|---|---|")
    for name, k in counter.most_common(top):
        print("| %s | %.1f%% | %.2f |" % (name, 100 * k / n, k / n * per_req))
    print()


def main():
    proto = sys.argv[1] if len(sys.argv) > 1 else "h2"
    exe = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else bench.EGRESSD)
    bench.DURATION = float(os.environ.get("H2PROF_SECONDS", "5"))
    data = tempfile.mktemp(prefix="h2prof-", suffix=".data")
    try:
        bench.setup_upstream()
        r = bench.egressd_row("prof-" + proto, proto, True, exe, http2=proto in ("h2", "bridge"), uport=bench.H2PORT)
        r.h2 = True
        r.workloads = [bench.H2_WORKLOAD if proto == "h2" else bench.H1_WORKLOAD]
        r.start()
        if not bench.check_injection(r):
            raise RuntimeError("secret not injected")
        perf = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o", data,
                                 "-p", str(r.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, gen, args = r.workloads[0]
        cell = bench.run_cell(r, args, gen)
        perf.send_signal(2)
        perf.wait()
    finally:
        bench.teardown()
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"], capture_output=True,
                            text=True).stdout
    os.unlink(data)
    per_req = cell["proxy_cpu_s"] / max(1, cell["requests_total"]) * 1e6
    s = [resolve(st) for st in stacks(script) if st]
    n = max(1, len(s))
    libs, leaves, own = collections.Counter(), collections.Counter(), collections.Counter()
    for st in s:
        libs[lib(st[0][1])] += 1
        leaves["`%s` (%s)" % (st[0][0], lib(st[0][1]))] += 1
        for f in {f for f, dso in st if dso == os.path.basename(exe)}:
            own["`%s`" % f] += 1
    print("%s intercepted, %s: %.0f req/s under perf, %.1f µs proxy CPU per request, %d samples\n"
          % (proto, r.workloads[0][1], cell["rps"], per_req, len(s)))
    table("leaf in", libs, n, per_req)
    table("top leaf symbols", leaves, n, per_req, 15)
    table("egressd functions, inclusive", own, n, per_req, 20)


if __name__ == "__main__":
    main()
