#!/bin/sh
# run.sh -- the egressd benchmark (`make bench`): builds the load generator, installs the
# optional peers Debian has (mitmproxy, python3-matplotlib) and runs bench/bench.py, which
# writes bench/results/latest.md, latest.json and chart.png. Loopback only.
# BENCH_QUICK=1: one 2 s round per cell. See bench/README.md.
set -e
cd "$(dirname "$0")/.."
[ -x build/egressd ] || { echo "bench: build/egressd missing; run make first" >&2; exit 2; }
for t in nginx openssl /usr/bin/python3; do
	command -v $t >/dev/null || { echo "bench: needs $t (scripts/deps.sh bench)" >&2; exit 2; }
done
if [ "$(id -u)" = 0 ]; then
	missing=""
	for p in mitmproxy python3-matplotlib; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "bench: installing$missing from Debian (mitmdump row, chart)" >&2
		if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
		       { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
			 apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; }; then
			echo "bench: could not install$missing; those rows say \"not installed\"" >&2
		fi
	fi
else
	echo "bench: not root: squid/tinyproxy need root to drop privileges; mitmproxy and" >&2
	echo "       python3-matplotlib are used only if already installed" >&2
fi
make --no-print-directory -f bench/Makefile build/bench/loadgen build/bench/h2gen
exec /usr/bin/python3 bench/bench.py
