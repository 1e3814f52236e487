#!/bin/sh
# SPDX-License-Identifier: MIT
# dprt serve's HTTP extensions, over real sockets with curl (and python3 for
# bytes curl will not send): JSON health bodies, Triton's model config and
# statistics, the nv_inference_* metrics, gzip/deflate request bodies,
# gzip/deflate responses (Accept-Encoding, read back by curl --compressed)
# and chunked request bodies, with their limits.
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
expect_out "\"outputs\":\\[\\{\"name\":\"pooler_output\"" "plain infer outputs"
sed 's/.*"outputs"/"outputs"/' "$tmp/out" >"$tmp/plain.out"
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

# same_outputs: the last answer has the outputs of the plain infer (the
# parameters before them hold timings)
same_outputs()
{
	sed 's/.*"outputs"/"outputs"/' "$tmp/out" | cmp -s - "$tmp/plain.out"
}

# ---- compressed request bodies: the same answer as the plain body
python3 - "$tmp" <<'EOF'
import gzip, sys, zlib
d = sys.argv[1]
body = open(d + "/body.json", "rb").read()
open(d + "/body.json.gz", "wb").write(gzip.compress(body))
open(d + "/body.json.zz", "wb").write(zlib.compress(body))
# a bomb: 1 MiB of zeros in about 1 KiB, over --max-body 64K decompressed
open(d + "/bomb.gz", "wb").write(gzip.compress(b"0" * (1 << 20), 9))
open(d + "/bad.gz", "wb").write(gzip.compress(body)[:-12])
EOF
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json.gz" -H 'Content-Encoding: gzip'
expect_code 200 "gzip infer"
same_outputs || fail "gzip infer: answer differs from the plain one"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json.zz" -H 'Content-Encoding: deflate'
expect_code 200 "deflate infer"
same_outputs || fail "deflate infer: answer differs from the plain one"
[ "$(wc -c <"$tmp/bomb.gz")" -lt 65536 ] || fail "the bomb is not small"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/bomb.gz" -H 'Content-Encoding: gzip'
expect_code 413 "zip bomb"
expect_out 'decompressed request body too large' "zip bomb message"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/bad.gz" -H 'Content-Encoding: gzip'
expect_code 400 "truncated gzip"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json" -H 'Content-Encoding: br'
expect_code 415 "unknown encoding"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json" -H 'Content-Encoding: identity'
expect_code 200 "identity encoding"

# ---- compressed responses: Accept-Encoding, read back by curl --compressed
# no_header PATTERN WHAT: the last response's headers lack PATTERN
no_header()
{
	! grep -Eq -e "$1" "$tmp/err" || fail "$2: the headers have /$1/"
}
sizes()
{
	plain=$(curl -s -o "$tmp/plain" -w '%{size_download}' "$@")
	coded=$(curl -s -o "$tmp/coded" -w '%{size_download}' -H 'Accept-Encoding: gzip' "$@")
	[ "$coded" -lt "$plain" ] || fail "$*: $coded coded bytes, $plain plain"
}
get /metrics --compressed
expect_code 200 "compressed metrics"
expect_err '^[Cc]ontent-[Ee]ncoding: gzip' "metrics Content-Encoding"
expect_err '^[Vv]ary: Accept-Encoding' "metrics Vary"
expect_out '^nv_inference_count\{model="bert-tiny",version="1"\} [0-9]+' "metrics decoded"
sizes "$url/metrics"
# every output: a body of some KiB (pooler_output alone is under BODY_ZMIN)
printf '%s' "${body%,\"outputs\"*}}" >"$tmp/all.json"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/all.json"
expect_code 200 "infer of every output"
sed 's/.*"outputs"/"outputs"/' "$tmp/out" >"$tmp/all.out"
same_all()
{
	sed 's/.*"outputs"/"outputs"/' "$tmp/out" | cmp -s - "$tmp/all.out"
}
get /v2/models/bert-tiny/infer --compressed --data-binary @"$tmp/all.json"
expect_code 200 "compressed infer"
expect_err '^[Cc]ontent-[Ee]ncoding: gzip' "infer Content-Encoding"
same_all || fail "compressed infer: answer differs from the plain one"
sizes "$url/v2/models/bert-tiny/infer" --data-binary @"$tmp/all.json"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/all.json" -H 'Accept-Encoding: deflate'
expect_code 200 "deflate-coded infer"
expect_err '^[Cc]ontent-[Ee]ncoding: deflate' "infer deflate"
python3 -c 'import sys, zlib; sys.stdout.buffer.write(zlib.decompress(open(sys.argv[1], "rb").read()))' \
	"$tmp/out" >"$tmp/inflated" || fail "deflate-coded infer is not zlib data"
mv "$tmp/inflated" "$tmp/out"
same_all || fail "deflate-coded infer: answer differs from the plain one"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/all.json" -H 'Accept-Encoding: gzip;q=0'
expect_code 200 "gzip;q=0"
no_header '^[Cc]ontent-[Ee]ncoding' "gzip;q=0 is not coded"
same_all || fail "gzip;q=0 infer differs"
get /v2/health/live --compressed
expect_code 200 "tiny body"
no_header '^[Cc]ontent-[Ee]ncoding' "a tiny body is not coded"
expect_out '^\{"live":true\}$' "live body, as it was"
get /metrics
no_header '^[Cc]ontent-[Ee]ncoding' "no Accept-Encoding: not coded"
no_header '^[Vv]ary' "no Accept-Encoding: no Vary"

# ---- chunked request bodies
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json" -H 'Transfer-Encoding: chunked'
expect_code 200 "chunked infer"
same_outputs || fail "chunked infer: answer differs from the plain one"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/body.json.gz" \
	-H 'Transfer-Encoding: chunked' -H 'Content-Encoding: gzip'
expect_code 200 "chunked gzip infer"
same_outputs || fail "chunked gzip infer: answer differs"
head -c 70000 /dev/zero >"$tmp/big"
get /v2/models/bert-tiny/infer --data-binary @"$tmp/big" -H 'Transfer-Encoding: chunked'
expect_code 413 "chunked body over --max-body"

# Raw sockets: bytes curl does not send. Each case: the status line
# expected for the request, then the connection's next request (keep-alive
# after a good one).
last="python3 raw chunked requests"
echo "\$ $last"
python3 - "$port" "$tmp/body.json" >"$tmp/out" 2>&1 <<'EOF' || fail "raw chunked requests"
import socket, sys
port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
head = b"POST /v2/models/bert-tiny/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

def status(req):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(req)
    got = b""
    while b"\r\n" not in got:
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    return got.split(b"\r\n")[0].decode()

def chunks(data, n):
    return b"".join(b"%x;ext=v\r\n%s\r\n" % (len(data[i:i + n]), data[i:i + n])
                    for i in range(0, len(data), n))

bad = 0
cases = [
    (head + chunks(body, 7) + b"0\r\nX-Trailer: 1\r\n\r\n", "200"),
    (head + b"zz\r\n", "400"),                            # not hex
    (head + b"5\r\nabc\r\n0\r\n\r\n", "400"),             # data shorter than its size
    (head + b"3\r\nabcXY0\r\n\r\n", "400"),               # no CRLF after the data
    (head + b"3\nabc\r\n0\r\n\r\n", "400"),               # bare LF
    (head + b"0\r\nno colon\r\n\r\n", "400"),             # bad trailer
    (head + b"ffffffffffffffffff\r\n", "413"),            # size overflow
    (head.replace(b"chunked", b"gzip, chunked") + b"0\r\n\r\n", "501"),
]
for req, want in cases:
    got = status(req)
    if want not in got:
        print("FAIL:", want, "expected, got", repr(got), "for", req[len(head) - 4:][:60])
        bad += 1
sys.exit(1 if bad else 0)
EOF
# A connection that gets large outputs keeps its output buffer for the
# next request (dprt_connection_buffer_bytes); once it closes, the next
# connection takes it.
last="python3 kept output buffer"
echo "\$ $last"
python3 - "$port" >"$tmp/out" 2>&1 <<'EOF' || { cat "$tmp/out"; fail "kept output buffer"; }
import json, re, socket, sys, time
port = int(sys.argv[1])
rows = 64  # outputs over a record's own buffer (1 MiB): the connection's
ids = [[(i * 7 + j) % 1000 for j in range(64)] for i in range(rows)]
body = json.dumps({"inputs": [
    {"name": "input_ids", "datatype": "INT64", "shape": [rows, 64], "data": sum(ids, [])},
    {"name": "attention_mask", "datatype": "INT64", "shape": [rows, 64], "data": [1] * rows * 64},
    {"name": "token_type_ids", "datatype": "INT64", "shape": [rows, 64], "data": [0] * rows * 64}]}).encode()

def roundtrip(s, req):
    s.sendall(req)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, rest = got.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"(?i)content-length: *([0-9]+)", head).group(1))
    while len(rest) < n:
        rest += s.recv(1 << 20)
    return head.split(b"\r\n")[0].decode(), rest[:n].decode()

def kept(s):
    st, m = roundtrip(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return int(re.search(r"^dprt_connection_buffer_bytes ([0-9]+)$", m, re.M).group(1))

s = socket.create_connection(("127.0.0.1", port), timeout=20)
infer = b"POST /v2/models/bert-tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
for i in range(2):
    st, out = roundtrip(s, infer)
    if "200" not in st:
        sys.exit("infer %d: %s %s" % (i, st, out[:200]))
k = kept(s)
if k < rows * 64 * 64 * 4:
    sys.exit("kept %d bytes after two large outputs, expected at least one output's" % k)
s.close()
# the next connection with large outputs takes the closed one's buffer
# (it waits as a spare) rather than allocating another
time.sleep(0.3)
c = socket.create_connection(("127.0.0.1", port), timeout=20)
st, out = roundtrip(c, infer)
if "200" not in st:
    sys.exit("infer on a new connection: %s %s" % (st, out[:200]))
k2 = kept(c)
c.close()
sys.exit(0 if k2 == k else "%d bytes kept after a reconnect, %d before: not reused" % (k2, k))
EOF

kill $pid
wait $pid 2>/dev/null
finish
