#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dprt as a ModelMesh serving runtime, end to end, on 127.0.0.1.

A fake ModelMesh written with grpcio drives mmesh.ModelRuntime
(src/net/proto/model_runtime.proto, turned into a descriptor set with
protoc-c -o and loaded with protobuf's descriptor pool, so the test speaks
the file dprt is built from): runtimeStatus (and its purge of what was
loaded before), predictModelSize, loadModel of bert-tiny packages (a
repository entry directory and a model.dpk file), modelSize, ModelInfer
routed by the mm-model-id header and by the injected model_name (compared
with HTTP's answer for the same model), unloadModel, NOT_FOUND for unknown
ids, concurrent loads, cancelled loads (alone and followed by unloadModel:
nothing stays loaded), no more loads at once than maxLoadingConcurrency
(loads of a ResNet-50 package, long enough to overlap), requests and
responses over 16 MiB, the same over --grpc-listen unix:PATH, and two dprt
processes as two pods. Then, when an nginx binary exists, two dprt
processes behind deploy/nginx-consistent-hash.conf: each model is always
answered by the same backend.

Usage: test_mmesh.py [TEST_NAME...]   (DPRT names the binary under test)
Every wait is bounded; prints "N passed, N failed, N skipped".
"""

import concurrent.futures
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import grpc
import numpy as np
import tritonclient.grpc as tg
import tritonclient.http as th
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tritonclient.utils import InferenceServerException

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DPRT = os.environ.get("DPRT") or os.path.join(ROOT, "dprt")
HOST = "127.0.0.1"
MM = "/mmesh.ModelRuntime/"
HOST_LIMIT = 256 << 20


class Skip(Exception):
    pass


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ------------------------------------------------------------------ the proto

def load_proto(tmp):
    """Message classes of src/net/proto/model_runtime.proto, by name."""
    out = os.path.join(tmp, "model_runtime.pb")
    subprocess.run(["protoc-c", "-I", os.path.join(ROOT, "src/net/proto"), "-o", out,
                    "model_runtime.proto"], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    names = ["LoadModelRequest", "LoadModelResponse", "UnloadModelRequest",
             "UnloadModelResponse", "PredictModelSizeRequest", "PredictModelSizeResponse",
             "ModelSizeRequest", "ModelSizeResponse", "RuntimeStatusRequest",
             "RuntimeStatusResponse"]
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName("mmesh." + n))
            for n in names}


PB = {}
RESP = {"loadModel": "LoadModelResponse", "unloadModel": "UnloadModelResponse",
        "predictModelSize": "PredictModelSizeResponse", "modelSize": "ModelSizeResponse",
        "runtimeStatus": "RuntimeStatusResponse"}
REQ = {"loadModel": "LoadModelRequest", "unloadModel": "UnloadModelRequest",
       "predictModelSize": "PredictModelSizeRequest", "modelSize": "ModelSizeRequest",
       "runtimeStatus": "RuntimeStatusRequest"}


class FakeMesh:
    """What ModelMesh does to its runtime: mmesh.ModelRuntime calls."""

    def __init__(self, target):
        self.ch = grpc.insecure_channel(target)

    def call(self, method, timeout=60, **fields):
        f = self.ch.unary_unary(MM + method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=PB[RESP[method]].FromString)
        return f(PB[REQ[method]](**fields), timeout=timeout)

    def future(self, method, **fields):
        f = self.ch.unary_unary(MM + method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=PB[RESP[method]].FromString)
        return f.future(PB[REQ[method]](**fields), timeout=120)

    def close(self):
        self.ch.close()


def expect_code(code, fn, what):
    try:
        fn()
    except InferenceServerException as e:
        check(e.status() == f"StatusCode.{code}", f"{what}: {e.status()} {e.message()}, "
              f"expected {code}")
        return e.message()
    except grpc.RpcError as e:
        check(e.code().name == code, f"{what}: {e.code()} {e.details()}, expected {code}")
        return e.details()
    raise AssertionError(f"{what}: no error, expected {code}")


# ------------------------------------------------------------------ servers

class Server:
    def __init__(self, tmp, name, models, grpc_spec=f"{HOST}:0", argv=None):
        self.logpath = os.path.join(tmp, name + ".log")
        self.logf = open(self.logpath, "wb")
        env = dict(os.environ, DPRT_CACHE=os.path.join(tmp, "cache"))
        cmd = [DPRT, *argv] if argv else [
            DPRT, "serve", "--gpus", "cpu", "--models", models, "--listen", f"{HOST}:0",
            "--grpc-listen", grpc_spec, "--host-mem-limit", str(HOST_LIMIT)]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp, env=env)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            log = self.log()
            h = re.search(r"info  listening on 127\.0\.0\.1:(\d+)", log)
            g = re.search(r"grpc listening on (\S+)", log)
            if h and g:
                self.port = int(h.group(1))
                self.gaddr = g.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"dprt did not start listening:\n{self.log()}")

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"no exit after SIGTERM:\n{self.log()[-3000:]}")
        check(rc == 0, f"exit {rc} after SIGTERM:\n{self.log()[-3000:]}")


def bert_inputs(batch=2, seq=8):
    ids = (np.arange(batch * seq) % 50 + 1).astype(np.int64).reshape(batch, seq)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), np.int64),
            "token_type_ids": np.zeros((batch, seq), np.int64)}


def grpc_infer(target, model, arrays, mm_id=None):
    c = tg.InferenceServerClient(target)
    ins = []
    for k, a in arrays.items():
        x = tg.InferInput(k, list(a.shape), "INT64")
        x.set_data_from_numpy(a)
        ins.append(x)
    return c.infer(model, ins, headers={"mm-model-id": mm_id} if mm_id else None)


def http_infer(port, model, arrays):
    c = th.InferenceServerClient(f"{HOST}:{port}")
    ins = []
    for k, a in arrays.items():
        x = th.InferInput(k, list(a.shape), "INT64")
        x.set_data_from_numpy(a)
        ins.append(x)
    return c.infer(model, ins)


def same_outputs(a, b, what):
    outs = [o["name"] for o in b.get_response()["outputs"]]
    check(outs, f"{what}: no outputs")
    for o in outs:
        x, y = a.as_numpy(o), b.as_numpy(o)
        check(x is not None and x.shape == y.shape and np.array_equal(x, y),
              f"{what}: output {o} differs")


# ------------------------------------------------------------------ tests

def test_runtime_status(env):
    r = env.mesh.call("runtimeStatus")
    st = PB["RuntimeStatusResponse"]
    check(r.status == st.Status.Value("READY"), f"status {r.status}")
    check(r.capacityInBytes == HOST_LIMIT, f"capacity {r.capacityInBytes}, want {HOST_LIMIT}")
    check(r.maxLoadingConcurrency == 2, f"maxLoadingConcurrency {r.maxLoadingConcurrency}")
    check(r.modelLoadingTimeoutMs > 0 and r.defaultModelSizeInBytes > 0, "timeout and size")
    check(r.runtimeVersion != "", "runtimeVersion")
    mi = r.methodInfos["inference.GRPCInferenceService/ModelInfer"]
    check(list(mi.idInjectionPath) == [1], f"idInjectionPath {list(mi.idInjectionPath)}")


def test_predict_size(env):
    for path in (env.entry, env.dpk, os.path.join(env.entry, "1")):
        r = env.mesh.call("predictModelSize", modelId="x", modelPath=path)
        check(r.sizeInBytes == env.size, f"{path}: {r.sizeInBytes}, want {env.size}")
    expect_code("NOT_FOUND", lambda: env.mesh.call("predictModelSize", modelId="x",
                modelPath=env.tmp + "/absent"), "predict of a missing path")
    bad = os.path.join(env.tmp, "bad.dpk")
    with open(bad, "wb") as f:
        f.write(b"not a package" * 10)
    expect_code("INVALID_ARGUMENT", lambda: env.mesh.call("predictModelSize", modelId="x",
                modelPath=bad), "predict of a corrupt package")
    # predicting loads nothing
    expect_code("NOT_FOUND", lambda: env.mesh.call("modelSize", modelId="x"), "x not loaded")


def test_load_infer_unload(env):
    m = env.mesh
    r = m.call("loadModel", modelId="bert-a__isvc-1", modelType="dprt", modelPath=env.entry)
    check(r.sizeInBytes == env.size, f"load size {r.sizeInBytes}, want {env.size}")
    r = m.call("loadModel", modelId="bert-b", modelPath=env.dpk)
    check(r.sizeInBytes == env.size, f"load size {r.sizeInBytes}")
    check(m.call("modelSize", modelId="bert-a__isvc-1").sizeInBytes == env.size, "modelSize")
    x = bert_inputs()
    want = http_infer(env.srv.port, "bert-a__isvc-1", x)
    got = grpc_infer(env.srv.gaddr, "ignored-name", x, mm_id="bert-a__isvc-1")
    check(got.get_response().model_name == "bert-a__isvc-1",
          f"answered by {got.get_response().model_name}")
    same_outputs(got, want, "mm-model-id infer")
    c = tg.InferenceServerClient(env.srv.gaddr)
    hdr = {"mm-model-id": "bert-a__isvc-1"}
    check(c.is_model_ready("other", headers=hdr), "ModelReady by mm-model-id")
    check(c.get_model_metadata("other", headers=hdr).name == "bert-a__isvc-1",
          "ModelMetadata by mm-model-id")
    check(not c.is_model_ready("bert-a__isvc-1", headers={"mm-model-id": "nope"}),
          "the header overrides the name")
    got = grpc_infer(env.srv.gaddr, "bert-b", x)
    same_outputs(got, want, "infer by model_name (injected id)")
    expect_code("NOT_FOUND", lambda: grpc_infer(env.srv.gaddr, "bert-b", x, mm_id="nope"),
                "infer with an unknown mm-model-id")
    # loading again is a no-op with the same size
    check(m.call("loadModel", modelId="bert-b", modelPath=env.dpk).sizeInBytes == env.size,
          "second load")
    m.call("unloadModel", modelId="bert-a__isvc-1")
    expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId="bert-a__isvc-1"),
                "modelSize after unload")
    expect_code("UNAVAILABLE", lambda: grpc_infer(env.srv.gaddr, "z", x, mm_id="bert-a__isvc-1"),
                "infer after unload")
    same_outputs(grpc_infer(env.srv.gaddr, "z", x, mm_id="bert-b"), want, "bert-b still serves")
    # and back
    m.call("loadModel", modelId="bert-a__isvc-1", modelPath=env.entry)
    same_outputs(grpc_infer(env.srv.gaddr, "z", x, mm_id="bert-a__isvc-1"), want, "reloaded")
    expect_code("INVALID_ARGUMENT", lambda: m.call("loadModel", modelId="bert-a__isvc-1",
                modelPath=env.dpk), "repointing a loaded model")
    m.call("unloadModel", modelId="bert-a__isvc-1")
    m.call("unloadModel", modelId="bert-b")


def test_unknown_ids(env):
    m = env.mesh
    expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId="never"), "modelSize")
    expect_code("NOT_FOUND", lambda: m.call("unloadModel", modelId="never"), "unloadModel")
    expect_code("NOT_FOUND", lambda: m.call("loadModel", modelId="never",
                modelPath=env.tmp + "/absent"), "loadModel of a missing path")
    expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId="never"),
                "a failed load registers nothing usable")
    expect_code("INVALID_ARGUMENT", lambda: m.call("loadModel", modelId="",
                modelPath=env.dpk), "empty id")
    expect_code("UNIMPLEMENTED", lambda: env.mesh.ch.unary_unary(MM + "noSuchMethod")(b""),
                "unknown method")


def test_concurrent_loads(env):
    ids = [f"c{i}" for i in range(6)]
    fs = [env.mesh.future("loadModel", modelId=i, modelPath=env.dpk) for i in ids]
    for f in fs:
        check(f.result().sizeInBytes == env.size, "concurrent load size")
    x = bert_inputs(1, 4)
    for i in ids:
        grpc_infer(env.srv.gaddr, "z", x, mm_id=i)
    inflight = [int(k) for k, lim in re.findall(
        r"model 'c\d': loading \S+ \(mmesh load (\d+) of at most (\d+)\)", env.srv.log())
        if int(lim) == 2]
    check(len(inflight) == len(ids), f"{len(inflight)} load lines for {len(ids)} loads")
    check(max(inflight) <= 2, f"loads in flight at once: {inflight}")
    fs = [env.mesh.future("unloadModel", modelId=i) for i in ids]
    for f in fs:
        f.result()
    for i in ids:
        expect_code("NOT_FOUND", lambda: env.mesh.call("modelSize", modelId=i), "unloaded")


def wait_log(srv, pattern, what, timeout=30):
    """The first match of pattern in srv's log, waiting for it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = re.search(pattern, srv.log())
        if m:
            return m
        time.sleep(0.005)
    raise AssertionError(f"{what}: no /{pattern}/ in the log")


def not_loaded(env, mid, what):
    """mid serves nothing: modelSize NOT_FOUND, ModelReady false, not READY
    in the repository index, inference refused."""
    m = env.mesh
    expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId=mid), f"{what}: modelSize")
    c = tg.InferenceServerClient(env.srv.gaddr)
    check(not c.is_model_ready("z", headers={"mm-model-id": mid}), f"{what}: ready")
    idx = {r.name: r.state for r in c.get_model_repository_index().models}
    check(idx.get(mid, "UNAVAILABLE") == "UNAVAILABLE", f"{what}: index {idx.get(mid)}")


def big_copies(env, n):
    """n byte copies of the big package: each is read and checked on its own
    (one file's host copy is shared), so each load takes its time."""
    out = []
    for i in range(n):
        out.append(os.path.join(env.tmp, f"big-copy{i}.dpk"))
        shutil.copyfile(env.big, out[-1])
    return out


def test_cancel_load(env):
    """A cancelled loadModel leaves nothing loaded; an unloadModel during a
    load waits for it and unloads (cancel then unload, as ModelMesh does)."""
    m = env.mesh
    big = big_copies(env, 3)
    # cancelled, no unload: undone when the load finishes
    f = m.future("loadModel", modelId="k1", modelPath=big[0])
    wait_log(env.srv, r"model 'k1': loading ", "k1 load started")
    check(f.cancel(), "k1: the call was still running when cancelled")
    wait_log(env.srv, r"model 'k1': unloaded \(mmesh\)", "k1 undone", timeout=10)
    check("model 'k1': its loadModel was cancelled while it loaded" in env.srv.log(), "why")
    not_loaded(env, "k1", "cancelled load")
    # cancelled, then unloaded at once: the unload answers after the load is undone
    f = m.future("loadModel", modelId="k2", modelPath=big[1])
    wait_log(env.srv, r"model 'k2': loading ", "k2 load started")
    check(f.cancel(), "k2: the call was still running when cancelled")
    m.call("unloadModel", modelId="k2")
    not_loaded(env, "k2", "cancel then unload")
    # unloaded while loading, not cancelled: the load is CANCELLED, the unload waits
    f = m.future("loadModel", modelId="k3", modelPath=big[2])
    wait_log(env.srv, r"model 'k3': loading ", "k3 load started")
    u = m.future("unloadModel", modelId="k3")
    expect_code("CANCELLED", f.result, "loadModel overtaken by unloadModel")
    u.result()
    not_loaded(env, "k3", "unload during the load")
    check("model 'k3': an unloadModel came while it loaded" in env.srv.log(), "k3 why")
    # still no model after a while (no load finishing late), and the ids load again
    time.sleep(0.2)
    for i in ("k1", "k2", "k3"):
        not_loaded(env, i, f"{i} later")
    check(m.call("loadModel", modelId="k1", modelPath=env.dpk).sizeInBytes == env.size,
          "k1 loads again, from another path")
    x = bert_inputs(1, 4)
    same_outputs(grpc_infer(env.srv.gaddr, "z", x, mm_id="k1"),
                 http_infer(env.srv.port, "k1", x), "k1 after the cancelled load")
    m.call("unloadModel", modelId="k1")
    for f in big:
        os.unlink(f)


def test_loading_concurrency(env):
    """No more loads in flight than runtimeStatus announces, with loads that
    take long enough to overlap: the limit is reached, never passed."""
    lim = env.mesh.call("runtimeStatus").maxLoadingConcurrency
    check(lim >= 1, f"maxLoadingConcurrency {lim}")
    ids = [f"big{i}" for i in range(lim + 1)]
    big = big_copies(env, len(ids))
    mark = len(env.srv.log())
    fs = [env.mesh.future("loadModel", modelId=i, modelPath=p) for i, p in zip(ids, big)]
    for f in fs:
        check(f.result().sizeInBytes == env.big_size, "big load size")
    log = env.srv.log()[mark:]
    # the server counts the loads in flight as each one starts (under its lock)
    counted = [int(k) for k in re.findall(r"model 'big\d+': loading \S+ \(mmesh load (\d+) of "
                                          r"at most %d\)" % lim, log)]
    check(len(counted) == len(ids), f"{len(counted)} load lines for {len(ids)} loads")
    check(max(counted) == lim, f"loads in flight: {counted}, limit {lim} never passed nor reached")
    for i in ids:
        env.mesh.call("unloadModel", modelId=i)
    for f in big:
        os.unlink(f)


def test_big_messages(env):
    """ModelInfer routed by mm-model-id with a request, then a response, of
    more than 16 MiB (ModelMesh's default message limit is 16 MiB)."""
    m = env.mesh
    rn = os.path.join(env.tmp, "resnet-tiny.dpk")
    subprocess.run([DPRT, "zoo", "resnet-tiny", "-o", rn], check=True, stdout=subprocess.DEVNULL)
    m.call("loadModel", modelId="rn", modelPath=rn)
    m.call("loadModel", modelId="bb", modelPath=env.dpk)
    try:
        img = np.random.default_rng(3).uniform(-1, 1, (1400, 3, 32, 32)).astype(np.float32)
        check(img.nbytes > 16 << 20, f"request of {img.nbytes} bytes")
        c = tg.InferenceServerClient(env.srv.gaddr)
        x = tg.InferInput("input", list(img.shape), "FP32")
        x.set_data_from_numpy(img)
        got = c.infer("z", [x], headers={"mm-model-id": "rn"})
        h = th.InferenceServerClient(f"{HOST}:{env.srv.port}", network_timeout=120)
        y = th.InferInput("input", list(img.shape), "FP32")
        y.set_data_from_numpy(img, binary_data=True)
        same_outputs(got, h.infer("rn", [y]), "a 17 MiB request")
        x = bert_inputs(1040, 64)
        got = grpc_infer(env.srv.gaddr, "z", x, mm_id="bb")
        big = got.as_numpy("last_hidden_state")
        check(big.nbytes > 16 << 20, f"response of {big.nbytes} bytes")
        ins = []
        for k, a in x.items():
            t = th.InferInput(k, list(a.shape), "INT64")
            t.set_data_from_numpy(a, binary_data=True)
            ins.append(t)
        outs = [th.InferRequestedOutput(n, binary_data=True)
                for n in ("last_hidden_state", "pooler_output")]
        same_outputs(got, h.infer("bb", ins, outputs=outs), "a 17 MiB response")
    finally:
        m.call("unloadModel", modelId="rn")
        m.call("unloadModel", modelId="bb")


def test_two_pods(env):
    """Two dprt processes as two ModelMesh pods (one on TCP, one on a Unix
    socket), each driven by its own mesh connection: a model loads where it
    is placed and only there, one id placed on both answers the same from
    each, and one pod's unload and runtimeStatus leave the other alone."""
    sock = os.path.join(env.tmp, "pod-b.sock")
    pa = Server(env.tmp, "pod-a", env.models)
    pb = Server(env.tmp, "pod-b", env.models, "unix:" + sock)
    ma, mb = FakeMesh(pa.gaddr), FakeMesh(pb.gaddr)
    try:
        for mm in (ma, mb):
            check(mm.call("runtimeStatus").capacityInBytes == HOST_LIMIT, "capacity per pod")
        ma.call("loadModel", modelId="only-a", modelPath=env.dpk)
        mb.call("loadModel", modelId="only-b", modelPath=env.entry)
        for mm in (ma, mb):
            check(mm.call("loadModel", modelId="both", modelPath=env.dpk).sizeInBytes ==
                  env.size, "both")
        x = bert_inputs()
        want = http_infer(pa.port, "only-a", x)
        same_outputs(grpc_infer(pa.gaddr, "z", x, mm_id="only-a"), want, "only-a on a")
        same_outputs(grpc_infer(pb.gaddr, "z", x, mm_id="only-b"), want, "only-b on b")
        expect_code("NOT_FOUND", lambda: grpc_infer(pb.gaddr, "z", x, mm_id="only-a"),
                    "only-a is not on b")
        expect_code("NOT_FOUND", lambda: mb.call("modelSize", modelId="only-a"), "b: only-a")
        expect_code("NOT_FOUND", lambda: grpc_infer(pa.gaddr, "z", x, mm_id="only-b"),
                    "only-b is not on a")
        same_outputs(grpc_infer(pa.gaddr, "z", x, mm_id="both"), want, "both on a")
        same_outputs(grpc_infer(pb.gaddr, "z", x, mm_id="both"), want, "both on b")
        ma.call("unloadModel", modelId="both")
        expect_code("UNAVAILABLE", lambda: grpc_infer(pa.gaddr, "z", x, mm_id="both"),
                    "unloaded on a")
        same_outputs(grpc_infer(pb.gaddr, "z", x, mm_id="both"), want, "b still serves both")
        ma.call("runtimeStatus")  # pod a restarts its mesh: purges a only
        expect_code("NOT_FOUND", lambda: ma.call("modelSize", modelId="only-a"), "a purged")
        check(mb.call("modelSize", modelId="only-b").sizeInBytes == env.size, "b keeps only-b")
        check(mb.call("modelSize", modelId="both").sizeInBytes == env.size, "b keeps both")
    finally:
        ma.close()
        mb.close()
        pa.stop()
        pb.stop()


def test_status_purges(env):
    """runtimeStatus (ModelMesh starting) unloads what loadModel loaded."""
    m = env.mesh
    m.call("loadModel", modelId="p1", modelPath=env.dpk)
    m.call("loadModel", modelId="p2", modelPath=env.entry)
    m.call("loadModel", modelId="p3", modelPath=env.dpk)
    m.call("unloadModel", modelId="p3")
    check(m.call("modelSize", modelId="p1").sizeInBytes == env.size, "p1 loaded")
    r = m.call("runtimeStatus")
    check(r.status == PB["RuntimeStatusResponse"].Status.Value("READY"), "READY")
    for i in ("p1", "p2", "p3"):
        expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId=i), f"{i} after status")
    check("unloaded 2 models loaded before" in env.srv.log(), "purge log line")
    m.call("loadModel", modelId="p1", modelPath=env.dpk)
    check(m.call("modelSize", modelId="p1").sizeInBytes == env.size, "p1 loads again")
    m.call("unloadModel", modelId="p1")


def test_unix_socket(env):
    sock = os.path.join(env.tmp, "mm.sock")
    srv = Server(env.tmp, "unix", env.models, "unix:" + sock)
    try:
        check(srv.gaddr == "unix:" + sock, f"listening on {srv.gaddr}")
        m = FakeMesh("unix:" + sock)
        r = m.call("runtimeStatus")
        check(r.capacityInBytes == HOST_LIMIT, "capacity over unix")
        check(m.call("loadModel", modelId="u", modelPath=env.entry).sizeInBytes == env.size,
              "load over unix")
        x = bert_inputs()
        same_outputs(grpc_infer("unix:" + sock, "z", x, mm_id="u"),
                     http_infer(srv.port, "u", x), "infer over unix")
        m.call("unloadModel", modelId="u")
        expect_code("NOT_FOUND", lambda: m.call("modelSize", modelId="u"), "unix unload")
        m.close()
    finally:
        srv.stop()
    check(not os.path.exists(sock), "the socket file is removed at exit")


def nginx_conf(tmp, ports, listen):
    with open(os.path.join(ROOT, "deploy/nginx-consistent-hash.conf")) as f:
        ex = f.read()
    check("127.0.0.1:8001" in ex and "127.0.0.1:8002" in ex and "listen 8080" in ex,
          "the example's backends and port")
    ex = ex.replace("127.0.0.1:8001", f"127.0.0.1:{ports[0]}")
    ex = ex.replace("127.0.0.1:8002", f"127.0.0.1:{ports[1]}")
    ex = ex.replace("listen 8080", f"listen 127.0.0.1:{listen}")
    tmps = "".join(f"{k}_temp_path {tmp}/ngx-{k};\n" for k in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx.err;\n"
            f"events {{}}\nhttp {{\naccess_log off;\n{tmps}{ex}\n}}\n")


def free_port():
    import socket
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_nginx(env):
    ngx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
    if not ngx:
        raise Skip("no nginx binary (apt-get install nginx-light)")
    repo = os.path.join(env.tmp, "nginx-models")
    names = [f"m{i}" for i in range(32)]
    for n in names:
        os.makedirs(os.path.join(repo, n, "1"))
        shutil.copy(env.dpk, os.path.join(repo, n, "1", "model.dpk"))
    a = Server(env.tmp, "backend-a", repo)
    b = Server(env.tmp, "backend-b", repo)
    proc = None
    try:
        listen = free_port()
        conf = os.path.join(env.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(nginx_conf(env.tmp, (a.port, b.port), listen))
        proc = subprocess.Popen([ngx, "-p", env.tmp, "-c", conf, "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        end = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection(HOST, listen, timeout=5)
                c.request("GET", "/v2/health/ready")
                c.getresponse().read()
                break
            except OSError:
                check(proc.poll() is None and time.monotonic() < end, "nginx did not start")
                time.sleep(0.05)
        backends = {f"127.0.0.1:{a.port}": a, f"127.0.0.1:{b.port}": b}
        seen = {}
        x = bert_inputs(1, 4)
        for rnd in range(3):
            for n in names:
                c = http.client.HTTPConnection(HOST, listen, timeout=20)
                c.request("GET", f"/v2/models/{n}/ready")
                r = c.getresponse()
                r.read()
                check(r.status == 200, f"{n} ready through nginx: {r.status}")
                up = r.getheader("X-Upstream")
                check(up in backends, f"{n}: X-Upstream {up}")
                check(seen.setdefault(n, up) == up, f"{n} moved from {seen[n]} to {up}")
                c.close()
            c = th.InferenceServerClient(f"{HOST}:{listen}")
            for n in names[:4]:
                ins = []
                for k, v in x.items():
                    t = th.InferInput(k, list(v.shape), "INT64")
                    t.set_data_from_numpy(v)
                    ins.append(t)
                c.infer(n, ins)
        check(len(set(seen.values())) == 2, f"every model on one backend: {seen}")
        # the backend that answered a model's inferences is the one nginx named
        for n in names[:4]:
            for addr, s in backends.items():
                cn = http.client.HTTPConnection(HOST, s.port, timeout=10)
                cn.request("GET", "/metrics")
                body = cn.getresponse().read().decode()
                cn.close()
                mt = re.search(r'dprt_requests_total\{model="%s"[^}]*\} (\d+)' % n, body)
                hit = bool(mt) and int(mt.group(1)) > 0
                check(bool(hit) == (addr == seen[n]),
                      f"{n}: requests at {addr}: {bool(hit)}, nginx said {seen[n]}")
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=10)
        a.stop()
        b.stop()


def manifest_args(name):
    """The container args of a deploy/ manifest (its "- value" list)."""
    with open(os.path.join(ROOT, "deploy", name)) as f:
        lines = f.read().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip() == "args:")
    args = []
    for ln in lines[i + 1:]:
        m = re.match(r"\s*- (\"[^\"]*\"|\S+)", ln)
        if not m:
            break
        args.append(m.group(1).strip('"'))
    return args


def test_manifests(env):
    """The args of the deploy/ ServingRuntimes start dprt as described."""
    sub = {":8001": f"{HOST}:0", ":8081": f"{HOST}:0", ":8080": f"{HOST}:0",
           ":9000": f"{HOST}:0", "/models": env.models, "/mnt/models": env.tmp + "/pkgs"}
    args = [sub.get(a, a) for a in manifest_args("modelmesh-servingruntime.yaml")]
    check(args[0] == "serve" and "explicit" in args, f"modelmesh args {args}")
    srv = Server(env.tmp, "manifest-mm", None, argv=args)
    try:
        m = FakeMesh(srv.gaddr)
        r = m.call("runtimeStatus")
        lim = args[args.index("--host-mem-limit") + 1]
        check(r.capacityInBytes == int(lim[:-1]) << 30, f"capacity {r.capacityInBytes}, {lim}")
        m.call("loadModel", modelId="mf", modelPath=env.dpk)
        x = bert_inputs()
        same_outputs(grpc_infer(srv.gaddr, "z", x, mm_id="mf"), http_infer(srv.port, "mf", x),
                     "modelmesh manifest")
        m.close()
    finally:
        srv.stop()
    args = [sub.get(a, a) for a in manifest_args("kserve-servingruntime.yaml")]
    srv = Server(env.tmp, "manifest-ks", None, argv=args)
    try:
        x = bert_inputs()
        same_outputs(grpc_infer(srv.gaddr, "bert-tiny", x), http_infer(srv.port, "bert-tiny", x),
                     "kserve manifest: the repository's model serves at start")
    finally:
        srv.stop()


TESTS = [test_runtime_status, test_predict_size, test_load_infer_unload, test_unknown_ids,
         test_concurrent_loads, test_cancel_load, test_loading_concurrency, test_big_messages,
         test_status_purges, test_unix_socket, test_two_pods, test_manifests, test_nginx]


class Env:
    pass


def main():
    want = set(sys.argv[1:])
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix="dprt-mmesh.") as tmp:
        PB.update(load_proto(tmp))
        env = Env()
        env.tmp = tmp
        env.models = os.path.join(tmp, "models")
        os.makedirs(env.models)
        subprocess.run([DPRT, "zoo", "bert-tiny", "-o", os.path.join(tmp, "pkgs")], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([DPRT, "zoo", "bert-tiny", "-o", os.path.join(tmp, "one.dpk")],
                       check=True, stdout=subprocess.DEVNULL)
        env.entry = os.path.join(tmp, "pkgs", "bert-tiny")
        env.dpk = os.path.join(tmp, "one.dpk")
        # a package that takes long enough to load for a cancel to come first
        env.big = os.path.join(tmp, "big.dpk")
        subprocess.run([DPRT, "zoo", "resnet50", "--dtype", "fp16", "-o", env.big], check=True,
                       stdout=subprocess.DEVNULL)
        # 139456 FP32 parameters, aligned layers: at least 4 bytes each, at
        # most the file
        env.srv = Server(tmp, "main", env.models)
        env.mesh = FakeMesh(env.srv.gaddr)
        try:
            env.size = env.mesh.call("predictModelSize", modelPath=env.dpk).sizeInBytes
            check(139456 * 4 <= env.size <= os.path.getsize(env.dpk),
                  f"bert-tiny weights {env.size} bytes")
            env.big_size = env.mesh.call("predictModelSize", modelPath=env.big).sizeInBytes
            for t in TESTS:
                if want and t.__name__ not in want:
                    continue
                t0 = time.monotonic()
                try:
                    t(env)
                    passed += 1
                    print(f"ok   {t.__name__} ({time.monotonic() - t0:.2f} s)")
                except Skip as e:
                    skipped += 1
                    print(f"SKIP {t.__name__}: {e}")
                except Exception:
                    failed += 1
                    print(f"FAIL {t.__name__}")
                    traceback.print_exc()
            log = env.srv.log()
        finally:
            env.mesh.close()
            env.srv.stop()
        if failed:
            print("--- server log (tail)\n" + log[-4000:])
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
