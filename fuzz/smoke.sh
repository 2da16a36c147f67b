#!/bin/sh
# smoke.sh -- runs every built harness build/fuzz/fuzz_<target> for SECONDS
# seconds on a scratch copy of fuzz/corpus/<target>/ (the checked-in corpus is
# left alone), with fuzz/<target>.dict if present. Prints one line per target,
# "fuzz <target>: ok (N execs)" or "fuzz <target>: FAILED", and exits 1 if any
# failed. Crash inputs land in build/fuzz/artifacts/<target>/.
# Usage: fuzz/smoke.sh SECONDS   (from the project root;
#        FUZZ_TARGETS="clienthello http" runs only those)
set -u
secs=${1:?usage: fuzz/smoke.sh SECONDS}
out=build/fuzz
scratch=$(mktemp -d "${TMPDIR:-/tmp}/egressd-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT INT TERM
failed=0

# max_len: at least 4096, else the largest seed (libFuzzer would cut longer seeds)
max_len_for() {
	largest=$(find "$1" -type f -exec wc -c {} + 2>/dev/null |
		awk '$2 != "total" && $1 > m { m = $1 } END { print m + 0 }')
	[ "$largest" -gt 4096 ] && echo "$largest" || echo 4096
}

run_one() {
	t=$1 bin=$out/fuzz_$1
	corpus=$scratch/$t log=$scratch/$t.log art=$out/artifacts/$t/
	if [ ! -x "$bin" ]; then
		echo "fuzz $t: FAILED (not built: $bin)"
		return 1
	fi
	mkdir -p "$corpus" "$art"
	[ -d "fuzz/corpus/$t" ] && cp -R "fuzz/corpus/$t/." "$corpus/"
	# FUZZ_RUNS=N: a fixed number of runs with a fixed seed, so CI repeats
	# exactly what passed here; otherwise SECONDS of exploration
	if [ -n "${FUZZ_RUNS:-}" ]; then
		set -- -runs="$FUZZ_RUNS" -seed=1
	else
		set -- -max_total_time="$secs"
	fi
	set -- "$@" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-max_len="$(max_len_for "$corpus")" -artifact_prefix="$art"
	[ -f "fuzz/$t.dict" ] && set -- "$@" -dict="fuzz/$t.dict"
	if "$bin" "$@" "$corpus" >"$log" 2>&1; then
		n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		echo "fuzz $t: ok (${n:-?} execs)"
		return 0
	fi
	echo "fuzz $t: FAILED"
	tail -n 40 "$log" | sed 's/^/    /'
	return 1
}

if [ -z "${FUZZ_TARGETS:-}" ]; then
	for src in fuzz/fuzz_*.c; do
		[ -e "$src" ] || continue
		t=${src#fuzz/fuzz_}
		FUZZ_TARGETS="${FUZZ_TARGETS:-} ${t%.c}"
	done
fi
for t in $FUZZ_TARGETS; do
	run_one "$t" || failed=1
done
exit $failed
