#!/bin/sh
# device call 3d: cold requests end to end for roberta-base and gpt2 with the corrected limit; Figure 13 gpt2 (short)
. gpu/head.inc
timeout 130 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --models "roberta-base gpt2" --modes "dprt" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
el e2e
timeout 170 sh bench/fig12.sh --name fig13 --model gpt2 --rate 90 --slo 200 --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "40 200" --modes "deepplan dprt" --duration 4 --warmup 2 --out $L/f13/gpt2 > $L/fig13-gpt2.log 2>&1; echo "fig13 gpt2 rc $?"; grep "^|" $L/f13/gpt2/summary.md
el gpt2
cd $O && tar -cJf logs-3d.tar.xz logs && rm -rf logs
