"""Start-up cost side by side: this checkout vs the peer (abstractvision 0.3.34 from PyPI).

usage: python bench/bench_startup.py [--runs 11]

The peer runs in its own venv, created by the bench on first use (see ``_peer.py``). For
each line below, every run starts a fresh interpreter; the runs of both sides and of a bare
interpreter (``python -c pass``, per side) are interleaved so machine noise hits them
alike. Reported: the median over ``--runs`` minus the bare median, and ours/peer.

- ``import abstractvision``
- first real use: ``from abstractvision import VisionManager, LocalAssetStore``
- the same + ``OpenAICompatibleVisionBackend`` and its config
- ``python -m abstractvision --help``

Goals (issue 18): first real use <= 25 ms, + the OpenAI backend <= 80 ms, ``--help`` <= 80 ms
and no slower than before, ``import abstractvision`` no slower than before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _peer import PEER_VERSION, ROOT, ours_env, peer_env, peer_python

FIRST_USE = "from abstractvision import VisionManager, LocalAssetStore"
OPENAI = (
    FIRST_USE
    + "; from abstractvision.backends import OpenAICompatibleVisionBackend, OpenAICompatibleBackendConfig"
)
ROWS: list[tuple[str, list[str], str]] = [
    ("import abstractvision", ["-c", "import abstractvision"], "keep"),
    ("first real use (VisionManager, LocalAssetStore)", ["-c", FIRST_USE], "<= 25 ms"),
    ("  + OpenAICompatibleVisionBackend and its config", ["-c", OPENAI], "<= 80 ms"),
    ("abstractvision --help (python -m)", ["-m", "abstractvision", "--help"], "keep <= 80 ms"),
]


def _once(python: str, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([python, *args], check=True, capture_output=True, env=env, cwd="/")
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    a = ap.parse_args()
    sides = {"peer": (peer_python(), peer_env()), "ours": (sys.executable, ours_env())}
    times: dict[tuple[str, str], list[float]] = {}
    for python, env in sides.values():  # warm the page cache and the bytecode
        for _, args, _ in ROWS:
            _once(python, args, env)
    for _ in range(a.runs):
        for side, (python, env) in sides.items():
            times.setdefault((side, "bare"), []).append(_once(python, ["-c", "pass"], env))
            for name, args, _ in ROWS:
                times.setdefault((side, name), []).append(_once(python, args, env))
    bare = {side: statistics.median(times[(side, "bare")]) for side in sides}
    print(
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} runs={a.runs} peer=abstractvision=={PEER_VERSION}"
    )
    print(f"ours: {ROOT}/src on {sys.executable}")
    print(f"bare interpreter: peer {bare['peer'] * 1e3:.1f} ms, ours {bare['ours'] * 1e3:.1f} ms")
    print()
    print("| what (median of runs minus a bare interpreter) | peer | ours | ours/peer | goal |")
    print("|---|---|---|---|---|")
    for name, _, goal in ROWS:
        peer = statistics.median(times[("peer", name)]) - bare["peer"]
        ours = statistics.median(times[("ours", name)]) - bare["ours"]
        ratio = f"{ours / peer:.2f}x" if peer > 0.0005 else "-"
        print(f"| `{name.strip()}` | {peer * 1e3:.0f} ms | {ours * 1e3:.0f} ms | {ratio} | {goal} |")


if __name__ == "__main__":
    main()
