#!/bin/sh
# SPDX-License-Identifier: MIT
# The repository over HTTP with curl: load/unload of one version named in
# the body, any number of versions, a corrupt newest version that leaves
# the previous one serving (and says so), and readiness that reports a
# model no device can hold.
# shellcheck source=test/cli/common.inc
. "$(dirname "$0")/common.inc"

command -v curl >/dev/null || {
	echo "SKIP: no curl"
	exit 0
}

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

# loaded: wait (up to 20 s) until the server no longer says it is loading
# the repository (it listens while the models load).
loaded()
{
	j=0
	while [ $j -lt 400 ]; do
		curl -s -m 5 "http://127.0.0.1:$port/v2/health/ready" |
			grep -q "loading the repository" || return 0
		sleep 0.05
		j=$((j + 1))
	done
	return 1
}

# serve NAME ARGS: start dprt on an ephemeral port of 127.0.0.1 ($port, $pid).
serve()
{
	log=$tmp/$1.log
	shift
	last="dprt serve $*"
	"$DPRT" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
	pid=$!
	port=
	i=0
	while [ $i -lt 400 ]; do
		port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
		[ -n "$port" ] && loaded && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
		i=$((i + 1))
	done
	cp "$log" "$tmp/err"
	fail "the server did not start"
	finish
}

stop()
{
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	pid=
	expect_rc 0 "exit after SIGTERM"
}

# req METHOD PATH [BODY]: status in $st, body in $tmp/out.
req()
{
	last="curl -X $1 $2 ${3:-}"
	rc=0
	if [ $# -ge 3 ]; then
		st=$(curl -s -m 30 -o "$tmp/out" -w '%{http_code}' -X "$1" \
			-H 'Content-Type: application/json' --data "$3" "http://127.0.0.1:$port$2")
	else
		st=$(curl -s -m 30 -o "$tmp/out" -w '%{http_code}' -X "$1" "http://127.0.0.1:$port$2")
	fi
}

expect_st()
{
	[ "$st" = "$1" ] || fail "$2: HTTP $st, expected $1"
}

# One byte of dir/name/version/model.dpk inverted (inside the weights).
flip()
{
	f=$1/$2/$3/model.dpk
	b=$(od -An -tu1 -j 100000 -N 1 "$f" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the octal escape
	printf "\\$(printf %o $((b ^ 255)))" |
		dd of="$f" bs=1 seek=100000 count=1 conv=notrunc 2>/dev/null
}

m=$tmp/models
run zoo bert-tiny -o "$m"
expect_rc 0 "zoo bert-tiny"
mkdir -p "$m/m/1" "$m/m/2" "$m/v"
cp "$m/bert-tiny/1/model.dpk" "$m/m/1/"
cp "$m/bert-tiny/1/model.dpk" "$m/m/2/"
flip "$m" m 2
mkdir -p "$m/t/1"
head -c 4096 "$m/bert-tiny/1/model.dpk" >"$m/t/1/model.dpk"
mv "$m/bert-tiny/1" "$m/v/1"
rmdir "$m/bert-tiny"
v=2
while [ $v -le 70 ]; do
	ln -s 1 "$m/v/$v"
	v=$((v + 1))
done

# ---- a corrupt newest version: version 1 serves, version 2 says why
check_fallback()
{
	req GET /v2/models/m/ready
	expect_st 200 "$1: m ready"
	expect_out '"version":"1"' "$1: ready names version 1"
	req GET /v2/models/m
	expect_st 200 "$1: m metadata"
	expect_out '"versions":\["1","2"\]' "$1: metadata lists both versions"
	expect_out '"version":"1","state":"READY"' "$1: metadata: version 1 serves"
	expect_out '\{"version":"2","state":"FAILED","reason":"[^"]*corrupt' \
		"$1: metadata: version 2 failed and why"
	req GET /v2/models/m/versions/2/ready
	expect_st 503 "$1: version 2 ready"
	expect_out 'FAILED.*corrupt' "$1: version 2 not ready and why"
	req POST /v2/repository/index
	expect_out '"name":"m","version":"2","state":"FAILED","reason":"[^"]*corrupt' \
		"$1: index: version 2 failed and why"
	expect_out '"name":"m","version":"1","state":"READY"' "$1: index: version 1 ready"
}

serve main --models "$m" --gpus cpu
check_fallback "at start"
req GET /v2/health/ready
expect_st 200 "ready with version 1 serving"
req GET /v2/models/m/versions/2
expect_st 200 "metadata of the corrupt version 2 (its signature is known)"
expect_out '"version":"2","state":"FAILED","reason":"[^"]*corrupt' "version 2's own state"
req GET /v2/models/t
expect_st 503 "metadata of a package that does not open"
expect_out '"state":"FAILED"' "a package that does not open: state"
expect_out '"reason":"[^"]*t/1/model.dpk' "a package that does not open: reason"
expect_out '"error":"model .t. version 1 is not loaded' "a package that does not open: error"
req POST /v2/repository/models/m/unload
expect_st 200 "unload m"
req GET /v2/models/m/ready
expect_st 503 "m ready after unload"
req POST /v2/repository/models/m/load
expect_st 200 "load m (version 2 corrupt)"
check_fallback "after unload and load"

# ---- one version named in the body
req POST /v2/repository/models/m/load '{"parameters": {"version": "9"}}'
expect_st 404 "load of version 9"
expect_out "no version 9" "load of version 9 says why"
req POST /v2/repository/models/m/unload '{"parameters": {"version": 9}}'
expect_st 404 "unload of version 9"
req POST /v2/repository/models/m/load '{"parameters": {"version": "x"}}'
expect_st 400 "load of version x"
req POST /v2/repository/models/m/load '{"parameters": '
expect_st 400 "load with a broken body"
req POST /v2/repository/models/m/load '{"parameters": {"version": "2"}}'
[ "$st" != 200 ] || fail "load of the corrupt version 2 answered 200"
expect_out "corrupt" "load of version 2 says why"
req POST /v2/repository/models/m/unload '{"parameters": {"version": 1}}'
expect_st 200 "unload of version 1"
req GET /v2/models/m/versions/1/ready
expect_st 503 "version 1 ready after its unload"
req POST /v2/repository/models/m/load '{"parameters": {"version": 1}}'
expect_st 200 "load of version 1"
req GET /v2/models/m/versions/1/ready
expect_st 200 "version 1 ready after its load"

# ---- 70 versions: unload unloads all, load picks the highest
req POST /v2/repository/models/v/unload
expect_st 200 "unload v"
req POST /v2/repository/index '{"ready": true}'
expect_not_out '"name":"v"' "a version of v still READY after unload"
req POST /v2/repository/models/v/load
expect_st 200 "load v"
req GET /v2/models/v/ready
expect_out '"version":"70"' "load of v serves version 70"
req GET /v2/models/v/versions/64/ready
expect_st 503 "version 64 after load of v"
req POST /v2/repository/models/v/load '{"parameters": {"version": "3"}}'
expect_st 200 "load v version 3"
req GET /v2/models/v/versions/3/ready
expect_st 200 "version 3 after its load"
req POST /v2/repository/models/v/unload
req GET /v2/models/v/versions/3/ready
expect_st 503 "version 3 after unload of v"
req GET /v2/models/v/versions/70/ready
expect_st 503 "version 70 after unload of v"
stop

# ---- a model that fits no device: not ready, and FAILED with the reason
rm -rf "$m/m" "$m/t"
serve small --models "$m" --gpus cpu:2 --gpu-mem-limit 300K
req GET /v2/health/ready
expect_st 503 "health/ready with a model that fits no device"
expect_out "fit no device" "health/ready says why"
req GET /v2/models/v
expect_st 200 "metadata of the model that fits no device"
expect_out '"version":"70","state":"FAILED","reason":"[^"]*fit no device' \
	"metadata: state and reason"
req GET /v2/health/live
expect_st 200 "live"
req POST /v2/repository/models/v/unload
expect_st 200 "unload v"
req GET /v2/health/ready
expect_st 200 "health/ready once the model is unloaded"
stop

finish
