# SPDX-License-Identifier: MIT
"""ONNX's own node tests (Debian's libonnx-testdata) through dprt.

  python3 onnx_nodes.py DPRT [DATA_DIR]

For every node test (DATA_DIR/test_*/model.onnx with test_data_set_*/
input_*.pb and output_*.pb; default /usr/include/onnx/backend/test/data/
node) whose ops are all ops dprt lowers: `DPRT import` the model, `DPRT run`
it on the CPU backend with the stored inputs and compare every output with
the stored one (max abs err / max abs value <= 1e-5). Two changes are made
to a copy of the model first, both keeping its meaning:
  * an opset below 14 (dprt reads 14 to 18) is raised to 14 when none of
    the model's ops changed between its opset and 14;
  * the inputs dprt wants as constants (Conv/Gemm/MatMul weights and
    biases, norm parameters, Gather tables) become initializers holding
    the stored input.
An import refused with dprt's message ("ONNX import: ... not supported")
is listed as skipped with that message; a crash, a refusal without the
message, a failed run or a wrong output fails. Prints one line per test
and "N passed, N failed, N skipped"; exits 1 on a failure, 77 when the
data is not installed.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import defs, numpy_helper

SUPPORTED = {"Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool",
             "GlobalAveragePool", "Add", "MatMul", "Gemm", "Gather", "LayerNormalization",
             "Softmax", "Tanh", "Flatten", "Identity", "Dropout", "Erf", "Mul", "Reshape"}
CONST_INPUTS = {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1,),
                "BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2),
                "Gather": (0,)}
TOL = 1e-5


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, numpy_helper.to_array(t)


def raise_opset(m):
    """Opset 14 if the model's ops are unchanged up to it; None if not."""
    ops = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if not ops or ops[0].version >= 14:
        return True
    v = ops[0].version
    for n in m.graph.node:
        try:
            if defs.get_schema(n.op_type, 14).since_version > v:
                return False
        except Exception:
            return False
    ops[0].version = 14
    return True


def write_st(path, arrays):
    import json
    import struct
    head, off, blobs = {}, 0, []
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dt = {np.float32: "F32", np.int64: "I64", np.int32: "I32"}[a.dtype.type]
        head[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    js = json.dumps(head).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(blobs))


def read_st(path):
    import json
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        dt = {"F32": np.float32, "I64": np.int64, "F16": np.float16}[v["dtype"]]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dt).reshape(v["shape"])
    return out


def prepare(src, dst):
    """The patched model and its first data set in dst; None or why not."""
    m = onnx.load(os.path.join(src, "model.onnx"))
    ops = {n.op_type for n in m.graph.node}
    if not ops <= SUPPORTED:
        return "ops %s" % ",".join(sorted(ops - SUPPORTED))
    if not raise_opset(m):
        return "an op changed between the model's opset and 14"
    ds = os.path.join(src, "test_data_set_0")
    try:
        return prepare_data(m, ds, dst)
    except (ValueError, TypeError, KeyError) as e:
        return "stored data not readable here: %s" % e


def prepare_data(m, ds, dst):
    ins = [load_pb(os.path.join(ds, f)) for f in sorted(os.listdir(ds)) if f.startswith("input_")]
    outs = [load_pb(os.path.join(ds, f)) for f in sorted(os.listdir(ds))
            if f.startswith("output_")]
    names = [i.name for i in m.graph.input]
    feed = dict(zip(names, (a for _, a in ins)))
    fold = set()
    for n in m.graph.node:
        for k in CONST_INPUTS.get(n.op_type, ()):
            if k < len(n.input) and n.input[k] in feed and feed[n.input[k]].dtype == np.float32:
                fold.add(n.input[k])
    for name in fold:
        m.graph.initializer.append(numpy_helper.from_array(feed.pop(name), name))
    keep = [i for i in m.graph.input if i.name not in fold]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    if any(a.dtype not in (np.float32, np.int64) for a in feed.values()):
        return "input types"
    onnx.save(m, os.path.join(dst, "model.onnx"))
    write_st(os.path.join(dst, "in.safetensors"), feed)
    return dict((o.name, a) for o, (_, a) in zip(m.graph.output, outs))


def check(dprt, src, dst):
    """'pass', 'skip: why' or 'FAIL: why'."""
    ref = prepare(src, dst)
    if isinstance(ref, str):
        return "skip: " + ref
    if any(a.dtype != np.float32 for a in ref.values()):
        return "skip: output types"
    p = subprocess.run([dprt, "import", os.path.join(dst, "model.onnx"), "-o",
                        os.path.join(dst, "repo", "m")], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    msg = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode == 1 and "ONNX import:" in msg and "not supported" in msg:
        return "skip: " + msg.split("ONNX import: ", 1)[1]
    if p.returncode:
        return "FAIL: import exited %d: %s" % (p.returncode, msg)
    out = os.path.join(dst, "out.safetensors")
    p = subprocess.run([dprt, "run", "--input", os.path.join(dst, "in.safetensors"),
                        "--output", out, os.path.join(dst, "repo", "m")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        return "FAIL: run exited %d: %s" % (p.returncode, p.stdout.strip()[-200:])
    got = read_st(out)
    for name, want in ref.items():
        if name not in got or got[name].shape != want.shape:
            return "FAIL: output %s shape %s, want %s" % (
                name, got[name].shape if name in got else None, want.shape)
        den = max(np.abs(want).max(), 1e-30)
        err = np.abs(got[name].astype(np.float64) - want).max() / den
        if not err <= TOL:
            return "FAIL: %s max abs err / max abs %.3g > %g" % (name, err, TOL)
    return "pass"


def main():
    dprt = os.path.abspath(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) > 2 else "/usr/include/onnx/backend/test/data/node"
    if not os.path.isdir(data):
        print("SKIP: %s not found (apt-get install libonnx-testdata)" % data)
        return 77
    tmp = tempfile.mkdtemp(prefix="dprt-onnx-nodes.")
    counts = {"pass": 0, "FAIL": 0, "skip": 0}
    try:
        for t in sorted(os.listdir(data)):
            src = os.path.join(data, t)
            if not os.path.exists(os.path.join(src, "model.onnx")):
                continue
            m = onnx.load(os.path.join(src, "model.onnx"), load_external_data=False)
            if not {n.op_type for n in m.graph.node} & SUPPORTED:
                continue  # tests of ops dprt does not have at all
            dst = os.path.join(tmp, t)
            os.makedirs(dst)
            r = check(dprt, src, dst)
            counts[r.split(":")[0]] += 1
            print("%s %s" % (t, r))
            shutil.rmtree(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed, %d skipped" % (counts["pass"], counts["FAIL"], counts["skip"]))
    return 1 if counts["FAIL"] or not counts["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
