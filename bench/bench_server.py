"""Request overhead and throughput of the HTTP server, on a tiny random-weight Stable Diffusion.

Measures, in one process and on the same tiny pipeline folder (built here, offline):

1. Overhead: ``POST /v1/images/generations`` (b64_json, a real uvicorn server on loopback,
   httpx keep-alive client) against a direct ``VisionManager.generate_image`` call with the
   same parameters, interleaved call by call (the order alternates) so machine noise hits
   both sides alike. Reports both medians, their ratio and the difference in ms.
2. The same with an instant backend (returns a fixed PNG): the server's own cost per
   request (JSON parsing, validation, queue, artifact store write, base64, HTTP).
3. Throughput: ``--clients`` concurrent clients (threads of a separate process, so they do
   not compete for the server's GIL; one keep-alive client each) send
   ``--per-client`` requests each; requests/s with coalescing off (default) and on, against
   the direct sequential rate, in alternating rounds (medians reported) so that machine
   noise hits every side alike; with the share of the time the engine was computing (the
   rest is what the server adds between engine calls, and idle time).

usage: python bench/bench_server.py [--calls 40] [--clients 16] [--per-client 2] [--rounds 3]
                                    [--size 64] [--steps 2] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000.0, 2)


def instant_backend() -> Any:
    from PIL import Image

    from abstractvision.backends import VisionBackend
    from abstractvision.types import GeneratedAsset

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 90, 200)).save(buf, format="PNG")
    data = buf.getvalue()

    class Instant(VisionBackend):
        name = "instant"

        def describe(self) -> dict[str, Any]:
            return {"backend": "instant", "model": "instant"}

        def generate_image(self, request: Any) -> GeneratedAsset:
            return GeneratedAsset("image", data, "image/png", {"seed": request.seed})

    return Instant()


def overhead(backend: Any, calls: int, params: dict[str, Any]) -> dict[str, Any]:
    """Interleaved direct vs HTTP calls on the same backend."""
    import httpx

    from abstractvision import VisionManager
    from abstractvision.server import create_app, serve_in_thread

    vm = VisionManager(backend=backend)
    body = {"prompt": "a lighthouse at dusk", "response_format": "b64_json", **params}
    direct: list[float] = []
    served: list[float] = []
    with serve_in_thread(create_app(backend)) as server, httpx.Client(base_url=server.url, timeout=120) as c:
        for i in range(3):  # warm-up: model load, first PNG encode, connection
            vm.generate_image(body["prompt"], seed=i, **params)
            c.post("/v1/images/generations", json={**body, "seed": i}).raise_for_status()
        for i in range(calls):

            def call_direct(i: int = i) -> None:
                vm.generate_image(body["prompt"], seed=i, **params)

            def call_http(i: int = i) -> None:
                c.post("/v1/images/generations", json={**body, "seed": i}).raise_for_status()

            if i % 2:
                direct.append(timed(call_direct))
                served.append(timed(call_http))
            else:
                served.append(timed(call_http))
                direct.append(timed(call_direct))
    d, s = ms(direct), ms(served)
    return {
        "calls": calls,
        "direct_ms": d,
        "server_ms": s,
        "ratio": round(s / d, 3),
        "overhead_ms": round(s - d, 2),
    }


def _burst(url: str, clients: int, per_client: int, params: dict[str, Any]) -> tuple[float, list[float], int]:
    """``clients`` threads send ``per_client`` requests each; (seconds, latencies, errors)."""
    import httpx

    errors = 0
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=600) as c:
            c.get("/healthz")
            barrier.wait()
            for j in range(per_client):
                t = time.perf_counter()
                r = c.post(
                    "/v1/images/generations",
                    json={"prompt": "a lighthouse at dusk", "seed": index * 1000 + j, **params},
                )
                with lock:
                    latencies.append(time.perf_counter() - t)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, errors


def _burst_in_child(
    url: str, clients: int, per_client: int, params: dict[str, Any]
) -> tuple[float, list[float], int]:
    """Run :func:`_burst` in another process, so the clients do not share the server's GIL."""
    import subprocess

    spec = json.dumps({"url": url, "clients": clients, "per_client": per_client, "params": params})
    out = subprocess.run(
        [sys.executable, __file__, "--burst", spec], check=True, capture_output=True, text=True, timeout=1200
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["latencies"], result["errors"]


def throughput(
    backend: Any, clients: int, per_client: int, rounds: int, params: dict[str, Any]
) -> dict[str, Any]:
    """Rounds alternate direct sequential calls and bursts on servers with coalescing off and on."""
    from abstractvision import VisionManager
    from abstractvision.server import create_app, serve_in_thread

    # engine time, to report how busy the server keeps the engine (the rest is queueing,
    # HTTP, validation and storing between engine calls)
    busy: list[float] = []
    for method in ("generate_image", "generate_image_batch"):

        def timed(request: Any, _call: Any = getattr(backend, method)) -> Any:
            started = time.perf_counter()
            try:
                return _call(request)
            finally:
                busy.append(time.perf_counter() - started)

        setattr(backend, method, timed)
    busy_share: dict[str, list[float]] = {
        "direct_sequential": [],
        "server_coalesce_off": [],
        "server_coalesce_on": [],
    }
    vm = VisionManager(backend=backend)
    total = clients * per_client
    rates: dict[str, list[float]] = {
        "direct_sequential": [],
        "server_coalesce_off": [],
        "server_coalesce_on": [],
    }
    latencies: dict[str, list[float]] = {"server_coalesce_off": [], "server_coalesce_on": []}
    errors = 0
    apps = {
        "server_coalesce_off": create_app(backend, queue_size=total, coalesce=False),
        "server_coalesce_on": create_app(backend, queue_size=total, coalesce=True),
    }
    with (
        serve_in_thread(apps["server_coalesce_off"]) as off,
        serve_in_thread(apps["server_coalesce_on"]) as on,
    ):
        urls = {"server_coalesce_off": off.url, "server_coalesce_on": on.url}
        for _ in range(rounds):
            busy.clear()
            t0 = time.perf_counter()
            for i in range(total):
                vm.generate_image("a lighthouse at dusk", seed=i, **params)
            seconds = time.perf_counter() - t0
            rates["direct_sequential"].append(total / seconds)
            busy_share["direct_sequential"].append(sum(busy) / seconds)
            for name, url in urls.items():
                busy.clear()
                seconds, lat, errs = _burst_in_child(url, clients, per_client, params)
                rates[name].append(total / seconds)
                busy_share[name].append(sum(busy) / seconds)
                latencies[name] += lat
                errors += errs
        calls = {name: app.state.av.default.runner.calls for name, app in apps.items()}
    return {
        "clients": clients,
        "requests_per_round": total,
        "rounds": rounds,
        "errors": errors,
        "req_per_s": {name: round(statistics.median(v), 2) for name, v in rates.items()},
        "req_per_s_all_rounds": {name: [round(x, 2) for x in v] for name, v in rates.items()},
        "median_latency_ms": {name: ms(v) for name, v in latencies.items()},
        "engine_busy_share": {name: round(statistics.median(v), 3) for name, v in busy_share.items()},
        "engine_calls": calls,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=40, help="interleaved calls per side (>= 30)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (medians are reported)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--burst", help=argparse.SUPPRESS)  # internal: the client process
    args = ap.parse_args(argv)
    if args.burst:
        spec = json.loads(args.burst)
        seconds, lat, errs = _burst(spec["url"], spec["clients"], spec["per_client"], spec["params"])
        print(json.dumps({"seconds": seconds, "latencies": lat, "errors": errs}))
        return 0
    if args.calls < 30:
        ap.error("--calls must be >= 30 (the medians need enough samples)")

    import logging

    logging.getLogger("abstractvision.server").setLevel(logging.ERROR)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    params = {"steps": args.steps, "width": args.size, "height": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sd(os.path.join(tmp, "tiny-sd"))
        backend = HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id=model, device="cpu")
        )
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "load_avg": os.getloadavg(),
            },
            "params": params,
        }
        results["overhead_tiny_sd"] = overhead(backend, args.calls, params)
        results["overhead_instant"] = overhead(instant_backend(), args.calls, {})
        results["throughput"] = throughput(backend, args.clients, args.per_client, args.rounds, params)
        backend.close()

    o, inst = results["overhead_tiny_sd"], results["overhead_instant"]
    print(f"machine: {results['machine']}")
    print(f"tiny SD {args.size}px/{args.steps} steps, {args.calls} interleaved calls:")
    print(f"  direct VisionManager  median {o['direct_ms']:8.2f} ms")
    print(
        f"  HTTP server (b64)     median {o['server_ms']:8.2f} ms   ratio {o['ratio']:.3f}   +{o['overhead_ms']:.2f} ms"
    )
    print(
        f"instant backend: direct {inst['direct_ms']:.2f} ms, server {inst['server_ms']:.2f} ms (+{inst['overhead_ms']:.2f} ms)"
    )
    t = results["throughput"]
    print(
        f"throughput, {t['clients']} clients x {args.per_client} requests, median of {t['rounds']} rounds (req/s):"
    )
    for name, rate in t["req_per_s"].items():
        latency = t["median_latency_ms"].get(name)
        extra = f"   median latency {latency} ms, engine calls {t['engine_calls'][name]}" if latency else ""
        busy_pct = 100 * t["engine_busy_share"][name]
        print(f"  {name:22s} {rate:8.2f}   engine busy {busy_pct:5.1f}% of the time{extra}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_server.json").write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if t["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
