#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Client of bench/serve_gpu.sh: KServe v2 requests with the standard library
only. Per model: a cold request, warm requests, and the answer checked against
`dprt run --gpus cpu` on the same input; then concurrent requests over all
models and a look at /metrics. Exits 1 on any wrong answer."""
import argparse, json, os, random, struct, subprocess, sys, tempfile, time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

def http(url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        data = r.read()
        return r.status, dict(r.headers), data, (time.perf_counter() - t0) * 1e3

def st_write(path, tensors):
    hdr, off, blobs = {}, 0, []
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw); blobs.append(raw)
    h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

def st_read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n]); res = {}
    for k, v in hdr.items():
        if k == "__metadata__": continue
        s, e = v["data_offsets"]; raw = b[8 + n + s: 8 + n + e]
        fmt = {"F32": "f", "F16": "e"}[v["dtype"]]
        res[k] = list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
    return res

MODELS = {
    "bert-base": ("input_ids", 384, 30522, "pooler_output"),
    "bert-base-fp16": ("input_ids", 384, 30522, "pooler_output"),
    "gpt2": ("input_ids", 1024, 50257, "last_hidden_state"),
    "resnet50": ("input", None, None, "logits"),
}

def make_input(model, rnd):
    name, seq, vocab, _ = MODELS[model]
    if seq:
        ids = [rnd.randrange(vocab) for _ in range(seq)]
        return {name: ("I64", [1, seq], struct.pack("<%dq" % seq, *ids))}, \
            {"name": name, "datatype": "INT64", "shape": [1, seq], "data": ids}
    vals = [rnd.uniform(-1, 1) for _ in range(3 * 224 * 224)]
    raw = struct.pack("<%df" % len(vals), *vals)
    vals = list(struct.unpack("<%df" % len(vals), raw))
    return {name: ("F32", [1, 3, 224, 224], raw)}, \
        {"name": name, "datatype": "FP32", "shape": [1, 3, 224, 224], "data": vals}

def infer(url, model, kin, out):
    body = json.dumps({"id": "x", "inputs": [kin], "outputs": [{"name": out}]}).encode()
    st, hd, data, ms = http("%s/v2/models/%s/infer" % (url, model), body,
                            {"Content-Type": "application/json"})
    r = json.loads(data)
    return r, hd, ms

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dprt"); ap.add_argument("--repo"); ap.add_argument("--url")
    ap.add_argument("--only", help="comma-separated subset of the models")
    ap.add_argument("--warm", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=16, help="requests per model")
    ap.add_argument("--rounds", type=int, default=0,
                    help="then N rounds over the models in turn, each answer checked "
                         "(under a --gpu-mem-limit that holds one model, each a cold start)")
    a = ap.parse_args()
    if a.only:
        for m in list(MODELS):
            if m not in a.only.split(","): del MODELS[m]
    for _ in range(600):
        try:
            if http(a.url + "/v2/health/ready")[0] == 200: break
        except Exception: pass
        time.sleep(0.1)
    else:
        print("server never became ready"); return 1
    rnd, bad, refs = random.Random(1), 0, {}
    tmp = tempfile.mkdtemp()
    print("%-15s %8s %8s %8s %6s %10s  %s" % ("model", "cold ms", "warm ms", "warm p50", "cold?",
                                              "max rel", "device"))
    for m, (_, _, _, out) in MODELS.items():
        stin, kin = make_input(m, rnd)
        r, hd, cold_ms = infer(a.url, m, kin, out)
        cold = hd.get("Dprt-Cold-Start")
        warm = sorted(infer(a.url, m, kin, out)[2] for _ in range(a.warm))
        p = {x["name"]: x for x in r["outputs"]}[out]["data"]
        st_write(os.path.join(tmp, "in.st"), stin)
        d = os.path.join(a.repo, m)
        subprocess.run([a.dprt, "run", d, "--gpus", "cpu", "--input", os.path.join(tmp, "in.st"),
                        "--output", os.path.join(tmp, "out.st")], check=True,
                       stdout=subprocess.DEVNULL)
        ref = st_read(os.path.join(tmp, "out.st"))[out]
        err = max(abs(x - y) for x, y in zip(p, ref)) / max(abs(y) for y in ref)
        tol = 2e-2 if "fp16" in m else 1e-4
        ok = len(p) == len(ref) and err <= tol and cold == "true"
        bad += not ok
        refs[m] = (kin, ref, tol)
        print("%-15s %8.2f %8.2f %8.2f %6s %10.2e  %s %s" % (
            m, cold_ms, sum(warm) / len(warm), warm[len(warm) // 2], cold, err,
            r.get("parameters", {}).get("device", "?"), "ok" if ok else "FAIL"))
    # Rounds: the models in turn, every answer against the CPU's.
    times = {m: [] for m in MODELS}
    for _ in range(a.rounds):
        for m, (kin, ref, tol) in refs.items():
            r, hd, ms = infer(a.url, m, kin, MODELS[m][3])
            p = {x["name"]: x for x in r["outputs"]}[MODELS[m][3]]["data"]
            err = max(abs(x - y) for x, y in zip(p, ref)) / max(abs(y) for y in ref)
            bad += not (len(p) == len(ref) and err <= tol)
            times[m].append((ms, hd.get("Dprt-Cold-Start") == "true", err))
    for m, ts in times.items():
        if ts:
            cold = sorted(t for t, c, _ in ts if c)
            print("rounds %-15s %d requests, %d cold starts, cold p50 %.2f ms, max rel %.2e"
                  % (m, len(ts), len(cold), cold[len(cold) // 2] if cold else 0,
                     max(e for _, _, e in ts)))
    # Concurrent load over every model: every answer must come back right.
    jobs = [(m, make_input(m, rnd)[1]) for m in MODELS for _ in range(a.concurrent)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as ex:
        res = list(ex.map(lambda j: infer(a.url, j[0], j[1], MODELS[j[0]][3]), jobs))
    secs = time.perf_counter() - t0
    fails = sum(1 for r, _, _ in res if "outputs" not in r)
    bad += fails
    print("concurrent: %d requests over %d models in %.2f s, %d failed" %
          (len(jobs), len(MODELS), secs, fails))
    met = http(a.url + "/metrics")[2].decode()
    for line in met.splitlines():
        if line.startswith(("dprt_cold_starts_total", "dprt_resident_models", "dprt_bytes_loaded_total")):
            print("  " + line)
    print("RESULT: %s" % ("PASS" if not bad else "FAIL (%d)" % bad))
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
