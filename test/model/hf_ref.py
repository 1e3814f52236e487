#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tiny Hugging Face checkpoints and a numpy reference of their forward pass.

  hf_ref.py make FAMILY HEAD DIR [--shards N] [--drop T] [--bad-shape T] [--seed S]
      write DIR/config.json, the weights (model.safetensors, or N shards and
      model.safetensors.index.json) named as transformers names them, and
      DIR/inputs.safetensors (the model's inputs, with padding)
  hf_ref.py check DIR OUTPUTS.safetensors [--tol X]
      recompute every output from DIR's weights and inputs in float64 with
      the eager formulas of transformers and compare: max |err| / max |ref|
      per output must be <= X (default 1e-5); exit 1 otherwise

FAMILY: bert roberta distilbert gpt2 vit. HEAD: base seq tok lm img.
Needs numpy only (safetensors is read and written by hand).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

ST_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}
NP_DT = {np.dtype(v): k for k, v in ST_DT.items()}
NEG = float(np.finfo(np.float32).min)


def st_write(path, tensors):
    header, off, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": NP_DT[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b],
                                  dtype=ST_DT[d["dtype"]]).reshape(d["shape"])
    return out


# ---------------------------------------------------------------- configs

ARCH = {
    ("bert", "base"): "BertModel", ("bert", "seq"): "BertForSequenceClassification",
    ("bert", "tok"): "BertForTokenClassification",
    ("roberta", "base"): "RobertaModel",
    ("roberta", "seq"): "RobertaForSequenceClassification",
    ("roberta", "tok"): "RobertaForTokenClassification",
    ("distilbert", "base"): "DistilBertModel",
    ("distilbert", "seq"): "DistilBertForSequenceClassification",
    ("distilbert", "tok"): "DistilBertForTokenClassification",
    ("gpt2", "base"): "GPT2Model", ("gpt2", "lm"): "GPT2LMHeadModel",
    ("gpt2", "tok"): "GPT2ForTokenClassification",
    ("vit", "base"): "ViTModel", ("vit", "img"): "ViTForImageClassification",
}
PREFIX = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert.",
          "gpt2": "transformer.", "vit": "vit."}


def make_config(fam, head):
    labels = {"0": "A", "1": "B", "2": "C"}
    c = {"model_type": fam, "architectures": [ARCH[(fam, head)]]}
    if fam in ("bert", "roberta"):
        c.update(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                 intermediate_size=48, vocab_size=100, max_position_embeddings=40,
                 type_vocab_size=2 if fam == "bert" else 1, layer_norm_eps=1e-12 if fam == "bert" else 1e-5,
                 hidden_act="gelu", pad_token_id=0 if fam == "bert" else 1,
                 position_embedding_type="absolute")
    elif fam == "distilbert":
        c.update(n_layers=2, dim=32, n_heads=4, hidden_dim=48, vocab_size=100,
                 max_position_embeddings=40, activation="gelu", sinusoidal_pos_embds=False,
                 pad_token_id=0)
    elif fam == "gpt2":
        c.update(n_layer=2, n_embd=32, n_head=4, n_inner=None, vocab_size=100,
                 n_positions=40, layer_norm_epsilon=1e-5, activation_function="gelu_new")
    else:
        c.update(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                 intermediate_size=48, hidden_act="gelu", layer_norm_eps=1e-12,
                 image_size=16, patch_size=4, num_channels=3, qkv_bias=True)
    if head in ("seq", "tok", "img"):
        c["id2label"] = labels
        c["label2id"] = {v: int(k) for k, v in labels.items()}
    return c


def cfg_sizes(c):
    fam = c["model_type"]
    if fam == "distilbert":
        return c["n_layers"], c["dim"], c["n_heads"], c["hidden_dim"]
    if fam == "gpt2":
        return c["n_layer"], c["n_embd"], c["n_head"], c["n_inner"] or 4 * c["n_embd"]
    return (c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
            c["intermediate_size"])


def head_of(c):
    a = c["architectures"][0]
    for suf, h in (("ForSequenceClassification", "seq"), ("ForTokenClassification", "tok"),
                   ("LMHeadModel", "lm"), ("ForImageClassification", "img")):
        if a.endswith(suf):
            return h
    return "base"


# ---------------------------------------------------------------- weights

def make_weights(c, rng):
    """State dict of the HF model class named by c, random."""
    fam, head = c["model_type"], head_of(c)
    L, H, _, F = cfg_sizes(c)
    w = {}

    def lin(name, o, i, bias=True):
        b = 1 / math.sqrt(i)
        w[name + ".weight"] = rng.uniform(-b, b, (o, i))
        if bias:
            w[name + ".bias"] = rng.uniform(-b, b, (o,))

    def conv1d(name, i, o):  # GPT-2 Conv1D: [in, out]
        b = 1 / math.sqrt(i)
        w[name + ".weight"] = rng.uniform(-b, b, (i, o))
        w[name + ".bias"] = rng.uniform(-b, b, (o,))

    def ln(name):
        w[name + ".weight"] = 1 + 0.1 * rng.standard_normal(H)
        w[name + ".bias"] = 0.1 * rng.standard_normal(H)

    def emb(name, rows):
        w[name + ".weight"] = rng.standard_normal((rows, H))

    base = PREFIX[fam] if head != "base" else ""
    if fam in ("bert", "roberta", "distilbert"):
        emb(base + "embeddings.word_embeddings", c["vocab_size"])
        emb(base + "embeddings.position_embeddings", c["max_position_embeddings"])
        if fam != "distilbert":
            emb(base + "embeddings.token_type_embeddings", c["type_vocab_size"])
        ln(base + "embeddings.LayerNorm")
        for i in range(L):
            if fam == "distilbert":
                p = "%stransformer.layer.%d." % (base, i)
                for q in ("q_lin", "k_lin", "v_lin", "out_lin"):
                    lin(p + "attention." + q, H, H)
                ln(p + "sa_layer_norm")
                lin(p + "ffn.lin1", F, H)
                lin(p + "ffn.lin2", H, F)
                ln(p + "output_layer_norm")
                continue
            p = "%sencoder.layer.%d." % (base, i)
            for q in ("query", "key", "value"):
                lin(p + "attention.self." + q, H, H)
            lin(p + "attention.output.dense", H, H)
            ln(p + "attention.output.LayerNorm")
            lin(p + "intermediate.dense", F, H)
            lin(p + "output.dense", H, F)
            ln(p + "output.LayerNorm")
        if fam != "distilbert" and (head == "base" or (fam == "bert" and head == "seq")):
            lin(base + "pooler.dense", H, H)
    elif fam == "gpt2":
        emb(base + "wte", c["vocab_size"])
        emb(base + "wpe", c["n_positions"])
        for i in range(L):
            p = "%sh.%d." % (base, i)
            ln(p + "ln_1")
            conv1d(p + "attn.c_attn", H, 3 * H)
            conv1d(p + "attn.c_proj", H, H)
            ln(p + "ln_2")
            conv1d(p + "mlp.c_fc", H, F)
            conv1d(p + "mlp.c_proj", F, H)
        ln(base + "ln_f")
    else:
        P, C = c["patch_size"], c["num_channels"]
        n = (c["image_size"] // P) ** 2
        b = 1 / math.sqrt(C * P * P)
        w[base + "embeddings.patch_embeddings.projection.weight"] = rng.uniform(-b, b, (H, C, P, P))
        w[base + "embeddings.patch_embeddings.projection.bias"] = rng.uniform(-b, b, (H,))
        w[base + "embeddings.cls_token"] = rng.standard_normal((1, 1, H))
        w[base + "embeddings.position_embeddings"] = rng.standard_normal((1, n + 1, H))
        for i in range(L):
            p = "%sencoder.layer.%d." % (base, i)
            ln(p + "layernorm_before")
            for q in ("query", "key", "value"):
                lin(p + "attention.attention." + q, H, H)
            lin(p + "attention.output.dense", H, H)
            ln(p + "layernorm_after")
            lin(p + "intermediate.dense", F, H)
            lin(p + "output.dense", H, F)
        ln(base + "layernorm")
        if head == "base":
            lin(base + "pooler.dense", H, H)
    nl = len(c.get("id2label", {})) or 2
    if head == "seq" and fam == "roberta":
        lin("classifier.dense", H, H)
        lin("classifier.out_proj", nl, H)
    elif head == "seq" and fam == "distilbert":
        lin("pre_classifier", H, H)
        lin("classifier", nl, H)
    elif head in ("seq", "tok", "img"):
        lin("classifier", nl, H)
    return {k: v.astype(np.float32) for k, v in w.items()}


def make_inputs(c, rng):
    fam = c["model_type"]
    if fam == "vit":
        s = c["image_size"]
        return {"pixel_values": rng.standard_normal((2, c["num_channels"], s, s)).astype(np.float32)}
    n, s = 2, 7
    pad = c.get("pad_token_id", 0) or 0
    ids = rng.integers(2, c["vocab_size"], (n, s)).astype(np.int64)
    mask = np.ones((n, s), np.int64)
    mask[1, -2:] = 0
    if fam == "roberta":
        ids[1, -2:] = pad
    out = {"input_ids": ids, "attention_mask": mask}
    if fam == "bert":
        out["token_type_ids"] = rng.integers(0, 2, (n, s)).astype(np.int64)
    return out


# -------------------------------------------------------------- reference

def gelu(x, act):
    if act == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    if act in ("gelu_new", "gelu_pytorch_tanh"):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    if act == "relu":
        return np.maximum(x, 0)
    raise ValueError(act)


def layer_norm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, heads, mask=None, causal=False):
    n, s, h = q.shape
    d = h // heads
    sp = lambda t: t.reshape(n, s, heads, d).transpose(0, 2, 1, 3)
    q, k, v = sp(q), sp(k), sp(v)
    sc = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        sc = np.where(np.tril(np.ones((s, s), bool)), sc, NEG)
    if mask is not None:
        sc = sc + (1.0 - mask[:, None, None, :]) * NEG
    return (softmax(sc) @ v).transpose(0, 2, 1, 3).reshape(n, s, h)


class W:
    def __init__(self, w, prefix):
        self.w, self.p = w, prefix

    def __call__(self, name, top=False):
        return self.w[name if top else self.p + name]

    def lin(self, x, name, top=False):
        y = x @ self(name + ".weight", top).T
        b = (name if top else self.p + name) + ".bias"
        return y + self.w[b] if b in self.w else y


def bert_like(c, w, inp):
    fam = c["model_type"]
    L, H, nh, _ = cfg_sizes(c)
    ids = inp["input_ids"]
    mask = inp.get("attention_mask", np.ones_like(ids)).astype(np.float64)
    if fam == "roberta":
        pad = c["pad_token_id"]
        m = (ids != pad).astype(np.int64)
        pos = np.cumsum(m, 1) * m + pad
    else:
        pos = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    x = w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[pos]
    if fam != "distilbert":
        types = inp.get("token_type_ids", np.zeros_like(ids))
        x = x + w("embeddings.token_type_embeddings.weight")[types]
    eps = 1e-12 if fam == "distilbert" else c["layer_norm_eps"]
    act = c.get("activation" if fam == "distilbert" else "hidden_act", "gelu")
    x = layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
    for i in range(L):
        if fam == "distilbert":
            p = "transformer.layer.%d." % i
            a = attention(w.lin(x, p + "attention.q_lin"), w.lin(x, p + "attention.k_lin"),
                          w.lin(x, p + "attention.v_lin"), nh, mask)
            x = layer_norm(w.lin(a, p + "attention.out_lin") + x, w(p + "sa_layer_norm.weight"),
                           w(p + "sa_layer_norm.bias"), eps)
            f = w.lin(gelu(w.lin(x, p + "ffn.lin1"), act), p + "ffn.lin2")
            x = layer_norm(f + x, w(p + "output_layer_norm.weight"),
                           w(p + "output_layer_norm.bias"), eps)
            continue
        p = "encoder.layer.%d." % i
        a = attention(w.lin(x, p + "attention.self.query"), w.lin(x, p + "attention.self.key"),
                      w.lin(x, p + "attention.self.value"), nh, mask)
        x = layer_norm(w.lin(a, p + "attention.output.dense") + x,
                       w(p + "attention.output.LayerNorm.weight"),
                       w(p + "attention.output.LayerNorm.bias"), eps)
        f = w.lin(gelu(w.lin(x, p + "intermediate.dense"), act), p + "output.dense")
        x = layer_norm(f + x, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"), eps)
    return x


def gpt2(c, w, inp):
    L, H, nh, _ = cfg_sizes(c)
    ids = inp["input_ids"]
    mask = inp.get("attention_mask", np.ones_like(ids)).astype(np.float64)
    eps, act = c["layer_norm_epsilon"], c["activation_function"]
    x = w("wte.weight")[ids] + w("wpe.weight")[np.arange(ids.shape[1])]
    c1 = lambda t, n: t @ w(n + ".weight") + w(n + ".bias")
    for i in range(L):
        p = "h.%d." % i
        h = layer_norm(x, w(p + "ln_1.weight"), w(p + "ln_1.bias"), eps)
        q, k, v = np.split(c1(h, p + "attn.c_attn"), 3, -1)
        x = x + c1(attention(q, k, v, nh, mask, causal=True), p + "attn.c_proj")
        h = layer_norm(x, w(p + "ln_2.weight"), w(p + "ln_2.bias"), eps)
        x = x + c1(gelu(c1(h, p + "mlp.c_fc"), act), p + "mlp.c_proj")
    return layer_norm(x, w("ln_f.weight"), w("ln_f.bias"), eps)


def vit(c, w, inp):
    L, H, nh, _ = cfg_sizes(c)
    px = inp["pixel_values"].astype(np.float64)
    n, C, S, _ = px.shape
    P = c["patch_size"]
    g = S // P
    eps, act = c["layer_norm_eps"], c["hidden_act"]
    pt = px.reshape(n, C, g, P, g, P).transpose(0, 2, 4, 1, 3, 5).reshape(n, g * g, C * P * P)
    pw = w("embeddings.patch_embeddings.projection.weight").reshape(H, -1)
    x = pt @ pw.T + w("embeddings.patch_embeddings.projection.bias")
    cls = np.broadcast_to(w("embeddings.cls_token"), (n, 1, H))
    x = np.concatenate([cls, x], 1) + w("embeddings.position_embeddings")
    for i in range(L):
        p = "encoder.layer.%d." % i
        h = layer_norm(x, w(p + "layernorm_before.weight"), w(p + "layernorm_before.bias"), eps)
        a = attention(w.lin(h, p + "attention.attention.query"),
                      w.lin(h, p + "attention.attention.key"),
                      w.lin(h, p + "attention.attention.value"), nh)
        x = x + w.lin(a, p + "attention.output.dense")
        h = layer_norm(x, w(p + "layernorm_after.weight"), w(p + "layernorm_after.bias"), eps)
        x = x + w.lin(gelu(w.lin(h, p + "intermediate.dense"), act), p + "output.dense")
    return layer_norm(x, w("layernorm.weight"), w("layernorm.bias"), eps)


def reference(c, weights, inp):
    fam, head = c["model_type"], head_of(c)
    weights = {k: v.astype(np.float64) for k, v in weights.items()}
    pfx = PREFIX[fam] if PREFIX[fam] + "embeddings.word_embeddings.weight" in weights or \
        PREFIX[fam] + "wte.weight" in weights or PREFIX[fam] + "embeddings.cls_token" in weights else ""
    w = W(weights, pfx)
    x = {"gpt2": gpt2, "vit": vit}.get(fam, bert_like)(c, w, inp)
    pool = lambda: np.tanh(w.lin(x[:, 0], "pooler.dense"))
    if head == "base":
        out = {"last_hidden_state": x}
        if pfx + "pooler.dense.weight" in weights:
            out["pooler_output"] = pool()
        return out
    if head == "lm":
        return {"logits": x @ w("wte.weight").T}
    if head == "tok":
        return {"logits": w.lin(x, "classifier", True)}
    if fam == "roberta":
        h = np.tanh(w.lin(x[:, 0], "classifier.dense", True))
        return {"logits": w.lin(h, "classifier.out_proj", True)}
    if fam == "distilbert":
        h = np.maximum(w.lin(x[:, 0], "pre_classifier", True), 0)
        return {"logits": w.lin(h, "classifier", True)}
    if fam == "vit":
        return {"logits": w.lin(x[:, 0], "classifier", True)}
    return {"logits": w.lin(pool(), "classifier", True)}


def load_weights(d):
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return st_read(os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    w = {}
    for fn in files:
        w.update(st_read(os.path.join(d, fn)))
    return w


# ------------------------------------------------------------------ main

def cmd_make(a):
    rng = np.random.default_rng(a.seed)
    c = make_config(a.family, a.head)
    w = make_weights(c, rng)
    if a.drop:
        del w[a.drop]
    if a.bad_shape:
        w[a.bad_shape] = np.concatenate([w[a.bad_shape]] * 2, 0)
    os.makedirs(a.dir, exist_ok=True)
    with open(os.path.join(a.dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    if a.shards <= 1:
        st_write(os.path.join(a.dir, "model.safetensors"), w)
    else:
        names = sorted(w)
        wmap = {}
        for k in range(a.shards):
            fn = "model-%05d-of-%05d.safetensors" % (k + 1, a.shards)
            part = {n: w[n] for n in names[k::a.shards]}
            st_write(os.path.join(a.dir, fn), part)
            wmap.update({n: fn for n in part})
        with open(os.path.join(a.dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
    st_write(os.path.join(a.dir, "inputs.safetensors"), make_inputs(c, rng))
    return 0


def cmd_check(a):
    with open(os.path.join(a.dir, "config.json")) as f:
        c = json.load(f)
    ref = reference(c, load_weights(a.dir), st_read(os.path.join(a.dir, "inputs.safetensors")))
    got = st_read(a.outputs)
    bad = 0
    for name, r in ref.items():
        if name not in got:
            print("%s: output %s missing" % (a.outputs, name))
            bad += 1
            continue
        g = got[name].astype(np.float64)
        if g.shape != r.shape:
            print("%s: shape %s, reference %s" % (name, g.shape, r.shape))
            bad += 1
            continue
        rel = np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)
        ok = rel <= a.tol
        print("%s %s %s: max|err|/max|ref| = %.3g%s" % (
            c["model_type"], head_of(c), name, rel, "" if ok else "  > %g FAIL" % a.tol))
        bad += not ok
    extra = set(got) - set(ref)
    if extra:
        print("unexpected outputs: %s" % sorted(extra))
        bad += 1
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("family", choices=["bert", "roberta", "distilbert", "gpt2", "vit"])
    m.add_argument("head", choices=["base", "seq", "tok", "lm", "img"])
    m.add_argument("dir")
    m.add_argument("--shards", type=int, default=1)
    m.add_argument("--drop")
    m.add_argument("--bad-shape")
    m.add_argument("--seed", type=int, default=1)
    k = sub.add_parser("check")
    k.add_argument("dir")
    k.add_argument("outputs")
    k.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    if a.cmd == "make" and (a.family, a.head) not in ARCH:
        ap.error("no head %s for %s" % (a.head, a.family))
    return cmd_make(a) if a.cmd == "make" else cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
