# SPDX-License-Identifier: MIT
"""Small ONNX models for test/model/test_onnx.c, built with onnx.helper.

  python3 onnx_cases.py CASE DIR

writes DIR/model.onnx, DIR/in.safetensors (the inputs) and
DIR/ref.safetensors (onnxruntime's outputs for them). Cases: bert (a
2-layer encoder as torch.onnx exports BertModel: decomposed LayerNorm, erf
GELU, self-attention with a mask, Shape/Gather/Concat reshape targets, the
pooler; bert18: the same in opset 18, ReduceMean's axes an input),
resnet (Conv+BN+Relu, MaxPool, a residual block, GlobalAveragePool,
Flatten, Gemm), mlp (Gemm transB 0, LayerNormalization, tanh GELU, MatMul
without bias, Softmax, Tanh; opset 17), pool (AveragePool, grouped Conv
with bias, BatchNormalization alone), external (mlp with its weights in
model.data); node for node like transformers' torch.onnx exports:
roberta_sdpa (CumSum position ids, SDPA attention with transformers 5's
padding mask), gpt2_sdpa / gpt2_sdpa18 (causal SDPA, c_attn split in
three, addmm linears, Range positions, opsets 14 and 18), vit_sdpa (patch
Conv, CLS concat, positions; vit_sdpa_mask with an all-true mask), gpt2_eager (Trilu causal Where + additive
padding) and distilbert_eager (masked_fill); and refusals: unsup (a Sin
node), gemm_alpha (a Gemm with alpha 2), opset13, opset19, anticausal (a
mask that is neither padding nor causal).
"""
import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
F = TensorProto.FLOAT
I64 = TensorProto.INT64


class G:
    """Nodes and initializers of one graph under construction."""

    def __init__(self, opset=14):
        self.nodes, self.inits, self.k, self.opset = [], [], 0, opset

    def w(self, name, *shape, scale=0.2, center=0.0):
        a = (center + scale * rng.standard_normal(shape)).astype(np.float32)
        self.inits.append(numpy_helper.from_array(a, name))
        return name

    def const(self, arr, dtype=np.int64):
        self.k += 1
        name = "c%d" % self.k
        self.nodes.append(helper.make_node("Constant", [], [name], name="Constant_%d" % self.k,
                                           value=numpy_helper.from_array(np.array(arr, dtype))))
        return name

    def op(self, op, ins, name=None, **attrs):
        self.k += 1
        out = "%s_%d" % (op.lower(), self.k)
        self.nodes.append(helper.make_node(op, ins, [out], name=name or "/%s_%d" % (op, self.k),
                                           **attrs))
        return out

    def linear(self, x, name, k, m, bias=True):
        y = self.op("MatMul", [x, self.w(name + ".weight", k, m)], name + "/MatMul")
        if bias:
            y = self.op("Add", [self.w(name + ".bias", m, scale=0.1), y], name + "/Add")
        return y

    def mean(self, x):
        if self.opset >= 18:  # axes became an input
            return self.op("ReduceMean", [x, self.const([-1])])
        return self.op("ReduceMean", [x], axes=[-1])

    def layernorm(self, x, name, h, eps=1e-12):
        d = self.op("Sub", [x, self.mean(x)])
        var = self.mean(self.op("Pow", [d, self.const(2.0, np.float32)]))
        std = self.op("Sqrt", [self.op("Add", [var, self.const(eps, np.float32)])])
        y = self.op("Div", [d, std])
        y = self.op("Mul", [y, self.w(name + ".weight", h, scale=0.1, center=1.0)])
        return self.op("Add", [y, self.w(name + ".bias", h, scale=0.1)])

    def gelu_erf(self, x):
        e = self.op("Erf", [self.op("Div", [x, self.const(1.4142135381698608, np.float32)])])
        y = self.op("Mul", [x, self.op("Add", [e, self.const(1.0, np.float32)])])
        return self.op("Mul", [y, self.const(0.5, np.float32)])

    def gelu_tanh(self, x):
        c = self.op("Mul", [self.op("Pow", [x, self.const(3.0, np.float32)]),
                            self.const(0.044715, np.float32)])
        t = self.op("Tanh", [self.op("Mul", [self.op("Add", [x, c]),
                                             self.const(0.7978845608, np.float32)])])
        return self.op("Mul", [self.op("Mul", [self.const(0.5, np.float32), x]),
                               self.op("Add", [self.const(1.0, np.float32), t])])


def bert(g):
    h, heads, ffn, vocab, npos = 32, 4, 64, 50, 16
    d = h // heads
    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    seq = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [ids]), g.const(1)], axis=0),
                             g.const([0])])
    pos_buf = numpy_helper.from_array(np.arange(npos, dtype=np.int64)[None, :],
                                      "embeddings.position_ids")
    g.inits.append(pos_buf)
    pos = g.op("Slice", ["embeddings.position_ids", g.const([0]), seq, g.const([1])])
    x = g.op("Gather", [g.w("embeddings.word_embeddings.weight", vocab, h), ids])
    x = g.op("Add", [x, g.op("Gather", [g.w("embeddings.token_type_embeddings.weight", 2, h),
                                        types])])
    x = g.op("Add", [x, g.op("Gather", [g.w("embeddings.position_embeddings.weight", npos, h),
                                        pos])])
    x = g.layernorm(x, "embeddings.LayerNorm", h)
    m = g.op("Cast", [g.op("Unsqueeze", [g.op("Unsqueeze", [mask, g.const([1])]),
                                         g.const([2])])], to=F)
    m = g.op("Mul", [g.op("Sub", [g.const(1.0, np.float32), m]),
                     g.const(-3.4028234663852886e38, np.float32)])
    for i in range(2):
        p = "encoder.layer.%d" % i
        # Reshape targets as torch exports them: from Shape of the input.
        shp = g.op("Shape", [x])
        n_ = g.op("Unsqueeze", [g.op("Gather", [shp, g.const(0)], axis=0), g.const([0])])
        s_ = g.op("Unsqueeze", [g.op("Gather", [shp, g.const(1)], axis=0), g.const([0])])
        split = g.op("Concat", [n_, s_, g.const([heads]), g.const([d])], axis=0)

        def heads_of(name, perm):
            y = g.linear(x, "%s.attention.self.%s" % (p, name), h, h)
            return g.op("Transpose", [g.op("Reshape", [y, split])], perm=perm)

        q = heads_of("query", [0, 2, 1, 3])
        k = heads_of("key", [0, 2, 3, 1]) if i == 0 else g.op(
            "Transpose", [heads_of("key", [0, 2, 1, 3])], perm=[0, 1, 3, 2])
        v = heads_of("value", [0, 2, 1, 3])
        sc = g.op("Div", [g.op("MatMul", [q, k]), g.const(float(np.sqrt(d)), np.float32)])
        pr = g.op("Softmax", [g.op("Add", [sc, m])], axis=-1)
        c = g.op("Transpose", [g.op("MatMul", [pr, v])], perm=[0, 2, 1, 3])
        c = g.op("Reshape", [c, g.op("Concat", [n_, s_, g.const([h])], axis=0)])
        y = g.linear(c, p + ".attention.output.dense", h, h)
        x = g.layernorm(g.op("Add", [y, x]), p + ".attention.output.LayerNorm", h)
        y = g.gelu_erf(g.linear(x, p + ".intermediate.dense", h, ffn))
        y = g.linear(y, p + ".output.dense", ffn, h)
        x = g.layernorm(g.op("Add", [y, x]), p + ".output.LayerNorm", h)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="out"))
    first = g.op("Gather", [x, g.const(0)], axis=1)
    pooled = g.op("Tanh", [g.linear(first, "pooler.dense", h, h)])
    g.nodes.append(helper.make_node("Identity", [pooled], ["pooler_output"], name="out2"))
    tok = lambda n: helper.make_tensor_value_info(n, I64, ["batch", "sequence"])
    ins = [tok(ids), tok(mask), tok(types)]
    outs = [helper.make_tensor_value_info("last_hidden_state", F, ["batch", "sequence", h]),
            helper.make_tensor_value_info("pooler_output", F, ["batch", h])]
    n, s = 2, 7
    feed = {ids: rng.integers(0, vocab, (n, s)), types: rng.integers(0, 2, (n, s)),
            mask: np.array([[1] * s, [1] * 4 + [0] * (s - 4)])}
    return ins, outs, {k_: v_.astype(np.int64) for k_, v_ in feed.items()}, g.opset


def conv_bn(g, x, name, cin, cout, k, s, relu=True):
    y = g.op("Conv", [x, g.w(name + ".weight", cout, cin, k, k)], name + "/Conv",
             kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
    y = g.op("BatchNormalization",
             [y, g.w(name + ".bn.weight", cout, scale=0.1, center=1.0),
              g.w(name + ".bn.bias", cout, scale=0.1), g.w(name + ".bn.running_mean", cout),
              g.w(name + ".bn.running_var", cout, scale=0.1, center=1.0)], epsilon=1e-5)
    return g.op("Relu", [y]) if relu else y


def resnet(g):
    x = conv_bn(g, "input", "conv1", 3, 8, 3, 1)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = conv_bn(g, x, "layer1.0.conv1", 8, 8, 3, 1)
    y = conv_bn(g, y, "layer1.0.conv2", 8, 8, 3, 1, relu=False)
    x = g.op("Relu", [g.op("Add", [y, x])])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    x = g.op("Gemm", [x, g.w("fc.weight", 10, 8), g.w("fc.bias", 10)], "fc/Gemm", transB=1)
    g.nodes.append(helper.make_node("Identity", [x], ["logits"], name="out"))
    ins = [helper.make_tensor_value_info("input", F, ["N", 3, 16, 16])]
    outs = [helper.make_tensor_value_info("logits", F, ["N", 10])]
    return ins, outs, {"input": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}, 14


def mlp(g):
    x = g.op("Gemm", ["x", g.w("fc1.weight", 16, 24), g.w("fc1.bias", 24)], "fc1/Gemm")
    x = g.op("LayerNormalization", [x, g.w("ln.weight", 24, scale=0.1, center=1.0),
                                    g.w("ln.bias", 24, scale=0.1)], "ln", axis=-1,
             epsilon=1e-5)
    x = g.gelu_tanh(x)
    x = g.linear(x, "fc2", 24, 12, bias=False)
    x = g.op("Tanh", [g.op("Softmax", [x], axis=-1)])
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    ins = [helper.make_tensor_value_info("x", F, ["N", 16])]
    outs = [helper.make_tensor_value_info("y", F, ["N", 12])]
    return ins, outs, {"x": rng.standard_normal((3, 16)).astype(np.float32)}, 17


def pool(g):
    x = g.op("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
             count_include_pad=1)
    x = g.op("Conv", [x, g.w("conv.weight", 6, 2, 3, 3), g.w("conv.bias", 6)], "conv",
             kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2)
    x = g.op("Relu", [x])
    x = g.op("BatchNormalization",
             [x, g.w("bn.weight", 6, scale=0.1, center=1.0), g.w("bn.bias", 6, scale=0.1),
              g.w("bn.running_mean", 6), g.w("bn.running_var", 6, scale=0.1, center=1.0)])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    ins = [helper.make_tensor_value_info("x", F, ["N", 4, 8, 8])]
    outs = [helper.make_tensor_value_info("y", F, ["N", 6])]
    return ins, outs, {"x": rng.standard_normal((2, 4, 8, 8)).astype(np.float32)}, 15


def unsup(g):
    x = g.op("Sin", ["x"], "my_sine")
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    ins = [helper.make_tensor_value_info("x", F, ["N", 4])]
    outs = [helper.make_tensor_value_info("y", F, ["N", 4])]
    return ins, outs, {"x": rng.standard_normal((2, 4)).astype(np.float32)}, 14


def gemm_alpha(g):
    x = g.op("Gemm", ["x", g.w("fc.weight", 4, 4)], "scaled_fc", alpha=2.0)
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    ins = [helper.make_tensor_value_info("x", F, ["N", 4])]
    outs = [helper.make_tensor_value_info("y", F, ["N", 4])]
    return ins, outs, {"x": rng.standard_normal((2, 4)).astype(np.float32)}, 14


# ---- torch.onnx exports of transformers 5 (SDPA attention), node for node

def dim(g, x, k):
    """Unsqueeze(Gather(Shape(x), k)): dim k of x as a 1-D shape piece."""
    return g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [x]), g.const(k)], axis=0),
                              g.const([0])])


def sdpa_mask(g, mask, x, causal):
    """The boolean [N, 1, S, S] mask transformers' sdpa_mask builds (padding
    by indexing the flattened mask, causal by comparing aranges), as a
    Where(mask, 0, -inf) bias."""
    s = g.op("Cast", [g.op("Gather", [g.op("Shape", [x]), g.const(1)], axis=0)], to=I64)
    kv = g.op("Range", [g.const(0), s, g.const(1)])
    kv4 = g.op("Unsqueeze", [kv, g.const([0, 1, 2])])
    q4 = g.op("Unsqueeze", [g.op("Range", [g.const(0), s, g.const(1)]), g.const([0, 1, 3])])
    ok = g.op("ConstantOfShape", [g.const([1, 1, 1, 1])],
              value=numpy_helper.from_array(np.array([1], np.bool_)))
    ok = g.op("Cast", [ok], to=TensorProto.BOOL)
    if causal:
        ok = g.op("And", [ok, g.op("LessOrEqual", [kv4, q4])])
    n = g.op("Cast", [g.op("Gather", [g.op("Shape", [x]), g.const(0)], axis=0)], to=I64)
    b4 = g.op("Unsqueeze", [g.op("Range", [g.const(0), n, g.const(1)]), g.const([1, 2, 3])])
    flat = g.op("Flatten", [g.op("Cast", [mask], to=TensorProto.BOOL)], axis=1)
    flat = g.op("Reshape", [flat, g.const([-1])])
    idx = g.op("Add", [g.op("Mul", [b4, g.op("Unsqueeze", [s, g.const([0])])]), kv4])
    pad = g.op("Gather", [flat, idx], axis=0)
    ok = g.op("And", [ok, pad])
    shp = g.op("Concat", [g.op("Unsqueeze", [n, g.const([0])]), g.const([1]),
                          g.op("Unsqueeze", [s, g.const([0])]),
                          g.op("Unsqueeze", [s, g.const([0])])], axis=0)
    ok = g.op("Expand", [ok, shp])
    return g.op("Where", [ok, g.const(0.0, np.float32), g.const(-np.inf, np.float32)])


def sdpa_attention(g, x, q, k, v, bias, h, heads, p):
    """q, k, v [N, S, H] -> the context [N, S, H] as torch exports
    scaled_dot_product_attention: q and k each scaled by d^-1/4, k
    transposed [0,2,3,1], Where(IsNaN(p), 0, p), a reshape to [N, -1, S, d]
    before the last transpose."""
    d = h // heads
    split = g.op("Concat", [dim(g, x, 0), dim(g, x, 1), g.const([-1]), g.const([d])], axis=0)
    qh = g.op("Transpose", [g.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
    kt = g.op("Transpose", [g.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
    vh = g.op("Transpose", [g.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
    c = g.const(float(d ** -0.25), np.float32)
    sc = g.op("MatMul", [g.op("Mul", [qh, c]), g.op("Mul", [kt, c])])
    if bias is not None:
        sc = g.op("Add", [sc, bias])
    pr = g.op("Softmax", [sc], axis=-1)
    pr = g.op("Where", [g.op("IsNaN", [pr]), g.const(0.0, np.float32), pr])
    ctx = g.op("MatMul", [pr, vh])
    ctx = g.op("Reshape", [ctx, g.op("Concat", [dim(g, ctx, 0), g.const([-1]), dim(g, qh, 2),
                                                dim(g, vh, 3)], axis=0)])
    ctx = g.op("Transpose", [ctx], perm=[0, 2, 1, 3])
    return g.op("Reshape", [ctx, g.op("Concat", [dim(g, ctx, 0), dim(g, ctx, 1),
                                                 g.const([-1])], axis=0)], p + "/Reshape_4")


def roberta_sdpa(g):
    """RoBERTa (position ids by CumSum from the pad id) with SDPA attention
    and transformers 5's mask: one layer."""
    h, heads, ffn, vocab, pad = 32, 4, 64, 50, 1
    ids, mask = "input_ids", "attention_mask"
    ne = g.op("Cast", [g.op("Not", [g.op("Equal", [ids, g.const(pad)])])], to=TensorProto.INT32)
    cs = g.op("CumSum", [ne, g.const(1)])
    pos = g.op("Add", [g.op("Cast", [g.op("Mul", [g.op("Cast", [cs], to=TensorProto.INT32), ne])],
                            to=I64), g.const(pad)])
    x = g.op("Gather", [g.w("embeddings.word_embeddings.weight", vocab, h), ids])
    x = g.op("Add", [x, g.op("Gather", [g.w("embeddings.position_embeddings.weight", 20, h),
                                        pos])])
    x = g.layernorm(x, "embeddings.LayerNorm", h, eps=1e-5)
    bias = sdpa_mask(g, mask, x, causal=False)
    p = "encoder.layer.0"
    lin = lambda n: g.linear(x, "%s.attention.self.%s" % (p, n), h, h)
    c = sdpa_attention(g, x, lin("query"), lin("key"), lin("value"), bias, h, heads, p)
    x = g.layernorm(g.op("Add", [g.linear(c, p + ".attention.output.dense", h, h), x]),
                    p + ".attention.output.LayerNorm", h, eps=1e-5)
    y = g.linear(g.gelu_erf(g.linear(x, p + ".intermediate.dense", h, ffn)),
                 p + ".output.dense", ffn, h)
    x = g.layernorm(g.op("Add", [y, x]), p + ".output.LayerNorm", h, eps=1e-5)
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    tok = lambda n: helper.make_tensor_value_info(n, I64, ["batch", "sequence"])
    n, s = 2, 7
    i = rng.integers(2, vocab, (n, s))
    i[1, 5:] = pad
    m = np.ones((n, s), np.int64)
    m[1, 5:] = 0
    outs = [helper.make_tensor_value_info("y", F, ["batch", "sequence", h])]
    return [tok(ids), tok(mask)], outs, {ids: i, mask: m}, g.opset


def addmm(g, x, name, k, m):
    """torch's Conv1D/addmm on [N, S, K]: Reshape to [-1, K], Gemm, back."""
    shp = g.op("Shape", [x])
    last = g.op("Unsqueeze", [g.op("Squeeze", [g.op("Slice", [shp, g.const([-1]),
                                                             g.const([2 ** 63 - 1]),
                                                             g.const([0])]), g.const([0])]),
                              g.const([0])])
    y = g.op("Reshape", [x, g.op("Concat", [g.const([-1]), last], axis=0)])
    y = g.op("Gemm", [y, g.w(name + ".weight", k, m), g.w(name + ".bias", m, scale=0.1)],
             name + "/Gemm")
    return g.op("Reshape", [y, g.op("Concat", [dim(g, x, 0), dim(g, x, 1), g.const([m])],
                                    axis=0)])


def gpt2_sdpa(g, bad=False):
    """GPT-2 as transformers 5 exports it: positions from Range, a float
    Cast, addmm linears, one c_attn split in three, causal + padding mask,
    the last view a no-op Reshape. bad: an anti-causal mask (refused)."""
    h, heads, vocab = 32, 4, 50
    ids, mask = "input_ids", "attention_mask"
    ids2 = g.op("Reshape", [ids, g.op("Concat", [g.const([-1]), dim(g, ids, 1)], axis=0)])
    e = g.op("Gather", [g.w("wte.weight", vocab, h), ids2])
    s = g.op("Cast", [g.op("Gather", [g.op("Shape", [e]), g.const(1)], axis=0)], to=I64)
    pos = g.op("Unsqueeze", [g.op("Range", [g.const(0), s, g.const(1)]), g.const([0])])
    x = g.op("Add", [e, g.op("Cast", [g.op("Gather", [g.w("wpe.weight", 16, h), pos])], to=F)])
    bias = sdpa_mask(g, mask, x, causal=True)
    if bad:
        bias = g.op("Transpose", [bias], perm=[0, 1, 3, 2])
    p = "h.0"
    a = addmm(g, g.layernorm(x, p + ".ln_1", h, eps=1e-5), p + ".attn.c_attn", h, 3 * h)
    q = g.k = g.k + 1
    outs3 = ["split_%d_%d" % (q, i) for i in range(3)]
    g.nodes.append(helper.make_node("Split", [a, g.const([h, h, h])], outs3, name="Split", axis=2))
    c = sdpa_attention(g, x, outs3[0], outs3[1], outs3[2], bias, h, heads, p)
    x = g.op("Add", [addmm(g, c, p + ".attn.c_proj", h, h), x])
    y = g.gelu_tanh(addmm(g, g.layernorm(x, p + ".ln_2", h, eps=1e-5), p + ".mlp.c_fc", h, 4 * h))
    x = g.op("Add", [addmm(g, y, p + ".mlp.c_proj", 4 * h, h), x])
    x = g.layernorm(x, "ln_f", h, eps=1e-5)
    x = g.op("Reshape", [x, g.op("Concat", [g.const([-1]), dim(g, ids, 1), g.const([h])],
                                 axis=0)])
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    tok = lambda n: helper.make_tensor_value_info(n, I64, ["batch", "sequence"])
    n, s = 2, 7
    m = np.ones((n, s), np.int64)
    m[1, 5:] = 0
    outs = [helper.make_tensor_value_info("y", F, ["batch", "sequence", h])]
    return [tok(ids), tok(mask)], outs, {ids: rng.integers(0, vocab, (n, s)), mask: m}, g.opset


def vit_mask(g, x):
    """The mask some transformers 5 releases give ViT: Range(0, S) >= 0 (all
    true) expanded to [N, 1, S, S], as a Where(mask, 0, -inf) bias."""
    s = g.op("Cast", [g.op("Gather", [g.op("Shape", [x]), g.const(1)], axis=0)], to=I64)
    kv = g.op("Unsqueeze", [g.op("Range", [g.const(0), s, g.const(1)]), g.const([0, 1, 2])])
    ok = g.op("GreaterOrEqual", [kv, g.const(0)])
    n = g.op("Gather", [g.op("Shape", [x]), g.const(0)], axis=0)
    shp = g.op("Concat", [g.op("Unsqueeze", [n, g.const([0])]), g.const([1]),
                          g.op("Unsqueeze", [s, g.const([0])]),
                          g.op("Unsqueeze", [s, g.const([0])])], axis=0)
    ok = g.op("Expand", [ok, shp])
    return g.op("Where", [ok, g.const(0.0, np.float32), g.const(-np.inf, np.float32)])


def vit_sdpa(g, masked=False):
    """ViT's embeddings as exported (patch Conv, Reshape to [N, H, -1] from
    Shape, Transpose, Concat with the expanded CLS token, Add positions) and
    one SDPA attention layer, unmasked or (masked) with vit_mask's
    all-true mask."""
    h, heads, img, patch = 32, 4, 16, 4
    npatch = (img // patch) ** 2
    c = g.op("Conv", ["pixel_values", g.w("embeddings.patch_embeddings.projection.weight", h,
                                          3, patch, patch),
                      g.w("embeddings.patch_embeddings.projection.bias", h)], "patch/Conv",
             kernel_shape=[patch, patch], strides=[patch, patch])
    sl = g.op("Slice", [g.op("Shape", [c]), g.const([0]), g.const([2])])
    t = g.op("Transpose", [g.op("Reshape", [c, g.op("Concat", [sl, g.const([-1])], axis=0)])],
             perm=[0, 2, 1])
    n = g.op("Gather", [g.op("Shape", ["pixel_values"]), g.const(0)], axis=0)
    shp = g.op("Concat", [g.op("Unsqueeze", [n, g.const([0])]), g.const([1]), g.const([1])],
               axis=0)
    cls = g.op("Expand", [g.w("embeddings.cls_token", 1, 1, h), shp])
    x = g.op("Add", [g.op("Concat", [cls, t], axis=1),
                     g.w("embeddings.position_embeddings", 1, npatch + 1, h)])
    p = "layers.0"
    y = g.layernorm(x, p + ".layernorm_before", h)
    lin = lambda nm: g.linear(y, "%s.attention.%s" % (p, nm), h, h)
    bias = vit_mask(g, x) if masked else None
    a = sdpa_attention(g, y, lin("query"), lin("key"), lin("value"), bias, h, heads, p)
    x = g.op("Add", [g.linear(a, p + ".output.dense", h, h), x])
    g.nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    ins = [helper.make_tensor_value_info("pixel_values", F, ["batch", 3, img, img])]
    outs = [helper.make_tensor_value_info("y", F, ["batch", npatch + 1, h])]
    return ins, outs, {"pixel_values": rng.standard_normal((2, 3, img, img)).astype(np.float32)}, \
        g.opset


def eager_layer(g, causal):
    """One encoder layer with transformers 4's eager attention as exported:
    causal: GPT-2 style, a Trilu of ones from Shape selecting scores
    (Where(tril, scores, lowest)) and (1 - mask) * lowest added, scores
    divided by sqrt(d) after the MatMul; else DistilBERT style, q divided
    by sqrt(d) first and masked_fill(mask == 0, lowest) (Where(cond,
    lowest, scores))."""
    h, heads, vocab = 32, 4, 50
    d = h // heads
    ids, mask = "input_ids", "attention_mask"
    x = g.op("Gather", [g.w("emb.weight", vocab, h), ids])
    split = g.op("Concat", [dim(g, x, 0), g.const([-1]), g.const([heads]), g.const([d])], axis=0)
    heads_of = lambda n, perm: g.op("Transpose", [g.op("Reshape", [g.linear(x, n, h, h), split])],
                                    perm=perm)
    q = heads_of("q", [0, 2, 1, 3])
    kt = g.op("Transpose", [heads_of("k", [0, 2, 1, 3])], perm=[0, 1, 3, 2])
    v = heads_of("v", [0, 2, 1, 3])
    low = g.const(float(np.finfo(np.float32).min), np.float32)
    if causal:
        sc = g.op("Div", [g.op("MatMul", [q, kt]), g.const(float(np.sqrt(d)), np.float32)])
        s = g.op("Gather", [g.op("Shape", [x]), g.const([1])], axis=0)
        ones = g.op("ConstantOfShape", [g.op("Concat", [s, s], axis=0)],
                    value=numpy_helper.from_array(np.array([1], np.int64)))
        tril = g.op("Cast", [g.op("Trilu", [ones], upper=0)], to=TensorProto.BOOL)
        sc = g.op("Where", [tril, sc, low])
        m = g.op("Cast", [g.op("Unsqueeze", [mask, g.const([1, 2])])], to=F)
        sc = g.op("Add", [sc, g.op("Mul", [g.op("Sub", [g.const(1.0, np.float32), m]), low])])
    else:
        q = g.op("Div", [q, g.const(float(np.sqrt(d)), np.float32)])
        sc = g.op("MatMul", [q, kt])
        cond = g.op("Equal", [g.op("Unsqueeze", [mask, g.const([1, 2])]), g.const(0)])
        sc = g.op("Where", [cond, low, sc])
    c = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [sc], axis=-1), v])],
             perm=[0, 2, 1, 3])
    c = g.op("Reshape", [c, g.op("Concat", [dim(g, x, 0), g.const([-1]), g.const([h])],
                                 axis=0)], "attn/Reshape_4")
    g.nodes.append(helper.make_node("Identity", [g.linear(c, "o", h, h)], ["y"], name="out"))
    tok = lambda n: helper.make_tensor_value_info(n, I64, ["batch", "sequence"])
    m = np.ones((2, 6), np.int64)
    m[1, 4:] = 0
    outs = [helper.make_tensor_value_info("y", F, ["batch", "sequence", h])]
    return [tok(ids), tok(mask)], outs, {ids: rng.integers(0, vocab, (2, 6)), mask: m}, g.opset


def write_st(path, arrays):
    head, off, blobs = {}, 0, []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        a = a.astype(np.int64) if a.dtype.kind == "i" else a
        dt = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        head[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    js = json.dumps(head).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def main():
    case, out = sys.argv[1], sys.argv[2]
    build = {"bert": bert, "bert18": bert, "resnet": resnet, "mlp": mlp, "pool": pool, "external": mlp,
             "unsup": unsup, "gemm_alpha": gemm_alpha, "opset13": mlp, "opset19": mlp,
             "roberta_sdpa": roberta_sdpa, "gpt2_sdpa": gpt2_sdpa, "gpt2_sdpa18": gpt2_sdpa,
             "vit_sdpa": vit_sdpa, "vit_sdpa_mask": lambda g: vit_sdpa(g, True), "gpt2_eager": lambda g: eager_layer(g, True),
             "distilbert_eager": lambda g: eager_layer(g, False), "anticausal": lambda g: gpt2_sdpa(g, bad=True)}[case]
    g = G(18 if case.endswith("18") else 17 if case.startswith("vit_sdpa") else 14)
    ins, outs, feed, opset = build(g)
    opset = {"opset13": 13, "opset19": 19}.get(case, opset)
    graph = helper.make_graph(g.nodes, case, ins, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = out + "/model.onnx"
    if case == "external":
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.data", size_threshold=0)
    else:
        onnx.save_model(model, path)
    write_st(out + "/in.safetensors", feed)
    if case in ("unsup", "gemm_alpha", "opset13", "opset19", "anticausal"):
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    res = sess.run(None, feed)
    write_st(out + "/ref.safetensors", {o.name: r for o, r in zip(outs, res)})


if __name__ == "__main__":
    main()
