#!/bin/sh
# device call 3a: pinning methods; cold requests end to end (eight paper models, dprt mode); gpt2/bert-base with debug logs; Figure 12 rates at N = 200
. gpu/head.inc
gpu/bin/pinbw -s 1024 -t 8 -r 2 > $L/pinbw-1g.log 2>&1; echo "pinbw rc $?"; cat $L/pinbw-1g.log
timeout 60 gpu/bin/pinbw -s 4096 -t 16 -g 256 -r 1 > $L/pinbw-4g.log 2>&1; echo "pinbw 4g rc $?"; cat $L/pinbw-4g.log
el pinbw
timeout 250 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --modes "dprt" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
el e2e
timeout 60 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --models "bert-base gpt2" --modes "dprt" --requests 10 --no-baseline --server-args "-v" --out $L/e2e-v > $L/cold_e2e-v.log 2>&1; echo "cold_e2e -v rc $?"; grep "^|" $L/cold_e2e-v.log | cut -c1-250
el e2e-v
for r in 120 140; do
timeout 50 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --rate $r --modes "dprt" --duration 6 --warmup 2 --out $L/f12-r$r > $L/fig12-r$r.log 2>&1; echo "fig12 rate $r rc $?"; grep "^| 200" $L/f12-r$r/summary.md
done
el rates
cd $O && tar -cJf logs-3a.tar.xz logs && rm -rf logs
