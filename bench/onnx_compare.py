#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check 'dprt import' of real torch.onnx exports against onnxruntime and
PyTorch.

For each model: build it in PyTorch from its config with seeded random
weights (no downloads), eval mode; export it with torch.onnx (the
TorchScript exporter, --opset, dynamic batch and sequence axes); run
PyTorch and onnxruntime (CPU) on the same inputs; import the file with
`dprt import M.onnx -o REPO/NAME` (FP32, and FP16 with --fp16) and run it
with `dprt run` on the CPU backend and, unless --no-cuda, on GPU 0
(`--gpus 0`). Every output is compared with onnxruntime's and PyTorch's:

    max|got - ref| / max|ref| <= 1e-4 (FP32), <= 1e-2 (FP16)

Prints one row per model, backend and reference, then a verdict line;
exits 1 if anything fails, 2 on a usage or environment error.

    python3 bench/onnx_compare.py --dprt ./dprt               # 10 models, CPU+CUDA
    python3 bench/onnx_compare.py --dprt ./dprt --tiny --no-cuda
    python3 bench/onnx_compare.py --models bert-base,vit-b16 --opset 17

Models: resnet50, resnet101 (torchvision), bert-base/large,
roberta-base/large, gpt2, gpt2-medium (the paper's 8), distilbert-base and
vit-b16 (Hugging Face). --tiny uses 2-layer, 32-wide versions of each.
Needs torch, torchvision (ResNets; HF ResNet with --tiny if absent),
transformers, onnx, onnxruntime, safetensors, numpy.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MODELS = ["resnet50", "resnet101", "bert-base", "bert-large", "roberta-base",
          "roberta-large", "gpt2", "gpt2-medium", "distilbert-base", "vit-b16"]
TOL = {"FP32": 1e-4, "FP16": 1e-2}
SEQ, TAIL, TINY_SEQ, TINY_TAIL = 128, 32, 12, 3


def family(name):
    return name.split("-")[0].rstrip("0123456789") if not name.startswith(
        "resnet") else "resnet"


def hf_config(name, tiny):
    import transformers as tf
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, vocab_size=120)
    big = name.endswith("large") or name.endswith("medium")
    fam = family(name)
    if fam in ("bert", "roberta"):
        kw = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096) if big else {}
        if tiny:
            kw = dict(small)
        if fam == "bert":
            return tf.BertConfig(**kw), tf.BertModel
        kw.update(vocab_size=kw.get("vocab_size", 50265), type_vocab_size=1,
                  max_position_embeddings=514, pad_token_id=1, layer_norm_eps=1e-5)
        return tf.RobertaConfig(**kw), tf.RobertaModel
    if fam == "distilbert":
        kw = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                  vocab_size=120) if tiny else {}
        return tf.DistilBertConfig(**kw), tf.DistilBertModel
    if fam == "gpt":
        kw = dict(n_embd=1024, n_layer=24, n_head=16) if big else {}
        if tiny:
            kw = dict(n_embd=32, n_layer=2, n_head=4, vocab_size=120, n_positions=64)
        return tf.GPT2Config(**kw), tf.GPT2Model
    kw = dict(small, image_size=32, patch_size=8) if tiny else {}
    kw.pop("vocab_size", None)
    return tf.ViTConfig(**kw), tf.ViTModel


def build(name, tiny):
    """(module returning the first output, input names, inputs)."""
    import torch
    gen = torch.Generator().manual_seed(MODELS.index(name) + 1)
    torch.manual_seed(MODELS.index(name) + 1)
    fam = family(name)
    if fam == "resnet":
        hw = 32 if tiny else 224
        try:
            import torchvision
            m = torchvision.models.resnet18(num_classes=10) if tiny else \
                getattr(torchvision.models, name)(weights=None)
        except ImportError:
            import transformers as tf
            m = tf.ResNetForImageClassification(tf.ResNetConfig(
                embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10))
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    c = mod.num_features
                    mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                    mod.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                    mod.weight.copy_(torch.rand(c, generator=gen) * 0.4 + 0.1)
                    mod.bias.copy_(torch.randn(c, generator=gen) * 0.1)
        x = torch.randn(2, 3, hw, hw, generator=gen)
        return First(m, ["input"]), ["input"], [x]
    cfg, cls = hf_config(name, tiny)
    m = cls(cfg)
    if fam == "vit":
        hw = cfg.image_size
        return First(m, ["pixel_values"]), ["pixel_values"], [
            torch.randn(2, 3, hw, hw, generator=gen)]
    seq, tail = (TINY_SEQ, TINY_TAIL) if tiny else (SEQ, TAIL)
    vocab = cfg.vocab_size
    pad = getattr(cfg, "pad_token_id", 0) or 0
    ids = torch.randint(0, vocab - 1, (2, seq), generator=gen)
    ids[ids >= pad] += 1
    mask = torch.ones(2, seq, dtype=torch.int64)
    ids[1, seq - tail:] = pad
    mask[1, seq - tail:] = 0
    if fam in ("bert", "roberta"):
        tt = torch.zeros(2, seq, dtype=torch.int64)
        if fam == "bert":
            tt[:, seq // 2:] = 1
        names = ["input_ids", "attention_mask", "token_type_ids"]
        return First(m, names), names, [ids, mask, tt]
    names = ["input_ids", "attention_mask"]
    return First(m, names, gpt=fam == "gpt"), names, [ids, mask]


class First:
    """Wraps a model: keyword inputs in, its first output (hidden states or
    logits) out."""

    def __new__(cls, m, names, gpt=False):
        import torch

        class W(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = m

            def forward(self, *a):
                if names == ["input"]:
                    out = self.m(a[0])
                    return out if isinstance(out, torch.Tensor) else out[0]
                kw = dict(zip(names, a))
                if gpt:
                    kw["use_cache"] = False
                return self.m(**kw, return_dict=True)[0]
        return W().eval()


def export(mod, names, inputs, path, opset):
    import torch
    dyn = {n: {0: "batch"} if n in ("input", "pixel_values") else
           {0: "batch", 1: "sequence"} for n in names}
    dyn["y"] = {0: "batch"}
    kw = dict(input_names=names, output_names=["y"], dynamic_axes=dyn,
              opset_version=opset, do_constant_folding=True)
    try:
        torch.onnx.export(mod, tuple(inputs), path, dynamo=False, **kw)
    except TypeError:  # torch < 2.5 has no dynamo argument
        torch.onnx.export(mod, tuple(inputs), path, **kw)


def rel(ref, got):
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64)
    if ref.shape != got.shape:
        return float("inf")
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max()
    if not np.isfinite(got).all():
        return float("inf")
    return err / scale if scale > 0 else err


def run(argv, log):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "a") as f:
        f.write("$ %s\n%s[exit %d]\n" % (" ".join(argv), p.stdout, p.returncode))
    if p.returncode:
        raise RuntimeError((p.stdout.strip().splitlines() or ["no output"])[-1])


def check(name, args, rows):
    import onnxruntime as ort
    import torch
    from safetensors.numpy import load_file, save_file
    wd = os.path.join(args.workdir, name)
    os.makedirs(wd, exist_ok=True)
    log = os.path.join(wd, "log")
    t0 = time.time()
    mod, names, inputs = build(name, args.tiny)
    with torch.no_grad():
        ref_t = mod(*inputs).float().numpy()
    path = os.path.join(wd, "model.onnx")
    export(mod, names, inputs, path, args.opset)
    del mod
    feed = {n: t.numpy() for n, t in zip(names, inputs)}
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ref_o = sess.run(None, feed)[0]
    ipath = os.path.join(wd, "in.safetensors")
    save_file({n: np.ascontiguousarray(v) for n, v in feed.items()}, ipath)
    rows.append((name, "onnxruntime", "torch", rel(ref_t, ref_o), 1e-4, ""))
    ok = rows[-1][3] <= 1e-4
    dtypes = ["FP32", "FP16"] if args.fp16 else ["FP32"]
    devs = [("cpu", [])] + ([] if args.no_cuda else [("cuda", ["--gpus", "0"])])
    for dt in dtypes:
        repo = os.path.join(wd, "repo-" + dt)
        dt_in = ipath
        if dt == "FP16":  # float inputs in the package's dtype
            dt_in = os.path.join(wd, "in16.safetensors")
            save_file({n: np.ascontiguousarray(v.astype(np.float16) if v.dtype ==
                                               np.float32 else v)
                       for n, v in feed.items()}, dt_in)
        shutil.rmtree(repo, ignore_errors=True)
        try:
            run([args.dprt, "import", "--dtype", dt, "-o",
                 os.path.join(repo, name), path], log)
        except RuntimeError as e:
            rows.append((name, "dprt import " + dt, "-", float("inf"), TOL[dt], str(e)))
            ok = False
            continue
        for dev, extra in devs:
            opath = os.path.join(wd, "out-%s-%s.safetensors" % (dt, dev))
            what = "dprt %s %s" % (dev, dt)
            try:
                run([args.dprt, "run", "--input", dt_in, "--output", opath] + extra +
                    [os.path.join(repo, name)], log)
                got = load_file(opath)
                got = got["y"] if "y" in got else list(got.values())[0]
                got = got.astype(np.float32)
            except (RuntimeError, OSError, KeyError, IndexError) as e:
                rows.append((name, what, "-", float("inf"), TOL[dt], str(e)))
                ok = False
                continue
            for rname, r in (("onnxruntime", ref_o), ("torch", ref_t)):
                e = rel(r, got)
                rows.append((name, what, rname, e, TOL[dt], ""))
                ok = ok and e <= TOL[dt]
    print("# %s: %.1f s" % (name, time.time() - t0), file=sys.stderr, flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dprt", default="./dprt", help="dprt binary (default ./dprt)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tiny", action="store_true", help="2-layer 32-wide configs")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-cuda", action="store_true", help="CPU backend only")
    ap.add_argument("--fp16", action="store_true", help="also FP16 packages")
    ap.add_argument("--workdir", help="keep files here (default: a temp dir)")
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    bad = [m for m in names if m not in MODELS]
    if bad or not os.access(args.dprt, os.X_OK):
        print("unknown models %s or no dprt at %s" % (bad, args.dprt), file=sys.stderr)
        return 2
    args.dprt = os.path.abspath(args.dprt)
    tmp = None
    if not args.workdir:
        tmp = args.workdir = tempfile.mkdtemp(prefix="dprt-onnx-cmp.")
    rows, ok = [], True
    # rows print as each model finishes, so a run cut short keeps them
    print("| model | run | reference | max rel err | threshold | result |")
    print("|---|---|---|---|---|---|", flush=True)
    try:
        for m in names:
            n0 = len(rows)
            try:
                ok = check(m, args, rows) and ok
            except Exception as e:  # an export or runtime failure is a row
                rows.append((m, "export", "-", float("inf"), 0, repr(e)[:120]))
                ok = False
            for m_, what, r, e, tol, note in rows[n0:]:
                res = "ok" if e <= tol else "FAIL" + (" (%s)" % note if note else "")
                print("| %s | %s | %s | %.3g | %.0e | %s |" % (m_, what, r, e, tol, res),
                      flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print("onnx_compare: %s (opset %d)" % ("all ok" if ok else "FAILED", args.opset))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
