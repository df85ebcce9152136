"""HTTP backend throughput side by side: this checkout vs the peer (abstractvision 0.3.34).

usage: python bench/bench_openai_http.py [--requests 400] [--rounds 5] [--concurrency 16] [--delay 0.05]

Both sides talk to the same OpenAI-shaped server on loopback (``_instant_server.py``: raw
asyncio sockets, a canned 8x8 PNG as ``b64_json``, so the server costs microseconds and
the figures measure the client stack). The peer runs in its own venv, created by the bench
on first use (``_peer.py``); each measurement is a fresh child process of its side, and the
rounds alternate the sides so machine noise hits both alike. Reported, medians of rounds:

1. sequential ``VisionManager.generate_image`` (validation, provenance, the HTTP exchange,
   decoding): requests/s for the peer and for ours, and ours/peer;
2. the same at the backend level (``backend.generate_image(ImageGenerationRequest)``);
3. ours only (the peer has no async manager): ``--concurrency`` requests in flight through
   ``AsyncVisionManager`` against the sequential rate, with a server taking ``--delay`` s
   per image (the ideal ratio is ``--concurrency``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _peer import PEER_VERSION, ours_env, peer_env, peer_python

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_instant_server.py")

SEQUENTIAL = textwrap.dedent(
    """
    import json, sys, time
    from abstractvision import VisionManager
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
    from abstractvision.types import ImageGenerationRequest
    url, n, level = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    backend = OpenAICompatibleVisionBackend(config=OpenAICompatibleBackendConfig(base_url=url, api_key="sk-bench"))
    if level == "manager":
        vm = VisionManager(backend=backend)
        call = lambda: vm.generate_image("a benchmark", width=8, height=8)
    else:
        request = ImageGenerationRequest(prompt="a benchmark", width=8, height=8)
        call = lambda: backend.generate_image(request)
    for _ in range(30):
        asset = call()
    assert asset.mime_type == "image/png" and asset.data.startswith(b"\\x89PNG"), asset
    started = time.perf_counter()
    for _ in range(n):
        call()
    print(json.dumps({"rate": n / (time.perf_counter() - started)}))
    """
)

FAN_OUT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from abstractvision import AsyncVisionManager
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
    url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    async def main():
        backend = OpenAICompatibleVisionBackend(config=OpenAICompatibleBackendConfig(base_url=url, api_key="sk"))
        vm = AsyncVisionManager(backend=backend)
        call = lambda: vm.generate_image("a benchmark", width=8, height=8)

        async def worker(todo):
            while todo:
                todo.pop()
                await call()

        await asyncio.gather(*(worker(list(range(2))) for _ in range(conc)))  # open the connections
        seq_n = max(10, n // conc)
        started = time.perf_counter()
        for _ in range(seq_n):
            await call()
        sequential = seq_n / (time.perf_counter() - started)
        todo = list(range(n))
        started = time.perf_counter()
        await asyncio.gather(*(worker(todo) for _ in range(conc)))
        concurrent = n / (time.perf_counter() - started)
        await backend.aclose()
        print(json.dumps({"sequential": sequential, "concurrent": concurrent}))

    asyncio.run(main())
    """
)


class Server:
    def __init__(self, delay: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def _child(python: str, env: dict[str, str], script: str, *args: object) -> dict[str, float]:
    out = subprocess.run(
        [python, "-c", script, *map(str, args)], capture_output=True, text=True, env=env, cwd="/"
    )
    if out.returncode != 0:
        raise SystemExit(f"{python} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per sequential measurement")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are reported)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.05, help="server seconds per image (fan-out test)")
    ap.add_argument("--fan-out-requests", type=int, default=320)
    a = ap.parse_args()
    sides = {"peer": (peer_python(), peer_env()), "ours": (sys.executable, ours_env())}
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} peer=abstractvision=={PEER_VERSION}")
    rates: dict[tuple[str, str], list[float]] = {}
    server = Server()
    try:
        for i in range(a.rounds):
            order = list(sides.items()) if i % 2 == 0 else list(sides.items())[::-1]
            for level in ("manager", "backend"):
                for side, (python, env) in order:
                    got = _child(python, env, SEQUENTIAL, server.url, a.requests, level)
                    rates.setdefault((side, level), []).append(got["rate"])
    finally:
        server.close()
    print()
    print(
        f"| sequential against an instant loopback server (req/s, median of {a.rounds}) | peer | ours | ours/peer |"
    )
    print("|---|---|---|---|")
    for level, label in (
        ("manager", "`VisionManager.generate_image`"),
        ("backend", "`backend.generate_image(ImageGenerationRequest)`"),
    ):
        peer = statistics.median(rates[("peer", level)])
        ours = statistics.median(rates[("ours", level)])
        print(f"| {label} | {peer:.0f} | {ours:.0f} | {ours / peer:.2f}x |")

    slow = Server(a.delay)
    try:
        python, env = sides["ours"]
        runs = [_child(python, env, FAN_OUT, slow.url, a.fan_out_requests, a.concurrency) for _ in range(3)]
    finally:
        slow.close()
    seq = statistics.median(r["sequential"] for r in runs)
    conc = statistics.median(r["concurrent"] for r in runs)
    print()
    print(f"| `AsyncVisionManager`, server taking {a.delay * 1000:.0f} ms per image (median of 3) | req/s |")
    print("|---|---|")
    print(f"| sequential | {seq:.1f} |")
    print(f"| {a.concurrency} in flight | {conc:.1f} |")
    print(f"| ratio (ideal {a.concurrency}) | {conc / seq:.1f}x |")


if __name__ == "__main__":
    main()
