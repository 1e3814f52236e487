#!/bin/sh
# SPDX-License-Identifier: MIT
# Cold requests end to end against the engine's isolated cold start, in one
# run: for each model, bench/coldstart's isolated cold start (dprt's plan,
# deepplan, pipeline), PyTorch's pinned cold start (bench/torch_cold.py, when
# torch can use the GPU), and a dprt server per cold mode with two instances
# of the model under a device memory limit that holds one, asked in turn
# (loadgen --round-robin, binary KServe, evenly spaced at a low rate), so
# that every request is a cold start with nothing queued. Reports per model
# and mode: the client-observed cold request (p50, mean), the server's own
# compute time of it, the first request after the server started, and the
# targets: cold request <= isolated + 0.5 ms; first request <= 1.2 x a later
# cold one; never slower than PyTorch's pinned cold start. Also, to tell the
# server's overhead from idling's: the isolated cold start paced at 10 per
# second (coldstart -g 100), and the first cold request after 1.5 s idle
# late in the server's life (a second loadgen run).
#
#   sh bench/cold_e2e.sh [options]
#     --models "a b"   zoo models (default: the eight paper models)
#     --modes "..."    server cold modes (default: dprt load)
#     --gpu G          the GPU (default 0)
#     --requests N     cold requests per (model, mode) (default 40)
#     --out DIR        results (default bench/results/cold-e2e-<gpu>-<date>)
#     --server-args "..."  more options for every server (e.g. -v: debug logs)
#     --no-baseline    skip the isolated and PyTorch baselines
#     --tiny           bert-tiny and resnet-tiny on --gpus cpu:1 (the CI check;
#                      no isolated or PyTorch baseline)
#     --dprt PATH, --loadgen PATH, --coldstart PATH  binaries (default ./dprt and
#                      build/bench/*, else gpu/bin/ of tools/gpu-bundle.sh)
# Exit status 1 if a server fails to start or exits badly, or loadgen sees a
# wrong answer or an error; the targets are reported, not enforced.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
models='' modes='dprt load' gpu=0 nreq=40 out='' tiny=0 dprt='' loadgen='' coldstart=''
sargs='' baseline=1
while [ $# -gt 0 ]; do
	case $1 in
	--models) models=$2; shift ;;
	--modes) modes=$2; shift ;;
	--gpu) gpu=$2; shift ;;
	--requests) nreq=$2; shift ;;
	--out) out=$2; shift ;;
	--tiny) tiny=1 ;;
	--server-args) sargs=$2; shift ;;
	--no-baseline) baseline=0 ;;
	--dprt) dprt=$2; shift ;;
	--loadgen) loadgen=$2; shift ;;
	--coldstart) coldstart=$2; shift ;;
	-h | --help) sed -n '3,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "cold_e2e.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
	esac
	shift
done
if [ $tiny = 1 ]; then
	: "${models:=bert-tiny resnet-tiny}"
	gpus=cpu:1
else
	: "${models:=resnet50 resnet101 bert-base bert-large roberta-base roberta-large gpt2 gpt2-medium}"
	gpus=$gpu
fi
# shellcheck source=bench/serve.inc
. "$root/bench/serve.inc"
pick()
{ # pick VAR DEFAULT: the build's binary, else the bundle's
	eval "v=\${$1}"
	[ -n "$v" ] && return
	if [ -x "$root/$2" ]; then
		eval "$1=\$root/\$2"
	else
		bundle
		eval "$1=\$root/gpu/bin/\$(basename \$2)"
	fi
}
pick dprt dprt
pick loadgen build/bench/loadgen
pick coldstart build/bench/coldstart
machine_of "$gpus"
: "${out:=bench/results/cold-e2e-$gname-$(date -u +%Y-%m-%d)}"
mkdir -p "$out/raw" || exit 1
out=$(cd "$out" && pwd)
echo "$machine" >"$out/machine.txt"
: >"$out/commands.txt"
work=$(mktemp -d "${TMPDIR:-/tmp}/cold_e2e.XXXXXX") || exit 1
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
rc=0
log()
{
	echo "$*" >>"$out/commands.txt"
}
seq_of()
{
	case $1 in
	*-tiny) echo 64 ;;
	gpt2*) echo 1024 ;;
	*) echo 384 ;;
	esac
}

# Baselines in the same run: the engine alone, and PyTorch.
if [ $tiny = 0 ] && [ $baseline = 1 ]; then
	list=$(echo $models | tr ' ' ',')
	log "$coldstart -m $list -e pipeline,deepplan,dprt -d $gpu -w 5 -n 30"
	"$coldstart" -m "$list" -e pipeline,deepplan,dprt -d "$gpu" -w 5 -n 30 \
		>"$out/raw/coldstart.log" 2>&1 || { echo "cold_e2e.sh: coldstart failed" >&2; rc=1; }
	# the same, paced like the server's requests (10 per second: 100 ms idle before each)
	log "$coldstart -m $list -e dprt -d $gpu -w 5 -n 20 -g 100"
	"$coldstart" -m "$list" -e dprt -d "$gpu" -w 5 -n 20 -g 100 \
		>"$out/raw/coldstart-paced.log" 2>&1 || { echo "cold_e2e.sh: coldstart -g failed" >&2; rc=1; }
	if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
		log "CUDA_VISIBLE_DEVICES=$gpu python3 bench/torch_cold.py --models $list --dtypes fp32 --memory pinned"
		CUDA_VISIBLE_DEVICES=$gpu python3 bench/torch_cold.py --models "$list" --dtypes fp32 \
			--memory pinned >"$out/raw/torch_cold.log" 2>&1 ||
			echo "cold_e2e.sh: torch_cold.py failed (no PyTorch column)" >&2
	fi
fi

start_server()
{ # start_server MODEL MODE LIMIT: sets srv and port
	slog=$out/raw/server-$1-$2.log
	set -- --gpus "$gpus" --listen 127.0.0.1:0 --models "$work/repo-$1" --gpu-mem-limit "$3" \
		--cold-mode "$2"
	# shellcheck disable=SC2086 # word-split on purpose
	[ -n "$sargs" ] && set -- "$@" $sargs
	log "$dprt $*"
	serve_start "$slog" "$@"
}

for m in $models; do
	"$dprt" zoo "$m" -o "$work/base" >>"$out/setup.log" 2>&1 || { tail -n 5 "$out/setup.log"; exit 1; }
	base=$work/base/$m/1
	if [ $tiny = 0 ]; then
		for md in $modes; do
			[ "$md" = load ] && continue
			"$dprt" plan "$work/base/$m" --gpus "$gpu" --mode "$md" >"$work/plan-$md.txt" 2>&1 ||
				echo "cold_e2e.sh: dprt plan $m --mode $md failed (the server will plan)" >&2
			cat "$work/plan-$md.txt" >>"$out/setup.log"
		done
	fi
	r=$work/repo-$m
	for i in 0 1; do
		mkdir -p "$r/a$i/1"
		ln -s "$base/model.dpk" "$r/a$i/1/model.dpk"
		[ -d "$base/plans" ] && cp -r "$base/plans" "$r/a$i/1/plans"
	done
	size=$(stat -L -c %s "$base/model.dpk")
	for md in $modes; do
		# room for one instance's device bytes (the package less the share
		# its plan reads in place, DHA) and what the other keeps while
		# evicted, not for two instances' device bytes
		dha=$(sed -n 's/.*DHA [^(]*(\([0-9.]*\)% of bytes.*/\1/p' "$work/plan-$md.txt" 2>/dev/null |
			head -n 1)
		dha=${dha:-0}
		limit=$(awk -v s="$size" -v d="$dha" 'BEGIN { printf "%dK", s * (1 - d / 100) * 1.9 / 1024 }')
		if ! start_server "$m" "$md" "$limit"; then
			echo "cold_e2e.sh: server ($m, $md) did not start:" >&2
			tail -n 20 "$out/raw/server-$m-$md.log" >&2
			rc=1 srv=
			continue
		fi
		# load mode too: on a GPU it is the engine's demand plan, prepared the same way
		[ $tiny = 1 ] && [ "$md" = load ] ||
			python3 "$root/bench/wait_prepared.py" "http://127.0.0.1:$port" 2 \
				>"$out/raw/wait-$m-$md.txt" 2>&1
		set -- --url "http://127.0.0.1:$port" --model-prefix a --instances 2 --round-robin \
			--rate 10 --uniform --warmup 0 --duration "$(echo "$nreq" | awk '{print $1 / 10}')" \
			--seq "$(seq_of "$m")" --check --wait 600 --json "$out/raw/$m-$md.json"
		log "$loadgen $*"
		"$loadgen" "$@" >"$out/raw/$m-$md.txt" 2>&1 || {
			echo "cold_e2e.sh: loadgen ($m, $md) failed:" >&2
			tail -n 5 "$out/raw/$m-$md.txt" >&2
			rc=1
		}
		# after the same idle time as before the first request (wait_prepared's
		# last second plus the client's start): what idling alone costs a cold
		# one; first the instance not resident now, so that it is a cold start
		first=$(python3 -c 'import re, sys, urllib.request
m = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
r = re.search(r"^dprt_model_resident\{model=\"a0\"[^}]*\} 1$", m, re.M)
print("a1,a0" if r else "a0,a1")' "http://127.0.0.1:$port/metrics" 2>/dev/null) || first=a0,a1
		sleep 1.5
		set -- --url "http://127.0.0.1:$port" --models "$first" --round-robin \
			--rate 10 --uniform --warmup 0 --duration 0.5 --seq "$(seq_of "$m")" --check \
			--json "$out/raw/$m-$md-idle.json"
		log "$loadgen $*"
		"$loadgen" "$@" >"$out/raw/$m-$md-idle.txt" 2>&1 || {
			echo "cold_e2e.sh: loadgen ($m, $md, after idle) failed:" >&2
			tail -n 5 "$out/raw/$m-$md-idle.txt" >&2
			rc=1
		}
		python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
			"http://127.0.0.1:$port/metrics" >"$out/raw/metrics-$m-$md.txt" 2>&1
		kill -TERM $srv
		wait $srv || { echo "cold_e2e.sh: server ($m, $md) exit status $?" >&2; rc=1; }
		srv=
	done
done
python3 "$root/bench/cold_e2e_report.py" "$out" "$models" "$modes" | tee "$out/summary.md"
exit $rc
