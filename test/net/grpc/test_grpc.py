#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""dprt serve over gRPC, end to end, on 127.0.0.1.

Starts `dprt --gpus cpu --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0` on
the demo repository (built into a scratch DPRT_CACHE) and checks with the
official Triton gRPC client and grpcio: health, server and model metadata,
ModelInfer (raw and typed contents) against the HTTP client's answer for the
same input, the status codes of bad calls, trailing metadata, the repository
API, config and statistics, --max-body, gzip- and deflate-compressed request
messages (grpc-encoding), and garbage over raw sockets, after
each of which the server must still answer HTTP and gRPC.

Usage: test_grpc.py [TEST_NAME...]   (DPRT names the binary under test)
Every wait is bounded; prints "N passed, N failed".
"""

import http.client
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import grpc
import numpy as np
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DPRT = os.environ.get("DPRT") or os.path.join(ROOT, "dprt")
HOST = "127.0.0.1"
SVC = "/inference.GRPCInferenceService/"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Server:
    def __init__(self, tmp, name, *args):
        self.logpath = os.path.join(tmp, name + ".log")
        self.logf = open(self.logpath, "wb")
        env = dict(os.environ, DPRT_CACHE=os.path.join(tmp, "cache"))
        cmd = [DPRT, "serve", "--gpus", "cpu", "--listen", f"{HOST}:0",
               "--grpc-listen", f"{HOST}:0", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=tmp, env=env)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            log = self.log()
            h = re.search(r"info  listening on 127\.0\.0\.1:(\d+)", log)
            g = re.search(r"grpc listening on 127\.0\.0\.1:(\d+)", log)
            if h and g:
                self.port, self.gport = int(h.group(1)), int(g.group(1))
                self.gaddr = f"{HOST}:{self.gport}"
                self.wait_loaded(end)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.proc.kill()
        raise AssertionError(f"dprt did not start listening:\n{self.log()}")

    def wait_loaded(self, end):
        """Until readiness no longer says the repository is loading (dprt
        listens while its models load)."""
        while time.monotonic() < end:
            c = http.client.HTTPConnection(HOST, self.port, timeout=10)
            c.request("GET", "/v2/health/ready")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 503 or b"loading the repository" not in body:
                return
            time.sleep(0.02)
        raise AssertionError(f"models still loading:\n{self.log()}")

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def alive(self):
        """The process runs and answers both HTTP and gRPC."""
        check(self.proc.poll() is None, f"dprt exited {self.proc.returncode}:\n"
              f"{self.log()[-3000:]}")
        c = http.client.HTTPConnection(HOST, self.port, timeout=10)
        c.request("GET", "/v2/health/live")
        check(c.getresponse().status == 200, "HTTP health after garbage")
        c.close()
        check(tg.InferenceServerClient(self.gaddr).is_server_live(), "gRPC live after garbage")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"no exit after SIGTERM:\n{self.log()[-3000:]}")
        check(rc == 0, f"exit {rc} after SIGTERM:\n{self.log()[-3000:]}")


def bert_inputs(batch=2, seq=8, dt=np.int64):
    ids = (np.arange(batch * seq) % 50 + 1).astype(dt).reshape(batch, seq)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), dt),
            "token_type_ids": np.zeros((batch, seq), dt)}


def grpc_infer(srv, model, arrays, outputs=None):
    c = tg.InferenceServerClient(srv.gaddr)
    ins = []
    for k, a in arrays.items():
        x = tg.InferInput(k, list(a.shape), "INT64" if a.dtype == np.int64 else
                          "FP32" if a.dtype == np.float32 else "INT32")
        x.set_data_from_numpy(a)
        ins.append(x)
    outs = [tg.InferRequestedOutput(o) for o in outputs] if outputs else None
    return c.infer(model, ins, outputs=outs)


def http_infer(srv, model, arrays):
    c = th.InferenceServerClient(f"{HOST}:{srv.port}")
    ins = []
    for k, a in arrays.items():
        x = th.InferInput(k, list(a.shape), "INT64")
        x.set_data_from_numpy(a)
        ins.append(x)
    return c.infer(model, ins)


def expect_status(code, fn, what):
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


def raw_call(srv, method, req, resp_cls):
    ch = grpc.insecure_channel(srv.gaddr)
    f = ch.unary_unary(SVC + method, request_serializer=lambda m: m.SerializeToString(),
                       response_deserializer=resp_cls.FromString)
    r, call = f.with_call(req, timeout=20)
    ch.close()
    return r, dict(call.trailing_metadata())


# ------------------------------------------------------------------ tests

def test_health_and_metadata(srv, tmp):
    c = tg.InferenceServerClient(srv.gaddr)
    check(c.is_server_live() and c.is_server_ready(), "live and ready")
    check(c.is_model_ready("bert-tiny"), "bert-tiny ready")
    check(not c.is_model_ready("no-such-model"), "an unknown model is not ready")
    m = c.get_server_metadata()
    check(m.name == "dprt" and "model_repository" in m.extensions, f"server metadata {m}")
    md = c.get_model_metadata("bert-tiny")
    check(md.name == "bert-tiny" and md.versions == ["1"] and md.platform == "dprt", str(md))
    check([t.name for t in md.inputs] == ["input_ids", "attention_mask", "token_type_ids"],
          str(md.inputs))
    check([(t.name, list(t.shape), t.datatype) for t in md.outputs][0] ==
          ("last_hidden_state", [-1, -1, 64], "FP32"), str(md.outputs))
    cfg = c.get_model_config("bert-tiny").config
    check(cfg.name == "bert-tiny" and len(cfg.input) == 3 and cfg.input[0].dims == [-1, -1],
          str(cfg))
    expect_status("NOT_FOUND", lambda: c.get_model_metadata("no-such-model"), "metadata")


def test_infer_matches_http(srv, tmp):
    a = bert_inputs()
    g = grpc_infer(srv, "bert-tiny", a)
    h = http_infer(srv, "bert-tiny", a)
    for o in ("last_hidden_state", "pooler_output"):
        x, y = g.as_numpy(o), h.as_numpy(o)
        check(x.dtype == np.float32 and x.shape == y.shape, f"{o}: {x.dtype} {x.shape}")
        check(np.array_equal(x, y), f"{o} differs between gRPC and HTTP")
    r = g.get_response()
    check(r.model_name == "bert-tiny" and r.model_version == "1", str(r.model_name))
    check("cold_start" in r.parameters and "compute_us" in r.parameters, str(r.parameters))
    # only the output asked for
    g2 = grpc_infer(srv, "bert-tiny", a, outputs=["pooler_output"])
    check([o.name for o in g2.get_response().outputs] == ["pooler_output"], "requested output")
    check(np.array_equal(g2.as_numpy("pooler_output"), h.as_numpy("pooler_output")), "pooler")


def test_big_and_concurrent(srv, tmp):
    """Outputs of 1 MiB (many DATA frames, write buffers full) and 32 calls
    in flight on one channel (concurrent streams), each checked."""
    a = bert_inputs(batch=64, seq=64)
    g = grpc_infer(srv, "bert-tiny", a)
    h = http_infer(srv, "bert-tiny", a)
    check(g.as_numpy("last_hidden_state").nbytes == 64 * 64 * 64 * 4, "1 MiB output")
    check(np.array_equal(g.as_numpy("last_hidden_state"), h.as_numpy("last_hidden_state")),
          "big output differs between gRPC and HTTP")
    c = tg.InferenceServerClient(srv.gaddr)
    want, ins = {}, {}
    for i in range(32):
        x = bert_inputs(batch=1 + i % 3, seq=4 + i % 5)
        x["input_ids"] = (x["input_ids"] + i) % 60
        ins[i] = x
        want[i] = http_infer(srv, "bert-tiny", x).as_numpy("pooler_output")
    got, errs = {}, []

    def done(i):
        return lambda result, error: errs.append(error) if error else got.__setitem__(i, result)
    for i, x in ins.items():
        tin = []
        for k, v in x.items():
            t = tg.InferInput(k, list(v.shape), "INT64")
            t.set_data_from_numpy(v)
            tin.append(t)
        c.async_infer("bert-tiny", tin, done(i))
    end = time.monotonic() + 30
    while len(got) + len(errs) < len(ins) and time.monotonic() < end:
        time.sleep(0.01)
    check(not errs and len(got) == len(ins), f"concurrent: {len(got)} answers, errors {errs[:3]}")
    for i, r in got.items():
        check(np.array_equal(r.as_numpy("pooler_output"), want[i]), f"concurrent call {i} differs")


def test_typed_contents_and_trailers(srv, tmp):
    a = bert_inputs(batch=1, seq=5)
    req = pb.ModelInferRequest(model_name="bert-tiny", id="typed-1")
    for k, v in a.items():
        t = req.inputs.add(name=k, datatype="INT64", shape=list(v.shape))
        t.contents.int64_contents.extend(v.ravel().tolist())
    r, md = raw_call(srv, "ModelInfer", req, pb.ModelInferResponse)
    check(r.id == "typed-1", f"id {r.id!r}")
    check(md.get("dprt-cold-start") in ("0", "1"), f"trailing metadata {md}")
    check(re.match(r"queue;dur=[\d.]+, load;dur=[\d.]+, compute;dur=[\d.]+$",
                   md.get("server-timing", "")), f"server-timing {md}")
    h = http_infer(srv, "bert-tiny", a)
    names = [o.name for o in r.outputs]
    i = names.index("pooler_output")
    got = np.frombuffer(r.raw_output_contents[i], np.float32).reshape(list(r.outputs[i].shape))
    check(np.array_equal(got, h.as_numpy("pooler_output")), "typed contents: pooler differs")


def test_bad_calls(srv, tmp):
    c = tg.InferenceServerClient(srv.gaddr)
    a = bert_inputs()
    expect_status("NOT_FOUND", lambda: grpc_infer(srv, "no-such-model", a), "unknown model")
    bad = dict(a, input_ids=a["input_ids"].reshape(2, 8, 1))
    expect_status("INVALID_ARGUMENT", lambda: grpc_infer(srv, "bert-tiny", bad), "rank 3")
    bad = dict(a, attention_mask=np.ones((2, 7), np.int64))
    expect_status("INVALID_ARGUMENT", lambda: grpc_infer(srv, "bert-tiny", bad), "seq mismatch")
    bad = dict(a, input_ids=a["input_ids"].astype(np.float32))
    expect_status("INVALID_ARGUMENT", lambda: grpc_infer(srv, "bert-tiny", bad), "dtype")
    expect_status("INVALID_ARGUMENT",
                  lambda: grpc_infer(srv, "bert-tiny", a, outputs=["nope"]), "unknown output")
    # raw bytes that do not match the shape
    req = pb.ModelInferRequest(model_name="bert-tiny")
    for k, v in a.items():
        req.inputs.add(name=k, datatype="INT64", shape=list(v.shape))
        req.raw_input_contents.append(v.tobytes()[:-8])
    expect_status("INVALID_ARGUMENT", lambda: raw_call(srv, "ModelInfer", req,
                                                       pb.ModelInferResponse), "short raw")
    expect_status("UNIMPLEMENTED", lambda: raw_call(srv, "NoSuchMethod", pb.ServerLiveRequest(),
                                                    pb.ServerLiveResponse), "unknown method")
    expect_status("UNIMPLEMENTED",
                  lambda: c.get_system_shared_memory_status(), "shared memory")
    # bytes that are not a ModelInferRequest
    ch = grpc.insecure_channel(srv.gaddr)
    f = ch.unary_unary(SVC + "ModelInfer", request_serializer=lambda b: b,
                       response_deserializer=lambda b: b)
    for junk in (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\xff\xff\xff\x0f",
                 b"\x3a\x05ab", b"\x0b\x01\x02"):
        expect_status("INVALID_ARGUMENT", lambda: f(junk, timeout=20), f"junk {junk!r}")
    ch.close()
    srv.alive()


def test_repository(srv, tmp):
    c = tg.InferenceServerClient(srv.gaddr)
    idx = c.get_model_repository_index()
    rows = {(m.name, m.version, m.state) for m in idx.models}
    check(("bert-tiny", "1", "READY") in rows and len(rows) == 3, f"index {rows}")
    c.unload_model("gpt2-tiny")
    check(not c.is_model_ready("gpt2-tiny"), "gpt2-tiny unloaded")
    ready = {m.name for m in pb.RepositoryIndexResponse.FromString(raw_call(
        srv, "RepositoryIndex", pb.RepositoryIndexRequest(ready=True),
        pb.RepositoryIndexResponse)[0].SerializeToString()).models}
    check(ready == {"bert-tiny", "resnet-tiny"}, f"ready-only index {ready}")
    ids = np.ones((1, 4), np.int64)
    expect_status("UNAVAILABLE", lambda: grpc_infer(srv, "gpt2-tiny", {"input_ids": ids}),
                  "infer on an unloaded model")
    c.load_model("gpt2-tiny")
    check(c.is_model_ready("gpt2-tiny"), "gpt2-tiny loaded again")
    expect_status("NOT_FOUND", lambda: c.load_model("no-such-model"), "load unknown")
    st = c.get_inference_statistics("bert-tiny").model_stats
    check(len(st) == 1 and st[0].name == "bert-tiny" and st[0].inference_count >= 3,
          f"statistics {st}")


def test_max_body(srv, tmp):
    s2 = Server(tmp, "small", "--max-body", "64K")
    try:
        a = bert_inputs(batch=64, seq=128)  # 3 x 64 KiB
        msg = expect_status("RESOURCE_EXHAUSTED", lambda: grpc_infer(s2, "bert-tiny", a),
                            "over --max-body")
        check("--max-body" in msg, msg)
        g = grpc_infer(s2, "bert-tiny", bert_inputs(batch=1, seq=4))
        check(g.as_numpy("pooler_output").shape == (1, 64), "small infer after the refusal")
        s2.alive()
    finally:
        s2.stop()


def test_compressed_requests(srv, tmp):
    """Request messages coded gzip or deflate (grpc-encoding), from
    tritonclient and from grpcio: the same answers as plain ones; the
    decoded size is bounded by --max-body; a malformed one is refused."""
    a = bert_inputs(batch=3, seq=16)
    want = grpc_infer(srv, "bert-tiny", a)
    c = tg.InferenceServerClient(srv.gaddr)
    ins = []
    for k, v in a.items():
        x = tg.InferInput(k, list(v.shape), "INT64")
        x.set_data_from_numpy(v)
        ins.append(x)
    for algo in ("gzip", "deflate"):
        g = c.infer("bert-tiny", ins, compression_algorithm=algo)
        for o in ("last_hidden_state", "pooler_output"):
            check(np.array_equal(g.as_numpy(o), want.as_numpy(o)), f"{algo}: {o} differs")
    ch = grpc.insecure_channel(srv.gaddr, compression=grpc.Compression.Gzip)
    f = ch.unary_unary(SVC + "ModelReady", request_serializer=lambda m: m.SerializeToString(),
                       response_deserializer=pb.ModelReadyResponse.FromString)
    check(f(pb.ModelReadyRequest(name="bert-tiny"), timeout=20).ready, "grpcio gzip call")
    ch.close()
    # the decoded message is what --max-body bounds: zeros of 3 x 64 KiB
    s2 = Server(tmp, "zsmall", "--max-body", "64K")
    try:
        z = {k: np.zeros((64, 128), np.int64) for k in a}
        cz = tg.InferenceServerClient(s2.gaddr)
        zi = []
        for k, v in z.items():
            x = tg.InferInput(k, list(v.shape), "INT64")
            x.set_data_from_numpy(v)
            zi.append(x)
        msg = expect_status("RESOURCE_EXHAUSTED",
                            lambda: cz.infer("bert-tiny", zi, compression_algorithm="gzip"),
                            "a small gzip message over --max-body decoded")
        check("decompressed" in msg, msg)
        # a message flagged compressed that is not gzip data
        junk = b"\x01" + struct.pack(">I", 6) + b"abcdef"
        hb = headers_block("ModelReady") + hpack_lit("grpc-encoding", "gzip")
        got = blast(s2, PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, hb) +
                    frame(0, 1, 1, junk))
        check(any(t == 1 and fl & 1 and sid == 1 for t, fl, sid in frames_of(got)),
              f"no trailers for a malformed compressed message: {frames_of(got)}")
        s2.alive()
    finally:
        s2.stop()
    srv.alive()


# -- raw HTTP/2 --

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack_lit(name, value):
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def headers_block(method="ModelInfer"):
    return b"".join(hpack_lit(k, v) for k, v in (
        (":method", "POST"), (":scheme", "http"), (":path", SVC + method),
        (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")))


def blast(srv, data, read=True):
    s = socket.create_connection((HOST, srv.gport), timeout=5)
    got = b""
    try:
        s.sendall(data)
        if read:
            s.settimeout(1)
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return got


def frames_of(data):
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7fffffff))
        i += 9 + n
    return out


def test_timeouts_and_stop(srv, tmp):
    """--request-timeout for a message that stops half way; SIGTERM with a
    gRPC connection open and a call in progress: it is answered, dprt exits 0."""
    s2 = Server(tmp, "timeouts", "--request-timeout", "0.5")
    try:
        s = socket.create_connection((HOST, s2.gport), timeout=5)
        s.sendall(PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
                  frame(0, 0, 1, b"\x00\x00\x00\x01\x00" + b"\x0a"))
        s.settimeout(5)
        got, end = b"", time.monotonic() + 5
        while time.monotonic() < end and not any(t == 1 and sid == 1
                                                 for t, _, sid in frames_of(got)):
            b = s.recv(65536)
            if not b:
                break
            got += b
        check(any(t == 1 and sid == 1 for t, _, sid in frames_of(got)),
              f"no answer to a stalled request ({frames_of(got)})")
        s.close()
        c = tg.InferenceServerClient(s2.gaddr)
        check(c.is_server_ready(), "ready before SIGTERM")
        s2.proc.send_signal(signal.SIGTERM)
        s2.stop()
        check("stopped: every request answered" in s2.log(), "clean stop")
    finally:
        if s2.proc.poll() is None:
            s2.proc.kill()


def test_garbage(srv, tmp):
    rnd = np.random.default_rng(7)
    cases = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        bytes(rnd.integers(0, 256, 4096, dtype=np.uint8)),
        PREFACE + bytes(rnd.integers(0, 256, 4096, dtype=np.uint8)),
        PREFACE + frame(4, 0, 0, b"") + frame(1, 5, 1, b"\xff\xff\xff\xff\xff"),  # bad HPACK
        PREFACE + frame(4, 0, 0, b"\x00\x05\xff\xff\xff\xff"),  # bad SETTINGS value
        PREFACE + frame(4, 0, 0, b"") + frame(0, 1, 1, b"\x00" * 20),  # DATA on idle stream
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
        frame(0, 0, 1, b"\x00\xff\xff\xff\xff" + b"\x00" * 1000),  # 4 GiB message
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
        frame(0, 1, 1, b"\x01\x00\x00\x00\x02ab"),  # compressed flag
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
        frame(0, 1, 1, b"\x00\x00\x00\x00\x10" + b"\x3a\x0e" + b"x" * 14),  # truncated stream
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
        frame(0, 1, 1, b"\x00\x00\x00\x00\x03\x3a\x7f\x00"),  # raw field past the end
        PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block("ServerLive")) +
        frame(0, 0, 1, b"\x00\x00\x00\x00\x00") + frame(0, 1, 1, b"\x00\x00\x00\x00\x00"),
        PREFACE + frame(4, 0, 0, b"") + frame(1, 5, 1, headers_block("ServerLive")),
        PREFACE + frame(4, 0, 0, b"") + b"".join(frame(1, 4, 2 * i + 1, headers_block())
                                                 for i in range(200)),  # past max streams
        PREFACE + frame(4, 0, 0, b"") + frame(7, 0, 0, b"\x00" * 8),  # client GOAWAY
    ]
    for i, data in enumerate(cases):
        got = blast(srv, data)
        srv.alive()
        if i == 6:
            fr = frames_of(got)
            check(any(t == 1 and sid == 1 for t, _, sid in fr),
                  f"4 GiB message: no HEADERS answer on stream 1 ({fr})")
    # the declared 4 GiB never has to arrive: answered at once
    t0 = time.monotonic()
    got = blast(srv, PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) +
                frame(0, 0, 1, b"\x00\x7f\xff\xff\xff"))
    check(any(t == 1 and sid == 1 for t, _, sid in frames_of(got)), "early refusal")
    # half a frame, then close; a slow trickle
    blast(srv, PREFACE + frame(4, 0, 0, b"")[:5], read=False)
    s = socket.create_connection((HOST, srv.gport), timeout=5)
    for b in PREFACE[:10]:
        s.send(bytes([b]))
    s.close()
    srv.alive()
    check(time.monotonic() - t0 < 30, "garbage took too long")


def read_frames(s, want_streams, limit_s):
    """Read frames until every stream in want_streams got an end (HEADERS
    with END_STREAM or RST_STREAM), the peer closes, or limit_s passes."""
    got, end = b"", time.monotonic() + limit_s
    s.settimeout(0.2)
    while time.monotonic() < end:
        ended = {sid for t, fl, sid in frames_of(got) if (t == 1 and fl & 1) or t == 3}
        if want_streams <= ended:
            break
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not b:
            break
        got += b
    return got


def test_fuzz(srv, tmp):
    """Mutated ModelInferRequests (flipped and cut bytes), each on its own
    stream, and mutated HTTP/2 byte streams: never a crash."""
    rnd = np.random.default_rng(11)
    req = pb.ModelInferRequest(model_name="bert-tiny", id="f")
    for k, v in bert_inputs(batch=1, seq=4).items():
        req.inputs.add(name=k, datatype="INT64", shape=list(v.shape))
        req.raw_input_contents.append(v.tobytes())
    good = req.SerializeToString()
    answered = 0
    for conn in range(20):
        s = socket.create_connection((HOST, srv.gport), timeout=5)
        out = PREFACE + frame(4, 0, 0, b"")
        ids = set()
        for i in range(16):
            m = bytearray(good)
            for _ in range(int(rnd.integers(1, 6))):
                m[int(rnd.integers(0, len(m)))] = int(rnd.integers(0, 256))
            if rnd.random() < 0.3:
                m = m[:int(rnd.integers(0, len(m)))]
            sid = 2 * i + 1
            ids.add(sid)
            out += frame(1, 4, sid, headers_block()) + \
                frame(0, 1, sid, b"\x00" + struct.pack(">I", len(m)) + bytes(m))
        s.sendall(out)
        got = read_frames(s, ids, 5)
        answered += len({sid for t, fl, sid in frames_of(got) if t == 1 and fl & 1})
        s.close()
        srv.alive()
    check(answered >= 280, f"only {answered} of 320 mutated calls were answered")
    base = PREFACE + frame(4, 0, 0, b"") + frame(1, 4, 1, headers_block()) + \
        frame(0, 1, 1, b"\x00" + struct.pack(">I", len(good)) + good)
    for i in range(150):
        m = bytearray(base)
        for _ in range(int(rnd.integers(1, 4))):
            j = int(rnd.integers(len(PREFACE), len(m)))
            m[j] = int(rnd.integers(0, 256))
        s = socket.create_connection((HOST, srv.gport), timeout=5)
        try:
            s.sendall(bytes(m))
            read_frames(s, {1}, 0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.close()
    srv.alive()


TESTS = [test_health_and_metadata, test_infer_matches_http, test_big_and_concurrent,
         test_compressed_requests,
         test_typed_contents_and_trailers, test_bad_calls, test_repository, test_max_body,
         test_timeouts_and_stop, test_garbage, test_fuzz]


def main():
    names = set(sys.argv[1:])
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="dprt-grpc.") as tmp:
        srv = Server(tmp, "main")
        try:
            for t in TESTS:
                if names and t.__name__ not in names:
                    continue
                t0 = time.monotonic()
                try:
                    t(srv, tmp)
                    passed += 1
                    print(f"ok   {t.__name__} ({time.monotonic() - t0:.2f} s)")
                except Exception:
                    failed += 1
                    print(f"FAIL {t.__name__}")
                    traceback.print_exc()
            log = srv.log()
        finally:
            srv.stop()
        if failed:
            print("--- server log (tail)\n" + log[-4000:])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
