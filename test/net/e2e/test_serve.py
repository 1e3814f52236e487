#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""End-to-end tests of `dprt serve`: real sockets on 127.0.0.1, real clients.

Each test starts the servers it needs (`dprt --listen 127.0.0.1:0 ...`, the
port read from the log) on repositories of tiny zoo models and checks what
a client sees: every endpoint with curl; JSON and binary inference against
`dprt run --input/--output`; the official Triton HTTP client; /metrics
through the Prometheus text parser; 64 connections of pipelined requests;
a battery of bad requests, each followed by a health check; the connection
limit and the idle timeout; LRU eviction and the protection of models with
queued requests; SIGTERM with requests in flight.

Usage: test_serve.py [TEST_NAME...]   (DPRT names the binary under test)
Every wait is bounded; the whole run stops itself after SUITE_LIMIT_S.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DPRT = os.environ.get("DPRT") or os.path.join(ROOT, "dprt")
HOST = "127.0.0.1"
SUITE_LIMIT_S = 240
T0 = time.monotonic()

BERT_W = 614400  # weight bytes of bert-tiny (checked in make_repo)

# ------------------------------------------------------------------ helpers

ST_DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
         "U8": np.uint8, "BOOL": np.bool_}
KS_DT = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
         "UINT8": np.uint8, "BOOL": np.bool_}
NP_KS = {np.dtype(v): k for k, v in KS_DT.items()}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def left():
    """Seconds left of the suite's budget (every wait is bounded by it)."""
    return max(0.0, SUITE_LIMIT_S - (time.monotonic() - T0))


def st_write(path, tensors):
    """Write a safetensors file: u64 header length, JSON header, raw data."""
    hdr, off, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = [k for k, v in ST_DT.items() if np.dtype(v) == a.dtype][0]
        b = a.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        out[name] = np.frombuffer(raw, dtype=ST_DT[t["dtype"]]).reshape(t["shape"])
    return out


def close_enough(got, want, what):
    check(got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}")
    check(got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}")
    if np.issubdtype(want.dtype, np.floating):
        err = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        check(np.allclose(got, want, rtol=1e-4, atol=1e-5),
              f"{what}: differs from dprt run by up to {err:g}")
    else:
        check(np.array_equal(got, want), f"{what}: differs from dprt run")


def run_dprt(*args, timeout=60):
    p = subprocess.run([DPRT, *args], capture_output=True, text=True, timeout=timeout)
    check(p.returncode == 0, f"dprt {' '.join(args)}: exit {p.returncode}\n{p.stderr}")
    return p.stdout


class Server:
    """A dprt serve process on 127.0.0.1 with an ephemeral port."""

    def __init__(self, tmp, name, models, *args):
        self.name = name
        self.logpath = os.path.join(tmp, name + ".log")
        self.logf = open(self.logpath, "wb")
        cmd = [DPRT, "--listen", f"{HOST}:0", "--models", models, *args]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.port = None
        end = time.monotonic() + min(30, left())
        while time.monotonic() < end:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                if "explicit" not in args:  # no health request to count then
                    self.wait_loaded(end)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"{name}: dprt did not start listening:\n{self.log()}")

    def wait_loaded(self, end):
        """Until readiness no longer says the repository is loading (dprt
        listens while its models load)."""
        while time.monotonic() < end:
            st, _, body = request(self.port, "GET", "/v2/health/ready", timeout=10)
            if st != 503 or b"loading the repository" not in body:
                return
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: models still loading:\n{self.log()}")

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        """SIGTERM, then the exit status (killed and failed if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=min(timeout, left() + 1))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name}: no exit {timeout} s after SIGTERM:\n"
                                 f"{self.log()[-3000:]}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.logf.close()


def request(port, method, path, body=None, headers=None, timeout=20):
    """One request on a fresh connection: (status, headers, body)."""
    c = http.client.HTTPConnection(HOST, port, timeout=min(timeout, left() + 1))
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def healthy(port, what):
    st, _, _ = request(port, "GET", "/v2/health/ready", timeout=10)
    check(st == 200, f"after {what}: /v2/health/ready gave {st}")


class Reader:
    """HTTP/1.1 responses off a raw socket, for pipelining and bad input."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def _fill(self):
        d = self.s.recv(1 << 16)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def eof(self):
        """True if the server closes the connection (within the timeout)."""
        try:
            while True:
                d = self.s.recv(1 << 16)
                if not d:
                    return True
        except (ConnectionResetError, socket.timeout):
            return False


def connect(port, timeout=20):
    s = socket.create_connection((HOST, port), timeout=min(timeout, left() + 1))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ------------------------------------------------------------------ KServe bodies

def infer_body(inputs, outputs=None, binary_in=False, binary_out=False, req_id=None):
    """(body, headers) of an infer request; inputs: name -> ndarray."""
    js = {"inputs": []}
    raw = []
    for name, a in inputs.items():
        t = {"name": name, "datatype": NP_KS[a.dtype], "shape": list(a.shape)}
        if binary_in:
            b = np.ascontiguousarray(a).tobytes()
            t["parameters"] = {"binary_data_size": len(b)}
            raw.append(b)
        else:
            t["data"] = a.flatten().tolist()
        js["inputs"].append(t)
    if req_id is not None:
        js["id"] = req_id
    if outputs is not None:
        js["outputs"] = [{"name": n, "parameters": {"binary_data": binary_out}} for n in outputs]
    elif binary_out:
        js["parameters"] = {"binary_data_output": True}
    hdr = json.dumps(js).encode()
    headers = {"Content-Type": "application/json"}
    if binary_in or binary_out:
        headers["Inference-Header-Content-Length"] = str(len(hdr))
    return hdr + b"".join(raw), headers


def infer_parse(headers, body):
    """(response JSON, name -> ndarray) of an infer response."""
    jl = headers.get("Inference-Header-Content-Length") or headers.get(
        "inference-header-content-length")
    jl = int(jl) if jl is not None else len(body)
    js = json.loads(body[:jl])
    off = jl
    outs = {}
    for o in js["outputs"]:
        dt = KS_DT[o["datatype"]]
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            a = np.frombuffer(body[off:off + size], dtype=dt)
            off += size
        else:
            a = np.array(o["data"], dtype=dt)
        outs[o["name"]] = a.reshape(o["shape"])
    check(off == len(body), f"infer response: {len(body) - off} bytes after the outputs")
    return js, outs


def raw_request(method, path, body=b"", headers=None, version="HTTP/1.1"):
    h = {"Host": "localhost"}
    if body or method == "POST":
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + body


# ------------------------------------------------------------------ fixture

MODELS = ("bert-tiny", "gpt2-tiny", "resnet-tiny")
ODD = 'q"uo\\te'  # a model name metrics must escape


def make_inputs(model, batch, seq, seed):
    rng = np.random.default_rng(seed)
    if model == "resnet-tiny":
        return {"input": rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32)}
    ids = rng.integers(0, 1000, (batch, seq), dtype=np.int64)
    if model == "gpt2-tiny":
        return {"input_ids": ids}
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[-1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


class Fixture:
    """Scratch directory, repositories, references from `dprt run`, and
    the main server (cpu:2) most tests talk to."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="dprt-e2e.")
        self.servers = []
        self.repo = os.path.join(self.tmp, "models")
        for m in MODELS:
            run_dprt("zoo", m, "-o", self.repo)
        shutil.copytree(os.path.join(self.repo, "resnet-tiny"), os.path.join(self.repo, ODD))
        self.refs = {}
        self._main = None

    def ref(self, model, batch=2, seq=8, seed=1):
        """Inputs and `dprt run` outputs of one model at one shape."""
        key = (model, batch, seq, seed)
        if key not in self.refs:
            ins = make_inputs(model, batch, seq, seed)
            base = os.path.join(self.tmp, "ref-%s-%d-%d-%d" % key)
            st_write(base + ".in", ins)
            run_dprt("run", os.path.join(self.repo, model), "--input", base + ".in",
                     "--output", base + ".out")
            self.refs[key] = (ins, st_read(base + ".out"))
        return self.refs[key]

    def server(self, name, models, *args):
        s = Server(self.tmp, name, models, *args)
        self.servers.append(s)
        return s

    @property
    def main(self):
        if not self._main:
            self._main = self.server("main", self.repo, "--gpus", "cpu:2", "--max-body", "4M",
                                     "--request-timeout", "2", "--idle-timeout", "30")
        return self._main

    def close(self):
        for s in self.servers:
            s.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def make_repo(fx, name, n):
    """A repository of n copies of bert-tiny named m0..m{n-1}."""
    d = os.path.join(fx.tmp, name)
    src = os.path.join(fx.repo, "bert-tiny", "1", "model.dpk")
    for i in range(n):
        os.makedirs(os.path.join(d, f"m{i}", "1"))
        shutil.copy(src, os.path.join(d, f"m{i}", "1", "model.dpk"))
    return d


def infer(port, model, ins, outputs=None, binary_in=False, binary_out=False, req_id=None,
          timeout=30):
    body, hdrs = infer_body(ins, outputs, binary_in, binary_out, req_id)
    st, h, b = request(port, "POST", f"/v2/models/{model}/infer", body, hdrs, timeout)
    check(st == 200, f"infer {model}: status {st}: {b[:300]!r}")
    js, outs = infer_parse(h, b)
    return js, outs, h


def metrics(port):
    from prometheus_client.parser import text_string_to_metric_families
    st, h, b = request(port, "GET", "/metrics")
    check(st == 200, f"/metrics: {st}")
    return {f.name: f for f in text_string_to_metric_families(b.decode())}


def sample(fams, family, name=None, **labels):
    for s in fams[family].samples:
        if (name is None or s.name == name) and all(s.labels.get(k) == v
                                                    for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {family} {name} {labels}")


def wait_idle(port, timeout=5):
    """Until every device's queue is empty (placement depends on it)."""
    end = time.monotonic() + min(timeout, left())
    while time.monotonic() < end:
        fams = metrics(port)
        if all(s.value == 0 for s in fams["dprt_queue_depth"].samples):
            return
        time.sleep(0.01)
    raise AssertionError("device queues did not drain")


# ------------------------------------------------------------------ tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def curl(port, path, *args):
    """(status, headers text, body) of one curl call."""
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", "20", *args,
                        f"http://{HOST}:{port}{path}"], capture_output=True, timeout=30)
    check(p.returncode == 0, f"curl {path}: exit {p.returncode}: {p.stderr!r}")
    out = p.stdout
    while out.startswith(b"HTTP/1.1 100"):  # Expect: 100-continue
        out = out.split(b"\r\n\r\n", 1)[1]
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


@test
def endpoints_with_curl(fx):
    p = fx.main.port
    check(shutil.which("curl"), "curl is not installed")
    st, h, b = curl(p, "/v2")
    js = json.loads(b)
    check(st == 200 and js["name"] == "dprt" and "binary_tensor_data" in js["extensions"],
          f"/v2: {st} {b!r}")
    check(re.search(r"\d+\.\d+\.\d+", js["version"]), f"/v2 version {js['version']}")
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/gpt2-tiny/ready",
                 "/v2/models/gpt2-tiny/versions/1/ready"):
        st, _, _ = curl(p, path)
        check(st == 200, f"{path}: {st}")
    st, _, b = curl(p, "/v2/models/bert-tiny")
    js = json.loads(b)
    check(st == 200 and js["name"] == "bert-tiny" and js["versions"] == ["1"], f"meta {b!r}")
    check([i["name"] for i in js["inputs"]] == ["input_ids", "attention_mask",
                                                "token_type_ids"], f"inputs {js['inputs']}")
    check(all(i["datatype"] == "INT64" and i["shape"] == [-1, -1] for i in js["inputs"]),
          f"bert inputs {js['inputs']}")
    check(js["outputs"] == [
        {"name": "last_hidden_state", "datatype": "FP32", "shape": [-1, -1, 64]},
        {"name": "pooler_output", "datatype": "FP32", "shape": [-1, 64]}],
        f"bert outputs {js['outputs']}")
    st, _, b = curl(p, "/v2/models/resnet-tiny/versions/1")
    js = json.loads(b)
    check(st == 200 and js["inputs"] == [{"name": "input", "datatype": "FP32",
                                          "shape": [-1, 3, 32, 32]}], f"resnet meta {b!r}")
    check(js["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
          f"resnet outputs {js['outputs']}")
    st, _, b = curl(p, "/v2/repository/index", "-X", "POST")
    rows = {r["name"]: r for r in json.loads(b)}
    check(st == 200 and set(rows) == set(MODELS) | {ODD}, f"index {b!r}")
    check(all(r["state"] == "READY" and r["version"] == "1" for r in rows.values()), f"{b!r}")
    st, _, b = curl(p, "/v2/repository/index", "-d", '{"ready": true}')
    check(st == 200 and len(json.loads(b)) == 4, f"index ready: {st} {b!r}")
    st, h, b = curl(p, "/metrics")
    check(st == 200 and "text/plain; version=0.0.4" in h and b"# TYPE" in b, f"metrics {h}")
    st, h, b = curl(p, "/v2", "-I")
    check(st == 200 and b == b"" and "Content-Length: 88" in h, f"HEAD /v2: {h} {b!r}")
    st, _, b = curl(p, "/v2/nothing")
    check(st == 404 and "error" in json.loads(b), f"unknown path: {st} {b!r}")
    st, h, _ = curl(p, "/v2", "-X", "POST")
    check(st == 405 and re.search(r"Allow: GET, HEAD", h), f"POST /v2: {st} {h}")
    for path in ("/v2/models/nope", "/v2/models/bert-tiny/versions/7",
                 "/v2/models/bert-tiny/versions/x", "/v2/models/nope/ready"):
        st, _, b = curl(p, path)
        check(st == 404 and "error" in json.loads(b), f"{path}: {st} {b!r}")
    ins, want = fx.ref("resnet-tiny")
    body, hdrs = infer_body(ins, req_id="curl-1")
    f = os.path.join(fx.tmp, "curl.json")
    with open(f, "wb") as fh:
        fh.write(body)
    st, h, b = curl(p, "/v2/models/resnet-tiny/infer", "--data-binary", "@" + f,
                    "-H", "Content-Type: application/json")
    check(st == 200, f"curl infer: {st} {b[:200]!r}")
    check(re.search(r"(?m)^Dprt-Cold-Start: (true|false)\r?$", h), f"no Dprt-Cold-Start: {h}")
    check(re.search(r"(?m)^Server-Timing: queue;dur=[\d.]+, load;dur=[\d.]+, "
                    r"compute;dur=[\d.]+\r?$", h), f"no Server-Timing: {h}")
    js, outs = infer_parse({}, b)
    check(js["id"] == "curl-1" and js["model_name"] == "resnet-tiny", f"{js}")
    close_enough(outs["logits"], want["logits"], "curl infer logits")
    st, _, b = curl(p, "/v2/repository/models/nope/load", "-X", "POST")
    check(st == 404, f"load of an unknown model: {st} {b!r}")


@test
def infer_json_and_binary(fx):
    p = fx.main.port
    for model in MODELS:
        ins, want = fx.ref(model)
        names = list(want)
        for bin_in, bin_out in ((False, False), (True, True), (False, True), (True, False)):
            what = f"{model} binary in {bin_in} out {bin_out}"
            js, outs, h = infer(p, model, ins, names, bin_in, bin_out, req_id=what)
            check(js["id"] == what and js["model_name"] == model and
                  js["model_version"] == "1", f"{what}: {js}")
            par = js["parameters"]
            check(isinstance(par["cold_start"], bool) and par["device"] in ("cpu0", "cpu1"),
                  f"{what}: parameters {par}")
            check(all(isinstance(par[k], int) and par[k] >= 0
                      for k in ("queue_us", "load_us", "compute_us")), f"{what}: {par}")
            check(h["Dprt-Cold-Start"] == ("true" if par["cold_start"] else "false"),
                  f"{what}: header and parameter disagree")
            check(set(outs) == set(names), f"{what}: outputs {list(outs)}")
            for n in names:
                close_enough(outs[n], want[n], f"{what}: {n}")
    # One output asked for, by version; binary_data_output for all.
    ins, want = fx.ref("bert-tiny")
    body, hdrs = infer_body(ins, ["pooler_output"], binary_out=True)
    st, h, b = request(p, "POST", "/v2/models/bert-tiny/versions/1/infer", body, hdrs)
    js, outs = infer_parse(h, b)
    check(st == 200 and list(outs) == ["pooler_output"], f"one output: {st} {list(outs)}")
    check(h["Content-Type"] == "application/octet-stream", f"binary type {h['Content-Type']}")
    close_enough(outs["pooler_output"], want["pooler_output"], "pooler only")
    js, outs, _ = infer(p, "gpt2-tiny", fx.ref("gpt2-tiny")[0], binary_out=True)
    close_enough(outs["last_hidden_state"], fx.ref("gpt2-tiny")[1]["last_hidden_state"],
                 "binary_data_output")
    # Outputs bigger than a request record's 1 MiB buffer.
    ins, want = fx.ref("bert-tiny", batch=66, seq=64)
    js, outs, _ = infer(p, "bert-tiny", ins, binary_in=True, binary_out=True)
    close_enough(outs["last_hidden_state"], want["last_hidden_state"], "a 1 MiB+ output")


@test
def tritonclient_http(fx):
    import tritonclient.http as tc
    from tritonclient.utils import InferenceServerException
    p = fx.main.port
    cl = tc.InferenceServerClient(url=f"{HOST}:{p}", connection_timeout=20.0,
                                  network_timeout=20.0)
    try:
        check(cl.is_server_live() and cl.is_server_ready(), "server live/ready")
        check(cl.get_server_metadata()["name"] == "dprt", "server metadata")
        mm = cl.get_model_metadata("bert-tiny")
        check(mm["outputs"][1]["shape"] == [-1, 64], f"model metadata {mm}")
        idx = {r["name"]: r["state"] for r in cl.get_model_repository_index()}
        check(idx.get("bert-tiny") == "READY", f"index {idx}")
        for model in ("bert-tiny", "resnet-tiny"):
            ins, want = fx.ref(model)
            for binary in (False, True):
                tin = []
                for name, a in ins.items():
                    t = tc.InferInput(name, list(a.shape), NP_KS[a.dtype])
                    t.set_data_from_numpy(a, binary_data=binary)
                    tin.append(t)
                touts = [tc.InferRequestedOutput(n, binary_data=binary) for n in want]
                r = cl.infer(model, tin, outputs=touts, request_id=f"tc-{model}-{binary}")
                res = r.get_response()
                check(res["id"] == f"tc-{model}-{binary}", f"id {res.get('id')}")
                check(isinstance(res["parameters"]["cold_start"], bool), f"{res}")
                for n in want:
                    close_enough(r.as_numpy(n), want[n], f"tritonclient {model} {n} {binary}")
        # Triton's model config and statistics extensions, as its client reads them.
        cfg = cl.get_model_config("bert-tiny")
        check(cfg["platform"] == "dprt" and cfg["input"][0]["data_type"] == "TYPE_INT64",
              f"model config {cfg}")
        st = cl.get_inference_statistics("bert-tiny")["model_stats"][0]
        check(st["name"] == "bert-tiny" and int(st["inference_stats"]["success"]["count"]) >= 2,
              f"statistics {st}")
        allst = cl.get_inference_statistics()["model_stats"]
        check({"bert-tiny", "resnet-tiny"} <= {m["name"] for m in allst}, f"all stats {allst}")
        # Explicit repository control.
        ins, want = fx.ref("gpt2-tiny")
        tin = [tc.InferInput("input_ids", list(ins["input_ids"].shape), "INT64")]
        tin[0].set_data_from_numpy(ins["input_ids"])
        cl.unload_model("gpt2-tiny")
        check(not cl.is_model_ready("gpt2-tiny"), "ready after unload")
        idx = {r["name"]: r for r in cl.get_model_repository_index()}
        check(idx["gpt2-tiny"]["state"] == "UNAVAILABLE", f"index after unload {idx}")
        try:
            cl.infer("gpt2-tiny", tin)
            raise AssertionError("infer on an unloaded model succeeded")
        except InferenceServerException as e:
            check("not ready" in e.message(), f"unloaded model: {e.message()}")
        cl.load_model("gpt2-tiny")
        check(cl.is_model_ready("gpt2-tiny"), "not ready after load")
        r = cl.infer("gpt2-tiny", tin)
        close_enough(r.as_numpy("last_hidden_state"), want["last_hidden_state"],
                     "gpt2-tiny after reload")
        try:
            cl.load_model("no-such-model")
            raise AssertionError("load of an unknown model succeeded")
        except InferenceServerException as e:
            check("no-such-model" in e.message(), f"unknown model load: {e.message()}")
    finally:
        cl.close()


@test
def compressed_responses(fx):
    """Accept-Encoding: gzip and deflate answers, as tritonclient and a raw
    client read them; Inference-Header-Content-Length counts the JSON before
    coding."""
    import gzip
    import zlib
    import tritonclient.http as tc
    p = fx.main.port
    ins, want = fx.ref("bert-tiny")
    cl = tc.InferenceServerClient(url=f"{HOST}:{p}", connection_timeout=20.0,
                                  network_timeout=20.0)
    try:
        for algo in ("gzip", "deflate"):
            for binary in (False, True):
                tin = []
                for name, a in ins.items():
                    t = tc.InferInput(name, list(a.shape), NP_KS[a.dtype])
                    t.set_data_from_numpy(a, binary_data=binary)
                    tin.append(t)
                touts = [tc.InferRequestedOutput(n, binary_data=binary) for n in want]
                for req_algo in (None, algo):
                    r = cl.infer("bert-tiny", tin, outputs=touts,
                                 request_compression_algorithm=req_algo,
                                 response_compression_algorithm=algo)
                    for n in want:
                        close_enough(r.as_numpy(n), want[n],
                                     f"tritonclient {algo} binary {binary} {n}")
    finally:
        cl.close()
    unz = {"gzip": gzip.decompress, "deflate": zlib.decompress}
    body, hdrs = infer_body(ins, list(want), binary_out=True)
    for algo, accept in (("gzip", "gzip"), ("deflate", "deflate"),
                         ("deflate", "gzip;q=0.5, deflate;q=0.9"), ("gzip", "*")):
        st, h, b = request(p, "POST", "/v2/models/bert-tiny/infer", body,
                           dict(hdrs, **{"Accept-Encoding": accept}))
        check(st == 200 and h["Content-Encoding"] == algo, f"{accept}: {st} {dict(h)}")
        check(h["Vary"] == "Accept-Encoding", f"{accept}: Vary {h.get('Vary')}")
        check(int(h["Content-Length"]) == len(b), "Content-Length is the coded length")
        plain = unz[algo](b)
        check(len(b) < len(plain), f"{accept}: {len(b)} coded bytes of {len(plain)}")
        jl = int(h["Inference-Header-Content-Length"])
        check(plain[jl - 1:jl] == b"}" and json.loads(plain[:jl])["model_name"] == "bert-tiny",
              "Inference-Header-Content-Length counts the uncoded JSON")
        js, outs = infer_parse(h, plain)
        for n in want:
            close_enough(outs[n], want[n], f"raw {accept} {n}")
    # identity only, or q=0, or no coding of ours: as before, with Vary
    for accept in ("identity", "gzip;q=0, deflate;q=0", "br"):
        st, h, b = request(p, "POST", "/v2/models/bert-tiny/infer", body,
                           dict(hdrs, **{"Accept-Encoding": accept}))
        check(st == 200 and "Content-Encoding" not in h, f"{accept}: {dict(h)}")
        check(h["Vary"] == "Accept-Encoding", f"{accept}: Vary {h.get('Vary')}")
        infer_parse(h, b)
    # no Accept-Encoding at all (http.client would send identity): no change
    s = connect(p)
    try:
        s.sendall(raw_request("POST", "/v2/models/bert-tiny/infer", body, hdrs))
        st, h, b = Reader(s).response()
    finally:
        s.close()
    check(st == 200 and "content-encoding" not in h and "vary" not in h, f"plain: {h}")
    js, outs = infer_parse(h, b)
    close_enough(outs["pooler_output"], want["pooler_output"], "no Accept-Encoding")
    st, h, b = request(p, "GET", "/v2/health/ready", headers={"Accept-Encoding": "gzip"})
    check(st == 200 and "Content-Encoding" not in h and b == b'{"ready":true}', f"{dict(h)}")
    st, h, b = request(p, "GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    check(st == 200 and h["Content-Encoding"] == "gzip" and b"# TYPE" in gzip.decompress(b),
          f"metrics: {dict(h)}")


@test
def metrics_prometheus(fx):
    p = fx.main.port
    ins, want = fx.ref("bert-tiny")
    infer(p, "bert-tiny", ins)
    before = metrics(p)
    n0 = sample(before, "dprt_requests", "dprt_requests_total", model="bert-tiny")
    c0 = sample(before, "dprt_request_duration_seconds", "dprt_request_duration_seconds_count",
                model="bert-tiny")
    for i in range(5):
        infer(p, "bert-tiny", ins)
    fams = metrics(p)
    for name, typ in (("dprt_requests", "counter"), ("dprt_request_failures", "counter"),
                      ("dprt_cold_starts", "counter"),
                      ("dprt_request_duration_seconds", "histogram"),
                      ("dprt_queue_depth", "gauge"), ("dprt_bytes_loaded", "counter"),
                      ("dprt_resident_models", "gauge"), ("dprt_resident_bytes", "gauge"),
                      ("dprt_device_memory_limit_bytes", "gauge"),
                      ("dprt_host_weight_bytes", "gauge"), ("dprt_host_bytes", "gauge"),
                      ("dprt_host_hits", "counter"), ("dprt_host_misses", "counter"),
                      ("dprt_host_drops", "counter"), ("dprt_http_requests", "counter"),
                      ("dprt_connections_open", "gauge"), ("dprt_model_resident", "gauge"),
                      ("dprt_model_state", "gauge"), ("dprt_evictions", "counter")):
        check(name in fams and fams[name].type == typ, f"family {name} ({typ}) missing")
    n1 = sample(fams, "dprt_requests", "dprt_requests_total", model="bert-tiny", version="1")
    check(n1 - n0 == 5, f"dprt_requests_total grew by {n1 - n0}, not 5")
    buckets = [s for s in fams["dprt_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["model"] == "bert-tiny"]
    vals = [s.value for s in buckets]
    check(vals == sorted(vals) and buckets[-1].labels["le"] == "+Inf", "buckets not cumulative")
    c1 = sample(fams, "dprt_request_duration_seconds", "dprt_request_duration_seconds_count",
                model="bert-tiny")
    check(c1 - c0 == 5 and vals[-1] == c1, f"histogram count {c0} -> {c1}, +Inf {vals[-1]}")
    check(sample(fams, "dprt_request_duration_seconds", "dprt_request_duration_seconds_sum",
                 model="bert-tiny") > 0, "histogram sum")
    devs = {s.labels["device"] for s in fams["dprt_queue_depth"].samples}
    check(devs == {"cpu0", "cpu1"}, f"devices {devs}")
    check(sample(fams, "dprt_http_requests", code="200") >= 6, "http 200 count")
    check(sample(fams, "dprt_connections_open") >= 1, "connections_open")
    check(sample(fams, "dprt_host_weight_bytes") > 0, "host weight bytes")
    check(sample(fams, "dprt_host_bytes") == sample(fams, "dprt_host_weight_bytes"), "host bytes")
    check(sample(fams, "dprt_host_misses", "dprt_host_misses_total") >= 1, "host misses")
    check(sample(fams, "dprt_model_state", model=ODD, state="READY") == 1,
          "an escaped model name did not round-trip")
    check(sample(fams, "dprt_bytes_loaded", device="cpu0") +
          sample(fams, "dprt_bytes_loaded", device="cpu1") >= BERT_W, "bytes loaded")


@test
def pipelined_concurrency(fx):
    """64 connections x 4 pipelined requests: every answer right, in order."""
    p = fx.main.port
    variants = [("bert-tiny", fx.ref("bert-tiny", 1, 8, 10 + i)) for i in range(4)]
    variants += [("resnet-tiny", fx.ref("resnet-tiny", 1, 8, 20 + i)) for i in range(4)]
    n_conn, depth = 64, 4
    errors = []

    def client(c):
        try:
            s = connect(p, 60)
            rd = Reader(s)
            reqs, exp = [], []
            for k in range(depth):
                model, (ins, want) = variants[(c * depth + k) % len(variants)]
                body, hdrs = infer_body(ins, list(want), binary_out=bool(k & 1),
                                        req_id=f"c{c}r{k}")
                reqs.append(raw_request("POST", f"/v2/models/{model}/infer", body, hdrs))
                exp.append(want)
            s.sendall(b"".join(reqs))
            for k in range(depth):
                st, h, b = rd.response()
                check(st == 200, f"conn {c} request {k}: {st} {b[:200]!r}")
                js, outs = infer_parse({"Inference-Header-Content-Length":
                                        h.get("inference-header-content-length")}, b)
                check(js["id"] == f"c{c}r{k}", f"conn {c}: answer {js['id']} for c{c}r{k}")
                for n, w in exp[k].items():
                    close_enough(outs[n], w, f"conn {c} request {k} {n}")
            s.close()
        except Exception as e:  # reported by the main thread
            errors.append(f"conn {c}: {e!r}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_conn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=min(90, left()))
    check(not any(t.is_alive() for t in threads), "clients did not finish")
    check(not errors, "; ".join(errors[:5]))
    end = time.monotonic() + min(5, left())
    while sample(metrics(p), "dprt_connections_open") > 1 and time.monotonic() < end:
        time.sleep(0.02)
    check(sample(metrics(p), "dprt_connections_open") == 1, "connections left open")


def bad(p, data, status, what, close=True, then=None):
    """Send raw bytes; expect status (and a close if close). A health check
    on a new connection follows."""
    s = connect(p, 10)
    try:
        s.sendall(data)
        if then:
            then(s)
        rd = Reader(s)
        st, h, b = rd.response()
        check(st == status, f"{what}: status {st}, expected {status}: {b[:200]!r}")
        if status >= 400 and status != 503:
            check("error" in json.loads(b), f"{what}: no JSON error body")
        if close:
            check(h.get("connection") == "close", f"{what}: no Connection: close")
            s.settimeout(5)
            check(rd.eof(), f"{what}: connection not closed")
    finally:
        s.close()
    healthy(p, what)


@test
def bad_requests(fx):
    p = fx.main.port
    ins, _ = fx.ref("bert-tiny", 1, 8)
    ids = ins["input_ids"]

    def infer_req(body, path="/v2/models/bert-tiny/infer", headers=None):
        return raw_request("POST", path, body, headers)

    def js(inputs, **kw):
        return json.dumps({"inputs": inputs, **kw}).encode()

    good_in = {"name": "input_ids", "datatype": "INT64", "shape": [1, 8],
               "data": ids.flatten().tolist()}
    bad(p, b"GARBAGE\r\n\r\n", 400, "malformed request line")
    bad(p, b"GET /v2 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "malformed header")
    bad(p, b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431,
        "oversized headers")
    bad(p, b"GET /v2 HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2.0")
    bad(p, b"PUT /v2 HTTP/1.1\r\nHost: x\r\n\r\n", 501, "PUT")
    bad(p, b"GET /v2 HTTP/1.1\r\n\r\n", 400, "no Host")
    bad(p, raw_request("POST", "/v2/models/bert-tiny/infer", b"",
                       {"Transfer-Encoding": "chunked"}), 400,
        "chunked body with Content-Length too")
    bad(p, raw_request("POST", "/v2/models/bert-tiny/infer", b"{}",
                       {"Content-Encoding": "br"}), 415, "unknown Content-Encoding",
        close=False)
    big = b"POST /v2/models/bert-tiny/infer HTTP/1.1\r\nHost: x\r\n" \
          b"Content-Length: 5000000\r\n\r\n" + b"{" * 1000
    bad(p, big, 413, "body over --max-body")
    bad(p, infer_req(b"{not json"), 400, "invalid JSON", close=False)
    bad(p, infer_req(b"[1, 2]"), 400, "JSON not an object", close=False)
    bad(p, infer_req(js([dict(good_in, datatype="FP32")])), 400, "wrong datatype", close=False)
    bad(p, infer_req(js([dict(good_in, shape=[1, 1, 8])])), 400, "wrong rank", close=False)
    bad(p, infer_req(js([dict(good_in, shape=[1, 9])])), 400, "data count vs shape",
        close=False)
    bad(p, infer_req(js([dict(good_in, data=[5000] * 8)])), 400, "token id out of range",
        close=False)
    long_in = dict(good_in, shape=[1, 65], data=[1] * 65)
    bad(p, infer_req(js([long_in])), 400, "seq over the model's maximum", close=False)
    bad(p, infer_req(js([dict(good_in, name="attention_mask")])), 400, "missing input",
        close=False)
    bad(p, infer_req(js([good_in], outputs=[{"name": "nope"}])), 400, "unknown output",
        close=False)
    hdr = json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 8],
                                  "parameters": {"binary_data_size": 64}}]}).encode()
    bad(p, infer_req(hdr + ids.tobytes()[:32],
                     headers={"Inference-Header-Content-Length": str(len(hdr))}), 400,
        "binary bytes short of binary_data_size", close=False)
    bad(p, infer_req(hdr + ids.tobytes(),
                     headers={"Inference-Header-Content-Length": str(len(hdr) + 999)}),
        400, "Inference-Header-Content-Length beyond the body", close=False)
    bad(p, infer_req(js([good_in]), "/v2/models/nope/infer"), 404, "unknown model",
        close=False)
    bad(p, infer_req(js([good_in]), "/v2/models/bert-tiny/versions/3/infer"), 404,
        "unknown version", close=False)
    bad(p, infer_req(js([good_in]), "/v2/models/%2e%2e/infer"), 400, "model name '..'",
        close=False)
    bad(p, raw_request("GET", "/v2/models/bert-tiny/infer"), 405, "GET on infer",
        close=False)
    # Pipelined: a good request, then garbage: the first is answered.
    two = raw_request("GET", "/v2/health/live") + b"NONSENSE\r\n\r\n"
    s = connect(p, 10)
    s.sendall(two)
    rd = Reader(s)
    st1, _, _ = rd.response()
    st2, h2, _ = rd.response()
    s.close()
    check((st1, st2, h2.get("connection")) == (200, 400, "close"),
          f"good then garbage: {st1} {st2} {h2}")
    healthy(p, "good then garbage")
    # A truncated body, then the client goes away.
    s = connect(p, 10)
    s.sendall(b"POST /v2/models/bert-tiny/infer HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 1000\r\n\r\n{\"inputs\":")
    time.sleep(0.1)
    s.close()
    healthy(p, "truncated body then close")
    # Slow clients: headers, or a body, that never complete -> 408, close.
    t0 = time.monotonic()
    bad(p, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n", 408, "slow headers")
    took = time.monotonic() - t0
    check(1.5 < took < 6, f"slow headers: 408 after {took:.1f} s (--request-timeout 2)")
    bad(p, b"POST /v2/models/bert-tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b"\r\n{\"in", 408, "slow body")
    # Expect: 100-continue is honoured.
    body = js([good_in])
    s = connect(p, 10)
    s.sendall(raw_request("POST", "/v2/models/bert-tiny/infer", b"",
                          {"Content-Length": str(len(body)), "Expect": "100-continue"}))
    rd = Reader(s)
    st1, _, _ = rd.response()
    s.sendall(body)
    st2, _, b2 = rd.response()
    s.close()
    check((st1, st2) == (100, 200), f"100-continue: {st1} then {st2} {b2[:200]!r}")
    # HTTP/1.0 and Connection: close end the connection after the answer.
    bad(p, b"GET /v2 HTTP/1.0\r\n\r\n", 200, "HTTP/1.0")
    bad(p, raw_request("GET", "/v2", headers={"Connection": "close"}), 200, "Connection: close")
    fams = metrics(p)
    for code in ("400", "404", "405", "408", "413", "415", "431", "501", "505"):
        check(sample(fams, "dprt_http_requests", code=code) >= 1, f"no {code} counted")


@test
def max_conns_and_idle_timeout(fx):
    srv = fx.server("limits", fx.repo, "--gpus", "cpu", "--max-conns", "2",
                    "--idle-timeout", "1", "--load", "explicit")
    p = srv.port
    socks = [connect(p, 10) for _ in range(2)]
    for s in socks:  # both accepted and served
        s.sendall(raw_request("GET", "/v2/health/live"))
        st, _, _ = Reader(s).response()
        check(st == 200, f"connection within the limit: {st}")
    s3 = connect(p, 10)
    rd = Reader(s3)
    st, h, b = rd.response()
    check(st == 503 and h.get("connection") == "close" and "too many" in b.decode(),
          f"connection over --max-conns: {st} {h} {b!r}")
    s3.settimeout(5)
    check(rd.eof(), "the rejected connection stays open")
    s3.close()
    socks[0].close()
    end = time.monotonic() + min(5, left())
    st = 0
    while time.monotonic() < end and st != 200:
        try:
            st, _, _ = request(p, "GET", "/v2/health/live", timeout=5)
        except (ConnectionError, http.client.HTTPException):
            pass
        if st != 200:
            time.sleep(0.05)
    check(st == 200, "a slot did not free up after a client left")
    # socks[1] has been idle since its answer: closed after ~1 s.
    socks[1].settimeout(4)
    t0 = time.monotonic()
    check(Reader(socks[1]).eof(), "an idle connection was not closed")
    check(time.monotonic() - t0 < 3.5, "idle timeout far too late")
    socks[1].close()
    # --load explicit: nothing ready until loaded.
    st, _, b = request(p, "GET", "/v2/models/bert-tiny/ready")
    check(st == 503, f"explicit mode: bert-tiny ready before a load: {st}")
    st, _, b = request(p, "GET", "/v2/models/bert-tiny")
    check(st == 503, f"explicit mode: metadata before a load: {st} {b!r}")
    st, _, b = request(p, "POST", "/v2/repository/models/bert-tiny/load", b"{}")
    check(st == 200, f"load: {st} {b!r}")
    ins, want = fx.ref("bert-tiny")
    js, outs, _ = infer(p, "bert-tiny", ins)
    close_enough(outs["pooler_output"], want["pooler_output"], "after an explicit load")
    fams = metrics(p)
    check(sample(fams, "dprt_connections_rejected") >= 1, "rejections not counted")
    check(srv.stop() == 0, "limits server: exit status")


@test
def eviction_lru(fx):
    """cpu:4, room for two models per device: placement fills the devices
    in order, and a third model on a device evicts its least recently used
    one, as /metrics shows."""
    repo = make_repo(fx, "lru", 9)
    limit = 2 * BERT_W + 100000
    srv = fx.server("lru", repo, "--gpus", "cpu:4", "--gpu-mem-limit", str(limit),
                    "--evict", "lru")
    p = srv.port
    ins, want = fx.ref("bert-tiny")

    def go(m, cold, dev):
        wait_idle(p)
        js, outs, _ = infer(p, m, ins)
        par = js["parameters"]
        check((par["cold_start"], par["device"]) == (cold, dev),
              f"{m}: cold start {par['cold_start']} on {par['device']}, expected {cold} "
              f"on {dev}")
        close_enough(outs["pooler_output"], want["pooler_output"], f"{m} output")

    def resident(fams, m, dev):
        return sample(fams, "dprt_model_resident", model=m, device=dev)

    for i in range(8):
        go(f"m{i}", True, f"cpu{i % 4}")
    fams = metrics(p)
    for d in range(4):
        check(sample(fams, "dprt_resident_models", device=f"cpu{d}") == 2, "two per device")
        check(resident(fams, f"m{d}", f"cpu{d}") == 1 and
              resident(fams, f"m{d + 4}", f"cpu{d}") == 1, f"placement on cpu{d}")
    go("m0", False, "cpu0")   # cpu0's LRU order: m0, then m4
    go("m8", True, "cpu0")    # evicts m4
    fams = metrics(p)
    check(resident(fams, "m4", "cpu0") == 0, "m4 (least recently used) not evicted")
    check(resident(fams, "m0", "cpu0") == 1 and resident(fams, "m8", "cpu0") == 1,
          "wrong model evicted")
    check(sample(fams, "dprt_evictions", device="cpu0") == 1, "evictions on cpu0")
    go("m4", True, "cpu0")    # now m0 is the least recently used one there
    fams = metrics(p)
    check(resident(fams, "m0", "cpu0") == 0 and resident(fams, "m8", "cpu0") == 1 and
          resident(fams, "m4", "cpu0") == 1, "second eviction did not follow LRU order")
    check(sample(fams, "dprt_evictions", device="cpu0") == 2, "evictions on cpu0")
    for d in range(1, 4):
        check(sample(fams, "dprt_evictions", device=f"cpu{d}") == 0, f"evictions cpu{d}")
    check(srv.stop() == 0, "lru server: exit status")


@test
def eviction_cost(fx):
    """The default policy evicts the idle model whose loss costs least: of
    two models as large as each other, the one asked for less often, even
    when it was used more recently (LRU would evict the other)."""
    repo = make_repo(fx, "cost", 3)
    limit = 2 * BERT_W + 100000
    srv = fx.server("cost", repo, "--gpus", "cpu", "--gpu-mem-limit", str(limit))
    p = srv.port
    ins, want = fx.ref("bert-tiny")

    def go(m, cold):
        wait_idle(p)
        js, outs, _ = infer(p, m, ins)
        check(js["parameters"]["cold_start"] == cold,
              f"{m}: cold start {js['parameters']['cold_start']}, expected {cold}")
        close_enough(outs["pooler_output"], want["pooler_output"], f"{m} output")

    go("m0", True)
    for _ in range(4):
        go("m0", False)     # m0: asked for often
    go("m1", True)          # m1: once, and the most recent
    go("m2", True)          # evicts m1, not the least recently used m0
    fams = metrics(p)
    check(sample(fams, "dprt_model_resident", model="m1", device="cpu0") == 0,
          "m1 (rarely asked for) not evicted")
    check(sample(fams, "dprt_model_resident", model="m0", device="cpu0") == 1,
          "m0 (often asked for) evicted")
    check(srv.stop() == 0, "cost server: exit status")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@test
def activation_budget_and_rss(fx):
    """A request whose shapes need more activation memory than
    --max-activation is refused with 413 and the size it needs, and the
    server goes on; a large request that fits leaves no memory behind:
    RSS is back within 10% of its baseline (or 4 MiB of a baseline under
    40 MiB) once the device has been idle."""
    srv = fx.server("actmem", fx.repo, "--gpus", "cpu", "--max-activation", "16M",
                    "--max-body", "64M", "--max-batch-tokens", "100000")
    p = srv.port
    body, hdrs = infer_body(make_inputs("bert-tiny", 2048, 64, 5), ["pooler_output"],
                            binary_in=True, binary_out=True)
    st, _, b = request(p, "POST", "/v2/models/bert-tiny/infer", body, hdrs)
    check(st == 413 and b"131072 tokens" in b and b"--max-batch-tokens" in b,
          f"over --max-batch-tokens: status {st}: {b[:300]!r}")
    small, want = fx.ref("bert-tiny")
    big = make_inputs("bert-tiny", 1024, 64, 3)
    body, hdrs = infer_body(big, ["pooler_output"], binary_in=True, binary_out=True)
    st, _, b = request(p, "POST", "/v2/models/bert-tiny/infer", body, hdrs)
    check(st == 413, f"over the budget: status {st}: {b[:300]!r}")
    msg = json.loads(b)["error"]
    check("activation memory" in msg and "--max-activation" in msg and "MB" in msg,
          f"413 message: {msg}")
    _, outs, _ = infer(p, "bert-tiny", small)
    close_enough(outs["pooler_output"], want["pooler_output"], "after the 413")
    check(srv.stop() == 0, "actmem server: exit status")

    srv = fx.server("rss", fx.repo, "--gpus", "cpu", "--max-body", "64M")
    p = srv.port
    for _ in range(20):
        infer(p, "bert-tiny", small)
    time.sleep(1.5)
    base = rss_kb(srv.proc.pid)
    big = make_inputs("bert-tiny", 2048, 64, 4)
    body, hdrs = infer_body(big, ["pooler_output"], binary_in=True, binary_out=True)
    st, _, b = request(p, "POST", "/v2/models/bert-tiny/infer", body, hdrs, timeout=60)
    check(st == 200, f"large request: status {st}: {b[:300]!r}")
    peak = rss_kb(srv.proc.pid)
    for _ in range(5):
        infer(p, "bert-tiny", small)
    end = time.monotonic() + 5
    room = max(base * 0.1, 4096)
    while time.monotonic() < end and rss_kb(srv.proc.pid) > base + room:
        time.sleep(0.2)
    after = rss_kb(srv.proc.pid)
    print(f"  rss: baseline {base} kB, after the large request {peak} kB, idle {after} kB")
    check(peak > 2 * base, f"the large request did not grow RSS ({base} -> {peak} kB)")
    check(after <= base + room, f"RSS {after} kB stays above {base} + {room:.0f} kB")
    _, outs, _ = infer(p, "bert-tiny", small)
    close_enough(outs["pooler_output"], want["pooler_output"], "after shrinking")
    check(srv.stop() == 0, "rss server: exit status")


@test
def inflight_not_evicted(fx):
    """One device with room for two models: the least recently used model
    is not evicted while a request for it is queued; the other one goes."""
    repo = make_repo(fx, "inflight", 3)
    limit = 2 * BERT_W + 100000
    srv = fx.server("inflight", repo, "--gpus", "cpu", "--gpu-mem-limit", str(limit))
    p = srv.port
    ins, want = fx.ref("bert-tiny")
    big, big_want = fx.ref("bert-tiny", 256, 64, 3)
    infer(p, "m0", ins)
    infer(p, "m1", ins)  # LRU order now: m1, then m0
    res = {}

    def call(key, model, x, outputs):
        try:
            res[key] = infer(p, model, x, outputs, binary_in=True, binary_out=True)
        except Exception as e:
            res[key] = e

    slow = threading.Thread(target=call, args=("slow", "m1", big, ["pooler_output"]))
    slow.start()
    end = time.monotonic() + min(5, left())
    while sample(metrics(p), "dprt_queue_depth", device="cpu0") < 1:
        check(time.monotonic() < end, "the slow request never showed in the queue")
        time.sleep(0.002)
    c = threading.Thread(target=call, args=("m2", "m2", ins, ["pooler_output"]))
    c.start()
    time.sleep(0.03)
    d = threading.Thread(target=call, args=("m0", "m0", ins, ["pooler_output"]))
    d.start()
    for t in (slow, c, d):
        t.join(timeout=min(30, left()))
    for k in ("slow", "m2", "m0"):
        check(not isinstance(res.get(k), Exception) and k in res, f"{k}: {res.get(k)!r}")
    close_enough(res["slow"][1]["pooler_output"], big_want["pooler_output"], "slow request")
    check(res["m2"][0]["parameters"]["cold_start"], "m2 was not a cold start")
    check(not res["m0"][0]["parameters"]["cold_start"],
          "m0 was evicted although a request for it was queued")
    fams = metrics(p)
    r = {m: sample(fams, "dprt_model_resident", model=m, device="cpu0")
         for m in ("m0", "m1", "m2")}
    check(r == {"m0": 1, "m1": 0, "m2": 1}, f"residency {r}")
    check(sample(fams, "dprt_evictions", device="cpu0") == 1, "evictions")
    check(srv.stop() == 0, "inflight server: exit status")


@test
def sigterm_with_requests_in_flight(fx):
    srv = fx.server("sigterm", fx.repo, "--gpus", "cpu:2")
    p = srv.port
    big, want = fx.ref("bert-tiny", 64, 64, 5)
    body, hdrs = infer_body(big, ["pooler_output"], binary_in=True, binary_out=True)
    req = raw_request("POST", "/v2/models/bert-tiny/infer", body, hdrs)
    n = 12
    socks = [connect(p, 30) for _ in range(n)]
    idle = connect(p, 10)
    idle.sendall(raw_request("GET", "/v2/health/live"))
    check(Reader(idle).response()[0] == 200, "idle connection's first answer")
    for s in socks:
        s.sendall(req)
    end = time.monotonic() + min(5, left())
    while sample(metrics(p), "dprt_requests_in_flight") < 1:
        check(time.monotonic() < end, "no request in flight")
    srv.proc.send_signal(signal.SIGTERM)
    for i, s in enumerate(socks):
        st, h, b = Reader(s).response()
        check(st == 200, f"in-flight request {i}: {st} {b[:200]!r}")
        check(h.get("connection") == "close", f"request {i}: no Connection: close")
        _, outs = infer_parse({"Inference-Header-Content-Length":
                               h["inference-header-content-length"]}, b)
        close_enough(outs["pooler_output"], want["pooler_output"], f"in-flight request {i}")
        s.close()
    idle.settimeout(10)
    check(Reader(idle).eof(), "an idle connection was not closed at shutdown")
    rc = srv.stop()
    check(rc == 0, f"exit status {rc} after SIGTERM:\n{srv.log()[-2000:]}")
    check("shutting down" in srv.log(), "no shutdown in the log")
    try:
        connect(p, 2).close()
        raise AssertionError("still accepting after exit")
    except ConnectionRefusedError:
        pass


@test
def host_tier_under_limit(fx):
    """--host-mem-limit of one and a half models, three models on one
    device: each request in turn runs (the idle model before it gives its
    host copy back, it does not lock the others out), and /metrics counts
    the reads from disk and the drops."""
    repo = make_repo(fx, "tier", 3)
    srv = fx.server("tier", repo, "--gpus", "cpu:1", "--host-mem-limit",
                    str(BERT_W + BERT_W // 2))
    p = srv.port
    ins, want = fx.ref("bert-tiny")
    m0 = metrics(p)
    for m in ("m0", "m1", "m2", "m0", "m2", "m1"):
        js, outs, _ = infer(p, m, ins)
        close_enough(outs["pooler_output"], want["pooler_output"], f"{m} output")
    fams = metrics(p)

    def grew(fam):
        return (sample(fams, fam, fam + "_total") - sample(m0, fam, fam + "_total"))

    check(grew("dprt_host_misses") >= 5, f"host misses grew by {grew('dprt_host_misses')}")
    check(grew("dprt_host_drops") >= 5, f"host drops grew by {grew('dprt_host_drops')}")
    check(sample(fams, "dprt_host_bytes") <= BERT_W + BERT_W // 2, "host bytes over the limit")


@test
def disk_cold_start(fx):
    """--host-mem-limit of 2.5 models and --gpu-mem-limit of 1.5 on one
    device with cold starts by plan: requests for two other models push
    m0 off the device and its host copy out, so m0's next cold start
    reads the package (streamed into the cold start when the read is
    short): it answers what `dprt run` does, four concurrent requests
    after the next push-out all do too, and /metrics counts the disk cold
    starts and the bytes read."""
    repo = make_repo(fx, "disk", 3)
    srv = fx.server("disk", repo, "--gpus", "cpu:1", "--cold-mode", "dprt",
                    "--host-mem-limit", str(2 * BERT_W + BERT_W // 2),
                    "--gpu-mem-limit", str(BERT_W + BERT_W // 2))
    p = srv.port
    ins, want = fx.ref("bert-tiny")

    def counts():
        fams = metrics(p)
        return [sample(fams, f, f + "_total") for f in
                ("dprt_disk_cold_starts", "dprt_disk_streamed_cold_starts",
                 "dprt_disk_read_bytes")]

    def ask(m):
        _, outs, h = infer(p, m, ins)
        close_enough(outs["pooler_output"], want["pooler_output"], f"{m} output")
        return h

    ask("m0")
    ask("m0")
    c0 = counts()
    ask("m1")
    ask("m2")
    h = ask("m0")
    check(h.get("Dprt-Cold-Start") == "true", f"m0 was not a cold start: {h}")
    c1 = counts()
    check(c1[0] > c0[0], f"no disk cold start counted: {c0} -> {c1}")
    check(c1[2] >= c0[2] + BERT_W, f"disk bytes grew by {c1[2] - c0[2]}")
    ask("m1")
    ask("m2")
    errs = []

    def one():
        try:
            ask("m0")
        except AssertionError as e:
            errs.append(str(e))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errs, f"concurrent requests of a disk cold start: {errs}")
    c2 = counts()
    check(c2[0] > c1[0], f"the concurrent round read no copy: {c1} -> {c2}")
    check(c2[1] <= c2[0], f"more streamed than disk cold starts: {c2}")
    check(srv.stop() == 0, "exit status after SIGTERM")


@test
def demo_repository(fx):
    """No --models and no ./models: the demo repository is built and served."""
    cache = os.path.join(fx.tmp, "cache")
    cwd = os.path.join(fx.tmp, "empty")  # no ./models here
    os.makedirs(cwd)
    env = dict(os.environ, DPRT_CACHE=cache)
    logp = os.path.join(fx.tmp, "demo.log")
    with socket.socket() as probe:  # an explicit port this time
        probe.bind((HOST, 0))
        want_port = probe.getsockname()[1]
    with open(logp, "wb") as lf:
        proc = subprocess.Popen([DPRT, "serve", "--listen", f"{HOST}:{want_port}"], cwd=cwd,
                                env=env, stdout=lf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            end = time.monotonic() + min(30, left())
            port = None
            while time.monotonic() < end and proc.poll() is None and not port:
                with open(logp, errors="replace") as f:
                    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.read())
                port = int(m.group(1)) if m else None
                time.sleep(0.02)
            check(port == want_port, f"listening on {port}, not {want_port}")
            with open(logp, errors="replace") as f:
                log = f.read()
            check(port, f"demo server did not start:\n{log}")
            check(os.path.join(cache, "demo") in log, f"the log does not say where:\n{log}")
            st, _, b = request(port, "POST", "/v2/repository/index")
            names = {r["name"] for r in json.loads(b)}
            check(names == set(MODELS), f"demo models {names}")
            ins, _ = fx.ref("gpt2-tiny")
            infer(port, "gpt2-tiny", ins)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=20)
    check(rc == 0, f"demo server exit {rc}")
    for m in MODELS:
        check(os.path.exists(os.path.join(cache, "demo", m, "1", "model.dpk")), f"no {m}")


@test
def listen_errors(fx):
    """A taken port and a malformed address stop dprt at once, named."""
    port = fx.main.port
    p = subprocess.run([DPRT, "--listen", f"{HOST}:{port}", "--models", fx.repo],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and "Address already in use" in p.stderr and str(port) in p.stderr,
          f"port in use: exit {p.returncode}: {p.stderr}")
    p = subprocess.run([DPRT, "--listen", "::1:80", "--models", fx.repo],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "--listen" in p.stderr, f"bad address: {p.returncode} {p.stderr}")
    p = subprocess.run([DPRT, "--gpus", "cpu:0", "--listen", f"{HOST}:0", "--models", fx.repo],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 2 and "--gpus" in p.stderr, f"bad --gpus: {p.returncode} {p.stderr}")
    healthy(port, "a second dprt on the same port")


def main():
    only = set(sys.argv[1:])
    known = {t.__name__ for t in TESTS}
    check(only <= known, f"unknown tests {only - known}; tests: {sorted(known)}")
    check(os.access(DPRT, os.X_OK), f"no dprt binary at {DPRT}")
    fx = Fixture()
    passed = failed = 0
    try:
        for t in TESTS:
            if only and t.__name__ not in only:
                continue
            if not left():
                print(f"FAIL {t.__name__}: the suite ran out of time")
                failed += 1
                continue
            t0 = time.monotonic()
            try:
                t(fx)
                passed += 1
                print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {t.__name__} ({time.monotonic() - t0:.1f} s)")
                traceback.print_exc(file=sys.stdout)
                for s in fx.servers:
                    print(f"--- log of server {s.name} (last lines):")
                    print(s.log()[-2500:])
                sys.stdout.flush()
        if fx._main:
            rc = fx._main.stop()
            if rc != 0:
                failed += 1
                print(f"FAIL main server: exit {rc} on SIGTERM\n{fx._main.log()[-2000:]}")
    finally:
        fx.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
