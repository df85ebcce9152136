"""Start-up cost: `import abstractvision` and `abstractvision --help`, measured side by side.

usage: python bench/bench_startup.py [--runs 21]

Prints, for each command, the median and best wall time over --runs fresh interpreters,
next to a bare interpreter (`python -c pass`), plus the cumulative `-X importtime` figure of
the abstractvision package (median). The issue targets: import < 30 ms over a bare
interpreter; --help < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def importtime(runs: int) -> list[float]:
    vals = []
    for _ in range(runs):
        p = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import abstractvision"],
            capture_output=True,
            text=True,
            check=True,
        )
        m = re.search(r"\|\s+(\d+) \| abstractvision\s*$", p.stderr, re.M)
        if m:
            vals.append(int(m.group(1)) / 1e6)
    return vals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    a = ap.parse_args()
    exe = sys.executable
    rows = {
        "python -c pass": wall([exe, "-c", "pass"], a.runs),
        "python -c 'import abstractvision'": wall([exe, "-c", "import abstractvision"], a.runs),
        "python -m abstractvision --help": wall([exe, "-m", "abstractvision", "--help"], a.runs),
    }
    script = os.path.join(os.path.dirname(exe), "abstractvision")
    if os.path.exists(script):
        rows["abstractvision --help"] = wall([script, "--help"], a.runs)
    base = statistics.median(rows["python -c pass"])
    print(f"{'command':40} {'median':>9} {'best':>9} {'over bare':>10}")
    for name, ts in rows.items():
        med = statistics.median(ts)
        print(f"{name:40} {med * 1e3:8.1f}ms {min(ts) * 1e3:8.1f}ms {(med - base) * 1e3:9.1f}ms")
    imp = importtime(a.runs)
    if imp:
        print(
            f"-X importtime cumulative for abstractvision: median {statistics.median(imp) * 1e3:.2f} ms (best {min(imp) * 1e3:.2f} ms)"
        )


if __name__ == "__main__":
    main()
