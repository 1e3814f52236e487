#!/bin/sh
set -u
O=$OUT
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
timeout 250 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns "20 60 100 140 200" --modes "pipeline deepplan dprt" --duration 6 --warmup 2 --out $O/fig12 > $O/fig12.log 2>&1
tail -20 $O/fig12.log
for r in 150; do
 timeout 40 sh bench/fig12.sh --dprt gpu/bin/dprt --loadgen gpu/bin/loadgen --mem-limit 10G --ns 200 --modes dprt --rate $r --duration 6 --warmup 2 --out $O/rate-$r > $O/rate-$r.log 2>&1
 echo "rate $r: $(grep N=200 $O/rate-$r.log)"
done
timeout 270 python3 bench/onnx_compare.py --dprt gpu/bin/dprt --fp16 > $O/onnx_compare.log 2>&1; echo "onnx_compare rc $?"
tail -30 $O/onnx_compare.log
cd $O && tar -cJf raw.tar.xz fig12 rate-* && rm -rf fig12 rate-*
