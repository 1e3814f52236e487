#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The short follow-up of bench/warm.sh after a change to the GPU paths:
# the criterion tests, the full-size check of the 16-bit transformers
# (attention paths), dprt's warm latency with per-node profiles (-P) for
# the fp16 models and the fp32 ResNets beside PyTorch's for the same
# models in the same call, and the GELU-epilogue comparison for GPT-2.
# Output files as bench/warm.sh's (summary.md last); latency rows not
# rerun here keep their values from a full run on another machine, so
# compare ratios, not times, across the two.
#
# Usage: bench/warm_recheck.sh OUTDIR

set -u
[ $# -ge 1 ] || { echo "usage: bench/warm_recheck.sh OUTDIR" >&2; exit 2; }
out=$1
all=resnet50,resnet101,bert-base,bert-large,roberta-base,roberta-large,gpt2,gpt2-medium
tf16=bert-base,bert-large,roberta-base,roberta-large,gpt2,gpt2-medium
root=$(cd "$(dirname "$0")/.." && pwd)
gpu=${GPU_DIR:-$root/gpu} # GPU_DIR: a bundle other than gpu/
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -x "$gpu/bin/bench_cuda" ]; then
	tar -C "$gpu" -xJf "$gpu/bundle.tar.xz" 2>/dev/null ||
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
			"$gpu/bundle.tar.xz" "$gpu" || exit 2
fi
export LD_LIBRARY_PATH="$gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export DPRT_REQUIRE_GPU=1 PYTHONUNBUFFERED=1
status=0
{
	date -u
	uname -srm
	nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,pstate \
		--format=csv 2>&1
	echo "CPUs: $(nproc)"
} >"$out/machine.txt"

step()
{
	name=$1 log=$2 lim=$3
	shift 3
	start=$(date +%s)
	echo "### $name: $*" >>"$out/$log"
	timeout "$lim" "$@" >>"$out/$log" 2>&1
	rc=$?
	echo "step $name: exit $rc, $(($(date +%s) - start)) s" >>"$out/machine.txt"
	[ $rc -eq 0 ] || status=1
}

step dprt-fp16 dprt.log 60 "$gpu/bin/bench_cuda" -V default -d fp16 -n 100 -P -m "$all"
step dprt-fp32 dprt.log 30 "$gpu/bin/bench_cuda" -V default -d fp32 -n 100 -P -m resnet50,resnet101
step nogelu dprt.log 30 env DPRT_CUDA_LT_GELU=0 "$gpu/bin/bench_cuda" -V nogelu -E -n 100 \
	-d fp16 -m gpt2,gpt2-medium
step torch-fp16 torch.log 90 python3 "$root/bench/torch_warm.py" --dtypes fp16 --runs 100 \
	--warmup 10 --models "$all"
step torch-fp32 torch.log 40 python3 "$root/bench/torch_warm.py" --dtypes fp32 --runs 100 \
	--warmup 10 --models resnet50,resnet101
step test_cuda test_cuda.log 90 "$gpu/bin/test_cuda" --jobs 1 --verbose \
	--filter 'cuda_@(ops|models|mem|dev)/*'
step fullsize-paper fullsize.log 90 "$gpu/bin/fullsize_cuda" -d fp16 -c paper -m "$tf16"
step fullsize-b4 fullsize.log 40 "$gpu/bin/fullsize_cuda" -d fp16 -c b4 -m bert-base,gpt2

python3 "$root/bench/warm_summary.py" "$out" >"$out/summary.md" 2>&1 || status=1
cat "$out/machine.txt"
grep -E "^PROFILE .*(total|%)" "$out/dprt.log" | grep -E "gpt2|bert-base|resnet50" | head -n 60
cat "$out/summary.md"
exit $status
