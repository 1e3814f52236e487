#!/bin/sh
# SPDX-License-Identifier: MIT
# Serving with cold starts by plan on one GPU, end to end, from the bundle
# of tools/gpu-bundle.sh (gpu/ carried). A repository of bert-base, gpt2
# and resnet50 (fp32); `dprt plan` stores a one-GPU dprt plan for bert-base
# and a pipeline plan for gpt2 (each with its profile), nothing for resnet50.
#  0. the default (dprt's planner): plans found when the models load, from
#     the stored plan, the stored profile, or a profile measured then;
#  1. --cold-mode auto: bert-base comes in by its stored plan, gpt2 by a
#     dprt plan made from its stored profile, resnet50 by a whole load;
#  2. --cold-mode deepplan: plans made from the stored profiles, resnet50
#     profiled on the GPU at its first cold start (and stored); a third
#     server start finds them all.
# Each server runs under a --gpu-mem-limit that holds one model, so the
# client's rounds over the models make every request a cold start (kept
# cold models come back by their plans); every answer is checked against
# the CPU backend; SIGTERM must drain and exit 0.
#   sh bench/serve_cold.sh OUTDIR [GPU]
set -u
out=${1:?usage: serve_cold.sh OUTDIR [GPU]}
gpu=${2:-0}
cd "$(dirname "$0")/.."
mkdir -p "$out"
[ -x gpu/bin/dprt ] || tar -xJf gpu/bundle.tar.xz -C gpu
export LD_LIBRARY_PATH=$PWD/gpu/lib
dprt=$PWD/gpu/bin/dprt
repo=$(mktemp -d)
rc=0
for m in bert-base gpt2 resnet50; do
	"$dprt" zoo $m -o "$repo" >>"$out/setup.log" 2>&1 || rc=1
done
"$dprt" plan "$repo/bert-base" --gpus "$gpu" --show 2>&1 | grep -v '^ *[0-9]' >>"$out/setup.log"
# gpt2: a pipeline plan and the profile; auto's dprt plan is made from the profile
"$dprt" plan "$repo/gpt2" --gpus "$gpu" --mode pipeline >>"$out/setup.log" 2>&1

serve()
{
	name=$1
	shift
	"$dprt" --gpus "$gpu" --listen 127.0.0.1:9000 --models "$repo" --gpu-mem-limit 900M "$@" \
		>"$out/server-$name.log" 2>&1 &
	pid=$!
	python3 bench/serve_client.py --dprt "$dprt" --repo "$repo" --url http://127.0.0.1:9000 \
		--only bert-base,gpt2,resnet50 --warm 10 --concurrent 0 --rounds 6 \
		>"$out/client-$name.log" 2>&1 || rc=1
	kill -TERM $pid
	wait $pid || { echo "$name: server exit status $? after SIGTERM" >>"$out/client-$name.log"; rc=1; }
	echo "== $name ($*)"
	cat "$out/client-$name.log"
	grep -E "plan|profiled|cold|error|warn" "$out/server-$name.log" | head -20
}

serve default
serve auto --cold-mode auto
serve deepplan --cold-mode deepplan
ls "$repo"/*/1/plans >>"$out/setup.log" 2>&1
serve deepplan-stored --cold-mode deepplan
cat "$out/setup.log"
rm -rf "$repo"
exit $rc
