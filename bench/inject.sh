#!/bin/sh
# inject.sh -- builds and runs the request-body rewriter micro-benchmark
# (bench/inject_bench.c) against the -O2 library: 1 MiB form and JSON bodies.
set -e
cd "$(dirname "$0")/.."
make --no-print-directory build/libegressd.a >/dev/null
make --no-print-directory -f bench/Makefile build/bench/inject_bench
build/bench/inject_bench
