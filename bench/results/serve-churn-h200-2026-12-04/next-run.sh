#!/bin/sh
# device call 2c: cold requests end to end (eight paper models, dprt mode, warm-up with every input), gpt2/bert-base with debug logs, Figure 12 rates at N = 200, Figure 13 bert-large
. gpu/head.inc
timeout 250 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --modes "dprt" --requests 20 --out $L/e2e > $L/cold_e2e.log 2>&1; echo "cold_e2e rc $?"; grep "^|" $L/cold_e2e.log | cut -c1-250
el e2e
timeout 60 sh bench/cold_e2e.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --models "bert-base gpt2" --modes "dprt" --requests 10 --no-baseline --server-args "-v" --out $L/e2e-v > $L/cold_e2e-v.log 2>&1; echo "cold_e2e -v rc $?"; grep "^|" $L/cold_e2e-v.log | cut -c1-250
el e2e-v
for r in 120 140; do
timeout 50 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --rate $r --modes "dprt" --duration 6 --warmup 2 --out $L/f12-r$r > $L/fig12-r$r.log 2>&1; echo "fig12 rate $r rc $?"; grep "^| 200" $L/f12-r$r/summary.md
done
el rates
cd $O && tar -cJf logs-2c.tar.xz logs && mkdir -p logs
L=$O/logs
timeout 200 sh bench/fig12.sh --name fig13 --model bert-large --rate 30 --slo 100 --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "15 35 55" --modes "deepplan dprt" --duration 5 --warmup 2 --out $L/f13/bert-large > $L/fig13-bl.log 2>&1; echo "fig13 bert-large rc $?"; grep "^|" $L/f13/bert-large/summary.md
el bert-large
cd $O && tar -cJf logs-2c2.tar.xz logs && rm -rf logs
