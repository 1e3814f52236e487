#!/bin/sh
# SPDX-License-Identifier: MIT
# Serving on GPUs, end to end, on a GPU machine: the self-contained bundle's
# dprt serves zoo models on --gpus $GPUS; a stdlib-Python client checks cold
# and warm answers against the CPU backend and reads /metrics; SIGTERM must
# drain and exit 0. Usage (GPU machine, gpu/ carried):
#   sh bench/serve_gpu.sh OUTDIR [GPUS]      (GPUS default 0-3)
set -eu
out=${1:?usage: serve_gpu.sh OUTDIR [GPUS]}
gpus=${2:-0-3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
[ -x gpu/bin/dprt ] || tar -xJf gpu/bundle.tar.xz -C gpu
dprt=$PWD/gpu/bin/dprt
repo=$(mktemp -d)
for m in bert-base gpt2 resnet50; do
	"$dprt" zoo $m -o "$repo" >>"$out/serve_gpu.log" 2>&1
done
"$dprt" zoo bert-base --dtype fp16 -o "$repo/fp16.dpk" >>"$out/serve_gpu.log" 2>&1
mkdir -p "$repo/bert-base-fp16/1" && mv "$repo/fp16.dpk" "$repo/bert-base-fp16/1/model.dpk"
nvidia-smi -L >>"$out/serve_gpu.log" 2>&1 || true
"$dprt" --gpus "$gpus" --listen 127.0.0.1:9000 --models "$repo" >"$out/server.log" 2>&1 &
pid=$!
python3 bench/serve_client.py --dprt "$dprt" --repo "$repo" --url http://127.0.0.1:9000 \
	2>&1 | tee "$out/client.log"
kill -TERM $pid
rc=0
wait $pid || rc=$?
echo "server exit status after SIGTERM: $rc" | tee -a "$out/client.log"
tail -n 30 "$out/server.log"
rm -rf "$repo"
[ "$rc" -eq 0 ]
