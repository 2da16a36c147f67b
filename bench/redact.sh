#!/bin/sh
# redact.sh -- builds and runs the redactor micro-benchmark (bench/redact_bench.c)
# against the -O2 library: MB/s with 1 and 8 secrets over JSON-ish and printable bodies.
set -e
cd "$(dirname "$0")/.."
make --no-print-directory build/libegressd.a >/dev/null
make --no-print-directory -f bench/Makefile build/bench/redact_bench
build/bench/redact_bench
