#!/bin/sh
set -u
O=$OUT
L=$O/logs; mkdir -p $L
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
(date -u; nvidia-smi -L; uname -r) > $L/machine.txt 2>&1
DPRT_REQUIRE_GPU=1 timeout 60 gpu/bin/test_cuda --jobs 1 --verbose --filter 'cuda_host/*' > $L/test_cuda_host.log 2>&1; echo "test_cuda host rc $?"; grep -E "Synthesis|FAIL|fail|assert" $L/test_cuda_host.log | tail -6
DPRT_REQUIRE_GPU=1 timeout 90 gpu/bin/test_cuda --jobs 1 --filter 'cuda_cold/*' > $L/test_cuda_cold.log 2>&1; echo "test_cuda cold rc $?"; grep -E "Synthesis|FAIL" $L/test_cuda_cold.log | tail -4
el tests
KEEP=1 DISKBW=gpu/bin/diskbw timeout 100 sh bench/disk_cold.sh -d gpu/bin/dprt -g 0 --large > $L/disk_cold.log 2>&1; echo "disk_cold rc $?"; tail -6 $L/disk_cold.log
for d in /var/tmp/dprt-disk.*; do cat $d/server-*.log > $L/disk_cold_servers.log 2>/dev/null; done
grep -h "read from disk" $L/disk_cold_servers.log | awk '{print $3, $4, $9, $10, $14, $16, $17}' | head -40
el disk
timeout 120 python3 bench/onnx_compare.py --dprt gpu/bin/dprt --fp16 --models vit-b16 --workdir /var/tmp/oc > $L/onnx_vit.log 2>&1; echo "onnx vit rc $?"; grep "^|" $L/onnx_vit.log; tail -1 $L/onnx_vit.log
el onnx
DISKBW=gpu/bin/diskbw timeout 45 sh bench/repo_start.sh -d gpu/bin/dprt -g 0 -n 2 > $L/repo_start.log 2>&1; echo "repo_start rc $?"; tail -5 $L/repo_start.log
el repo
cd $O && tar -cJf logs.tar.xz logs && rm -rf logs
