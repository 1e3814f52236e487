#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dprt as a ModelMesh serving runtime, end to end, on 127.0.0.1.

A fake ModelMesh written with grpcio drives mmesh.ModelRuntime
(src/net/proto/model_runtime.proto, turned into a descriptor set with
protoc-c -o and loaded with protobuf's descriptor pool, so the test speaks
the file dprt is built from): runtimeStatus, predictModelSize, loadModel of
bert-tiny packages (a repository entry directory and a model.dpk file),
modelSize, ModelInfer routed by the mm-model-id header (compared with HTTP's
answer for the same model), unloadModel, NOT_FOUND for unknown ids,
concurrent loads, and the same over --grpc-listen unix:PATH. Then, when an
nginx binary exists, two dprt processes behind deploy/nginx-consistent-hash.conf:
each model is always answered by the same backend.

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
    names = [f"m{i}" for i in range(12)]
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
         test_concurrent_loads, test_status_purges, test_unix_socket, test_manifests,
         test_nginx]


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
        # 139456 FP32 parameters, aligned layers: at least 4 bytes each, at
        # most the file
        env.srv = Server(tmp, "main", env.models)
        env.mesh = FakeMesh(env.srv.gaddr)
        try:
            env.size = env.mesh.call("predictModelSize", modelPath=env.dpk).sizeInBytes
            check(139456 * 4 <= env.size <= os.path.getsize(env.dpk),
                  f"bert-tiny weights {env.size} bytes")
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
