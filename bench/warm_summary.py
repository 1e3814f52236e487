#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Summarise bench/warm.sh's logs as markdown (stdout).

    python3 bench/warm_summary.py OUTDIR

Reads machine.txt, bandwidth.log, dprt.log, torch.log, fullsize.log,
test_cuda.log and cli.log (whichever exist) and prints: warm latency of
dprt beside PyTorch's eager and CUDA-graph latency with the targets (dprt
<= PyTorch graph for every model and dtype; <= 0.6x PyTorch eager for the
fp16 models and the fp32 ResNets), achieved TFLOP/s of the fp32
transformers beside cuBLAS's SGEMM, the paths' improvement over the legacy
ones, transfer ceilings against PAPER.md's figures, and the correctness and
memory checks. Latency ratios use the means.
"""

import os
import re
import sys

PAPER_BW = {  # PAPER.md, "The GPU machines": H100 80GB (x1), H200
    "H100": {"h2d": 54.7, "pageable": 9.2, "dha": 51.0},
    "H200": {"h2d": 55.4, "pageable": 9.4, "dha": 51.3},
}
ORDER = ["resnet50", "resnet101", "bert-base", "bert-large", "roberta-base",
         "roberta-large", "gpt2", "gpt2-medium"]


def read(outdir, name):
    try:
        with open(os.path.join(outdir, name)) as f:
            return f.read()
    except OSError:
        return ""


def dprt_results(text):
    res = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) != 16 or f[0] != "RESULT":
            continue
        key = (f[1], f[2], f[3].lower())
        v = [float(x) for x in f[6:]]
        res[key] = dict(load=v[0], first=v[1], mean=v[2], p50=v[3], p99=v[4],
                        emean=v[5], ep50=v[6], ep99=v[7], dha=v[8], gflop=v[9])
    return res


def torch_results(text):
    res = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) != 9 or f[0] != "TORCH":
            continue
        v = [float(x) for x in f[3:]]
        res[(f[1], f[2])] = dict(emean=v[0], ep50=v[1], ep99=v[2], gmean=v[3],
                                 gp50=v[4], gp99=v[5])
    return res


def gpu_name(machine):
    for line in machine.splitlines():
        if re.match(r"^\d+, ", line):
            return line.split(",")[1].strip()
    return "unknown GPU"


def latency(out, d, t):
    out.append("## Warm latency, batch 1, paper shapes (ms; dprt: graph replay, "
               "host clock around model_run incl. input/output copies)\n")
    out.append("| model | dtype | dprt mean | p50 | p99 | torch eager mean | torch graph "
               "mean | dprt / graph | dprt / eager | target | met |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    met = total = 0
    for dt in ("fp16", "fp32"):
        for m in ORDER:
            r, p = d.get(("default", m, dt)), t.get((m, dt))
            if not r:
                continue
            row = "| %s | %s | %.3f | %.3f | %.3f |" % (m, dt, r["mean"], r["p50"], r["p99"])
            if not p:
                out.append(row + " - | - | - | - | - | - |")
                continue
            rg, re_ = r["mean"] / p["gmean"], r["mean"] / p["emean"]
            strict = dt == "fp16" or m.startswith("resnet")
            ok = rg <= 1.0 and (not strict or re_ <= 0.6)
            met += ok
            total += 1
            out.append(row + " %.3f | %.3f | %.2f | %.2f | %s | %s |"
                       % (p["emean"], p["gmean"], rg, re_,
                          "<= graph, <= 0.6 eager" if strict else "<= graph",
                          "yes" if ok else "**no**"))
    out.append("\nTargets met: %d of %d.\n" % (met, total))


def tflops(out, d, t, bw):
    sg = re.search(r"GEMM fp32\s+8192\s+8192\s+8192\s+\S+ ms\s+(\S+) TFLOP/s", bw)
    shapes = [float(x) for x in re.findall(r"GEMM fp32\s+\d+\s+(?:384|1024)\s+\d+\s+\S+ ms"
                                            r"\s+(\S+) TFLOP/s", bw)]
    out.append("## fp32 transformers: achieved TFLOP/s (GEMM + attention FLOPs / median)\n")
    out.append("cuBLAS SGEMM 8192^3 (true fp32): %s TFLOP/s; cuBLAS at the linear layers' "
               "shapes: %s TFLOP/s.\n"
               % (sg.group(1) if sg else "-",
                  "%.1f-%.1f" % (min(shapes), max(shapes)) if shapes else "-"))
    out.append("| model | GFLOP | dprt TFLOP/s | PyTorch graph TFLOP/s |")
    out.append("|---|---|---|---|")
    for m in ORDER:
        r, p = d.get(("default", m, "fp32")), t.get((m, "fp32"))
        if not r or m.startswith("resnet"):
            continue
        out.append("| %s | %.1f | %.1f | %s |" % (m, r["gflop"], r["gflop"] / r["p50"],
                                                  "%.1f" % (r["gflop"] / p["gp50"]) if p
                                                  else "-"))
    out.append("")


def paths(out, d):
    out.append("## New paths vs legacy (graph median, ms; legacy: DPRT_CUDA_LT=0 "
               "DPRT_CUDA_FLASH=0 DPRT_CUDNN_FIND=0)\n")
    out.append("| model | dtype | legacy | default | speed-up |")
    out.append("|---|---|---|---|---|")
    for dt in ("fp16", "fp32"):
        for m in ORDER:
            a, b = d.get(("legacy", m, dt)), d.get(("default", m, dt))
            if a and b:
                out.append("| %s | %s | %.3f | %.3f | %.2fx |"
                           % (m, dt, a["p50"], b["p50"], a["p50"] / b["p50"]))
    out.append("")


def bandwidth(out, bw, gpu):
    ref = PAPER_BW["H200" if "H200" in gpu else "H100"]

    def rate(kind, mem, size):
        m = re.search(r"BW %s %s\s+%d B\s+(\S+) GB/s\s+(\S+) us" % (kind, mem, size), bw)
        return (float(m.group(1)), float(m.group(2))) if m else (None, None)

    out.append("## Transfers (GB/s = 1e9 B/s)\n")
    out.append("| | measured | PAPER.md | within 10% |")
    out.append("|---|---|---|---|")
    rows = [("H2D pinned, 1 GiB", rate("h2d", "pinned", 1 << 30)[0], ref["h2d"]),
            ("H2D pageable, 1 GiB", rate("h2d", "pageable", 1 << 30)[0], ref["pageable"]),
            ("D2H pinned, 1 GiB", rate("d2h", "pinned", 1 << 30)[0], None),
            ("D2H pageable, 1 GiB", rate("d2h", "pageable", 1 << 30)[0], None)]
    m = re.search(r"BW dha best (\S+) GB/s", bw)
    rows.append(("kernel reading pinned host memory (DHA)", float(m.group(1)) if m else None,
                 ref["dha"]))
    for name, v, r in rows:
        out.append("| %s | %s | %s | %s |" % (
            name, "%.1f" % v if v else "-", "%.1f" % r if r else "-",
            ("yes" if abs(v - r) <= 0.1 * r else "**no**") if v and r else "-"))
    lat = []
    for size, label in ((65536, "64 KiB"), (1 << 20, "1 MiB"), (1 << 22, "4 MiB")):
        us = rate("h2d", "pinned", size)[1]
        lat.append("%s %s us" % (label, "%.1f" % us if us else "-"))
    out.append("\nH2D pinned per copy: %s (PAPER.md: 6 / 24 / 81 us).  " % ", ".join(lat))
    for key in ("d2d", "peer", "devread best"):
        m = re.search(r"BW %s (.*)" % key, bw)
        if m:
            out.append("%s: %s.  " % (key, m.group(1).strip()))
    out.append("")


def correctness(out, fs, tc, cli):
    worst = {}
    fails = []
    for line in fs.splitlines():
        f = line.split()
        if len(f) >= 9 and f[0] in ("ok", "FAIL") and f[6] == "err":
            key = (f[1], f[2], f[3], f[4])
            worst[key] = max(worst.get(key, 0.0), float(f[7]))
            if f[0] == "FAIL":
                fails.append(line.strip())
        elif line.startswith("FAIL"):
            fails.append(line.strip())
    out.append("## Correctness against the CPU backend (max normalised error over outputs)\n")
    out.append("| model | dtype | config | default | legacy | dha |")
    out.append("|---|---|---|---|---|---|")
    for dt in ("FP32", "FP16"):
        for m in ORDER:
            for cfg in ("paper", "b4"):
                if (m, dt, cfg, "default") not in worst:
                    continue
                out.append("| %s | %s | %s | %s |" % (m, dt.lower(), cfg, " | ".join(
                    "%.2e" % worst[(m, dt, cfg, v)] if (m, dt, cfg, v) in worst else "-"
                    for v in ("default", "legacy", "dha"))))
    out.append("\nTolerance: fp32 1e-4, fp16 2e-2. Failures: %d." % len(fails))
    for f in fails[:20]:
        out.append("    " + f)
    for line in fs.splitlines():
        if " mem " in line and (line.startswith("ok") or line.startswith("FAIL")):
            out.append("\nMemory: " + line.strip())
    m = re.search(r"Synthesis:.*", tc)
    out.append("\nCriterion tests (tiny models, every op): %s" % (m.group(0) if m else "-"))
    cl = [l.strip() for l in cli.splitlines() if " cli " in l or l.startswith("repeat")]
    if cl:
        out.append("\nCLI (dprt run --gpus 0 vs the CPU backend):\n")
        out.extend("    " + l for l in cl)
    out.append("")


def main():
    outdir = sys.argv[1]
    machine = read(outdir, "machine.txt")
    bw = read(outdir, "bandwidth.log")
    d = dprt_results(read(outdir, "dprt.log"))
    torch_log = read(outdir, "torch.log")
    t = torch_results(torch_log)
    gpu = gpu_name(machine)
    out = ["# dprt CUDA backend: warm latency, transfers, correctness\n",
           "GPU: %s (%s). %s\n" % (gpu, machine.splitlines()[0] if machine else "",
                                   (re.search(r"torch\.mm.*", torch_log) or
                                    re.search("$", "")).group(0))]
    latency(out, d, t)
    tflops(out, d, t, bw)
    paths(out, d)
    bandwidth(out, bw, gpu)
    correctness(out, read(outdir, "fullsize.log"), read(outdir, "test_cuda.log"),
                read(outdir, "cli.log"))
    print("\n".join(out))


if __name__ == "__main__":
    main()
