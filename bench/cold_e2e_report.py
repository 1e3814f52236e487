#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""cold_e2e_report.py OUT "MODELS" "MODES": the table of bench/cold_e2e.sh
from OUT/raw (loadgen JSON and text, coldstart.log, torch_cold.log,
metrics-*.txt), in Markdown on stdout."""
import json
import os
import re
import sys


def isolated(raw, name="coldstart.log"):
    """coldstart.log: (model, mode) -> mean ms."""
    res = {}
    try:
        with open(os.path.join(raw, name)) as f:
            for line in f:
                p = line.split()
                if len(p) > 4 and re.match(r"^[a-z]+@\d+$", p[1]) and re.match(r"^\d+/\d+$", p[2]):
                    res[(p[0], p[1].split("@")[0])] = float(p[3])
    except OSError:
        pass
    return res


def torch_cold(raw):
    """torch_cold.log: model -> pinned fp32 mean ms."""
    res = {}
    try:
        with open(os.path.join(raw, "torch_cold.log")) as f:
            for line in f:
                p = line.split()
                if len(p) >= 5 and p[0] == "TORCHCOLD" and p[2] == "fp32" and p[3] == "pinned":
                    res[p[1]] = float(p[4])
    except OSError:
        pass
    return res


def first_request(path):
    try:
        with open(path) as f:
            m = re.search(r"^first request ms: (\S+) \((\w+)", f.read(), re.M)
    except OSError:
        return None, None
    return (float(m.group(1)), m.group(2)) if m else (None, None)


def metric(path, name):
    try:
        with open(path) as f:
            body = f.read()
    except OSError:
        return None
    v = [float(m.group(1)) for m in re.finditer(r"^%s\{[^}]*\} (\S+)$" % name, body, re.M)]
    return sum(v) if v else None


def fmt(v, spec="%.3f"):
    return "-" if v is None else spec % v


def main():
    out, models, modes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
    raw = os.path.join(out, "raw")
    iso, tch = isolated(raw), torch_cold(raw)
    paced = isolated(raw, "coldstart-paced.log")
    print("| model | mode | isolated ms | paced ms | cold request p50 / mean ms | server compute ms "
          "| e2e - isolated | e2e - paced | first request ms | first / cold p50 "
          "| first after idle ms | PyTorch pinned ms | moved / deferred | targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        for md in modes:
            try:
                with open(os.path.join(raw, "%s-%s.json" % (m, md))) as f:
                    j = json.load(f)
            except (OSError, ValueError):
                print("| %s | %s | no result |" % (m, md))
                continue
            s = j.get("all", j)
            i = iso.get((m, md)) if md != "load" else None
            ip = paced.get((m, md)) if md != "load" else None
            idle, _ = first_request(os.path.join(raw, "%s-%s-idle.txt" % (m, md)))
            p50, mean, comp = s.get("cold_p50_ms"), s.get("cold_mean_ms"), s.get("cold_compute_ms_mean")
            first, kind = first_request(os.path.join(raw, "%s-%s.txt" % (m, md)))
            mpath = os.path.join(raw, "metrics-%s-%s.txt" % (m, md))
            moved = metric(mpath, "dprt_cold_moved_total")
            deferred = metric(mpath, "dprt_cold_deferred_total")
            t = tch.get(m)
            notes = []
            if i is not None and p50 is not None:
                notes.append("e2e %s" % ("ok" if p50 <= i + 0.5 else "MISSED"))
            if first is not None and p50:
                notes.append("first %s" % ("ok" if first <= 1.2 * p50 else "MISSED"))
            if t is not None and p50 is not None:
                notes.append("vs PyTorch %s" % ("ok" if p50 <= t else "SLOWER"))
            if s.get("errors") or s.get("wrong"):
                notes.append("%d errors, %d wrong" % (s.get("errors", 0), s.get("wrong", 0)))
            cold = "%s/%s cold" % (s.get("cold_starts"), s.get("ok"))
            print("| %s | %s | %s | %s | %s / %s (%s) | %s | %s | %s | %s%s | %s | %s | %s | %s / %s | %s |" % (
                m, md, fmt(i), fmt(ip), fmt(p50), fmt(mean), cold, fmt(comp),
                fmt(p50 - i if i is not None and p50 is not None else None, "%+.3f"),
                fmt(p50 - ip if ip is not None and p50 is not None else None, "%+.3f"),
                fmt(first), " (%s)" % kind if kind else "",
                fmt(first / p50 if first and p50 else None, "%.2f"), fmt(idle), fmt(t),
                fmt(moved, "%d"), fmt(deferred, "%d"), ", ".join(notes) or "-"))


if __name__ == "__main__":
    main()
