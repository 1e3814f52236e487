#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Figure 10 report: tables and a plot from the logs of bench/fig10.sh.

    python3 bench/fig10_report.py OUTDIR [--md FILE] [--png FILE] [--results DIR]

Reads OUTDIR/machine.txt, coldstart-fp32.log, coldstart-fp16.log,
torch_cold-fp32.log and torch_cold-fp16.log (whichever are there); writes a markdown report (default
OUTDIR/fig10.md) with, per dtype, the mean cold-start latency of every mode
beside PyTorch's (pinned and pageable) and the PCIe floor, the speed-ups,
and the issue's targets with their measured ratios; and a PNG (default
OUTDIR/fig10.png; skipped with a note when matplotlib is missing).
With --results DIR (bench/fig10.sh passes bench/results), also
DIR/fig10-<gpu>.md (the report, then every log raw) and DIR/fig10-<gpu>.png,
<gpu> naming the machine's GPUs (e.g. 4x-nvidia-h200).
Exit status 1 when a log shows a cold output that differed from the warm
one ("FAIL").
"""

import argparse
import os
import re
import shutil
import sys

SHOW = ["demand@1", "pipeline@1", "deepplan@1", "pt@2", "pt+dha@2", "pt@4", "pt+dha@4"]
PLANNERS = [("dprt@1", "deepplan-v1@1"), ("dprt@2", "deepplan-v1@2"),
            ("dprt@4", "deepplan-v1@4")]
ROW_FIELDS = ["model", "mode", "lnk", "mean", "p50", "p99", "min", "max", "mb_load",
              "mb_dha", "gbs", "predict", "floor", "x_flr", "warm_md", "graphs", "rp", "bits"]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def parse_coldstart(text):
    """{model: {"rows": {mode: row}, "floor": {k: ms}, "warm": ms, "mb": MB}}"""
    models, order, head = {}, [], ""
    for line in text.splitlines():
        if line.startswith("coldstart:"):
            head = line
        tok = line.split()
        if line.startswith("profile ") and len(tok) > 2:
            m = models.setdefault(tok[1], {"rows": {}, "floor": {}})
            order.append(tok[1])
            w = re.search(r"warm \(graph, p50\) ([0-9.]+) ms", line)
            mb = re.search(r"layers, ([0-9.]+) MB", line)
            m["warm"] = float(w.group(1)) if w else None
            m["mb"] = float(mb.group(1)) if mb else None
        elif line.startswith("pcie-floor "):
            m = models.setdefault(tok[1], {"rows": {}, "floor": {}})
            for t in tok[2:]:
                if ":" in t:
                    k, v = t.split(":")
                    m["floor"][int(k)] = float(v)
        elif len(tok) == len(ROW_FIELDS) and "@" in tok[1] and tok[0] in models:
            row = dict(zip(ROW_FIELDS, tok))
            for f in ROW_FIELDS[3:15]:
                row[f] = float(row[f])
            models[tok[0]]["rows"][tok[1]] = row
    return models, order, head


def parse_torch(text):
    """{(model, dtype, memory): (mean, p50, min, max)}"""
    res = {}
    for line in text.splitlines():
        tok = line.split()
        if len(tok) == 8 and tok[0] == "TORCHCOLD":
            res[(tok[1], tok[2], tok[3])] = tuple(float(x) for x in tok[4:])
    return res


def gpu_name(machine):
    names = re.findall(r"^\d+, ([^,]+),", machine, re.M)
    if not names:
        return "unknown GPU"
    return "%dx %s" % (len(names), names[0]) if len(set(names)) == 1 else ", ".join(names)


def fmt(x, nd=2):
    return "-" if x is None else ("%.*f" % (nd, x))


def mean_of(models, model, mode):
    r = models.get(model, {}).get("rows", {}).get(mode)
    return r["mean"] if r else None


def table(dt, models, order, torch):
    out = ["### %s: cold-start latency, ms (mean of the measured runs; batch 1)" % dt, "",
           "| model | MB | PyTorch pageable | PyTorch pinned | " + " | ".join(SHOW) +
           " | floor 1 GPU | floor 2 | floor 4 | warm |",
           "|---" * (len(SHOW) + 8) + "|"]
    for m in order:
        d = models[m]
        tp = torch.get((m, dt, "pageable"))
        tn = torch.get((m, dt, "pinned"))
        cells = [m, fmt(d.get("mb"), 1), fmt(tp and tp[0]), fmt(tn and tn[0])]
        cells += [fmt(mean_of(models, m, s), 3) for s in SHOW]
        cells += [fmt(d["floor"].get(k), 3) for k in (1, 2, 4)]
        cells.append(fmt(d.get("warm"), 3))
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Speed-up over PyTorch's pinned cold start (PyTorch mean / mode mean):", "",
            "| model | PyTorch pageable | " + " | ".join(SHOW) + " |",
            "|---" * (len(SHOW) + 2) + "|"]
    for m in order:
        tn = torch.get((m, dt, "pinned"))
        tp = torch.get((m, dt, "pageable"))
        cells = [m, fmt(tn[0] / tp[0] if tn and tp else None)]
        for s in SHOW:
            x = mean_of(models, m, s)
            cells.append(fmt(tn[0] / x if tn and x else None))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def planners(dt, models, order):
    out = ["### %s: dprt's planner against deepplan-v1 (mean ms; ratio dprt / v1)" % dt, "",
           "| model | " + " | ".join("%s | %s | ratio" % p for p in PLANNERS) + " |",
           "|---" * (1 + 3 * len(PLANNERS)) + "|"]
    worst = 0.0
    for m in order:
        cells = [m]
        for a, b in PLANNERS:
            x, y = mean_of(models, m, a), mean_of(models, m, b)
            cells += [fmt(x, 3), fmt(y, 3), fmt(x / y if x and y else None, 3)]
            if x and y:
                worst = max(worst, x / y)
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Worst dprt / deepplan-v1: %.3f" % worst, ""]
    return out, worst


def targets(models, order, torch):
    out = ["## Targets (fp32, same run)", "", "| target | measured | |", "|---|---|---|"]
    xs = [(m, models[m]["rows"]["deepplan@1"]["x_flr"]) for m in order
          if "deepplan@1" in models[m]["rows"]]
    if xs:
        worst = max(x for _, x in xs)
        out.append("| deepplan on 1 GPU within 1.15x of max(loaded bytes / H2D bandwidth, "
                   "warm latency), all 8 models | %s (worst %.2fx) | %s |"
                   % (", ".join("%s %.2f" % t for t in xs), worst,
                      "met" if worst <= 1.15 and len(xs) == 8 else "NOT met"))
    pipe, ptd = mean_of(models, "bert-base", "pipeline@1"), mean_of(models, "bert-base",
                                                                   "pt+dha@4")
    if pipe and ptd:
        out.append("| pt+dha on 4 GPUs >= 1.94x faster than pipeline on 1 GPU, bert-base | "
                   "%.3f / %.3f ms = **%.2fx** | %s |"
                   % (pipe, ptd, pipe / ptd, "met" if pipe / ptd >= 1.94 else "NOT met"))
    tn, ptl = torch.get(("bert-large", "fp32", "pinned")), mean_of(models, "bert-large",
                                                                  "pt+dha@4")
    if tn and ptl:
        out.append("| pt+dha on 4 GPUs >= 3x faster than PyTorch's pinned cold start, "
                   "bert-large | %.3f / %.3f ms = **%.2fx** | %s |"
                   % (tn[0], ptl, tn[0] / ptl, "met" if tn[0] / ptl >= 3 else "NOT met"))
    bits = [r["bits"] for m in order for r in models[m]["rows"].values()]
    out.append("| cold output = warm output bit for bit, every mode | %d of %d rows ok | %s |"
               % (bits.count("ok"), len(bits), "met" if bits and all(b == "ok" for b in bits)
                  else "NOT met"))
    out.append("")
    return out


def plot(path, per_dt, torch, gpu):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is missing: no plot"
    series = [("PyTorch pinned", None), ("pipeline", "pipeline@1"), ("deepplan", "deepplan@1"),
              ("pt+dha 2 GPUs", "pt+dha@2"), ("pt+dha 4 GPUs", "pt+dha@4")]
    fig, axes = plt.subplots(len(per_dt), 1, figsize=(12, 4.2 * len(per_dt)), squeeze=False)
    for ax, (dt, (models, order)) in zip(axes[:, 0], per_dt.items()):
        w = 0.8 / len(series)
        for i, (label, mode) in enumerate(series):
            ys = []
            for m in order:
                if mode is None:
                    t = torch.get((m, dt, "pinned"))
                    ys.append(t[0] if t else 0)
                else:
                    ys.append(mean_of(models, m, mode) or 0)
            ax.bar([j + (i - len(series) / 2 + 0.5) * w for j in range(len(order))], ys, w,
                   label=label)
        for k, style in ((1, "k_"), (4, "r_")):
            ax.plot(range(len(order)), [models[m]["floor"].get(k, 0) for m in order], style,
                    markersize=22, mew=2, label="PCIe floor, %d GPU%s" % (k, "s" if k > 1 else ""))
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order)
        ax.set_yscale("log")
        ax.set_ylabel("cold start, ms (log)")
        ax.set_title("%s, batch 1, %s" % (dt, gpu))
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, ncol=7, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return "plot: %s" % path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--md")
    ap.add_argument("--png")
    ap.add_argument("--results")
    a = ap.parse_args()
    md = a.md or os.path.join(a.outdir, "fig10.md")
    png = a.png or os.path.join(a.outdir, "fig10.png")
    gpu = gpu_name(read(os.path.join(a.outdir, "machine.txt")))
    torch = parse_torch(read(os.path.join(a.outdir, "torch_cold-fp32.log")) +
                        read(os.path.join(a.outdir, "torch_cold-fp16.log")))
    lines = ["# Figure 10: cold starts on %s" % gpu, ""]
    per_dt, fails = {}, 0
    for dt in ("fp32", "fp16"):
        text = read(os.path.join(a.outdir, "coldstart-%s.log" % dt))
        models, order, head = parse_coldstart(text)
        if not order:
            continue
        per_dt[dt] = (models, order)
        fails += text.count(" FAIL")
        if head:
            lines += ["`%s`" % head, ""]
        lines += table(dt, models, order, torch)
        lines += planners(dt, models, order)[0]
    if "fp32" in per_dt:
        lines = lines[:2] + targets(*per_dt["fp32"], torch) + lines[2:]
    lines.append(plot(png, per_dt, torch, gpu))
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if a.results:
        results(a.outdir, a.results, gpu, lines, png)
    return 1 if fails else 0


def results(outdir, rdir, gpu, lines, png_made):
    """The report with the raw logs behind it, and the plot, into rdir."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    png = os.path.join(rdir, "fig10-%s.png" % slug)
    if os.path.exists(png_made):
        shutil.copyfile(png_made, png)
    out = lines[:-1] + ["![Figure 10](fig10-%s.png)" % slug, "", "## Raw output", ""]
    for name in ("machine.txt", "summary.txt", "test_cold.log", "coldstart-fp32.log",
                 "torch_cold-fp32.log", "coldstart-fp16.log", "torch_cold-fp16.log"):
        text = read(os.path.join(outdir, name))
        if text:
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
            out += [name, "```", text.rstrip("\n"), "```", ""]
    with open(os.path.join(rdir, "fig10-%s.md" % slug), "w") as f:
        f.write("\n".join(out) + "\n")
    print("results: %s, %s" % (os.path.join(rdir, "fig10-%s.md" % slug), png))


if __name__ == "__main__":
    sys.exit(main())
