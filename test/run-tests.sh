#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run dprt's tests: every criterion binary named on the command line, then
# every test/cli/*.sh (with DPRT set to ./dprt). Prints one PASS/FAIL line
# per binary and script (with the log of anything that failed), then the
# summary line "N passed, N failed, N skipped", where a criterion test and a
# CLI script count one each (a criterion test that calls cr_skip_test, as
# test_cuda's GPU cases do without a GPU, counts as skipped, not passed; so
# does a script that exits 77).
# Exits 1 if anything failed.
#
# Usage (from the repository root; 'ninja test' does this):
#   sh test/run-tests.sh build/test/test_base build/test/test_model ...
# Environment: TEST_JOBS (criterion jobs, default 2), DPRT (binary under
# test, default ./dprt).

cd "$(dirname "$0")/.." || exit 1

jobs=${TEST_JOBS:-2}
DPRT=${DPRT:-$(pwd)/dprt}
export DPRT
logdir=build/test-logs
mkdir -p "$logdir" || exit 1

passed=0
failed=0
skipped=0

# Run "$@" under a time limit when timeout(1) exists.
limited()
{
	secs=$1
	shift
	if command -v timeout >/dev/null 2>&1; then
		timeout "$secs" "$@"
	else
		"$@"
	fi
}

show_log()
{
	sed 's/^/    | /' "$1"
}

# Criterion prints "Synthesis: Tested: T | Passing: P | Failing: F | ...";
# F counts crashes too. Skipped tests are in none of these: their TAP lines
# ("ok - suite::name  # SKIP why") count them.
run_criterion()
{
	bin=$1
	name=${bin##*/}
	log=$logdir/$name.log
	tap=$logdir/$name.tap
	rm -f "$tap"
	limited 600 "$bin" --jobs "$jobs" --color=never --tap="$tap" >"$log" 2>&1
	rc=$?
	skip=$(grep -c '^ok .*# SKIP' "$tap" 2>/dev/null)
	skip=${skip:-0}
	# shellcheck disable=SC2046 # three numbers, split on purpose
	set -- $(sed -n 's/.*Synthesis: Tested: \([0-9]*\) | Passing: \([0-9]*\) | Failing: \([0-9]*\).*/\1 \2 \3/p' "$log" | tail -n 1)
	tested=${1:-0} ok=${2:-0} bad=${3:-0}
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		bad=1 # died before or outside a test (or timed out)
	fi
	if [ "$rc" -eq 0 ] && [ "$tested" -eq 0 ] && [ "$skip" -eq 0 ]; then
		bad=1 # no report, or a binary without tests
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	skipped=$((skipped + skip))
	if [ "$bad" -eq 0 ]; then
		note=
		[ "$skip" -eq 0 ] || note=", $skip skipped"
		echo "PASS $bin ($ok tests$note)"
		return
	fi
	if [ "$rc" -eq 124 ]; then
		why="timed out after 600 s"
	elif [ "$tested" -eq 0 ]; then
		why="no test ran, exit $rc"
	else
		why="$bad of $tested failed, exit $rc"
	fi
	echo "FAIL $bin ($why; log: $log)"
	show_log "$log"
}

run_script()
{
	t=$1
	name=${t##*/}
	log=$logdir/cli-${name%.sh}.log
	if [ -x "$t" ]; then
		limited 300 "$t" >"$log" 2>&1
	else
		limited 300 sh "$t" >"$log" 2>&1
	fi
	rc=$?
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "PASS $t"
		return
	fi
	if [ "$rc" -eq 77 ]; then
		skipped=$((skipped + 1))
		echo "SKIP $t ($(tail -n 1 "$log"))"
		return
	fi
	failed=$((failed + 1))
	echo "FAIL $t (exit $rc; log: $log)"
	show_log "$log"
}

for bin do
	run_criterion "$bin"
done

for t in test/cli/*.sh; do
	[ -f "$t" ] || continue
	run_script "$t"
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
