#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The paper's Figure 10 and beyond, on a 4-GPU machine, from the bundle of
# tools/gpu-bundle.sh (carry gpu/):
#
#   bench/fig10.sh OUTDIR [PART]
#
# PART (default all) picks what runs, so the whole figure can be split over
# calls of one warm GPU machine:
#   fp32   coldstart of the 8 models, fp32, every mode (demand, pipeline,
#          deepplan, pt and pt+dha on 2 and 4 GPUs, dprt and deepplan-v1 on
#          1, 2 and 4), GPU 0 the target, GPUs 1-3 helpers; then PyTorch's
#          cold start of the 8 models, fp32, from pinned and from pageable
#          host memory (so each comparison comes from one call)
#   fp16   the same in fp16
#   plans  `dprt plan --gpus 0-3 --show` of the 8 models (fp32), profiles
#          saved to OUTDIR/profiles/ for planning 1, 2 and 4 GPUs anywhere
#   tests  the cold-start criterion tests
#   report bench/fig10_report.py over OUTDIR (markdown table and PNG); with
#          FIG10_RESULTS=bench/results also bench/results/fig10-<GPU>.md
#          (with the raw logs) and .png, for a run whose logs were fetched
#   all    tests fp32 fp16 plans report
#
# Logs: OUTDIR/machine.txt, coldstart-fp32.log, coldstart-fp16.log,
# torch_cold-fp32.log, torch_cold-fp16.log, plan-*.log, test_cold.log,
# summary.txt.
# Environment: FIG10_MODELS (default the 8), FIG10_ARGS (coldstart run
# counts, default "-w 5 -n 40 -W 3 -N 15"), FIG10_TORCH_ARGS (default
# "--warm 3 --runs 20"), FIG10_GPUS (default "0 1 2 3", the target
# first), FIG10_MODES (coldstart's -e).

set -u
[ $# -ge 1 ] || { echo "usage: bench/fig10.sh OUTDIR [fp32|fp16|plans|tests|report|all]" >&2; exit 2; }
out=$1
part=${2:-all}
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
gpu=$root/gpu
if [ "$part" != report ] && [ ! -x "$gpu/bin/coldstart" ]; then
	tar -C "$gpu" -xJf "$gpu/bundle.tar.xz" || exit 2
fi
export LD_LIBRARY_PATH="$gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DPRT_REQUIRE_GPU=1
models=${FIG10_MODELS:-resnet50,resnet101,bert-base,bert-large,roberta-base,roberta-large,gpt2,gpt2-medium}
modes=demand@1,pipeline@1,deepplan@1,deepplan-v1@1,dprt@1
modes=$modes,pt@2,pt+dha@2,dprt@2,deepplan-v1@2,pt@4,pt+dha@4,dprt@4,deepplan-v1@4
modes=${FIG10_MODES:-$modes}
gpus=${FIG10_GPUS:-0 1 2 3}
args=${FIG10_ARGS:--w 5 -n 40 -W 3 -N 15}
rc=0

step()
{
	name=$1
	shift
	t0=$(date +%s)
	"$@" >"$out/$name.log" 2>&1
	r=$?
	[ $r -eq 0 ] || rc=1
	echo "$name: exit $r, $(($(date +%s) - t0)) s" >>"$out/summary.txt"
}

machine()
{
	[ -s "$out/machine.txt" ] && return
	{
		date -u
		uname -srm
		nproc
		nvidia-smi --query-gpu=index,name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv 2>&1
		nvidia-smi topo -m 2>&1
	} >"$out/machine.txt"
}

coldstart()
{
	# shellcheck disable=SC2086
	step "coldstart-$1" timeout 400 "$gpu/bin/coldstart" -t "$1" -m "$models" -e "$modes" \
		-d $gpus $args
}

torch()
{
	step "torch_cold-$1" sh -c "cd '$root/bench' && timeout 300 python3 torch_cold.py \
		--models $models --dtypes $1 --memory pinned,pageable \
		${FIG10_TORCH_ARGS:---warm 3 --runs 20}"
}

plans()
{
	mkdir -p "$out/profiles"
	for m in $(echo "$models" | tr , ' '); do
		step "plan-$m" sh -c "'$gpu/bin/dprt' zoo $m -o /tmp/fig10-models >/dev/null &&
			timeout 120 '$gpu/bin/dprt' plan /tmp/fig10-models/$m --gpus $(echo $gpus | tr ' ' ,) --mode all \
			--plans /tmp/fig10-plans --save-profile '$out/profiles/$m.dpprof' --show"
		rm -rf "/tmp/fig10-models/$m"
	done
}

run_part()
{
	case $1 in
	fp32 | fp16) machine; coldstart "$1"; torch "$1" ;;
	plans) machine; plans ;;
	tests) step test_cold timeout 300 "$gpu/bin/test_cuda" --jobs 1 --verbose --filter 'cuda_cold/*' ;;
	report) python3 "$root/bench/fig10_report.py" "$out" ${FIG10_RESULTS:+--results "$FIG10_RESULTS"} ;;
	all) for p in tests fp32 fp16 plans report; do run_part $p; done ;;
	*) echo "fig10.sh: unknown part $1" >&2; exit 2 ;;
	esac
}

run_part "$part"
cat "$out/summary.txt" 2>/dev/null
exit $rc
