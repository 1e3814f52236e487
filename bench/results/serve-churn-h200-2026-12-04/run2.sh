#!/bin/sh
# device call 2a: GPU tests; the engine alone after idling (with and without a keep-alive tick), GPU clocks while idle
. gpu/head.inc
DPRT_REQUIRE_GPU=1 timeout 170 gpu/bin/test_cuda --jobs 1 > $L/test_cuda.log 2>&1; echo "test_cuda rc $?"; grep -E "Synthesis|Tested" $L/test_cuda.log | tail -2
el tests
for g in 100 1500 "1500 -k 20"; do
 n=$(echo "$g" | tr -d ' -')
 nvidia-smi --query-gpu=timestamp,pstate,clocks.sm,clocks.mem,power.draw --format=csv,noheader -lms 200 > $L/clocks-g$n.csv 2>&1 & sp=$!
 timeout 120 gpu/bin/coldstart -m gpt2,bert-large,resnet50 -e dprt -d 0 -w 3 -n 5 -g $g > $L/cs-g$n.log 2>&1; echo "coldstart -g $g rc $?"
 kill $sp
 grep -E "^(gpt2|bert-large|resnet50) " $L/cs-g$n.log | cut -c1-75
done
el coldstart
cd $O && tar -cJf logs-2a.tar.xz logs && rm -rf logs
