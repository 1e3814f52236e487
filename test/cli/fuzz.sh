#!/bin/sh
# SPDX-License-Identifier: MIT
# The fuzz targets of test/fuzz/ (built by 'ninja test', test/fuzz/fuzz.ninja):
# each replays its committed corpus (test/fuzz/corpus_http/, corpus_h2/),
# then, when configure found libFuzzer, fuzzes for FUZZ_SECONDS (default 12)
# from a copy of that corpus, with ASan and UBSan; both targets at once.
# Without libFuzzer the targets are replay drivers built with the C
# compiler: the corpus is still run through the same entry points. A
# crash, sanitizer report or broken property fails the test, with the
# input that did it kept in build/fuzz/ (crash-*).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
secs=${FUZZ_SECONDS:-12}
mode=$(sed -n 's/^fuzz_mode = //p' build/config.ninja 2>/dev/null)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dprt-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
targets=http
if grep -q '^#define HAVE_GRPC 1' build/config.h 2>/dev/null; then
	targets="http h2"
else
	echo "fuzz_h2: not built (no gRPC in this build)"
fi
echo "fuzz mode: ${mode:-unknown}"

# run T: replay, then fuzz; the log in $tmp/T.log, the status in $tmp/T.rc
run()
{
	t=$1
	bin=build/fuzz/fuzz_$t
	corpus=test/fuzz/corpus_$t
	n=$(find "$corpus" -type f | wc -l)
	(
		echo "== fuzz_$t: replay of $n files of $corpus"
		# shellcheck disable=SC2046 # the corpus files, as arguments
		"$bin" $(find "$corpus" -type f | sort) || exit 1
		[ "$mode" = libfuzzer ] || exit 0
		echo "== fuzz_$t: libFuzzer for $secs s"
		mkdir "$tmp/corpus_$t" && cp "$corpus"/* "$tmp/corpus_$t"/ || exit 1
		"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
			-dict="test/fuzz/$t.dict" -artifact_prefix="$root/build/fuzz/" \
			-print_final_stats=1 "$tmp/corpus_$t"
	) >"$tmp/$t.log" 2>&1
	echo $? >"$tmp/$t.rc"
}

for t in $targets; do
	if [ ! -x "build/fuzz/fuzz_$t" ]; then
		echo "FAIL: build/fuzz/fuzz_$t is missing (ninja fuzz_all)"
		exit 1
	fi
	run "$t" &
done
wait
bad=0
for t in $targets; do
	rc=$(cat "$tmp/$t.rc" 2>/dev/null || echo 1)
	if [ "$rc" -eq 0 ]; then
		echo "ok   fuzz_$t"
		grep -E "^== |^Done [0-9]+ runs" "$tmp/$t.log"
	else
		echo "FAIL fuzz_$t (exit $rc):"
		tail -n 60 "$tmp/$t.log"
		bad=1
	fi
done
exit $bad
