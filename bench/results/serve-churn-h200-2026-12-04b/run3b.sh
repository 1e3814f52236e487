#!/bin/sh
# device call 3b: host-store tests with registered THP memory; cold requests end to end, eight paper models (dprt mode, per-mode device limit)
. gpu/head.inc
DPRT_REQUIRE_GPU=1 timeout 60 gpu/bin/test_cuda --jobs 1 --filter 'cuda_host/*' > $L/test_host.log 2>&1; echo "test_cuda host rc $?"; grep -E "Synthesis|Tested" $L/test_host.log | tail -2
DPRT_REQUIRE_GPU=1 timeout 60 gpu/bin/test_cuda --jobs 1 --filter 'cuda_cold/*' > $L/test_cold.log 2>&1; echo "test_cuda cold rc $?"; grep -E "Synthesis|Tested" $L/test_cold.log | tail -2
el tests
timeout 470 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --modes "dprt" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
grep -h "read from disk" $L/e2e/raw/server-*.log | head -20
el e2e
cd $O && tar -cJf logs-3b.tar.xz logs && rm -rf logs
