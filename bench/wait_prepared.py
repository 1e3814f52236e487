#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""wait_prepared.py URL N [TIMEOUT_S]: wait until a dprt server has made
N models in the background (dprt_model_creations_total summed over its
devices reaches N, then 1 s for the last one's warm-up run) or stopped making them (no change for 3 s), at most
TIMEOUT_S seconds (default 180). Prints what it waited for; exit 0."""
import re, sys, time, urllib.request

def creations(url):
    try:
        body = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    except OSError:
        return -1
    return sum(float(m.group(1)) for m in
               re.finditer(r'^dprt_model_creations_total\{[^}]*\} (\S+)$', body, re.M))

def main():
    url, n = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 180
    t0 = last_t = time.monotonic()
    last = -1
    while time.monotonic() - t0 < timeout:
        c = creations(url)
        if c >= n:
            # the last model's warm-up run follows its creation: let it end
            time.sleep(1.0)
            break
        if c != last:
            last, last_t = c, time.monotonic()
        elif time.monotonic() - last_t > 3:
            break
        time.sleep(0.2)
    print(f"wait_prepared: {creations(url):.0f} of {n} models made after "
          f"{time.monotonic() - t0:.1f} s")

if __name__ == "__main__":
    main()
