#!/bin/sh
# SPDX-License-Identifier: MIT
# Figure 12 of DeepPlan: serving N instances of one model (bert-base) at a
# fixed open-loop rate (100 req/s, Poisson, uniform over the instances),
# N = 20..200, one dprt server per cold-start mode and N, under a device
# memory limit that holds only some of the instances, so requests for the
# others are cold starts (evictions). For each (mode, N) it runs
# build/bench/loadgen and keeps its text and JSON outputs; then
# bench/fig_report.py writes summary.md (p99 latency and goodput at the SLO
# per N and mode) and, with matplotlib, fig.png.
#
#   sh bench/fig12.sh [options]
#     --tiny            bert-tiny on --gpus cpu:1 under a 2 MB limit (the CI
#                       check: runs in well under a minute with --ns/--duration)
#     --model M         zoo model of the instances (default bert-base)
#     --seq S           sequence length of the requests (default 384; gpt2
#                       1024; tiny models 64)
#     --rate R          requests/s (default 100)
#     --ns "20 40 .."   instance counts (default 20 40 .. 200)
#     --modes "..."     cold modes (default: load pipeline deepplan dprt;
#                       dprt is the server's default, its own planner)
#     --gpus G          devices of the server (default 0; --tiny: cpu:1)
#     --mem-limit SIZE  --gpu-mem-limit per device (default 16G; --tiny: 2M)
#     --host-mem-limit SIZE  passed to the server (default: none)
#     --duration S      measured seconds per run (default 30; --tiny: 3)
#     --warmup S        seconds before the measurement (default 5; --tiny: 1)
#     --slo MS          goodput's SLO (default 100)
#     --out DIR         results (default bench/results/NAME-<gpu>-<date>)
#     --name NAME       figure name in the default --out (default fig12)
#     --dprt PATH, --loadgen PATH  binaries (default ./dprt and
#                       build/bench/loadgen, else gpu/bin/ of tools/gpu-bundle.sh)
# Exit status 1 if a server fails to start, exits badly after SIGTERM, or
# loadgen reports a wrong answer (errors such as 503s are data, kept in the
# outputs and the summary).
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
tiny=0 model='' seq='' rate=100 ns='' modes="load pipeline deepplan dprt" gpus='' mem='' hostmem=''
duration='' warmup='' slo=100 out='' name=fig12 dprt='' loadgen=''
while [ $# -gt 0 ]; do
	case $1 in
	--tiny) tiny=1 ;;
	--model) model=$2; shift ;;
	--seq) seq=$2; shift ;;
	--rate) rate=$2; shift ;;
	--ns) ns=$2; shift ;;
	--modes) modes=$2; shift ;;
	--gpus) gpus=$2; shift ;;
	--mem-limit) mem=$2; shift ;;
	--host-mem-limit) hostmem=$2; shift ;;
	--duration) duration=$2; shift ;;
	--warmup) warmup=$2; shift ;;
	--slo) slo=$2; shift ;;
	--out) out=$2; shift ;;
	--name) name=$2; shift ;;
	--dprt) dprt=$2; shift ;;
	--loadgen) loadgen=$2; shift ;;
	-h | --help) sed -n '3,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "fig12.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
	esac
	shift
done
if [ $tiny = 1 ]; then
	: "${model:=bert-tiny}" "${gpus:=cpu:1}" "${mem:=2M}" "${duration:=3}" "${warmup:=1}"
	: "${ns:=4 8}"
else
	: "${model:=bert-base}" "${gpus:=0}" "${mem:=16G}" "${duration:=30}" "${warmup:=5}"
	: "${ns:=20 40 60 80 100 120 140 160 180 200}"
fi
case $model in
*-tiny) : "${seq:=64}" ;;
gpt2*) : "${seq:=1024}" ;;
*) : "${seq:=384}" ;;
esac
# shellcheck source=bench/serve.inc
. "$root/bench/serve.inc"
if [ -z "$dprt" ]; then
	dprt=$root/dprt
	[ -x "$dprt" ] || { bundle; dprt=$root/gpu/bin/dprt; }
fi
if [ -z "$loadgen" ]; then
	loadgen=$root/build/bench/loadgen
	[ -x "$loadgen" ] || { bundle; loadgen=$root/gpu/bin/loadgen; }
fi
for b in "$dprt" "$loadgen"; do
	[ -x "$b" ] || { echo "fig12.sh: no $b (build with ninja)" >&2; exit 1; }
done
machine_of "$gpus"
: "${out:=bench/results/$name-$gname-$(date -u +%Y-%m-%d)}"
mkdir -p "$out/raw" || exit 1
out=$(cd "$out" && pwd)
echo "$machine" >"$out/machine.txt"
: >"$out/commands.txt"
work=$(mktemp -d "${TMPDIR:-/tmp}/fig12.XXXXXX") || exit 1
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
rc=0

log()
{
	echo "$*" >>"$out/commands.txt"
}

# The package once; per N a repository m0..m<N-1> of links to it (plans
# made with `dprt plan` on GPUs are copied beside each link).
"$dprt" zoo "$model" -o "$work/base" >"$out/setup.log" 2>&1 || { cat "$out/setup.log"; exit 1; }
log "$dprt zoo $model -o BASE"
base=$work/base/$model/1
case $gpus in
cpu*) ;;
*)
	for m in $modes; do
		[ "$m" = load ] && continue
		log "$dprt plan BASE --gpus ${gpus%%[,-]*} --mode $m"
		"$dprt" plan "$work/base/$model" --gpus "${gpus%%[,-]*}" --mode "$m" >>"$out/setup.log" 2>&1 ||
			echo "fig12.sh: dprt plan --mode $m failed (the server will plan)" >&2
	done
	;;
esac

make_repo()
{
	r=$work/repo-$1
	rm -rf "$r"
	i=0
	while [ $i -lt "$1" ]; do
		mkdir -p "$r/m$i/1"
		ln -s "$base/model.dpk" "$r/m$i/1/model.dpk"
		[ -d "$base/plans" ] && cp -r "$base/plans" "$r/m$i/1/plans"
		i=$((i + 1))
	done
}

# start_server MODE N: a server on a free port; sets srv and port.
start_server()
{
	slog=$out/raw/server-$1-$2.log
	set -- --gpus "$gpus" --listen 127.0.0.1:0 --models "$work/repo-$2" --gpu-mem-limit "$mem" \
		--cold-mode "$1"
	[ -n "$hostmem" ] && set -- "$@" --host-mem-limit "$hostmem"
	log "$dprt $*"
	serve_start "$slog" "$@"
}

for n in $ns; do
	make_repo "$n"
	for m in $modes; do
		if ! start_server "$m" "$n"; then
			echo "fig12.sh: server ($m, N=$n) did not start:" >&2
			tail -n 20 "$out/raw/server-$m-$n.log" >&2
			rc=1
			srv=
			continue
		fi
		# A server prepares its models in the background after it starts
		# (plans found, each model made and warmed once); a server in use
		# has done that long before, so the load waits for it.
		[ "$m" = load ] || python3 "$root/bench/wait_prepared.py" "http://127.0.0.1:$port" "$n" \
			>"$out/raw/wait-$m-$n.txt" 2>&1
		set -- --url "http://127.0.0.1:$port" --model-prefix m --instances "$n" \
			--rate "$rate" --warmup "$warmup" --duration "$duration" --seq "$seq" --check \
			--slo "$slo" --max-errors 1000000000 --wait 600 --json "$out/raw/$m-$n.json"
		log "$loadgen $*"
		"$loadgen" "$@" >"$out/raw/$m-$n.txt" 2>&1 || {
			echo "fig12.sh: loadgen ($m, N=$n) failed:" >&2
			tail -n 5 "$out/raw/$m-$n.txt" >&2
			rc=1
		}
		echo "$m N=$n: $(grep -E '^(latency|goodput)' "$out/raw/$m-$n.txt" | tr '\n' ' ')"
		# The server's own counters of the run (evictions, standby hits,
		# model creations, bytes loaded): where cold-start time went.
		python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
			"http://127.0.0.1:$port/metrics" >"$out/raw/metrics-$m-$n.txt" 2>&1
		kill -TERM $srv
		wait $srv || { echo "fig12.sh: server ($m, N=$n) exit status $?" >&2; rc=1; }
		srv=
	done
	rm -rf "$work/repo-$n"
done
python3 "$root/bench/fig_report.py" --title "$name: $model, $rate req/s, $gpus, limit $mem" \
	--slo "$slo" "$out" || rc=1
cat "$out/summary.md"
exit $rc
