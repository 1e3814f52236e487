#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write a synthetic invocation trace in the Azure Functions 2019 format
(invocations_per_function_md.anon.d*.csv): a header
HashOwner,HashApp,HashFunction,Trigger,1,2,...,M, then one row per function
with its number of invocations in each minute. Function popularity follows a
Zipf law of exponent --skew (shuffled over the rows); each minute's count is
Poisson around the function's share of --rate, scaled by a slow daily swing
(--swing). Prints the total to stdout ("total N") for tests to compare.

  python3 bench/gen_trace.py -o trace.csv --functions 50 --minutes 10 --rate 20
"""
import argparse, hashlib, math, random, sys


def poisson(rnd, lam):
    """Knuth's method for small means, a rounded normal for large ones."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, int(round(rnd.gauss(lam, math.sqrt(lam)))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rnd.random()
        if p <= limit:
            return k
        k += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="the CSV file to write")
    ap.add_argument("--functions", type=int, default=100, help="rows (default 100)")
    ap.add_argument("--minutes", type=int, default=1440,
                    help="minute columns, 1..1440 (default 1440, a day)")
    ap.add_argument("--rate", type=float, default=10.0,
                    help="mean invocations per second over all functions (default 10)")
    ap.add_argument("--skew", type=float, default=1.0,
                    help="Zipf exponent of function popularity; 0 = all equal (default 1)")
    ap.add_argument("--swing", type=float, default=0.3,
                    help="relative amplitude of the daily swing of the rate (default 0.3)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    a = ap.parse_args()
    if not 1 <= a.minutes <= 1440 or a.functions < 1 or a.rate < 0 or not 0 <= a.swing < 1:
        ap.error("need 1 <= --minutes <= 1440, --functions >= 1, --rate >= 0, 0 <= --swing < 1")
    rnd = random.Random(a.seed)
    w = [1.0 / (i + 1) ** a.skew for i in range(a.functions)]
    rnd.shuffle(w)
    tot_w = sum(w)
    triggers = ["http", "timer", "queue", "event", "storage", "orchestration", "others"]
    hx = lambda: hashlib.sha256(str(rnd.random()).encode()).hexdigest()
    owners = [hx() for _ in range(max(1, a.functions // 10))]
    total = 0
    with open(a.output, "w") as f:
        f.write("HashOwner,HashApp,HashFunction,Trigger,"
                + ",".join(str(m) for m in range(1, a.minutes + 1)) + "\n")
        for i in range(a.functions):
            per_min = a.rate * 60 * w[i] / tot_w
            row = []
            for m in range(a.minutes):
                day = 1 + a.swing * math.sin(2 * math.pi * m / 1440)
                n = poisson(rnd, per_min * day)
                row.append(n)
            total += sum(row)
            f.write("%s,%s,%s,%s,%s\n" % (rnd.choice(owners), hx(), hx(),
                                          rnd.choice(triggers), ",".join(map(str, row))))
    print("total %d" % total)
    print("wrote %s: %d functions, %d minutes, %d invocations (%.2f/s)" %
          (a.output, a.functions, a.minutes, total, total / (60.0 * a.minutes)),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
