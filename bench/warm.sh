#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The CUDA backend's evidence in one GPU-machine call: full-size
# correctness against the CPU backend, memory over 10,000 runs, the
# transfer and GEMM ceilings, and dprt's warm latency beside PyTorch's
# (eager and CUDA graph) measured on the same machine in the same call.
# Needs gpu/ from tools/gpu-bundle.sh (carried) and python3 with torch,
# torchvision and transformers (the GPU machine's).
#
# Writes to OUTDIR (8 files, the most a device call returns):
#   machine.txt    GPU, driver, clocks, CPU; each step's exit status and time
#   bandwidth.log  bin/bandwidth: copies, DHA, d2d, peer, cuBLAS GEMMs
#   dprt.log       bin/bench_cuda, fp16 and fp32, all paths on ("default"),
#                  then all off ("legacy": DPRT_CUDA_LT=0 DPRT_CUDA_FLASH=0
#                  DPRT_CUDNN_FIND=0), for the improvement
#   torch.log      bench/torch_warm.py
#   test_cuda.log  the criterion tests (tiny models, every op)
#   fullsize.log   bin/fullsize_cuda: paper shapes, then batch 4 x 128 tokens;
#                  10,000-run memory check
#   cli.log        dprt zoo + dprt run --gpus 0 against the CPU backend
#   summary.md     bench/warm_summary.py over the logs (printed last)
#
# Usage: bench/warm.sh OUTDIR [MODELS]   (MODELS: comma list, default all 8)
# Exits 1 if a step failed.

set -u
[ $# -ge 1 ] || { echo "usage: bench/warm.sh OUTDIR [MODELS]" >&2; exit 2; }
out=$1
models=${2:-resnet50,resnet101,bert-base,bert-large,roberta-base,roberta-large,gpt2,gpt2-medium}
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
	nvidia-smi topo -m 2>&1 | head -n 12
	echo "CPUs: $(nproc); $(grep -m1 'model name' /proc/cpuinfo)"
	grep MemTotal /proc/meminfo
	ls /usr/local/cuda/lib64/libcublas.so.* /usr/lib/x86_64-linux-gnu/libcudnn.so.* 2>&1
	python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1
	echo "models: $models"
} >"$out/machine.txt"

# step NAME LOG SECONDS CMD...: run, append output to LOG, record status.
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

step bandwidth bandwidth.log 90 "$gpu/bin/bandwidth"
step dprt-fp16 dprt.log 100 "$gpu/bin/bench_cuda" -V default -d fp16 -m "$models"
step dprt-fp32 dprt.log 120 "$gpu/bin/bench_cuda" -V default -d fp32 -m "$models"
step torch torch.log 200 python3 "$root/bench/torch_warm.py" --models "$models"
step test_cuda test_cuda.log 100 "$gpu/bin/test_cuda" --jobs 1 --verbose \
	--filter 'cuda_@(ops|models|mem|dev)/*'
step fullsize-paper fullsize.log 200 "$gpu/bin/fullsize_cuda" -c paper -m "$models" -r 10000
step fullsize-b4 fullsize.log 100 "$gpu/bin/fullsize_cuda" -c b4 -m "$models"
for dt in fp16 fp32; do
	step "legacy-$dt" dprt.log 60 env DPRT_CUDA_LT=0 DPRT_CUDA_FLASH=0 DPRT_CUDNN_FIND=0 \
		"$gpu/bin/bench_cuda" -V legacy -E -n 100 -d "$dt" -m "$models"
done
step cli cli.log 60 sh "$root/bench/cli_check.sh" "$gpu/bin/dprt"

python3 "$root/bench/warm_summary.py" "$out" >"$out/summary.md" 2>&1 || status=1
cat "$out/machine.txt"
cat "$out/summary.md"
exit $status
