#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Cold starts on a GPU machine, from the bundle of tools/gpu-bundle.sh
# (carry gpu/): the cold-start tests, the coldstart benchmark of the
# paper's 8 models in every mode on GPU 0, PyTorch's pinned cold start for
# comparison, and `dprt plan` profiling a package on the GPU; with
# COLD_PT_GPUS="0 1 ..." also the PT benchmark over those GPUs (staged, and
# with COLD_PT_DIRECT_MODELS set, pt+dha with direct helper copies too).
#
#   bench/coldstart.sh OUTDIR
#
# Logs in OUTDIR: machine.txt, test_cold.log, coldstart.log,
# coldstart_pt.log, coldstart_direct.log, torch_cold.log, plan.log;
# summary.txt last.
# Environment: COLD_MODELS (default the 8), COLD_MODES (default all),
# COLD_ARGS (extra coldstart options, e.g. "-n 100"), COLD_ONE=0 (no 1-GPU
# benchmark), COLD_PT_GPUS, COLD_PT_MODELS, COLD_PT_MODES, COLD_TESTS=0,
# COLD_TORCH=0, COLD_PLAN=0, COLD_TIME (seconds per benchmark, 320).

set -u
[ $# -ge 1 ] || { echo "usage: bench/coldstart.sh OUTDIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
gpu=$root/gpu
if [ ! -x "$gpu/bin/coldstart" ]; then
	tar -C "$gpu" -xJf "$gpu/bundle.tar.xz" || exit 2
fi
export LD_LIBRARY_PATH="$gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DPRT_REQUIRE_GPU=1
models=${COLD_MODELS:-resnet50,bert-base,bert-large,gpt2,roberta-base,resnet101,roberta-large,gpt2-medium}
modes=${COLD_MODES:-all}
: >"$out/summary.txt"

{
	date -u
	uname -srm
	nvidia-smi --query-gpu=index,name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv 2>&1
	nvidia-smi topo -m 2>&1
} >"$out/machine.txt"

step()
{
	name=$1
	shift
	t0=$(date +%s)
	"$@" >"$out/$name.log" 2>&1
	rc=$?
	echo "$name: exit $rc, $(($(date +%s) - t0)) s" >>"$out/summary.txt"
}

if [ "${COLD_TESTS:-1}" = 1 ]; then
	step test_cold timeout 120 "$gpu/bin/test_cuda" --jobs 1 --verbose --filter 'cuda_cold/*'
fi
if [ "${COLD_ONE:-1}" = 1 ]; then
	step coldstart timeout "${COLD_TIME:-320}" "$gpu/bin/coldstart" -m "$models" -e "$modes" \
		-d 0 -c 1000 ${COLD_ARGS:-}
fi
if [ -n "${COLD_PT_GPUS:-}" ]; then
	# shellcheck disable=SC2086
	step coldstart_pt timeout "${COLD_TIME:-320}" "$gpu/bin/coldstart" \
		-m "${COLD_PT_MODELS:-$models}" -e "${COLD_PT_MODES:-pipeline,pt,pt+dha,dprt,deepplan-v1}" \
		-d $COLD_PT_GPUS ${COLD_ARGS:-}
fi
if [ -n "${COLD_PT_GPUS:-}" ] && [ -n "${COLD_PT_DIRECT_MODELS:-}" ]; then
	# shellcheck disable=SC2086
	step coldstart_direct env DPRT_PT_DIRECT=1 timeout 120 "$gpu/bin/coldstart" \
		-m "$COLD_PT_DIRECT_MODELS" -e pt+dha -d $COLD_PT_GPUS ${COLD_ARGS:-}
fi
if [ "${COLD_TORCH:-1}" = 1 ]; then
	(cd "$root/bench" && step torch_cold timeout 70 python3 torch_cold.py \
		--models bert-large,bert-base,resnet50)
fi
if [ "${COLD_PLAN:-1}" = 1 ] && [ -x "$gpu/bin/dprt" ]; then
	step plan sh -c "'$gpu/bin/dprt' zoo bert-base -o /tmp/cold-models >/dev/null &&
		timeout 60 '$gpu/bin/dprt' plan /tmp/cold-models/bert-base --gpus 0 --mode all \
		--save-profile '$out/bert-base.dpprof' --show | grep -v '^ *[0-9]'"
fi

grep -E "Assertion|FAIL|CRASH|\[(PASS|FAIL)|Synthesis|profile of" "$out/test_cold.log" 2>/dev/null | head -40
cat "$out"/coldstart*.log 2>/dev/null | grep -v "^$"
cat "$out/torch_cold.log" "$out/plan.log" 2>/dev/null | tail -30
cat "$out/summary.txt"
