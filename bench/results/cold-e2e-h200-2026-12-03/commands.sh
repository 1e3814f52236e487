#!/bin/sh
set -u
O=$OUT
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
(timeout 80 gpu/bin/test_cuda --jobs 1 --verbose > $O/test_cuda.log 2>&1; echo "rc $?" >> $O/test_cuda.log)
grep -E "^\[(FAIL)|Synthesis" $O/test_cuda.log | tail -8
timeout 75 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "20 200" --modes "dprt" --duration 6 --warmup 2 --out $O/fig12b > $O/fig12b.log 2>&1
grep "N=" $O/fig12b.log; grep -E "^dprt_(cold_moved|cold_deferred|place_evictions|evictions)" $O/fig12b/raw/metrics-dprt-*.txt
grep -E "^cold requests" $O/fig12b/raw/dprt-*.txt
(cd $O && tar -cJf f12b.tar.xz fig12b && rm -rf fig12b)
timeout 180 sh bench/cold_e2e.sh --modes "dprt load" --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --coldstart gpu/bin/coldstart --out $O/ce2e > $O/ce2e.log 2>&1
tail -18 $O/ce2e.log
(cd $O && tar -cJf ce2e.tar.xz ce2e && rm -rf ce2e)
timeout 130 sh bench/fig13.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "80" --modes "pipeline dprt" --duration 5 --warmup 2 --out $O/fig13 > $O/fig13.log 2>&1
grep -B2 -A6 "^| N" $O/fig13.log | head -30
(cd $O && tar -cJf f13.tar.xz fig13 && rm -rf fig13)
