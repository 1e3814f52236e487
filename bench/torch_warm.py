#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PyTorch's warm latency for the paper's models: the baseline of dprt's.

For each model and dtype: build it from its config (random weights, no
downloads) directly on the GPU, eval mode, inputs resident on the GPU at
the paper's shape (batch 1; 384 tokens BERT/RoBERTa, 1024 GPT-2,
3x224x224), then time

  eager   model(**inputs) followed by torch.cuda.synchronize()
  graph   the same forward captured once in a torch.cuda.CUDAGraph and
          replayed (graph.replay() + synchronize)

with a host clock around each run (warm-up runs first); mean, median and
99th percentile in ms. TF32 is off for matmuls and cuDNN (true fp32). The
transformers use Hugging Face's default attention (SDPA). Only input_ids
are given (no mask), as for dprt's benchmark. Also times one large fp32
torch.mm (TF32 off) for the GEMM ceiling.

Prints a table, and one line per model starting "TORCH" for scripts:
  TORCH model dtype eager_mean eager_p50 eager_p99 graph_mean graph_p50 graph_p99

    python3 bench/torch_warm.py [--models a,b] [--dtypes fp32,fp16] [--runs 200]
"""

import argparse
import statistics
import sys
import time

import torch

from torch_compare import PAPER_MODELS, SPECS


def build(name, dtype):
    family, cfg = SPECS[name][0], SPECS[name][1]
    with torch.device("cuda"):
        if family == "resnet":
            import torchvision
            model = getattr(torchvision.models, "resnet%d" % cfg)(weights=None)
        else:
            import transformers as tf
            if family == "bert":
                model = tf.BertModel(tf.BertConfig(**cfg))
            elif family == "roberta":
                model = tf.RobertaModel(tf.RobertaConfig(**cfg))
            else:
                model = tf.GPT2Model(tf.GPT2Config(**cfg))
    model = model.to(dtype=dtype).eval()
    if family == "resnet":
        x = torch.randn(1, 3, 224, 224, device="cuda", dtype=dtype)
        return model, {"x": x}, (lambda m, kw: m(kw["x"]))
    seq = SPECS[name][3]
    vocab = cfg["vocab_size"]
    ids = torch.randint(3, vocab, (1, seq), device="cuda")
    return model, {"input_ids": ids}, (lambda m, kw: m(**kw))


def stats(ts):
    ts = sorted(ts)
    return (statistics.fmean(ts), ts[len(ts) // 2],
            ts[min(len(ts) - 1, int(len(ts) * 0.99))])


def time_runs(fn, warm, runs):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return stats(ts)


def bench_model(name, dtype, warm, runs):
    model, inputs, call = build(name, dtype)
    with torch.inference_mode():
        eager = time_runs(lambda: call(model, inputs), warm, runs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                call(model, inputs)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            call(model, inputs)
        graph = time_runs(g.replay, warm, runs)
    del g, model, inputs
    torch.cuda.empty_cache()
    return eager, graph


def mm_rate(n, dtype, reps=10):
    a = torch.rand(n, n, device="cuda", dtype=dtype) - 0.5
    b = torch.rand(n, n, device="cuda", dtype=dtype) - 0.5
    for _ in range(2):
        torch.mm(a, b)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(reps):
        torch.mm(a, b)
    e1.record()
    torch.cuda.synchronize()
    return 2.0 * n ** 3 * reps / (e0.elapsed_time(e1) * 1e9)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(PAPER_MODELS))
    ap.add_argument("--dtypes", default="fp32,fp16")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    import transformers
    print("GPU: %s; torch %s, transformers %s, cuDNN %s; TF32 off; %d warm-up + %d "
          "timed runs; ms" % (torch.cuda.get_device_name(0), torch.__version__,
                               transformers.__version__, torch.backends.cudnn.version(),
                               args.warmup, args.runs))
    print("torch.mm fp32 8192^3: %.1f TFLOP/s; fp16: %.1f TFLOP/s"
          % (mm_rate(8192, torch.float32), mm_rate(8192, torch.float16)))
    print("%-14s %-5s %9s %9s %9s | %9s %9s %9s" % ("model", "dtype", "eager", "e-p50",
                                                  "e-p99", "graph", "g-p50", "g-p99"))
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    failed = 0
    for dn in args.dtypes.split(","):
        for name in args.models.split(","):
            try:
                eager, graph = bench_model(name, dtypes[dn], args.warmup, args.runs)
            except Exception as e:  # report and go on with the others
                print("%-14s %-5s error: %s" % (name, dn, e))
                failed += 1
                continue
            print("%-14s %-5s %9.3f %9.3f %9.3f | %9.3f %9.3f %9.3f"
                  % ((name, dn) + eager + graph))
            print("TORCH %s %s %.4f %.4f %.4f %.4f %.4f %.4f"
                  % ((name, dn) + eager + graph))
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
