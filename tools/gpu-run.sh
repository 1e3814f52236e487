#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Run every GPU test and benchmark binary that tools/gpu-bundle.sh put in
# gpu/, on a GPU machine, and write their logs to OUTDIR:
#
#   machine.txt       GPU, driver, kernel (what gave the numbers)
#   test_cuda.log     the criterion tests, verbose; test_cuda.tap: TAP
#   bench_cuda_fp16.log, bench_cuda_fp32.log   the warm-latency benchmark
#
# The binaries come packed (gpu/bundle.tar.xz, from tools/gpu-bundle.sh):
# the first run unpacks them into gpu/bin and gpu/lib. bench/warm.sh runs
# the full-size checks and the benchmarks against PyTorch.
#   summary.txt       one line per binary: PASS/FAIL and its exit status
#
# Usage: tools/gpu-run.sh OUTDIR [criterion options, e.g. --filter 'cuda_ops/*']
# Environment: GPU_BENCH=0 skips the benchmark; GPU_SANITIZE=1 also runs the
# op tests under compute-sanitizer's memcheck and the kernels that use
# shared memory under its racecheck (memcheck.log, racecheck.log).
# Exits 1 if a test binary or benchmark failed.

set -u
[ $# -ge 1 ] || { echo "usage: tools/gpu-run.sh OUTDIR [criterion options]" >&2; exit 2; }
outdir=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
# From the repository (tools/) or from inside the bundle (gpu/).
if [ -f "$here/bundle.tar.xz" ] || [ -d "$here/bin" ]; then gpu=$here; else
	gpu=$(cd "$here/../gpu" && pwd)
fi
# tools/gpu-bundle.sh packs the binaries; unpack them once.
if [ ! -x "$gpu/bin/test_cuda" ] && [ -f "$gpu/bundle.tar.xz" ]; then
	tar -C "$gpu" -xJf "$gpu/bundle.tar.xz" 2>/dev/null ||
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
			"$gpu/bundle.tar.xz" "$gpu" || exit 2
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
export DPRT_REQUIRE_GPU=1
export LD_LIBRARY_PATH="$gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
	date -u
	uname -srm
	nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.max.sm \
		--format=csv 2>&1
	ls /usr/local/cuda/lib64/libcublas.so.* /usr/lib/x86_64-linux-gnu/libcudnn.so.* 2>&1
} >"$outdir/machine.txt"

status=0
: >"$outdir/summary.txt"

run()
{
	name=$1
	shift
	start=$(date +%s)
	"$@" >"$outdir/$name.log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	if [ $rc -eq 0 ]; then
		echo "PASS $name (${secs}s)" >>"$outdir/summary.txt"
	else
		echo "FAIL $name (exit $rc, ${secs}s)" >>"$outdir/summary.txt"
		status=1
	fi
}

lim()
{
	if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi
}

# One job: the memory test reads device-wide free memory.
run test_cuda lim "${GPU_TEST_TIMEOUT:-330}" "$gpu/bin/test_cuda" --jobs 1 --verbose \
	--tap="$outdir/test_cuda.tap" "$@"
if [ "${GPU_BENCH:-1}" != 0 ]; then
	run bench_cuda_fp16 lim 150 "$gpu/bin/bench_cuda" -d fp16
	run bench_cuda_fp32 lim 90 "$gpu/bin/bench_cuda" -d fp32 \
		-m resnet-tiny,bert-tiny,resnet50,bert-base
fi

if [ "${GPU_SANITIZE:-0}" = 1 ]; then
	san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
	run memcheck lim 200 "$san" --tool memcheck --target-processes all \
		--error-exitcode 9 "$gpu/bin/test_cuda" --jobs 1 --filter 'cuda_ops/*'
	run racecheck lim 120 "$san" --tool racecheck --target-processes all \
		--error-exitcode 9 "$gpu/bin/test_cuda" --jobs 1 \
		--filter 'cuda_ops/@(position_ids|layernorm|softmax|attention|pooling)'
	grep -h -E "ERROR SUMMARY|RACECHECK SUMMARY|Synthesis" "$outdir/memcheck.log" \
		"$outdir/racecheck.log"
fi

# What a reader of the tail needs: failures in full, results, benchmarks.
grep -E -A4 "Assertion Failed|CRASH|Timed out|\[FAIL\]" "$outdir/test_cuda.log" | head -n 80
grep -E "^\[(PASS|FAIL|SKIP)|Synthesis|^GPU|hoststore_load:" "$outdir/test_cuda.log"
cat "$outdir"/bench_cuda_*.log 2>/dev/null
cat "$outdir/summary.txt"
exit $status
