#!/usr/bin/env bash
# tests/run.sh -- run every egressd test from the project root:
#   1. each unit test binary in build/asan/tests/ (TAP)
#   2. each corpus replay binary build/asan/replay/fuzz_<t> on fuzz/corpus/<t>/
#      (one pass per harness that exits 0)
#   3. the integration suites (tests/integration/*_test.py) and the adversarial
#      suite (tests/adversarial/*_test.py) twice: against build/egressd and
#      against build/asan/egressd
# Binaries' output is passed through; `ok` / `not ok` lines are counted (`# SKIP`
# counts as skipped). A binary that crashes, times out, exits non-zero without
# reporting a failure, or stops short of its plan counts as one more failure.
# The last line is exactly "N passed, N failed[, N skipped]"; the exit status is
# non-zero if anything failed.
set -u
cd "$(dirname "$0")/.." || exit 2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
PYTHON=${PYTHON:-python3}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
REPLAY_TIMEOUT=${REPLAY_TIMEOUT:-600}
IT_TIMEOUT=${IT_TIMEOUT:-300}
# the interception suite moves 2 x 50 MB through TLS twice (and redacts it)
IT_TIMEOUT_INTERCEPT=${IT_TIMEOUT_INTERCEPT:-900}
# the adversarial suite holds 10,000 connections and waits out header timeouts
IT_TIMEOUT_ADVERSARIAL=${IT_TIMEOUT_ADVERSARIAL:-600}

passed=0
failed=0
skipped=0
failures=()
tmp=$(mktemp -d "${TMPDIR:-/tmp}/egressd-run.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

fail() { # LABEL MESSAGE: a failure run.sh itself detected
	echo "not ok - $1: $2"
	failed=$((failed + 1))
	failures+=("$1: not ok - $2")
}

pass() { # LABEL MESSAGE
	echo "ok - $1: $2"
	passed=$((passed + 1))
}

# run_tap LABEL TIMEOUT CMD...: run CMD, pass its output through, count its TAP lines
run_tap() {
	local label=$1 tmo=$2 out rc line plan="" n=0 nfail=0
	shift 2
	out="$tmp/out"
	echo "# ---- $label"
	timeout -k 10 "$tmo" "$@" </dev/null 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		if [[ $line =~ ^not\ ok($|[^a-zA-Z0-9_]) ]]; then
			n=$((n + 1))
			if [[ $line =~ \#[[:space:]]*[Tt][Oo][Dd][Oo] ]]; then
				skipped=$((skipped + 1))
			else
				failed=$((failed + 1))
				nfail=$((nfail + 1))
				failures+=("$label: $line")
			fi
		elif [[ $line =~ ^ok($|[^a-zA-Z0-9_]) ]]; then
			n=$((n + 1))
			if [[ $line =~ \#[[:space:]]*[Ss][Kk][Ii][Pp] ]]; then
				skipped=$((skipped + 1))
			else
				passed=$((passed + 1))
			fi
		elif [[ $line =~ ^1\.\.([0-9]+) ]]; then
			plan=${BASH_REMATCH[1]}
		fi
	done <"$out"
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$out"; then
		fail "$label" "sanitizer report in the output"
	fi
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		fail "$label" "timed out after ${tmo}s (status $rc)"
	elif [ "$rc" -gt 128 ]; then
		fail "$label" "crashed (status $rc, signal $((rc - 128)))"
	elif [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then
		fail "$label" "exited with status $rc without reporting a failing test"
	fi
	if [ -z "$plan" ]; then
		[ "$rc" -eq 0 ] && [ "$n" -gt 0 ] || fail "$label" "no TAP plan (1..N) in the output"
	elif [ "$plan" -ne "$n" ]; then
		fail "$label" "planned $plan tests, ran $n"
	fi
}

# 1. unit tests (ASan + UBSan build)
found=0
for t in build/asan/tests/*; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	case $t in *.d | *.o) continue ;; esac
	found=1
	run_tap "unit $(basename "$t")" "$UNIT_TIMEOUT" "$t"
done
[ $found = 1 ] || fail "unit" "no unit test binaries in build/asan/tests (run make test)"

# 2. fuzz corpora replayed under ASan + UBSan
found=0
for r in build/asan/replay/fuzz_*; do
	[ -f "$r" ] && [ -x "$r" ] || continue
	case $r in *.d | *.o) continue ;; esac
	found=1
	h=$(basename "$r")
	corpus=fuzz/corpus/${h#fuzz_}
	label="replay $h"
	if [ ! -d "$corpus" ]; then
		fail "$label" "no corpus directory $corpus"
		continue
	fi
	echo "# ---- $label $corpus"
	timeout -k 10 "$REPLAY_TIMEOUT" "$r" "$corpus" </dev/null >"$tmp/replay" 2>&1
	rc=$?
	cat "$tmp/replay"
	if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$tmp/replay"; then
		pass "$label" "corpus $corpus replayed"
	else
		fail "$label" "exited with status $rc on $corpus"
	fi
done
[ $found = 1 ] || fail "replay" "no replay binaries in build/asan/replay (run make test)"

# 3. integration and adversarial suites against both binaries
suites=(tests/integration/*_test.py tests/adversarial/*_test.py)
for bin in build/egressd build/asan/egressd; do
	if [ ! -x "$bin" ]; then
		fail "integration" "$bin does not exist (run make test)"
		continue
	fi
	for s in "${suites[@]}"; do
		[ -f "$s" ] || continue
		tmo=$IT_TIMEOUT
		kind=integration
		case $s in *intercept_test.py) tmo=$IT_TIMEOUT_INTERCEPT ;; esac
		case $s in tests/adversarial/*) tmo=$IT_TIMEOUT_ADVERSARIAL kind=adversarial ;; esac
		EGRESSD_BIN=$bin run_tap "$kind $(basename "$s" .py) [$bin]" "$tmo" \
			env EGRESSD_BIN="$bin" "$PYTHON" "$s"
	done
done

if [ ${#failures[@]} -gt 0 ]; then
	echo "# ---- failures"
	for f in "${failures[@]}"; do
		echo "# $f"
	done
fi
if [ $skipped -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ $failed -eq 0 ]
