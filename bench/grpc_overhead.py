#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""gRPC against HTTP/1.1 on the same server: per-request latency of warm
bert-tiny calls (batch 1, sequence 8, INT64 inputs) through tritonclient.grpc
(raw_input_contents) and tritonclient.http (binary tensor data), one client
of each, sequential, interleaved in rounds of 50 so both see the same
machine noise. Starts `dprt serve --gpus cpu --listen 127.0.0.1:0
--grpc-listen 127.0.0.1:0` on the demo repository (in a scratch DPRT_CACHE)
and writes bench/results/grpc-overhead-cpu-<date>.md.

  build/grpc-venv/bin/python bench/grpc_overhead.py [-n 2000] [--out FILE]
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import tritonclient.grpc as tg
import tritonclient.http as th

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DPRT = os.environ.get("DPRT") or os.path.join(ROOT, "dprt")
HOST = "127.0.0.1"
ROUND = 50


def start(tmp):
    logpath = os.path.join(tmp, "dprt.log")
    logf = open(logpath, "wb")
    env = dict(os.environ, DPRT_CACHE=os.path.join(tmp, "cache"))
    cmd = [DPRT, "serve", "--gpus", "cpu", "--listen", f"{HOST}:0",
           "--grpc-listen", f"{HOST}:0"]
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=tmp, env=env)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        log = open(logpath, errors="replace").read()
        h = re.search(r"info  listening on 127\.0\.0\.1:(\d+)", log)
        g = re.search(r"grpc listening on 127\.0\.0\.1:(\d+)", log)
        if h and g:
            return proc, int(h.group(1)), int(g.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit("dprt did not start:\n" + open(logpath, errors="replace").read())


def inputs(mod, binary):
    ids = (np.arange(8) % 50 + 1).astype(np.int64).reshape(1, 8)
    arrays = {"input_ids": ids, "attention_mask": np.ones((1, 8), np.int64),
              "token_type_ids": np.zeros((1, 8), np.int64)}
    ins = []
    for k, a in arrays.items():
        x = mod.InferInput(k, list(a.shape), "INT64")
        if binary:
            x.set_data_from_numpy(a, binary_data=True)
        else:
            x.set_data_from_numpy(a)
        ins.append(x)
    return ins


def stats(us):
    a = np.sort(np.array(us))
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "min": float(a[0]), "max": float(a[-1])}


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def tc_version():
    try:
        from importlib.metadata import version
        return version("tritonclient")
    except Exception:  # not installed as a distribution
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000, help="requests per protocol")
    ap.add_argument("--out", help="result file (default bench/results/...)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, gport = start(tmp)
        try:
            gc = tg.InferenceServerClient(f"{HOST}:{gport}")
            hc = th.InferenceServerClient(f"{HOST}:{port}")
            gin, hin = inputs(tg, False), inputs(th, True)
            hout = [th.InferRequestedOutput("last_hidden_state", binary_data=True)]
            ref = hc.infer("bert-tiny", hin, outputs=hout).as_numpy("last_hidden_state")
            got = gc.infer("bert-tiny", gin).as_numpy("last_hidden_state")
            if ref is None or got is None or not np.array_equal(ref, got):
                sys.exit("gRPC and HTTP answers differ")
            for _ in range(100):  # warm-up, both
                gc.infer("bert-tiny", gin)
                hc.infer("bert-tiny", hin, outputs=hout)
            g_us, h_us = [], []
            done = 0
            while done < a.n:
                k = min(ROUND, a.n - done)
                for _ in range(k):
                    t = time.perf_counter_ns()
                    gc.infer("bert-tiny", gin)
                    g_us.append((time.perf_counter_ns() - t) / 1e3)
                for _ in range(k):
                    t = time.perf_counter_ns()
                    hc.infer("bert-tiny", hin, outputs=hout)
                    h_us.append((time.perf_counter_ns() - t) / 1e3)
                done += k
        finally:
            proc.terminate()
            proc.wait(10)
    gs, hs = stats(g_us), stats(h_us)
    date = datetime.date.today().isoformat()
    out = a.out or os.path.join(ROOT, "bench", "results", f"grpc-overhead-cpu-{date}.md")
    rows = "\n".join(
        f"| {name} | {s['p50']:.1f} | {s['p99']:.1f} | {s['mean']:.1f} | {s['min']:.1f} | "
        f"{s['max']:.1f} |" for name, s in (("gRPC", gs), ("HTTP/1.1 binary", hs)))
    text = f"""# gRPC vs HTTP/1.1 per-request latency, bert-tiny, CPU ({date})

Command: `build/grpc-venv/bin/python bench/grpc_overhead.py -n {a.n}`

Machine: {os.cpu_count()} CPUs (`nproc` {subprocess.run(['nproc'], capture_output=True,
text=True).stdout.strip()}), {cpu_model()}; Python {platform.python_version()},
tritonclient {tc_version()}.

`dprt serve --gpus cpu` on the demo repository; bert-tiny, batch 1,
sequence 8, three INT64 inputs; one client per protocol, sequential
requests, {a.n} each after 100 warm-up each, interleaved in rounds of
{ROUND} (gRPC round, then HTTP round). gRPC: tritonclient.grpc,
raw_input_contents; HTTP: tritonclient.http, binary inputs and output
(last_hidden_state). Both answers checked equal first. Client-side wall
time per call, microseconds.

| protocol | p50 us | p99 us | mean us | min us | max us |
|---|---|---|---|---|---|
{rows}

Ratio gRPC/HTTP: p50 {gs['p50'] / hs['p50']:.3f}, p99 {gs['p99'] / hs['p99']:.3f},
mean {gs['mean'] / hs['mean']:.3f}.
"""
    with open(out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
