#!/bin/sh
# SPDX-License-Identifier: MIT
# bench/soak.sh for about 30 s on --gpus cpu:2 with bert-tiny instances:
# it passes and writes its report (summary.md with the rules, the RSS and
# p99 tables, raw loadgen slices) into --out; a server killed in the middle
# of a short run fails it; so does a memory limit that evicts nothing.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

root=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-$root/build/bench/loadgen}
if [ ! -x "$LOADGEN" ]; then
	echo "FAIL: no loadgen at $LOADGEN (build it with 'ninja')"
	exit 1
fi

soak()
{
	last="bench/soak.sh $*"
	echo "\$ $last"
	sh "$root/bench/soak.sh" --dprt "$DPRT" --loadgen "$LOADGEN" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# The run itself: 30 s in slices of 5 s, RSS every 2 s.
soak --gpus cpu:2 --duration 30 --slice 5 --sample 2 --out "$tmp/run"
expect_rc 0 "30 s soak"
s=$tmp/run/summary.md
[ -s "$s" ] || fail "no summary.md in --out"
grep -q '^Result: \*\*PASS\*\* (0 failure(s))$' "$s" || fail "summary does not say PASS"
grep -q '1.1 x RSS after warm-up' "$s" || fail "summary does not state the RSS rule"
grep -q '^## RSS over time$' "$s" && grep -q '^## p99 over time' "$s" || fail "summary tables"
rows=$(grep -cE '^\| [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [1-9][0-9]* \| [1-9][0-9]* \| 0 \| 0 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|  \|$' "$s")
[ "$rows" -ge 5 ] || fail "p99 table: $rows slices with answers and no errors, expected 5 or 6"
rss=$(grep -cE '^\| [0-9.]+ \| [0-9.]+ \| 0 \| [0-9]+ \| 0 \| 0 \|$' "$s")
[ "$rss" -ge 10 ] || fail "RSS table: $rss samples in 30 s at 2 s"
grep -Eq '^\* evictions \(dprt_evictions_total, all devices\): [1-9]' "$s" || fail "no evictions"
grep -Eq '^\* churn of c0: [1-9][0-9]* unloads, [1-9][0-9]* loads .*, 0 failed$' "$s" ||
	fail "no repository churn"
grep -Eq "^\* c0 client: .*by version \{'[12]': [1-9][0-9]*, '[12]': [1-9]" "$s" ||
	fail "c0 not answered by both versions"
grep -Eq '^\* invalid: sent ([1-9][0-9]*), answered as expected \1, 38 kinds$' "$s" ||
	fail "invalid requests not all answered as expected"
grep -q '^| gzip bomb | 413 | [1-9]' "$s" && grep -q '^| shape over --max-activation | 413 | [1-9]' "$s" ||
	fail "oversized requests not in the table"
[ -s "$tmp/run/raw/slice-000.json" ] && [ -s "$tmp/run/raw/slice-005.out" ] ||
	fail "raw loadgen slices"
grep -q -- '--gpu-mem-limit 1900000' "$tmp/run/commands.txt" || fail "commands.txt"
grep -q '"pass": true' "$tmp/run/result.json" || fail "result.json"

# A server that dies 3 s into the run: the run fails and says so.
cat >"$tmp/dying" <<EOF
#!/bin/sh
[ "\$1" = zoo ] || ( sleep 3; kill -KILL \$\$ ) &
exec "$DPRT" "\$@"
EOF
chmod +x "$tmp/dying"
last="bench/soak.sh --dprt (killed after 3 s)"
echo "\$ $last"
sh "$root/bench/soak.sh" --dprt "$tmp/dying" --loadgen "$LOADGEN" --duration 6 --slice 2 \
	--sample 1 --out "$tmp/dead" >"$tmp/out" 2>"$tmp/err"
rc=$?
expect_rc 1 "a killed server"
grep -q '^Result: \*\*FAIL\*\*' "$tmp/dead/summary.md" || fail "killed server: summary not FAIL"
grep -q 'is gone' "$tmp/dead/summary.md" || fail "killed server: not named in the summary"

# A limit that holds every instance: nothing evicted, a failure.
soak --gpus cpu:2 --duration 4 --slice 2 --mem-limit 64M --out "$tmp/roomy"
expect_rc 1 "no evictions"
grep -q 'no evictions' "$tmp/roomy/summary.md" || fail "no evictions: not in the summary"

finish
