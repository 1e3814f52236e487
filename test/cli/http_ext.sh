#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve's HTTP extensions, over real sockets with curl (and python3 for
# bytes curl will not send): JSON health bodies, Triton's model config and
# statistics, the nv_inference_* metrics, gzip/deflate request bodies and
# chunked request bodies, with their limits.
. "$(dirname "$0")/common.inc"

export DPRT_CACHE="$tmp/cache"
: >"$tmp/log"
"$DPRT" --listen 127.0.0.1:0 --max-body 64K >"$tmp/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
port=
i=0
while [ $i -lt 300 ] && [ -z "$port" ]; do
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log" | head -n 1)
	[ -n "$port" ] || sleep 0.1
	i=$((i + 1))
done
if [ -z "$port" ]; then
	cat "$tmp/log"
	echo "FAIL: dprt serve did not start"
	exit 1
fi
url=http://127.0.0.1:$port
rc=0

# get PATH [CURL ARGS]: body -> $tmp/out, headers -> $tmp/err, status -> $code
get()
{
	last="curl $*"
	echo "\$ $last"
	p=$1
	shift
	code=$(curl -s -o "$tmp/out" -D "$tmp/err" -w '%{http_code}' "$@" "$url$p")
}

expect_code()
{
	[ "$code" = "$1" ] || fail "$2: HTTP $code, expected $1"
}

# ---- health bodies
get /v2/health/live
expect_code 200 "live"
expect_out '^\{"live":true\}$' "live body"
expect_err '[Cc]ontent-[Tt]ype: application/json' "live content type"
get /v2/health/ready
expect_code 200 "ready"
expect_out '^\{"ready":true\}$' "ready body"

# ---- model config
get /v2/models/bert-tiny/config
expect_code 200 "config"
expect_out '"name":"bert-tiny","platform":"dprt"' "config name and platform"
expect_out '"max_batch_size":[0-9]+' "config max_batch_size"
expect_out '"input":\[\{"name":"input_ids","data_type":"TYPE_INT64","dims":\[-1,-1\]\}' "config input"
expect_out '"output":\[\{"name":"last_hidden_state","data_type":"TYPE_FP32","dims":\[-1,-1,64\]\}' "config output"
get /v2/models/bert-tiny/versions/1/config
expect_code 200 "versioned config"
get /v2/models/no-such-model/config
expect_code 404 "config of an unknown model"

# ---- infer: one success, one failure, then the statistics
body='{"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,4],"data":[1,2,3,4]},{"name":"attention_mask","datatype":"INT64","shape":[1,4],"data":[1,1,1,1]},{"name":"token_type_ids","datatype":"INT64","shape":[1,4],"data":[0,0,0,0]}],"outputs":[{"name":"pooler_output"}]}'
printf '%s' "$body" >"$tmp/body.json"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json"
expect_code 200 "plain infer"
cp "$tmp/out" "$tmp/plain.out"
get /v2/models/bert-tiny/infer --data-binary '{"inputs":[]}'
expect_code 400 "bad infer"

get /v2/models/bert-tiny/stats
expect_code 200 "stats"
expect_out '"model_stats":\[\{"name":"bert-tiny","version":"1","last_inference":[1-9][0-9]*,"inference_count":1,"execution_count":1' "stats counts"
expect_out '"success":\{"count":1,"ns":[1-9][0-9]*\}' "stats success"
expect_out '"fail":\{"count":1,"ns":[0-9]+\}' "stats fail"
expect_out '"compute_infer":\{"count":1,"ns":[1-9][0-9]*\}' "stats compute_infer"
get /v2/models/stats
expect_code 200 "all stats"
expect_out '"name":"bert-tiny"' "all stats lists bert-tiny"
get /v2/models/gpt2-tiny/versions/1/stats
expect_out '"inference_count":0' "stats of an idle model"
get /v2/models/no-such-model/stats
expect_code 404 "stats of an unknown model"

get /metrics
expect_code 200 "metrics"
expect_out '^nv_inference_request_success\{model="bert-tiny",version="1"\} 1$' "nv success"
expect_out '^nv_inference_request_failure\{model="bert-tiny",version="1"\} 1$' "nv failure"
expect_out '^nv_inference_count\{model="bert-tiny",version="1"\} 1$' "nv count"
expect_out '^nv_inference_exec_count\{model="bert-tiny",version="1"\} 1$' "nv exec count"
for m in request_duration_us queue_duration_us compute_infer_duration_us; do
	expect_out "^nv_inference_$m\\{model=\"bert-tiny\",version=\"1\"\\} [0-9]+$" "nv $m"
done
expect_out '^dprt_' "dprt's own series stay"
finish
