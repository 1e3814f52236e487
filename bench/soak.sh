#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/soak.sh: a soak run of a real ./dprt server under mixed traffic for
# --duration seconds: valid load (build/bench/loadgen, answers checked, in
# consecutive slices), invalid requests that must each get their 4xx,
# oversized ones (413), repository churn (unload and load of model c0,
# versions 1 and 2 in turn) and evictions (more bert-tiny instances than the
# --gpu-mem-limit holds). bench/soak.py drives the traffic, samples the
# server's RSS and writes the report: summary.md (rules, totals, RSS over
# time, p99 over time, invalid requests), samples.csv, slices.csv,
# result.json, raw/ (every loadgen slice's output and JSON), server.log and
# commands.txt, into --out (default bench/results/soak-<gpu|cpu>-<date>).
#
# Exits 0 if the run passed, 1 if it failed (the rules are in summary.md),
# 2 on a usage error.
#
# Usage:
#   bench/soak.sh                          60 s on --gpus cpu:2
#   bench/soak.sh --gpus 0                 an hour on GPU 0
#   bench/soak.sh --duration 30 --slice 5 --out /tmp/soak

set -u

root=$(cd "$(dirname "$0")/.." && pwd)
dprt=$root/dprt
loadgen=$root/build/bench/loadgen
gpus=cpu:2
duration=
slice=10
sample=5
instances=6
rate=50
limit=
out=

usage()
{
	cat <<EOF
Usage: bench/soak.sh [OPTION]...
  --duration SEC   how long the traffic runs (default 60 on the CPU backend,
                   3600 on GPUs)
  --gpus SPEC      the server's --gpus: cpu:N or GPU indices (default cpu:2)
  --out DIR        where the report goes (default
                   bench/results/soak-<gpu|cpu>-<date>)
  --slice SEC      length of each loadgen run (default 10); the first one is
                   the warm-up whose RSS the end is held to
  --sample SEC     RSS sampling period (default 5)
  --instances N    bert-tiny instances m0..m<N-1> under valid load (default 6)
  --rate R         valid requests/s (default 50)
  --mem-limit B    the server's --gpu-mem-limit in bytes (default: room for
                   three bert-tiny instances on each device, 1900000)
  --dprt PATH      the server binary (default ./dprt)
  --loadgen PATH   the load generator (default build/bench/loadgen)
EOF
}

die()
{
	echo "soak.sh: $*" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--duration | --gpus | --out | --slice | --sample | --instances | --rate | --mem-limit | \
		--dprt | --loadgen)
		[ $# -ge 2 ] || die "$1 needs a value"
		v=$2
		case $1 in
		--duration) duration=$v ;;
		--gpus) gpus=$v ;;
		--out) out=$v ;;
		--slice) slice=$v ;;
		--sample) sample=$v ;;
		--instances) instances=$v ;;
		--rate) rate=$v ;;
		--mem-limit) limit=$v ;;
		--dprt) dprt=$v ;;
		--loadgen) loadgen=$v ;;
		esac
		shift 2
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done

[ -x "$dprt" ] || die "no dprt binary at $dprt (build it with 'ninja')"
[ -x "$loadgen" ] || die "no loadgen at $loadgen (build it with 'ninja')"
case $instances in '' | *[!0-9]*) die "--instances takes a number" ;; esac
[ "$instances" -ge 2 ] || die "--instances takes 2 or more"
case $gpus in cpu*) kind=cpu ;; *) kind=gpu ;; esac
if [ -z "$duration" ]; then
	duration=60
	[ $kind = cpu ] || duration=3600
fi
limit=${limit:-1900000}
[ -n "$out" ] || out=$root/bench/results/soak-$kind-$(date -u +%Y%m%d-%H%M)
mkdir -p "$out/raw" || exit 1
out=$(cd "$out" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/dprt-soak.XXXXXX") || exit 1
srv=
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM

# The repository: m0..m<N-1> and c0 (versions 1 and 2), one bert-tiny each.
"$dprt" zoo bert-tiny -o "$work/base" >"$out/raw/zoo.out" 2>&1 ||
	{ cat "$out/raw/zoo.out" >&2; die "dprt zoo bert-tiny failed"; }
pkg=$work/base/bert-tiny/1/model.dpk
i=0
while [ $i -lt "$instances" ]; do
	mkdir -p "$work/repo/m$i/1"
	ln -s "$pkg" "$work/repo/m$i/1/model.dpk"
	i=$((i + 1))
done
for v in 1 2; do
	mkdir -p "$work/repo/c0/$v"
	ln -s "$pkg" "$work/repo/c0/$v/model.dpk"
done

set -- --gpus "$gpus" --listen 127.0.0.1:0 --models "$work/repo" --gpu-mem-limit "$limit" \
	--max-body 1M --max-activation 16M
{
	echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -n), $kind"
	echo "$dprt $*"
	echo "python3 $root/bench/soak.py --url URL --pid PID --out $out --duration $duration" \
		"--slice $slice --sample $sample --instances $instances --rate $rate"
} >"$out/commands.txt"
"$dprt" "$@" >"$out/server.log" 2>&1 &
srv=$!
port=
t=0
while [ -z "$port" ] && [ $t -lt 300 ]; do
	sleep 0.1
	port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$out/server.log")
	kill -0 $srv 2>/dev/null || break
	t=$((t + 1))
done
if [ -z "$port" ]; then
	tail -n 20 "$out/server.log" >&2
	echo "soak.sh: the server did not start" >&2
	exit 1
fi

python3 "$root/bench/soak.py" --url "http://127.0.0.1:$port" --pid $srv --out "$out" \
	--loadgen "$loadgen" --duration "$duration" --slice "$slice" --sample "$sample" \
	--instances "$instances" --rate "$rate" --label "$kind, --gpus $gpus, $(uname -n)" \
	--server-cmd "dprt $*"
rc=$?

if kill -0 $srv 2>/dev/null; then
	kill -TERM $srv
	wait $srv
	st=$?
	srv=
	if [ $st -ne 0 ]; then
		echo "soak.sh: FAIL: the server exited $st after SIGTERM" | tee -a "$out/summary.md" >&2
		rc=1
	fi
else
	wait $srv
	echo "soak.sh: FAIL: the server died (exit $?)" | tee -a "$out/summary.md" >&2
	srv=
	rc=1
fi
# Paths as the repository names them.
for f in "$out/commands.txt" "$out/summary.md"; do
	sed "s|$root/||g" "$f" >"$f.tmp" && mv "$f.tmp" "$f"
done
echo "soak.sh: report in $out/summary.md"
[ $rc -eq 0 ] || exit 1
exit 0
