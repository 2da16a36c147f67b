#!/bin/sh
# sock_bench.sh -- proxy/sock.c against bufferevent_openssl in one TLS relay
# (bench/sock_bench.c), interleaved rounds, medians and ratios as a markdown
# table. Knobs: SOCK_BENCH_ROUNDS (3), SOCK_BENCH_DURATION (3 s per cell),
# SOCK_BENCH_IDLE (2000 idle connections), SOCK_BENCH_OUT (JSON lines kept).
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${SOCK_BENCH_ROUNDS:-3}
DUR=${SOCK_BENCH_DURATION:-3}
IDLE=${SOCK_BENCH_IDLE:-2000}
OUT=${SOCK_BENCH_OUT:-$(mktemp /tmp/sock_bench.XXXXXX)}

make --no-print-directory build/libegressd.a >/dev/null
make --no-print-directory -f bench/Makefile build/bench/sock_bench >/dev/null
: > "$OUT"
run() { timeout 120 build/bench/sock_bench "$@" >> "$OUT"; }
for r in $(seq "$ROUNDS"); do
	# alternate which relay goes first in each round
	if [ $((r % 2)) -eq 1 ]; then impls="sock bev nora"; else impls="nora bev sock"; fi
	for cell in "ka 1" "ka 64" "new 8" "idle 1"; do
		set -- $cell
		for i in $impls; do
			# nora: the layer without read-ahead (what bufferevent_openssl must do)
			if [ "$i" = nora ]; then
				[ "$1" = idle ] || run --impl sock --no-read-ahead 1 --mode "$1" -c "$2" -d "$DUR"
			else
				run --impl "$i" --mode "$1" -c "$2" -d "$DUR" --idle "$IDLE"
			fi
		done
	done
done
for i in sock bev; do
	run --impl "$i" --mode idle --idle "$IDLE" --keep-buffers 1
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def med(impl, mode, c, key):
    v = [r[key] for r in rows if r["impl"] == impl and r["mode"] == mode and (mode == "idle" or r["c"] == c)]
    return statistics.median(v) if v else float("nan"), len(v)
print("| cell | sock | bufferevent_openssl | sock / bev | sock, no read-ahead | ... / bev |")
print("|---|---|---|---|---|---|")
for mode, c, key, what in [("ka", 1, "relay_cpu_us_per_req", "relay CPU µs/req"),
                           ("ka", 64, "relay_cpu_us_per_req", "relay CPU µs/req"),
                           ("new", 8, "relay_cpu_us_per_req", "relay CPU µs/conn"),
                           ("ka", 1, "rps", "req/s"), ("ka", 64, "rps", "req/s"), ("new", 8, "rps", "conn/s"),
                           ("idle", 1, "heap_per_conn", "malloc'd B/idle conn"),
                           ("idle", 1, "openssl_per_conn", "... of which OpenSSL"),
                           ("idle", 1, "rss_per_conn", "RSS B/idle conn")]:
    (a, n), (b, _) = med("sock", mode, c, key), med("bufferevent_openssl", mode, c, key)
    cell = f"{mode} c={c}" if mode != "idle" else "idle"
    x, m = med("sock-no-read-ahead", mode, c, key)
    more = f"{x:,.1f} | {x / b:.2f}" if m else "| "
    print(f"| {cell}: {what} (n={n}) | {a:,.1f} | {b:,.1f} | {a / b:.2f} | {more} |")
for key, what in [("heap_per_conn", "malloc'd B/idle conn"), ("openssl_per_conn", "... of which OpenSSL")]:
    a, _ = med("sock+keep-buffers", "idle", 1, key)
    b, _ = med("bufferevent_openssl+keep-buffers", "idle", 1, key)
    print(f"| idle, without SSL_MODE_RELEASE_BUFFERS: {what} (n=1) | {a:,.0f} | {b:,.0f} | {a / b:.2f} | | |")
print(f"\n(raw JSON lines: {sys.argv[1]})")
EOF
