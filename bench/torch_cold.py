#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch's cold start from pinned host memory: the baseline of dprt's.

For each model (built from its config as in torch_warm.py, random weights,
fp32, batch 1 at the paper's shape): keep every parameter and buffer in
pinned host memory; a cold start is model.to("cuda") plus the first
inference and torch.cuda.synchronize(), host clock around it (PAPER.md's
"cold pinned" column); after each, the module's tensors point at the
pinned host copies again (evicted). Warm-ups first; mean, median, min, max
in ms. One line per model starting "TORCHCOLD" for scripts:
  TORCHCOLD model mean p50 min max

    python3 bench/torch_cold.py [--models bert-large,bert-base] [--warm 5] [--runs 30]
"""

import argparse
import statistics
import time

import torch

from torch_warm import build


def pin_all(model):
    """Move every tensor of the module to pinned host memory; return the
    (module, kind, name) -> pinned tensor map used to evict."""
    keep = {}
    for mod in model.modules():
        for kind in ("_parameters", "_buffers"):
            for name, t in getattr(mod, kind).items():
                if t is not None:
                    keep[(mod, kind, name)] = t.detach().cpu().pin_memory()
    return keep


def evict(keep):
    for (mod, kind, name), host in keep.items():
        t = getattr(mod, kind)[name]
        if kind == "_parameters":
            t.data = host
        else:
            getattr(mod, kind)[name] = host


def bench(name, warm, runs):
    model, inputs, call = build(name, torch.float32)
    keep = pin_all(model)
    evict(keep)
    ts = []
    with torch.no_grad():
        for i in range(warm + runs):
            t0 = time.perf_counter()
            model.to("cuda")
            call(model, inputs)
            torch.cuda.synchronize()
            if i >= warm:
                ts.append((time.perf_counter() - t0) * 1e3)
            evict(keep)
    ts.sort()
    return statistics.fmean(ts), ts[len(ts) // 2], ts[0], ts[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bert-large,bert-base")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("PyTorch %s on %s; fp32, batch 1; cold = pinned host -> model.to(cuda) + first "
          "inference" % (torch.__version__, torch.cuda.get_device_name(0)))
    for m in a.models.split(","):
        mean, p50, mn, mx = bench(m, a.warm, a.runs)
        print("TORCHCOLD %s %.3f %.3f %.3f %.3f" % (m, mean, p50, mn, mx), flush=True)


if __name__ == "__main__":
    main()
