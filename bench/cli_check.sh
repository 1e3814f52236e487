#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The dprt command on a GPU end to end: build zoo packages, run each on GPU
# 0 (`dprt run --gpus 0`, 100 more runs for the latency) and on the CPU
# backend with the same (seeded) random inputs, and compare the outputs'
# safetensors files: max|gpu - cpu| / max|cpu| within 1e-4 (fp32) or 2e-2
# (fp16). Needs python3 with numpy and safetensors.
#
# Usage: bench/cli_check.sh [DPRT]     (default ./dprt)

set -u
dprt=${1:-./dprt}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
status=0
cat >"$t/cmp.py" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file
g, c = load_file(sys.argv[1]), load_file(sys.argv[2])
tol = 1e-4 if sys.argv[4] == "fp32" else 2e-2
bad = 0
for k in sorted(c):
    a, b = g[k].astype(np.float64), c[k].astype(np.float64)
    e = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
    ok = a.shape == b.shape and e <= tol
    bad += not ok
    print("%s cli %s %s %s %s err %.3e tol %.0e" % ("ok" if ok else "FAIL", sys.argv[3],
          sys.argv[4], k, "x".join(map(str, b.shape)), e, tol))
sys.exit(1 if bad else 0)
PY

for spec in gpt2:fp16 bert-base:fp32; do
	m=${spec%%:*} dt=${spec##*:}
	"$dprt" -q zoo "$m" --dtype "$dt" -o "$t/$dt" || { status=1; continue; }
	"$dprt" run "$t/$dt/$m" --gpus 0 --output "$t/$m-$dt-gpu.safetensors" --repeat 100 |
		grep -E "^ran|^repeat" || status=1
	"$dprt" run "$t/$dt/$m" --output "$t/$m-$dt-cpu.safetensors" | grep -E "^ran" ||
		status=1
	python3 "$t/cmp.py" "$t/$m-$dt-gpu.safetensors" "$t/$m-$dt-cpu.safetensors" "$m" \
		"$dt" || status=1
done
exit $status
