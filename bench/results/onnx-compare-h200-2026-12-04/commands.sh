#!/bin/sh
set -u
O=$OUT
L=$O/logs; mkdir -p $L
t0=$(date +%s)
el() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
tar -xJf gpu/bundle.tar.xz -C gpu; export LD_LIBRARY_PATH=$PWD/gpu/lib
(date -u; nvidia-smi -L; uname -r; python3 -c "import torch,transformers,onnxruntime;print('torch',torch.__version__,'transformers',transformers.__version__,'ort',onnxruntime.__version__)") > $L/machine.txt 2>&1
timeout 280 python3 bench/onnx_compare.py --dprt gpu/bin/dprt --fp16 --models resnet50,resnet101,bert-base,bert-large,roberta-base,roberta-large,gpt2,gpt2-medium,distilbert-base --workdir /var/tmp/oc > $L/onnx_compare.log 2>&1; echo "onnx rc $?"; grep "^| \|^#" $L/onnx_compare.log | grep -v "^| model\|^|---" | awk -F'|' '{print $2,$3,$4,$5,$7}' | head -80
el onnx
if [ -f /var/tmp/oc/bert-base/model.onnx ]; then
 mkdir -p /var/tmp/imp
 gpu/bin/dprt import /var/tmp/oc/bert-base/model.onnx -o /var/tmp/imp/bert-base --seq 384 > $L/import.log 2>&1; echo "import rc $?"
 P=$(ls /var/tmp/imp/bert-base/*/model.dpk | tail -1)
 timeout 60 gpu/bin/coldstart -m bert-base,$P -e demand,pipeline,deepplan,dprt -d 0 -w 5 -n 30 > $L/fig10_imported.log 2>&1; echo "coldstart rc $?"; tail -14 $L/fig10_imported.log
fi
el fig10
cd $O && tar -cJf logs.tar.xz logs && rm -rf logs
