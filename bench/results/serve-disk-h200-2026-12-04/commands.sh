#!/bin/sh
# one device call: tests, then the churn/disk/ONNX checks
set -u
O=$OUT
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
(date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; uname -r
 python3 -c "import torch,transformers,onnxruntime;print('torch',torch.__version__,'transformers',transformers.__version__,'ort',onnxruntime.__version__)") > $O/machine.txt 2>&1
el start
DPRT_REQUIRE_GPU=1 timeout 70 gpu/bin/test_cuda --jobs 1 --verbose --filter 'cuda_host/*' > $O/test_cuda.log 2>&1; echo "test_cuda rc $?"; grep -E "Synthesis|FAIL|fail" $O/test_cuda.log | tail -6
DPRT_REQUIRE_GPU=1 timeout 60 gpu/bin/test_cuda --jobs 1 --filter 'cuda_cold/*' > $O/test_cuda_cold.log 2>&1; echo "test_cuda cold rc $?"; grep Synthesis $O/test_cuda_cold.log
el tests
KEEP=1 DISKBW=gpu/bin/diskbw timeout 100 sh bench/disk_cold.sh -d gpu/bin/dprt -g 0 --large > $O/disk_cold.log 2>&1; echo "disk_cold rc $?"; cat $O/disk_cold.log | tail -8
for d in /var/tmp/dprt-disk.*; do cp $d/server-*.log $O/ 2>/dev/null; done
grep -h "read from disk" $O/server-*.log | head -30
el disk
DISKBW=gpu/bin/diskbw timeout 45 sh bench/repo_start.sh -d gpu/bin/dprt -g 0 -n 2 > $O/repo_start.log 2>&1; echo "repo_start rc $?"; tail -6 $O/repo_start.log
el repo
timeout 100 python3 bench/onnx_compare.py --dprt gpu/bin/dprt --fp16 --models vit-b16 --workdir /var/tmp/oc > $O/onnx_vit.log 2>&1; echo "onnx vit rc $?"; grep "^|" $O/onnx_vit.log; tail -2 $O/onnx_vit.log
el onnx
timeout 140 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --models "resnet50 bert-base" --modes "dprt load" --requests 20 --out $O/e2e > $O/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; tail -12 $O/cold_e2e.log
el e2e
timeout 75 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --modes "load dprt" --duration 6 --warmup 2 --out $O/fig12 > $O/fig12.log 2>&1; echo "fig12 rc $?"; tail -8 $O/fig12.log
el fig12
cd $O && tar -cJf raw.tar.xz e2e fig12 2>/dev/null && rm -rf e2e fig12
