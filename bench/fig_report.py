#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Figures 12 and 13 report: a table and a plot from the loadgen outputs
of bench/fig12.sh and bench/fig13.sh.

    python3 bench/fig_report.py OUTDIR [--title T] [--slo MS]

Reads OUTDIR/raw/MODE-N.json (loadgen --json), writes OUTDIR/summary.md
(per N and mode: p99 latency, goodput at the SLO, cold-start rate, errors,
wrong answers; then the machine and the commands) and OUTDIR/fig.png (p99
and goodput against N, a line per mode) when matplotlib can be imported,
else says it skipped the plot.
Exit status 1 when no output was found or one had a wrong answer.
"""
import argparse
import json
import os
import re
import sys

ORDER = ["load", "pipeline", "deepplan", "dprt"]


def collect(raw):
    """{mode: {n: report}} from raw/MODE-N.json."""
    res = {}
    for f in sorted(os.listdir(raw)):
        m = re.fullmatch(r"(.+)-(\d+)\.json", f)
        if not m:
            continue
        with open(os.path.join(raw, f)) as fh:
            try:
                res.setdefault(m.group(1), {})[int(m.group(2))] = json.load(fh)
            except ValueError:
                print("fig_report: %s is not JSON" % f, file=sys.stderr)
    return res


def modes_of(res):
    return sorted(res, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def table(res, slo):
    modes = modes_of(res)
    ns = sorted({n for m in res.values() for n in m})
    head = ["N"] + ["%s p99 ms" % m for m in modes] + ["%s goodput" % m for m in modes] + \
        ["%s cold" % m for m in modes]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in ns:
        cells = [str(n)]
        for key, fmt in (("p99_ms", "%.2f"), ("goodput", "%.3f"), ("cold_start_rate", "%.3f")):
            for m in modes:
                r = res[m].get(n)
                cells.append(fmt % r[key] if r else "-")
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("")
    rows.append("goodput: fraction of the measured requests answered right within %g ms of "
                "their scheduled time; cold: cold starts per answered request." % slo)
    bad = [(m, n, r["errors"], r["wrong"]) for m in modes for n, r in sorted(res[m].items())
           if r["errors"] or r["wrong"]]
    if bad:
        rows.append("")
        rows.append("Errors and wrong answers: " + ", ".join(
            "%s N=%d: %d errors, %d wrong" % b for b in bad) + ".")
    return "\n".join(rows) + "\n"


def plot(res, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fig_report: matplotlib is not importable; no plot %s" % path)
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for m in modes_of(res):
        ns = sorted(res[m])
        ax[0].plot(ns, [res[m][n]["p99_ms"] for n in ns], marker="o", label=m)
        ax[1].plot(ns, [res[m][n]["goodput"] for n in ns], marker="o", label=m)
    ax[0].set_xlabel("instances")
    ax[0].set_ylabel("p99 latency (ms)")
    ax[0].set_yscale("log")
    ax[1].set_xlabel("instances")
    ax[1].set_ylabel("goodput")
    ax[1].set_ylim(0, 1.05)
    ax[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("fig_report: wrote %s" % path)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--title", default="")
    ap.add_argument("--slo", type=float, default=100)
    a = ap.parse_args()
    raw = os.path.join(a.outdir, "raw")
    res = collect(raw) if os.path.isdir(raw) else {}
    if not res:
        print("fig_report: no loadgen outputs in %s" % raw, file=sys.stderr)
        return 1
    wrong = sum(r["wrong"] for m in res.values() for r in m.values())
    md = ["# %s" % (a.title or os.path.basename(os.path.abspath(a.outdir))), "",
          table(res, a.slo)]
    plot(res, os.path.join(a.outdir, "fig.png"), a.title)
    md += ["Machine:", "", "```", read(os.path.join(a.outdir, "machine.txt")).strip(), "```",
           "", "Commands:", "", "```", read(os.path.join(a.outdir, "commands.txt")).strip(),
           "```", ""]
    with open(os.path.join(a.outdir, "summary.md"), "w") as f:
        f.write("\n".join(md))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
