#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch's cold start from host memory: the baseline of dprt's.

For each model (built from its config as in torch_warm.py, random weights,
batch 1 at the paper's shape) and each dtype and host memory kind: keep
every parameter and buffer in host memory, pinned (PAPER.md's "cold
pinned" column) or pageable (what a plain torch.load gives); a cold start
is model.to("cuda") plus the first inference and torch.cuda.synchronize(),
host clock around it; after each, the module's tensors point at the host
copies again (evicted). Warm-ups first; mean, median, min, max in ms. One
line per (model, dtype, memory) starting "TORCHCOLD" for scripts:
  TORCHCOLD model dtype memory mean p50 min max

    python3 bench/torch_cold.py [--models bert-large,bert-base] [--dtypes fp32,fp16]
                                [--memory pinned,pageable] [--warm 5] [--runs 30]
"""

import argparse
import statistics
import time

import torch

from torch_warm import build


def host_all(model, pinned):
    """Copy every tensor of the module to (pinned or pageable) host memory;
    return the (module, kind, name) -> host tensor map used to evict."""
    keep = {}
    for mod in model.modules():
        for kind in ("_parameters", "_buffers"):
            for name, t in getattr(mod, kind).items():
                if t is not None:
                    h = t.detach().cpu().clone()
                    keep[(mod, kind, name)] = h.pin_memory() if pinned else h
    return keep


def evict(keep):
    for (mod, kind, name), host in keep.items():
        t = getattr(mod, kind)[name]
        if kind == "_parameters":
            t.data = host
        else:
            getattr(mod, kind)[name] = host


def bench(model, inputs, call, keep, warm, runs):
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
    evict(keep)
    return statistics.fmean(ts), ts[len(ts) // 2], ts[0], ts[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="bert-large,bert-base")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--dtypes", default="fp32")
    ap.add_argument("--memory", default="pinned")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("PyTorch %s on %s; batch 1; cold = host memory -> model.to(cuda) + first "
          "inference" % (torch.__version__, torch.cuda.get_device_name(0)))
    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    for m in a.models.split(","):
        for dt in a.dtypes.split(","):
            model, inputs, call = build(m, dtypes[dt])
            for mem in a.memory.split(","):
                keep = host_all(model, mem == "pinned")
                mean, p50, mn, mx = bench(model, inputs, call, keep, a.warm, a.runs)
                print("TORCHCOLD %s %s %s %.3f %.3f %.3f %.3f"
                      % (m, dt, mem, mean, p50, mn, mx), flush=True)
                del keep
            del model, inputs
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
