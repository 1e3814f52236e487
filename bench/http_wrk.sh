#!/bin/sh
# SPDX-License-Identifier: MIT
#
# dprt's HTTP path against nginx on this machine: wrk on GET
# /v2/health/ready of `dprt --gpus cpu` and on nginx (worker_processes 1,
# its own temporary config, `return 200` on every path), both on 127.0.0.1,
# the same wrk settings, runs alternating dprt, nginx, dprt, nginx...
# Servers pinned to the last core, wrk to the first (taskset). Writes a
# Markdown report with the raw wrk output and the ratio dprt/nginx of
# requests/s (target >= 0.8).
#
#   bench/http_wrk.sh [OUT.md]
#
# Environment: WRK_ARGS (default "-t1 -c64 -d10s"), WRK_ROUNDS (2),
# DPRT_PORT (18901), NGINX_PORT (18902), DPRT (./dprt). Needs wrk and nginx
# (apt-get install wrk nginx-light).

set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/dev/stdout}
wrk_args=${WRK_ARGS:--t1 -c64 -d10s}
rounds=${WRK_ROUNDS:-2}
dport=${DPRT_PORT:-18901}
nport=${NGINX_PORT:-18902}
dprt=${DPRT:-$root/dprt}
ncpu=$(nproc)
srv_cpu=$((ncpu - 1))
tmp=$(mktemp -d /tmp/http_wrk.XXXXXX)
dpid=
npid=

for t in wrk nginx taskset; do
	command -v $t >/dev/null 2>&1 || { echo "http_wrk: $t not found" >&2; exit 2; }
done
[ -x "$dprt" ] || { echo "http_wrk: $dprt not built (./configure && ninja)" >&2; exit 2; }

stop() {
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	[ -n "$npid" ] && kill -QUIT "$npid" 2>/dev/null && wait "$npid" 2>/dev/null
	rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/models" "$tmp/nginx/logs"
"$dprt" zoo bert-tiny -o "$tmp/models" >/dev/null || exit 1
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	keepalive_requests 100000000;
	server {
		listen 127.0.0.1:$nport;
		location / { return 200; }
	}
}
EOF

taskset -c $srv_cpu "$dprt" --gpus cpu --cpus $srv_cpu --listen "127.0.0.1:$dport" \
	--models "$tmp/models" >"$tmp/dprt.log" 2>&1 &
dpid=$!
taskset -c $srv_cpu nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" \
	>"$tmp/nginx.log" 2>&1 &
npid=$!

ready() { # URL: wait up to 10 s for a 200
	i=0
	while [ $i -lt 100 ]; do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "http_wrk: $1 never answered 200" >&2
	return 1
}
ready "http://127.0.0.1:$dport/v2/health/ready" || { cat "$tmp/dprt.log" >&2; exit 1; }
ready "http://127.0.0.1:$nport/" || { cat "$tmp/nginx.log" >&2; exit 1; }

# Requests/s of one wrk output; latency avg | p50 | p99 | max.
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
lat() {
	awk '$1 == "Latency" && $2 != "Distribution" { a = $2; m = $4 }
	     $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
	     END { print a " | " p50 " | " p99 " | " m }' "$1"
}

hdr() { curl -s -o /dev/null -w '%{size_header} B head + %{size_download} B body' "$1"; }
dsize=$(hdr "http://127.0.0.1:$dport/v2/health/ready")
nsize=$(hdr "http://127.0.0.1:$nport/")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
taskset -c 0 wrk -t1 -c8 -d2s "http://127.0.0.1:$dport/v2/health/ready" >/dev/null
taskset -c 0 wrk -t1 -c8 -d2s "http://127.0.0.1:$nport/" >/dev/null
r=1
while [ $r -le "$rounds" ]; do
	taskset -c 0 wrk $wrk_args --latency "http://127.0.0.1:$dport/v2/health/ready" \
		>"$tmp/dprt.$r" 2>&1
	taskset -c 0 wrk $wrk_args --latency "http://127.0.0.1:$nport/" >"$tmp/nginx.$r" 2>&1
	r=$((r + 1))
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
	echo "# HTTP path: dprt vs nginx under wrk"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "- machine: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $ncpu cores, $(uname -sr)"
	echo "- dprt: $dprt (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)), \`--gpus cpu --cpus $srv_cpu --listen 127.0.0.1:$dport\`, GET /v2/health/ready"
	echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), worker_processes 1, access_log off, \`return 200\`, GET /"
	echo "- wrk: \`wrk $wrk_args --latency\`, $rounds rounds alternating dprt/nginx; servers on CPU $srv_cpu, wrk on CPU 0 (taskset)"
	echo "- response sizes: dprt $dsize; nginx $nsize"
	echo "- command: \`bench/http_wrk.sh ${1:-}\`"
	echo "- load average before: $load_before; after: $load_after"
	echo
	echo "| round | server | requests/s | latency avg | p50 | p99 | max |"
	echo "|---|---|---|---|---|---|---|"
	r=1
	while [ $r -le "$rounds" ]; do
		echo "| $r | dprt | $(rps "$tmp/dprt.$r") | $(lat "$tmp/dprt.$r") |"
		echo "| $r | nginx | $(rps "$tmp/nginx.$r") | $(lat "$tmp/nginx.$r") |"
		r=$((r + 1))
	done
	echo
	d=$(cat "$tmp"/dprt.* | awk '/^Requests\/sec:/ { s += $2; n++ } END { printf "%.0f", s / n }')
	n=$(cat "$tmp"/nginx.* | awk '/^Requests\/sec:/ { s += $2; n++ } END { printf "%.0f", s / n }')
	ratio=$(awk -v d="$d" -v n="$n" 'BEGIN { printf "%.2f", d / n }')
	verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8) ? "PASS" : "FAIL" }')
	echo "Mean requests/s: dprt $d, nginx $n; ratio dprt/nginx = $ratio"
	echo
	echo "VERDICT: $verdict (target ratio >= 0.8)"
	echo
	echo "## Raw wrk output"
	r=1
	while [ $r -le "$rounds" ]; do
		for s in dprt nginx; do
			echo
			echo "### round $r, $s"
			echo
			echo '```'
			cat "$tmp/$s.$r"
			echo '```'
		done
		r=$((r + 1))
	done
} >"$out"
