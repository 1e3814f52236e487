#!/bin/sh
# device call 2b: cold requests end to end (eight paper models, buffers kept); two models again with debug logs
. gpu/head.inc
timeout 440 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --modes "dprt load" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
el e2e
timeout 100 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --models "bert-base gpt2" --modes "dprt" --requests 10 --no-baseline --server-args "-v" --out $L/e2e-v > $L/cold_e2e-v.log 2>&1; echo "cold_e2e -v rc $?"; grep "^|" $L/cold_e2e-v.log | cut -c1-250
el e2e-v
cd $O && tar -cJf logs-2b.tar.xz logs && rm -rf logs
