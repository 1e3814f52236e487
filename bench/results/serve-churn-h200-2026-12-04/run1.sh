#!/bin/sh
# device call 1a: cold requests end to end (eight paper models), Figure 12 at N = 200 twice
. gpu/head.inc
timeout 420 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --modes "dprt load" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
nvidia-smi --query-gpu=pstate,clocks.sm,clocks.mem --format=csv >> $L/machine.txt 2>&1
el e2e
for i in 1 2; do
timeout 60 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --modes "dprt" --duration 6 --warmup 2 --out $L/f12-$i > $L/fig12-$i.log 2>&1; echo "fig12 $i rc $?"; grep "^| 200" $L/f12-$i/summary.md
done
el fig12
cd $O && tar -cJf logs-a.tar.xz logs && rm -rf logs
