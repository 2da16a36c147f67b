#!/usr/bin/env python3
"""ab.py -- A/B comparison of egressd binaries on loopback, interleaved (for a noisy,
shared machine: every round runs each binary back to back, in alternating order, and
the median of the rounds is reported next to `direct` from the same rounds).

    bench/ab.py OLD_BINARY NEW_BINARY [...]       (labels: a, b, c, ...)

Environment: AB_PATHS=tunnel,intercept (default both; h2 adds egressd --http2 intercepting
bench.py's HTTP/2 cell, 64 streams on one connection, against h2-direct; bridge adds
egressd's default HTTP/1.1-to-h2 bridge, loadgen keep-alive c=64 to nginx's HTTP/2 port, and
h1up the same with --no-http2, the HTTP/1.1 upstream the bridge is compared with),
AB_WORKLOADS=ka1,ka64,new8,bulk,upload (default all; for the tunnel and intercept paths), AB_ROUNDS (default 5), AB_DURATION (s per cell, default 2), AB_IDLE=N
(idle tunnels per binary and path, default 0 = skip), AB_DIRECT=0 (skip direct).
Prints a Markdown table. Uses bench/bench.py's upstream (nginx), loadgen and h2gen.
"""
import os
import resource
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def h2_row(r):
    """r measured with bench.py's HTTP/2 workload (h2gen) instead of the HTTP/1.1 ones."""
    r.h2 = True
    r.workloads = [bench.H2_WORKLOAD]
    return r


def main():
    bins = [os.path.abspath(b) for b in sys.argv[1:]]
    if not bins:
        sys.exit(__doc__)
    paths = os.environ.get("AB_PATHS", "tunnel,intercept").split(",")
    wls = os.environ.get("AB_WORKLOADS", "ka1,ka64,new8,bulk,upload").split(",")
    rounds = int(os.environ.get("AB_ROUNDS", "5"))
    bench.DURATION = float(os.environ.get("AB_DURATION", "2"))
    idle = int(os.environ.get("AB_IDLE", "0"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    labels = [chr(ord("a") + i) for i in range(len(bins))]
    br_paths = ("bridge", "h1up")  # HTTP/1.1 clients, nginx's h2 port: h2 streams or --no-http2
    h1_paths = [p for p in paths if p not in ("h2",) + br_paths]
    h1_wl = [(k, t, "loadgen", a) for k, t, a in bench.WORKLOADS if k in wls] if h1_paths else []
    h2_wl = [bench.H2_WORKLOAD] if "h2" in paths else []
    br_wl = [bench.H1_WORKLOAD] if set(paths) & set(br_paths) else []
    workloads = h1_wl + h2_wl + [w for w in br_wl if w[0] not in [x[0] for x in h1_wl]]
    try:
        bench.setup_upstream()
        rows = []
        if os.environ.get("AB_DIRECT", "1") != "0":
            if h1_wl:
                rows.append(bench.direct_row())
            if h2_wl:
                rows.append(h2_row(bench.direct_row("h2-direct", "h2-direct", bench.H2PORT)))
        for p in paths:
            for lab, b in zip(labels, bins):
                r = bench.egressd_row("%s-%s" % (p, lab), "%s %s" % (p, lab), p in ("intercept", "h2") + br_paths,
                                      b, http2=p in ("h2", "bridge"),
                                      uport=bench.H2PORT if p in ("h2",) + br_paths else None)
                if p in br_paths:
                    r.h2 = True
                    r.workloads = br_wl
                rows.append(h2_row(r) if p == "h2" else r)
        for r in rows:
            r.start()
            if r.inject and not bench.check_injection(r):
                raise RuntimeError("%s: secret not injected" % r.key)
        cells = {(r.key, w[0]): [] for r in rows for w in (r.workloads if r.h2 else h1_wl)}
        for i in range(rounds):
            for key, _, gen, args in workloads:
                order = rows if i % 2 == 0 else rows[::-1]
                for r in order:
                    if (r.key, key) in cells:
                        cells[(r.key, key)].append(bench.run_cell(r, args, gen))
            bench.log("round %d/%d done" % (i + 1, rounds))
        idle_res = {}
        if idle:
            for r in rows:
                if r.pid:
                    idle_res[r.key] = bench.idle_cell(r, idle)
        out = ["| path | workload | req/s | MB/s | p50 ms | p99 ms | p99.9 ms | errors | proxy CPU µs/req (bulk, upload: ms/MB) | ratio to direct |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for key, _, _, _ in workloads:
            base = None
            for r in rows:
                if (r.key, key) not in cells:
                    continue
                m = bench.median_cell(cells[(r.key, key)])
                v = m["mb_s"] if key in bench.BULK else m["rps"]
                if r.key in ("direct", "h2-direct"):
                    base = v
                out.append("| %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                    r.key, key, bench.fmt(m["rps"]), bench.fmt(m["mb_s"]), bench.fmt(m["p50_ms"], 3),
                    bench.fmt(m["p99_ms"], 3), bench.fmt(m["p999_ms"], 3), m["errors"],
                    bench.fmt(m["cpu_ms_per_mb"] if key in bench.BULK else m["cpu_us_per_req"], 2 if key in bench.BULK else 1),
                    "%.2f" % (v / base) if base else "—"))
        for key, _, _, _ in workloads:  # the spread behind each median (a noisy machine)
            for r in rows:
                if (r.key, key) in cells and r.pid:
                    per = sorted(c["proxy_cpu_s"] / max(1, c["requests_total"]) * 1e6 for c in cells[(r.key, key)])
                    rps = sorted(c["rps"] for c in cells[(r.key, key)])
                    out.append("| %s | %s range | %s–%s | | | | | | %.1f–%.1f | |" % (
                        r.key, key, bench.fmt(rps[0]), bench.fmt(rps[-1]), per[0], per[-1]))
        for k, v in idle_res.items():
            out.append("| %s | idle %d | est %s | | | | | %s | RSS %.1f→%.1f MiB | %.2f KiB each |" % (
                k, idle, v["established"], v["errors"], v["rss_before_kib"] / 1024, v["rss_kib"] / 1024,
                v["kib_per_conn"] or 0))
        print("\n".join(out))
        print("\n(%d rounds x %.1f s, interleaved; medians; binaries: %s)" % (
            rounds, bench.DURATION, ", ".join("%s=%s" % kv for kv in zip(labels, sys.argv[1:]))))
    finally:
        bench.teardown()


if __name__ == "__main__":
    main()
