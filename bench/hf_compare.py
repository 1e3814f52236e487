#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check `dprt import` of Hugging Face checkpoints against transformers.

For each model: build it from a transformers config class with seeded
random weights (no downloads; every parameter perturbed so LayerNorm and
bias terms are not trivial), eval mode, fp32, eager attention;
save_pretrained() to a temporary directory (config.json +
model.safetensors, or shards with --shard-size); run PyTorch on random
inputs (right padding on the second sample); then

    dprt import DIR -o REPO/NAME --dtype D
    dprt run REPO/NAME --gpus G --input I --output O     for each G of --gpus

and compare every output the model has in both (last_hidden_state,
pooler_output, logits):

    max|dprt - torch| / max|torch| <= --tol (1e-4 for fp32, 2e-2 otherwise)

Prints one row per model, device and output and a verdict line; exits 1 if
anything fails, 2 on a usage or environment error.

    python3 bench/hf_compare.py                         # tiny configs, cpu and GPU 0
    python3 bench/hf_compare.py --size base --gpus 0    # bert-base-sized etc.
    python3 bench/hf_compare.py --models bert-seq,vit-img --dtype fp16
    python3 bench/hf_compare.py --shard-size 200KB --keep

Needs torch, transformers, safetensors (bench/requirements-torch.txt).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import torch
    import transformers as tf
    from safetensors.torch import load_file, save_file
except ImportError as e:  # pragma: no cover - environment
    print("hf_compare: %s (pip install -r bench/requirements-torch.txt)" % e, file=sys.stderr)
    sys.exit(2)

SIZES = {
    # layers, hidden, heads, intermediate, vocab, positions, image, patch
    "tiny": dict(L=2, H=64, A=4, F=128, V=1000, P=64, img=32, patch=8),
    "base": dict(L=12, H=768, A=12, F=3072, V=30522, P=512, img=224, patch=16),
}

# name: (config class, model class, input kind)
MODELS = {
    "bert-base": ("BertConfig", "BertModel", "bert"),
    "bert-seq": ("BertConfig", "BertForSequenceClassification", "bert"),
    "bert-tok": ("BertConfig", "BertForTokenClassification", "bert"),
    "roberta-base": ("RobertaConfig", "RobertaModel", "roberta"),
    "roberta-seq": ("RobertaConfig", "RobertaForSequenceClassification", "roberta"),
    "roberta-tok": ("RobertaConfig", "RobertaForTokenClassification", "roberta"),
    "distilbert-base": ("DistilBertConfig", "DistilBertModel", "text"),
    "distilbert-seq": ("DistilBertConfig", "DistilBertForSequenceClassification", "text"),
    "distilbert-tok": ("DistilBertConfig", "DistilBertForTokenClassification", "text"),
    "gpt2-base": ("GPT2Config", "GPT2Model", "text"),
    "gpt2-lm": ("GPT2Config", "GPT2LMHeadModel", "text"),
    "gpt2-tok": ("GPT2Config", "GPT2ForTokenClassification", "text"),
    "vit-base": ("ViTConfig", "ViTModel", "image"),
    "vit-img": ("ViTConfig", "ViTForImageClassification", "image"),
}
OUTPUTS = ("last_hidden_state", "pooler_output", "logits")


def make_config(name, s):
    fam = name.split("-")[0]
    labels = dict(num_labels=3)
    if fam in ("bert", "roberta"):
        kw = dict(num_hidden_layers=s["L"], hidden_size=s["H"], num_attention_heads=s["A"],
                  intermediate_size=s["F"], vocab_size=s["V"],
                  max_position_embeddings=s["P"] + (2 if fam == "roberta" else 0))
        if fam == "roberta":
            kw.update(type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)
    elif fam == "distilbert":
        kw = dict(n_layers=s["L"], dim=s["H"], n_heads=s["A"], hidden_dim=s["F"],
                  vocab_size=s["V"], max_position_embeddings=s["P"])
    elif fam == "gpt2":
        kw = dict(n_layer=s["L"], n_embd=s["H"], n_head=s["A"], n_inner=s["F"],
                  vocab_size=s["V"], n_positions=s["P"])
    else:
        kw = dict(num_hidden_layers=s["L"], hidden_size=s["H"], num_attention_heads=s["A"],
                  intermediate_size=s["F"], image_size=s["img"], patch_size=s["patch"])
    return getattr(tf, MODELS[name][0])(**kw, **labels)


def build(name, cfg, seed):
    torch.manual_seed(seed)
    cls = getattr(tf, MODELS[name][1])
    try:
        m = cls._from_config(cfg, attn_implementation="eager")
    except (TypeError, ValueError, AttributeError):
        m = cls(cfg)
    m = m.float().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return m


def make_inputs(name, cfg, batch, seq, pad_tail, seed):
    g = torch.Generator().manual_seed(seed)
    kind = MODELS[name][2]
    if kind == "image":
        return {"pixel_values": torch.randn(batch, cfg.num_channels, cfg.image_size,
                                            cfg.image_size, generator=g)}
    ids = torch.randint(3, cfg.vocab_size, (batch, seq), generator=g, dtype=torch.int64)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if batch > 1 and pad_tail:
        mask[1, -pad_tail:] = 0
        if kind == "roberta":
            ids[1, -pad_tail:] = cfg.pad_token_id
    out = {"input_ids": ids, "attention_mask": mask}
    if kind == "bert":
        out["token_type_ids"] = torch.randint(0, 2, (batch, seq), generator=g,
                                              dtype=torch.int64)
    return out


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError("%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout,
                                                   p.stderr))
    return p.stdout


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def check_model(a, name, s, work):
    cfg = make_config(name, s)
    model = build(name, cfg, a.seed)
    ckpt = os.path.join(work, "ckpt-" + name)
    kw = {"max_shard_size": a.shard_size} if a.shard_size else {}
    model.save_pretrained(ckpt, safe_serialization=True, **kw)
    inputs = make_inputs(name, cfg, a.batch, a.seq, a.pad_tail, a.seed + 1)
    with torch.no_grad():
        ref = model(**inputs)
    inp = os.path.join(work, name + "-in.safetensors")
    save_file({k: v.contiguous() for k, v in inputs.items()}, inp)
    repo = os.path.join(work, "repo", name)
    run([a.dprt, "import", ckpt, "-o", repo, "--dtype", a.dtype])
    rows, ok = [], True
    for dev in a.gpus.split(","):
        out = os.path.join(work, "%s-out-%s.safetensors" % (name, dev))
        try:
            run([a.dprt, "run", repo, "--gpus", dev, "--input", inp, "--output", out])
        except RuntimeError as e:
            rows.append((name, dev, "-", float("inf"), str(e).splitlines()[-1]))
            ok = False
            continue
        got = load_file(out)
        for key in OUTPUTS:
            r = getattr(ref, key, None)
            if r is None or key not in got:
                if (r is None) != (key not in got):
                    rows.append((name, dev, key, float("inf"), "missing on one side"))
                    ok = False
                continue
            if tuple(got[key].shape) != tuple(r.shape):
                rows.append((name, dev, key, float("inf"),
                             "shape %s vs %s" % (tuple(got[key].shape), tuple(r.shape))))
                ok = False
                continue
            e = rel_err(got[key].float(), r.float())
            rows.append((name, dev, key, e, "ok" if e <= a.tol else "FAIL"))
            ok &= e <= a.tol
    return rows, ok


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dprt", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "..", "dprt"), help="dprt binary")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--gpus", default="cpu,0", help="devices for dprt run, comma-separated "
                    "(cpu and/or GPU ids; default cpu,0)")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    ap.add_argument("--tol", type=float, help="default 1e-4 (fp32), 2e-2 (fp16/bf16)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--pad-tail", type=int, default=4, help="padded tokens of sample 2")
    ap.add_argument("--shard-size", help="save_pretrained max_shard_size, e.g. 200KB "
                    "(sharded checkpoints)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args(argv)
    unknown = [m for m in a.models.split(",") if m not in MODELS]
    if unknown:
        ap.error("unknown models: %s" % ", ".join(unknown))
    if a.tol is None:
        a.tol = 1e-4 if a.dtype == "fp32" else 2e-2
    if a.batch < 1 or a.seq < 1 or a.pad_tail < 0 or a.pad_tail >= a.seq:
        ap.error("need --batch >= 1 and 0 <= --pad-tail < --seq")
    a.dprt = os.path.abspath(a.dprt)
    if not os.access(a.dprt, os.X_OK):
        ap.error("no dprt binary at %s (build it with ninja, or --dprt)" % a.dprt)
    return a


def main():
    a = parse_args()
    s = SIZES[a.size]
    work = tempfile.mkdtemp(prefix="dprt-hf-")
    all_ok = True
    print("%-16s %-5s %-18s %12s  %s" % ("model", "dev", "output", "rel err", ""))
    try:
        for name in a.models.split(","):
            try:
                rows, ok = check_model(a, name, s, work)
            except RuntimeError as e:
                rows, ok = [(name, "-", "import", float("inf"), str(e).strip())], False
            for r in rows:
                print("%-16s %-5s %-18s %12.3g  %s" % r)
            all_ok &= ok
    finally:
        if a.keep:
            print("work directory: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%s: %s models, %s, %s size, devices %s, tol %g" % (
        "PASS" if all_ok else "FAIL", len(a.models.split(",")), a.dtype, a.size, a.gpus,
        a.tol))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
