#!/bin/sh
# device batch 1: test_cuda, isolated graph/eager, fig12 N=200 variants, cold_e2e subset
set -u
O=$OUT
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
nvidia-smi > $O/nvidia-smi.txt 2>&1
(timeout 200 gpu/bin/test_cuda --jobs 1 --verbose > $O/test_cuda.log 2>&1; echo "rc $?" >> $O/test_cuda.log) 
grep -E "^\[(FAIL)|Synthesis" $O/test_cuda.log | tail -8
for g in 1 0; do
  DPRT_COLD_GRAPH=$g timeout 60 gpu/bin/coldstart -m bert-base -e dprt -d 0 -w 5 -n 30 > $O/coldstart-graph$g.log 2>&1
  grep "dprt@1" $O/coldstart-graph$g.log | sed "s/^/graph=$g /"
done
v=1
for env in "" "DPRT_EVICT_PLACE=0" "DPRT_EVICT_PLACE=0 DPRT_COLD_DEFER=0"; do
  env $env timeout 120 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --modes dprt --duration 10 --warmup 3 --out $O/f12-v$v > $O/f12-v$v.log 2>&1
  echo "variant $v [$env]: $(grep -E 'N=200' $O/f12-v$v.log)"
  grep -E "^dprt_(cold_moved|cold_deferred|cold_fixup|place_evictions|evictions|standby)" $O/f12-v$v/raw/metrics-dprt-200.txt
  grep -E "^(latency|cold requests|server ms)" $O/f12-v$v/raw/dprt-200.txt
  v=$((v+1))
done
timeout 200 sh bench/cold_e2e.sh --models "bert-base resnet50 gpt2" --modes "dprt load" --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --out $O/ce2e > $O/ce2e.log 2>&1
cat $O/ce2e.log | tail -12
cd $O && tar -cJf raw.tar.xz f12-v* ce2e coldstart-graph*.log test_cuda.log && rm -rf f12-v* ce2e
