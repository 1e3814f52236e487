#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Drive a soak run against a running dprt server (bench/soak.sh starts it).

Four kinds of traffic at once, for --duration seconds:
  valid      build/bench/loadgen in consecutive slices of --slice seconds
             over the instances m0..m<N-1> (more than the memory limit
             holds: they evict each other), every answer checked; each
             slice's JSON is kept (raw/slice-K.json)
  invalid    raw-socket requests the server must refuse with one given 4xx
             (or 5xx for unsupported protocol features): malformed JSON,
             wrong shapes and dtypes, unknown models, truncated binary
             bodies, bad headers, gzip bombs, chunked garbage, bodies over
             --max-body, shapes over --max-activation
  churn      the model c0 (versions 1 and 2) unloaded and loaded again,
             alternating the version loaded, while a client keeps asking
             it for answers: a 503 counts as expected only when the request
             overlapped an unload-to-load window
  sampling   every --sample seconds: the server's VmRSS and whether it is
             still alive

Writes summary.md (and samples.csv, slices.csv, result.json) into --out;
exits 1 on any failure (see RULES below), 0 otherwise.
"""
import argparse
import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

RULES = """\
The run fails if any of these holds:
1. a wrong answer (loadgen's --check, or the churn client's comparison with
   the reference answer);
2. a valid request failing with anything but a 503 that overlapped an unload
   of its model (every loadgen error counts: loadgen never asks for c0);
3. an invalid request answered with another status than its expected one
   (or not answered);
4. the server dying (or exiting) before the end, or a repository load/unload
   failing;
5. RSS at the end (traffic stopped, 2 s idle) above
   1.1 x RSS after warm-up (end of the first slice) + 4 MiB;
6. no evictions at all (the memory limit must hold only some instances);
   a c0 answer from another version than the one loaded last (outside the
   unload-to-load windows) counts as a wrong answer."""

SEQ = 8
IDS = [101, 203, 200, 17, 321, 12, 102, 7]


def now():
    return time.monotonic()


def rss_kb(pid):
    """VmRSS of pid in kB, or None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            txt = f.read()
    except OSError:
        return None
    rss = None
    for line in txt.splitlines():
        if line.startswith("State:") and "Z" in line.split()[1]:
            return None
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss


def raw_request(method, path, body=b"", headers=None, host=True):
    h = [f"{method} {path} HTTP/1.1"]
    if host:
        h.append("Host: x")
    hdrs = dict(headers or {})
    if body and "Transfer-Encoding" not in hdrs and "Content-Length" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    h += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def status_of(port, data, timeout=10):
    """Send data on a fresh connection; the status of the first answer, or
    an error string."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return f"connect: {e}"
    got = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading it all
        while b"\r\n" not in got:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except OSError as e:
        if not got:
            return f"recv: {e}"
    finally:
        s.close()
    line = got.split(b"\r\n")[0].split()
    if len(line) < 2 or not line[1].isdigit():
        return f"no status line: {got[:60]!r}"
    return int(line[1])


def infer_json(inputs, **kw):
    return json.dumps({"inputs": inputs, **kw}).encode()


def chunks(data, n):
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + n]), data[i:i + n])
                    for i in range(0, len(data), n))


def invalid_cases(model):
    """(name, bytes, expected status) of every invalid request."""
    path = f"/v2/models/{model}/infer"
    good = {"name": "input_ids", "datatype": "INT64", "shape": [1, SEQ], "data": IDS}
    body = infer_json([good])

    def post(b, p=path, headers=None):
        return raw_request("POST", p, b, headers)

    ids = b"".join(i.to_bytes(8, "little") for i in IDS)
    hdr = json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                  "shape": [1, SEQ],
                                  "parameters": {"binary_data_size": len(ids)}}]}).encode()
    bomb = gzip.compress(b"0" * (4 << 20), 9)
    chead = (f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    # Shapes over --max-activation 16M: batch 1024 x seq 64 (binary, 512 KiB).
    big_ids = (1).to_bytes(8, "little") * (1024 * 64)
    big_hdr = json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64",
                                      "shape": [1024, 64],
                                      "parameters": {"binary_data_size": len(big_ids)}}],
                          "outputs": [{"name": "pooler_output",
                                       "parameters": {"binary_data": True}}]}).encode()
    return [
        ("malformed request line", b"GARBAGE\r\n\r\n", 400),
        ("malformed header", b"GET /v2 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        ("no Host", b"GET /v2 HTTP/1.1\r\n\r\n", 400),
        ("oversized headers", b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 +
         b"\r\n\r\n", 431),
        ("HTTP/2.0", b"GET /v2 HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("PUT", b"PUT /v2 HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        ("GET on infer", raw_request("GET", path), 405),
        ("invalid JSON", post(b"{not json"), 400),
        ("JSON not an object", post(b"[1, 2]"), 400),
        ("truncated JSON", post(body[:len(body) // 2]), 400),
        ("wrong datatype", post(infer_json([dict(good, datatype="FP32")])), 400),
        ("wrong rank", post(infer_json([dict(good, shape=[1, 1, SEQ])])), 400),
        ("data count vs shape", post(infer_json([dict(good, shape=[1, SEQ + 1])])), 400),
        ("token id out of range", post(infer_json([dict(good, data=[5000] * SEQ)])), 400),
        ("seq over the maximum", post(infer_json([dict(good, shape=[1, 65],
                                                       data=[1] * 65)])), 400),
        ("missing input", post(infer_json([dict(good, name="attention_mask")])), 400),
        ("unknown output", post(infer_json([good], outputs=[{"name": "nope"}])), 400),
        ("unknown model", post(body, "/v2/models/no-such-model/infer"), 404),
        ("unknown version", post(body, f"/v2/models/{model}/versions/3/infer"), 404),
        ("model name '..'", post(body, "/v2/models/%2e%2e/infer"), 400),
        ("binary body truncated", post(hdr + ids[:len(ids) // 2],
                                       headers={"Inference-Header-Content-Length":
                                                str(len(hdr))}), 400),
        ("header length beyond the body", post(hdr + ids,
                                               headers={"Inference-Header-Content-Length":
                                                        str(len(hdr) + 999)}), 400),
        ("gzip bomb", post(bomb, headers={"Content-Encoding": "gzip"}), 413),
        ("truncated gzip", post(gzip.compress(body)[:-12],
                                headers={"Content-Encoding": "gzip"}), 400),
        ("unknown Content-Encoding", post(body, headers={"Content-Encoding": "br"}), 415),
        ("chunked with Content-Length", raw_request("POST", path, b"0\r\n\r\n",
                                                    {"Transfer-Encoding": "chunked",
                                                     "Content-Length": "5"}), 400),
        ("chunk size not hex", chead + b"zz\r\n", 400),
        ("chunk shorter than its size", chead + b"5\r\nabc\r\n0\r\n\r\n", 400),
        ("chunk without CRLF", chead + b"3\r\nabcXY0\r\n\r\n", 400),
        ("chunk bare LF", chead + b"3\nabc\r\n0\r\n\r\n", 400),
        ("chunk bad trailer", chead + chunks(body, 50) + b"0\r\nno colon\r\n\r\n", 400),
        ("chunk size overflow", chead + b"ffffffffffffffffff\r\n", 413),
        ("gzip, chunked", chead.replace(b"chunked", b"gzip, chunked") + b"0\r\n\r\n", 501),
        ("body over --max-body", f"POST {path} HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 5000000\r\n\r\n".encode() + b"{" * 1000, 413),
        ("chunked over --max-body", chead + b"200000\r\n" + b"{" * 4096, 413),
        ("shape over --max-activation",
         post(big_hdr + big_ids, headers={"Inference-Header-Content-Length":
                                          str(len(big_hdr))}), 413),
        ("repository load of an unknown model",
         raw_request("POST", "/v2/repository/models/no-such-model/load", b"{}"), 404),
        ("repository load, bad version",
         raw_request("POST", "/v2/repository/models/c0/load",
                     b'{"parameters":{"version":"x"}}'), 400),
    ]


class Soak:
    def __init__(self, a):
        self.a = a
        self.port = int(a.url.rsplit(":", 1)[1])
        self.t0 = now()
        self.end = self.t0 + a.duration
        self.lock = threading.Lock()
        self.failures = []
        self.samples = []          # (t, rss_kb)
        self.slices = []           # dicts
        self.invalid = {}          # name -> [sent, right, {got: n}]
        self.windows = []          # [start, end or None] of c0's unload-to-load
        self.churn = {"unloads": 0, "loads": 0, "errors": 0}
        self.cli = {"sent": 0, "ok": 0, "wrong": 0, "expected_503": 0, "failed": 0,
                    "versions": {}}
        self.base_rss = None
        self.dead = False

    def fail(self, msg):
        with self.lock:
            self.failures.append(f"t={now() - self.t0:.1f}s: {msg}")
            n = len(self.failures)
        if n <= 20:
            print("soak: FAIL:", msg, file=sys.stderr, flush=True)

    def alive(self):
        return rss_kb(self.a.pid) is not None

    # -------------------------------------------------------- sampling
    def sampler(self):
        """RSS every --sample seconds; whether the server lives, every 0.1 s."""
        nxt = self.t0
        while not self.stop.is_set():
            r = rss_kb(self.a.pid)
            if r is None:
                self.dead = True
                self.fail(f"the server (pid {self.a.pid}) is gone")
                self.stop.set()
                return
            if now() >= nxt:
                with self.lock:
                    self.samples.append((now() - self.t0, r) + self.counts())
                nxt += self.a.sample
            self.stop.wait(max(0.0, min(0.1, nxt - now())))

    def counts(self):
        """(invalid mismatches, c0 expected 503s, c0 other failures, c0 wrong)
        so far; the caller holds the lock."""
        bad = sum(e[0] - e[1] for e in self.invalid.values())
        c = self.cli
        return (bad, c["expected_503"], c["failed"], c["wrong"])

    # -------------------------------------------------------- valid: loadgen
    def loadgen(self):
        k = 0
        while now() + 1 < self.end and not self.stop.is_set():
            dur = min(self.a.slice, self.end - now())
            js = os.path.join(self.a.out, "raw", f"slice-{k:03d}.json")
            log = os.path.join(self.a.out, "raw", f"slice-{k:03d}.out")
            cmd = [self.a.loadgen, "--url", self.a.url, "--model-prefix", "m",
                   "--instances", str(self.a.instances), "--rate", str(self.a.rate),
                   "--seq", str(SEQ), "--warmup", "0", "--duration", f"{dur:.2f}",
                   "--check", "--max-errors", "1000000000", "--seed", str(k + 1),
                   "--conns", "4", "--json", js]
            if k == 0:
                with open(os.path.join(self.a.out, "commands.txt"), "a") as f:
                    f.write(" ".join(cmd) + "   (one a slice, --seed and --json vary)\n")
            start = now() - self.t0
            with open(log, "w") as f:
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            row = {"slice": k, "start_s": start, "end_s": now() - self.t0, "rc": rc}
            try:
                with open(js) as f:
                    j = json.load(f)
                row.update({x: j.get(x) for x in ("sent", "ok", "errors", "wrong", "p50_ms",
                                                  "p99_ms", "max_ms", "cold_starts")})
                row["kinds"] = {x: n for x, n in j.get("errors_by_kind", {}).items() if n}
            except (OSError, ValueError) as e:
                self.fail(f"slice {k}: no JSON report ({e}; exit {rc}, see {log})")
                row.update(sent=0, ok=0, errors=0, wrong=0, kinds={})
            with self.lock:
                self.slices.append(row)
                if k == 0:
                    self.base_rss = rss_kb(self.a.pid)
            if row.get("wrong"):
                self.fail(f"slice {k}: {row['wrong']} wrong answers")
            if row.get("errors"):
                self.fail(f"slice {k}: {row['errors']} valid requests failed: {row['kinds']}")
            if rc != 0 and not row.get("wrong") and not row.get("errors"):
                self.fail(f"slice {k}: loadgen exit {rc} (see {log})")
            k += 1

    # -------------------------------------------------------- invalid
    def invalid_loop(self):
        cases = invalid_cases("m0")
        i = 0
        while not self.stop.is_set() and now() < self.end:
            name, data, want = cases[i % len(cases)]
            got = status_of(self.port, data)
            with self.lock:
                e = self.invalid.setdefault(name, [0, 0, {}, want])
                e[0] += 1
                if got == want:
                    e[1] += 1
                else:
                    e[2][str(got)] = e[2].get(str(got), 0) + 1
            if got != want:
                self.fail(f"invalid request '{name}': {got}, expected {want}")
            i += 1
            self.stop.wait(self.a.invalid_gap)

    # -------------------------------------------------------- churn
    def control(self, verb, body=b""):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request("POST", f"/v2/repository/models/c0/{verb}", body)
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException) as e:
            return f"{type(e).__name__}: {e}", b""
        finally:
            c.close()

    def churn_loop(self):
        v = 2
        while not self.stop.is_set() and now() + 2 < self.end:
            self.stop.wait(self.a.churn_gap)
            with self.lock:
                self.windows.append([now(), None])
            st, b = self.control("unload")
            self.churn["unloads"] += 1
            ok = st == 200
            if not ok:
                self.churn["errors"] += 1
                self.fail(f"unload c0: {st} {b[:200]!r}")
            self.stop.wait(0.3)
            st, b = self.control("load", json.dumps({"parameters":
                                                     {"version": str(v)}}).encode())
            self.churn["loads"] += 1
            with self.lock:
                self.windows[-1][1] = now()
                self.loaded = str(v)
            if st != 200:
                self.churn["errors"] += 1
                self.fail(f"load c0 version {v}: {st} {b[:200]!r}")
            v = 3 - v

    def in_window(self, t1, t2):
        with self.lock:
            return any(s <= t2 and (e is None or e >= t1) for s, e in self.windows)

    def churn_client(self):
        body = infer_json([{"name": "input_ids", "datatype": "INT64", "shape": [1, SEQ],
                            "data": IDS}], outputs=[{"name": "pooler_output"}])
        conn = None
        while not self.stop.is_set() and now() < self.end:
            t1 = now()
            l1 = self.loaded
            st, out, ver = None, None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v2/models/c0/infer", body)
                r = conn.getresponse()
                st, b = r.status, r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                if st == 200:
                    js = json.loads(b)
                    ver = js.get("model_version")
                    out = js["outputs"][0]["data"]
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                st = f"{type(e).__name__}: {e}"
                if conn:
                    conn.close()
                conn = None
            t2 = now()
            l2 = self.loaded
            with self.lock:
                self.cli["sent"] += 1
            if st == 200 and l1 == l2 and ver != l1 and not self.in_window(t1, t2):
                self.cli["wrong"] += 1
                self.fail(f"c0: answered by version {ver}, version {l1} is the one loaded")
            elif st == 200 and self.close(out):
                with self.lock:
                    self.cli["ok"] += 1
                    self.cli["versions"][ver] = self.cli["versions"].get(ver, 0) + 1
            elif st == 200:
                self.cli["wrong"] += 1
                self.fail("c0: wrong answer")
            elif st == 503 and self.in_window(t1, t2):
                self.cli["expected_503"] += 1
            else:
                self.cli["failed"] += 1
                self.fail(f"c0: valid request answered {st} outside an unload")
            self.stop.wait(self.a.churn_req_gap)

    def close(self, out):
        ref = self.ref
        if not isinstance(out, list) or len(out) != len(ref):
            return False
        tol = 1e-4 * max(abs(x) for x in ref) + 1e-6
        return all(abs(x - y) <= tol for x, y in zip(out, ref))

    def reference(self):
        """pooler_output of m0 for IDS: the answer c0 must give too."""
        body = infer_json([{"name": "input_ids", "datatype": "INT64", "shape": [1, SEQ],
                            "data": IDS}], outputs=[{"name": "pooler_output"}])
        outs = []
        for m in ("m0", "c0"):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            c.request("POST", f"/v2/models/{m}/infer", body)
            r = c.getresponse()
            b = r.read()
            c.close()
            if r.status != 200:
                raise SystemExit(f"soak: reference answer of {m}: {r.status} {b[:200]!r}")
            js = json.loads(b)
            outs.append(js["outputs"][0]["data"])
            self.loaded = js.get("model_version")
        self.ref = outs[0]
        if not self.close(outs[1]):
            raise SystemExit("soak: c0 and m0 answer differently before the run")

    # -------------------------------------------------------- metrics
    def metric_sum(self, name):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            c.request("GET", "/metrics")
            txt = c.getresponse().read().decode()
            c.close()
        except (OSError, http.client.HTTPException):
            return None
        tot = 0.0
        for line in txt.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                tot += float(line.rsplit(" ", 1)[1])
        return tot

    # -------------------------------------------------------- run
    def run(self):
        self.reference()
        self.stop = threading.Event()
        ths = [threading.Thread(target=f, daemon=True) for f in
               (self.sampler, self.loadgen, self.invalid_loop, self.churn_loop,
                self.churn_client)]
        for t in ths:
            t.start()
        for t in ths[1:]:
            t.join()
        self.stop.set()
        ths[0].join()
        self.evictions = self.metric_sum("dprt_evictions_total")
        time.sleep(2)
        if not self.evictions and not self.dead:
            self.fail(f"no evictions (dprt_evictions_total {self.evictions}): the memory "
                      "limit holds every instance; lower --mem-limit")
        self.end_rss = rss_kb(self.a.pid)
        if self.end_rss is None and not self.dead:
            self.dead = True
            self.fail("the server is gone at the end")
        if self.end_rss is not None:
            self.samples.append((now() - self.t0, self.end_rss) + self.counts())
        self.limit = None
        if self.base_rss is None:
            self.fail("no RSS after warm-up (the first slice did not finish)")
        elif self.end_rss is not None:
            self.limit = 1.1 * self.base_rss + 4096
            if self.end_rss > self.limit:
                self.fail(f"RSS at the end {self.end_rss} kB above 1.1 x {self.base_rss} kB "
                          f"+ 4096 kB = {self.limit:.0f} kB")
        self.write()
        return 1 if self.failures else 0

    # -------------------------------------------------------- report
    def write(self):
        o = self.a.out
        with open(os.path.join(o, "samples.csv"), "w") as f:
            f.write("t_s,rss_kb,invalid_mismatches,c0_503_in_unload,c0_failed,c0_wrong\n")
            f.writelines(f"{x[0]:.1f}," + ",".join(str(v) for v in x[1:]) + "\n"
                         for x in self.samples)
        with open(os.path.join(o, "slices.csv"), "w") as f:
            f.write("slice,start_s,end_s,sent,ok,errors,wrong,p50_ms,p99_ms,max_ms\n")
            for s in self.slices:
                f.write(",".join(str(s.get(x)) for x in ("slice", "start_s", "end_s", "sent",
                                                         "ok", "errors", "wrong", "p50_ms",
                                                         "p99_ms", "max_ms")) + "\n")
        lg = {x: sum(s.get(x) or 0 for s in self.slices) for x in ("sent", "ok", "errors",
                                                                  "wrong", "cold_starts")}
        kinds = {}
        for s in self.slices:
            for k, n in s.get("kinds", {}).items():
                kinds[k] = kinds.get(k, 0) + n
        inv_sent = sum(e[0] for e in self.invalid.values())
        inv_right = sum(e[1] for e in self.invalid.values())
        res = {"pass": not self.failures, "failures": self.failures, "loadgen": lg,
               "loadgen_errors_by_kind": kinds, "invalid_sent": inv_sent,
               "invalid_right": inv_right, "churn": self.churn, "churn_client": self.cli,
               "rss_base_kb": self.base_rss, "rss_end_kb": self.end_rss,
               "rss_limit_kb": self.limit, "evictions": self.evictions,
               "server_died": self.dead}
        with open(os.path.join(o, "result.json"), "w") as f:
            json.dump(res, f, indent=1)
        a = self.a
        L = [f"# dprt soak: {a.label}", "",
             f"Result: **{'PASS' if not self.failures else 'FAIL'}** "
             f"({len(self.failures)} failure(s))", "",
             f"Server: `{a.server_cmd}`", "",
             f"Duration {a.duration:g} s; valid load {a.rate:g} req/s over {a.instances} "
             f"instances m0..m{a.instances - 1} (bert-tiny, seq {SEQ}), in slices of "
             f"{a.slice:g} s; RSS sampled every {a.sample:g} s.", "",
             "## Rules", "", RULES, "",
             "## Totals", "",
             f"* valid (loadgen): sent {lg['sent']}, ok {lg['ok']}, errors {lg['errors']}"
             f"{' ' + str(kinds) if kinds else ''}, wrong {lg['wrong']}, cold starts {lg['cold_starts']}",
             f"* evictions (dprt_evictions_total, all devices): {self.evictions}",
             f"* churn of c0: {self.churn['unloads']} unloads, {self.churn['loads']} loads "
             f"(versions 1 and 2 in turn), {self.churn['errors']} failed",
             f"* c0 client: sent {self.cli['sent']}, ok {self.cli['ok']} (by version "
             f"{self.cli['versions']}), 503 during an unload {self.cli['expected_503']}, "
             f"wrong {self.cli['wrong']}, other failures {self.cli['failed']}",
             f"* invalid: sent {inv_sent}, answered as expected {inv_right}, "
             f"{len(self.invalid)} kinds",
             f"* RSS: after warm-up {self.base_rss} kB, at the end {self.end_rss} kB, limit "
             + (f"{self.limit:.0f} kB" if self.limit else "n/a"),
             f"* server died: {'yes' if self.dead else 'no'}", ""]
        if self.failures:
            L += ["## Failures", ""] + [f"* {x}" for x in self.failures[:50]]
            if len(self.failures) > 50:
                L.append(f"* ... {len(self.failures) - 50} more (result.json)")
            L.append("")
        L += ["## RSS over time", "", "Counts are totals so far: invalid requests answered "
              "otherwise than expected; c0's 503s during an unload, other failures and "
              "wrong answers.", "",
              "| t (s) | RSS (MiB) | invalid mismatches | c0 503 in unload | c0 failed |"
              " c0 wrong |", "|---:|---:|---:|---:|---:|---:|"]
        L += [f"| {x[0]:.1f} | {x[1] / 1024:.1f} | " + " | ".join(str(v) for v in x[2:]) + " |"
              for x in self.samples]
        L += ["", "## p99 over time (one loadgen slice a row)", "",
              "| slice | from (s) | to (s) | sent | ok | errors | wrong | p50 ms | p99 ms |"
              " max ms | errors by kind |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for s in self.slices:
            L.append("| {} | {:.1f} | {:.1f} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                s["slice"], s["start_s"], s["end_s"], s.get("sent"), s.get("ok"),
                s.get("errors"), s.get("wrong"), fmt(s.get("p50_ms")), fmt(s.get("p99_ms")),
                fmt(s.get("max_ms")),
                ", ".join(f"{k} {n}" for k, n in s.get("kinds", {}).items())))
        L += ["", "## Invalid requests", "", "| request | expected | sent | as expected |"
              " other answers |", "|---|---:|---:|---:|---|"]
        for name, (n, right, other, want) in self.invalid.items():
            L.append(f"| {name} | {want} | {n} | {right} | "
                     f"{', '.join(f'{k} x{v}' for k, v in other.items())} |")
        with open(os.path.join(o, "summary.md"), "w") as f:
            f.write("\n".join(L) + "\n")


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process id")
    p.add_argument("--out", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--slice", type=float, default=10)
    p.add_argument("--sample", type=float, default=5)
    p.add_argument("--instances", type=int, default=6)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--invalid-gap", type=float, default=0.02)
    p.add_argument("--churn-gap", type=float, default=1.5)
    p.add_argument("--churn-req-gap", type=float, default=0.02)
    p.add_argument("--label", default="")
    p.add_argument("--server-cmd", default="")
    a = p.parse_args()
    os.makedirs(os.path.join(a.out, "raw"), exist_ok=True)
    rc = Soak(a).run()
    print(open(os.path.join(a.out, "summary.md")).read().split("## RSS")[0])
    sys.exit(rc)


if __name__ == "__main__":
    main()
