#!/bin/sh
# SPDX-License-Identifier: MIT
# build/bench/loadgen against a real dprt server (cpu:1, six bert-tiny
# instances under a memory limit that holds three, so requests evict and
# cold-start): Poisson load with every answer checked; a generated Azure
# Functions trace replayed with its per-minute counts; failures against a
# missing model and a stopped server; wrong answers and bad outputs from a
# server that varies its answers; bench/fig12.sh --tiny end to end.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

root=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-$root/build/bench/loadgen}
if [ ! -x "$LOADGEN" ]; then
	echo "FAIL: no loadgen at $LOADGEN (build it with 'ninja')"
	exit 1
fi
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT

lg()
{
	last="loadgen $*"
	echo "\$ $last"
	"$LOADGEN" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
}

# num K: the Kth number of the summary line (sent, ok, errors, wrong).
# Only the server's refusals may fail (503: no room while the models that
# fit are all in use, more likely on a loaded machine); nothing else.
only_5xx()
{
	grep -Eq '^errors by kind: connect 0 timeout 0 http_4xx 0 http_5xx [0-9]+ closed 0 bad_response 0 bad_output 0$' \
		"$tmp/out" || fail "$1: errors other than 503s"
}

num()
{
	sed -n "s/^sent \([0-9]*\)  ok \([0-9]*\)  errors \([0-9]*\)  wrong \([0-9]*\)$/\\$1/p" \
		"$tmp/out"
}

run zoo bert-tiny -o "$tmp/base"
expect_rc 0 "zoo bert-tiny"
for i in 0 1 2 3 4 5; do
	mkdir -p "$tmp/repo/m$i/1"
	ln -s "$tmp/base/bert-tiny/1/model.dpk" "$tmp/repo/m$i/1/model.dpk"
done

# start_server: dprt on a free port of 127.0.0.1; sets srv and port.
start_server()
{
	: >"$tmp/server.log"
	"$DPRT" --gpus cpu:1 --listen 127.0.0.1:0 --models "$tmp/repo" --gpu-mem-limit 1900000 \
		>"$tmp/server.log" 2>&1 &
	srv=$!
	port=
	t=0
	while [ -z "$port" ] && [ $t -lt 100 ]; do
		sleep 0.1
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/server.log")
		t=$((t + 1))
	done
	[ -n "$port" ] || { fail "server did not start: $(tail -n 5 "$tmp/server.log")"; finish; }
}

start_server
url=http://127.0.0.1:$port

# Poisson, uniform over six instances, every answer against the first.
lg --url "$url" --model-prefix m --instances 6 --rate 100 --warmup 0.5 --duration 3 --check \
	--max-errors 100000 --json "$tmp/poisson.json"
expect_rc 0 "poisson run"
only_5xx "poisson run"
cat "$tmp/out"
[ "$(num 2)" -gt 0 ] 2>/dev/null || fail "no ok answers"
[ "$(num 4)" = 0 ] || fail "wrong answers"
[ "$(num 1)" -ge 200 ] 2>/dev/null || fail "far fewer requests sent than 3 s at 100/s"
grep -Eq '^cold starts: [1-9][0-9]* \(rate 0\.[0-9]*[1-9]' "$tmp/out" ||
	fail "no cold starts under a limit of three models for six"
grep -Eq '^latency ms: p50 [0-9.]+  p90 [0-9.]+  p99 [0-9.]+  p99\.9 [0-9.]+  max' "$tmp/out" ||
	fail "latency line"
grep -Eq '^goodput at 100\.0 ms: [01]\.[0-9]+' "$tmp/out" || fail "goodput line"
grep -Eq 'load mean [0-9.]+ p99 [0-9.]+  compute mean [0-9.]*[1-9]' "$tmp/out" ||
	fail "no Server-Timing compute times"
grep -q '"cold_start_rate"' "$tmp/poisson.json" && grep -q '"p999_ms"' "$tmp/poisson.json" ||
	fail "--json lacks fields"

# Zipf over the instances, uniform arrivals, a pool capped at one
# connection: sends wait, and the report says so.
lg --url "$url" --model-prefix m --instances 6 --rate 1000 --uniform --zipf 1.2 --warmup 0 \
	--duration 0.3 --conns 1 --max-conns 1 --check --max-errors 100000
expect_rc 0 "zipf, one connection"
only_5xx "zipf"
grep -Eq ' [1-9][0-9]* cap-delayed' "$tmp/out" || fail "no cap-delayed sends with one connection"

# A generated trace, a minute a second: per-minute rows, counts as the file's.
python3 "$root/bench/gen_trace.py" -o "$tmp/trace.csv" --functions 12 --minutes 3 --rate 1.5 \
	--seed 7 >"$tmp/gen.out" || fail "gen_trace.py failed"
total=$(sed -n 's/^total \([0-9]*\)$/\1/p' "$tmp/gen.out")
head -n 1 "$tmp/trace.csv" | grep -q '^HashOwner,HashApp,HashFunction,Trigger,1,2,3$' ||
	fail "trace header"
sum=$(awk -F, 'NR > 1 { for (i = 5; i <= NF; i++) s += $i } END { print s + 0 }' "$tmp/trace.csv")
[ -n "$total" ] && [ "$total" = "$sum" ] || fail "gen_trace total $total, file sums to $sum"
lg --url "$url" --model-prefix m --instances 6 --trace "$tmp/trace.csv" --time-scale 60 \
	--map hash --check --max-errors 100000
expect_rc 0 "trace replay"
only_5xx "trace replay"
cat "$tmp/out"
rows=$(grep -cE '^[123] +[0-9]+ +[0-9]+ +[0-9]+ ' "$tmp/out")
[ "$rows" = 3 ] || fail "expected 3 per-minute rows, got $rows"
tsum=$(awk '/^minute/ { on = 1; next } on && /^[0-9]+ / { t += $2; s += $3 } END { print t "/" s }' \
	"$tmp/out")
[ "$tsum" = "$total/$total" ] || fail "per-minute trace/sent $tsum, the trace has $total"
[ "$(num 1)" = "$total" ] || fail "sent $(num 1), the trace has $total"
# Minutes 2-3 only: the columns' sums.
want=$(awk -F, 'NR > 1 { s += $6 + $7 } END { print s + 0 }' "$tmp/trace.csv")
lg --url "$url" --model-prefix m --instances 6 --trace "$tmp/trace.csv" --minutes 2-3 \
	--time-scale 120 --max-errors 100000 --quiet
expect_rc 0 "trace minutes 2-3"
only_5xx "trace minutes 2-3"
[ "$(num 1)" = "$want" ] || fail "minutes 2-3: sent $(num 1), the columns hold $want"

# A model the server does not have; options it does not know.
lg --url "$url" --models m0,nope --rate 10 --duration 0.5
[ "$rc" -ne 0 ] || fail "a missing model was not an error"
grep -q "nope" "$tmp/err" || fail "the missing model is not named"
lg --url "$url" --rate 10
expect_rc 2 "no models: a usage error"
lg --help
expect_rc 0 "--help"
for opt in --url --model-prefix --instances --models --batch --seq --input --output --check \
	--rate --uniform --zipf --warmup --duration --trace --minutes --time-scale --conns \
	--max-conns --slo --json --max-errors; do
	grep -q -- "$opt " "$tmp/out" || fail "--help does not explain $opt"
done

# --input instead of the metadata's signature (no masks, seq 16).
lg --url "$url" --models m1 --input input_ids:INT64:1x16 --output last_hidden_state \
	--rate 50 --warmup 0 --duration 0.5 --check
expect_rc 0 "--input and --output"
[ "$(num 2)" -gt 0 ] 2>/dev/null || fail "--input: no ok answers"

# The server gone: no connection, non-zero.
kill -TERM $srv
wait $srv || fail "server exit status after SIGTERM"
srv=
lg --url "$url" --models m0 --rate 10 --duration 0.5
[ "$rc" -ne 0 ] || fail "loadgen succeeded against a stopped server"
grep -qi "cannot reach" "$tmp/err" || fail "no message about the unreachable server"

# A server whose answers vary (every other one) and whose every third has
# the wrong size: wrong answers and bad outputs are counted apart.
cat >"$tmp/fake.py" <<'EOF'
import http.server, json, struct, sys
n = [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, code, body, hdrs=()):
        self.send_response(code)
        for k, v in hdrs: self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/v2/health/ready": return self.send(200, b"")
        meta = {"name": "fake", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
        self.send(200, json.dumps(meta).encode())
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        n[0] += 1
        size = 12 if n[0] % 3 == 0 else 16
        js = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                      "parameters": {"binary_data_size": size}}]}).encode()
        data = struct.pack("<4f", 1, 2, 3, n[0] % 2)[:size]
        self.send(200, js + data, [("Inference-Header-Content-Length", str(len(js))),
                                   ("Dprt-Cold-Start", "false")])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
python3 "$tmp/fake.py" >"$tmp/fake.port" 2>&1 &
srv=$!
t=0
while [ ! -s "$tmp/fake.port" ] && [ $t -lt 50 ]; do
	sleep 0.1
	t=$((t + 1))
done
lg --url "http://127.0.0.1:$(cat "$tmp/fake.port")" --models fake --rate 30 --warmup 0 \
	--duration 1 --check --max-errors 1000
[ "$rc" -eq 1 ] || fail "wrong answers did not fail the run (exit $rc)"
cat "$tmp/out"
[ "$(num 4)" -gt 0 ] 2>/dev/null || fail "no wrong answers counted"
grep -Eq 'bad_output [1-9]' "$tmp/out" || fail "outputs of the wrong size not counted"
grep -Eq 'connect 0 timeout 0 http_4xx 0 http_5xx 0 closed 0 bad_response 0 bad_output' \
	"$tmp/out" || fail "errors other than bad outputs"
# Without --check nothing is wrong: only the bad outputs, against --max-errors.
fake=http://127.0.0.1:$(cat "$tmp/fake.port")
lg --url "$fake" --models fake --rate 30 --warmup 0 --duration 0.5 --max-errors 1000
expect_rc 0 "bad outputs within --max-errors"
[ "$(num 4)" = 0 ] || fail "wrong answers without --check"
lg --url "$fake" --models fake --rate 30 --warmup 0 --duration 0.5
expect_rc 1 "bad outputs beyond --max-errors 0"
kill $srv
wait $srv 2>/dev/null
srv=

# bench/fig12.sh --tiny: two instance counts, two modes, short runs.
sh "$root/bench/fig12.sh" --tiny --ns "4 6" --modes "load deepplan" --duration 1.5 \
	--warmup 0.5 --out "$tmp/fig12" --dprt "$DPRT" --loadgen "$LOADGEN" >"$tmp/out" 2>"$tmp/err"
rc=$?
last="bench/fig12.sh --tiny"
expect_rc 0 "fig12.sh --tiny"
cat "$tmp/out"
[ -s "$tmp/fig12/summary.md" ] || fail "no fig12 summary.md"
for n in 4 6; do
	grep -Eq "^\| $n \| [0-9.]+ \| [0-9.]+ \| [01]\.[0-9]{3} \| [01]\.[0-9]{3} \|" \
		"$tmp/fig12/summary.md" || fail "summary row for N=$n"
	for m in load deepplan; do
		[ -s "$tmp/fig12/raw/$m-$n.json" ] || fail "no raw output $m-$n.json"
	done
done
grep -qx cpu "$tmp/fig12/machine.txt" || fail "machine.txt"
grep -q -- "--cold-mode deepplan" "$tmp/fig12/commands.txt" || fail "commands.txt"

# --round-robin over two instances under a limit that holds one: in load
# mode every request is a cold start; bench/cold_e2e.sh --tiny reports them.
sh "$root/bench/cold_e2e.sh" --tiny --models bert-tiny --modes load --requests 10 \
	--out "$tmp/ce2e" --dprt "$DPRT" --loadgen "$LOADGEN" >"$tmp/out" 2>"$tmp/err"
rc=$?
last="bench/cold_e2e.sh --tiny"
expect_rc 0 "cold_e2e.sh --tiny"
cat "$tmp/out"
grep -Eq '^\| bert-tiny \| load \| - \| - \| [0-9.]+ / [0-9.]+ \(([0-9]+)/\1 cold\)' \
	"$tmp/ce2e/summary.md" || fail "cold_e2e row: every request a cold start"
grep -Eq '^first request ms: [0-9.]+ \(cold' "$tmp/ce2e/raw/bert-tiny-load.txt" ||
	fail "loadgen's first request line"
grep -Eq '^\| bert-tiny \| load \|.*\| [0-9.]+ \| - \| 0 / 0 \|' "$tmp/ce2e/summary.md" ||
	fail "cold_e2e row: the first request after idling"
grep -Eq '^first request ms: [0-9.]+ \(cold' "$tmp/ce2e/raw/bert-tiny-load-idle.txt" ||
	fail "the first request after idling: a cold start (the instance not resident)"

finish
