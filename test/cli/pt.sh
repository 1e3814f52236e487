#!/bin/sh
# SPDX-License-Identifier: MIT
# Parallel transmission in serving, end to end over real sockets with curl:
# dprt --gpus cpu:4 --cold-mode pt on a repository of six models (bert-tiny
# and gpt2-tiny, their own seeds) with paced simulated links
# (DPRT_CPU_LINK_MBS) and room for one model per device, so requests for
# the six cold-start over helpers' links on every device at once. Every answer is 200 and byte for byte what a server that
# loads models whole answers; /metrics counts PT cold starts and the time
# each device's link was lent. With one device, pt falls back (logged).
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

export DPRT_CACHE="$tmp/cache"
pids=

# start NAME ARGS...: a server logging to $tmp/NAME.log; sets $url.
start()
{
	name=$1
	shift
	"$DPRT" --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 "$@" >"$tmp/$name.log" 2>&1 &
	pids="$pids $!"
	port=
	i=0
	while [ $i -lt 300 ] && [ -z "$port" ]; do
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (KServe.*/\1/p' \
			"$tmp/$name.log" | head -n 1)
		[ -n "$port" ] || sleep 0.1
		i=$((i + 1))
	done
	if [ -z "$port" ]; then
		cat "$tmp/$name.log"
		echo "FAIL: dprt serve ($name) did not start"
		exit 1
	fi
	url=http://127.0.0.1:$port
	i=0
	while [ $i -lt 300 ] &&
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$url/v2/health/ready")" != 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
}
trap 'for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT

bert='{"inputs":[{"name":"input_ids","shape":[1,5],"datatype":"INT64","data":[1,7,42,3,9]}]}'
gpt='{"inputs":[{"name":"input_ids","shape":[1,4],"datatype":"INT64","data":[5,6,7,8]},'
gpt=$gpt'{"name":"attention_mask","shape":[1,4],"datatype":"INT64","data":[1,1,1,1]}]}'
printf '%s' "$bert" >"$tmp/bert.json"
printf '%s' "$gpt" >"$tmp/gpt2.json"
models="c0 c1 c2 c3 c4 c5"
for m in $models; do
	k=${m#c}
	z=bert
	[ $((k % 2)) -eq 1 ] && z=gpt2
	echo "$z" >"$tmp/kind-$m"
	run zoo "$z-tiny" --seed $((k + 3)) -o "$tmp/repo/$m/1/model.dpk"
	expect_rc 0 "zoo $z-tiny for $m"
done

# infer MODEL OUT: POST its input; body -> OUT, headers -> OUT.h; prints
# the HTTP code.
infer()
{
	curl -s -o "$2" -D "$2.h" -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "@$tmp/$(cat "$tmp/kind-$1").json" "$url/v2/models/$1/infer"
}

# outputs FILE: the answer's outputs (timing parameters stripped).
outputs()
{
	sed 's/.*"outputs"://' "$1"
}

# ---- reference answers from a server that loads models whole
start ref --models "$tmp/repo" --gpus cpu:4 --cold-mode load
for m in $models; do
	last="reference $m"
	code=$(infer "$m" "$tmp/ref-$m")
	[ "$code" = 200 ] || fail "reference $m: HTTP $code"
done

# ---- PT: four devices, paced links, room for one model each
limit=$(wc -c <"$tmp/repo/c1/1/model.dpk")
DPRT_CPU_LINK_MBS=100
export DPRT_CPU_LINK_MBS
start pt --models "$tmp/repo" --gpus cpu:4 --cold-mode pt --gpu-mem-limit "$limit"
unset DPRT_CPU_LINK_MBS
rc=0
last="dprt --gpus cpu:4 --cold-mode pt"
grep -Eq 'planned \(pt, 4 devices, [2-4] links\)' "$tmp/pt.log" ||
	fail "no plan with helpers for four devices in the log"
code=$(infer c0 "$tmp/first")
[ "$code" = 200 ] || fail "first request: HTTP $code"
grep -qi '^Dprt-Cold-Start: true' "$tmp/first.h" || fail "first request was no cold start"
[ "$(outputs "$tmp/first")" = "$(outputs "$tmp/ref-c0")" ] || fail "first answer differs"

# 8 clients at once, 6 requests each, the models in turn (a 503, all
# models of the device in use, is sent again as a client would)
n=0
while [ $n -lt 8 ]; do
	(
		k=0
		while [ $k -lt 6 ]; do
			m=c$(((n + k) % 6))
			code=$(infer "$m" "$tmp/a-$n-$k")
			# 503: every model of that device was in use; a client retries
			t=0
			while [ "$code" = 503 ] && [ $t -lt 100 ]; do
				sleep 0.05
				code=$(infer "$m" "$tmp/a-$n-$k")
				t=$((t + 1))
			done
			echo "$m $code" >"$tmp/a-$n-$k.code"
			k=$((k + 1))
		done
	) &
	n=$((n + 1))
done
wait_for=$(date +%s)
while [ "$(find "$tmp" -name 'a-*.code' | wc -l)" -lt 48 ] &&
	[ $(($(date +%s) - wait_for)) -lt 60 ]; do
	sleep 0.2
done
sleep 0.2
got=0
cold=0
for f in "$tmp"/a-*.code; do
	set -- $(cat "$f")
	a=${f%.code}
	got=$((got + 1))
	[ "$2" = 200 ] || fail "$(basename "$a") ($1): HTTP $2: $(head -c 200 "$a")"
	[ "$(outputs "$a")" = "$(outputs "$tmp/ref-$1")" ] || fail "$(basename "$a") ($1) differs"
	grep -qi '^Dprt-Cold-Start: true' "$a.h" && cold=$((cold + 1))
done
[ "$got" -eq 48 ] || fail "$got of 48 answers came"
echo "$cold cold starts among 48 requests"
[ "$cold" -ge 6 ] || fail "only $cold cold starts among 48 requests"

curl -s "$url/metrics" >"$tmp/metrics"
pt=$(sed -n 's/^dprt_pt_cold_starts_total \([0-9]*\)$/\1/p' "$tmp/metrics")
echo "dprt_pt_cold_starts_total $pt"
[ "${pt:-0}" -gt 0 ] || fail "dprt_pt_cold_starts_total is ${pt:-missing}"
grep -Eq '^dprt_pt_fallbacks_total [0-9]+$' "$tmp/metrics" || fail "no dprt_pt_fallbacks_total"
lent=$(grep -cE '^dprt_link_lent_seconds_total\{device="cpu[0-3]"\} 0\.0*[1-9]' "$tmp/metrics")
[ "$lent" -ge 2 ] || fail "only $lent devices lent their link: $(grep lent "$tmp/metrics")"

# ---- one device: pt plans for its own link, logged, and serves
start one --models "$tmp/repo" --gpus cpu --cold-mode pt
last="dprt --gpus cpu --cold-mode pt"
code=$(infer c1 "$tmp/one-c1")
[ "$code" = 200 ] || fail "one device: HTTP $code"
[ "$(outputs "$tmp/one-c1")" = "$(outputs "$tmp/ref-c1")" ] || fail "one device: differs"
grep -q 'cold mode pt with one device: no helper links' "$tmp/one.log" ||
	fail "no fallback line for one device: $(cat "$tmp/one.log")"

finish
