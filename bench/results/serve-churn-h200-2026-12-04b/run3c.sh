#!/bin/sh
# device call 3c: whole test_cuda; repository start and disk-cold first answers with registered THP host memory; Figure 13 bert-large
. gpu/head.inc
DPRT_REQUIRE_GPU=1 timeout 150 gpu/bin/test_cuda --jobs 1 > $L/test_cuda.log 2>&1; echo "test_cuda rc $?"; grep -E "Synthesis|Tested" $L/test_cuda.log | tail -2
el tests
DISKBW=gpu/bin/diskbw timeout 60 sh bench/repo_start.sh -d gpu/bin/dprt -g 0 -n 2 > $L/repo_start.log 2>&1; echo "repo_start rc $?"; tail -5 $L/repo_start.log
el repo
KEEP=1 DISKBW=gpu/bin/diskbw timeout 100 sh bench/disk_cold.sh -d gpu/bin/dprt -g 0 --large > $L/disk_cold.log 2>&1; echo "disk_cold rc $?"; tail -6 $L/disk_cold.log
for d in /var/tmp/dprt-disk.*; do cat $d/server-*.log >> $L/disk_cold_servers.log 2>/dev/null; done
grep -h "read from disk" $L/disk_cold_servers.log | head -20
el disk
timeout 200 sh bench/fig12.sh --name fig13 --model bert-large --rate 30 --slo 100 --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "15 35 55" --modes "deepplan dprt" --duration 5 --warmup 2 --out $L/f13/bert-large > $L/fig13-bl.log 2>&1; echo "fig13 bert-large rc $?"; grep "^|" $L/f13/bert-large/summary.md
el bert-large
cd $O && tar -cJf logs-3c.tar.xz logs && rm -rf logs
