"""Throughput of the OpenAI-compatible backend against a local server.

Starts the test suite's fake OpenAI server in a child process (so the server and the
client do not share a GIL), then measures ``POST /images/generations`` round trips
(an 8x8 PNG as ``b64_json``, decoded and sniffed by the backend):

- sequential, sync backend (one request at a time on ``httpx.Client``)
- sequential, async backend (``agenerate_image`` on ``httpx.AsyncClient``)
- concurrent, async (``--concurrency`` coroutines in flight)
- concurrent, sync backend from a thread pool of the same size
- the same concurrent async run through ``AsyncVisionManager`` (validation, provenance
  metadata and PNG text chunks included)

Plain ``httpx`` posting the same body is measured first as a baseline.

Usage::

    python bench/bench_openai_http.py [--requests 400] [--concurrency 16]

The figures measure the client stack plus a stdlib ``ThreadingHTTPServer``; the server
is usually the bottleneck of the concurrent runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "tests", "backends", "openai", "openai_fake_server.py")
sys.path.insert(0, os.path.join(ROOT, "src"))

from abstractvision import AsyncVisionManager  # noqa: E402
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend  # noqa: E402
from abstractvision.types import ImageGenerationRequest  # noqa: E402

REQUEST = ImageGenerationRequest(prompt="a benchmark", width=8, height=8)


def _report(name: str, count: int, seconds: float) -> float:
    rate = count / seconds
    print(
        f"{name:<44} {count:>6} req in {seconds:6.2f} s = {rate:8.1f} req/s  ({1000 * seconds / count:6.2f} ms/req)"
    )
    return rate


def _backend(base_url: str) -> OpenAICompatibleVisionBackend:
    return OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url=base_url, api_key="sk-bench")
    )


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


_RAW_BODY = b'{"prompt": "a benchmark", "n": 1, "size": "8x8", "response_format": "b64_json"}'
_RAW_HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}


def baseline(base_url: str, requests: int, concurrency: int) -> dict[str, float]:
    """Plain httpx posting the same body (no backend): what the HTTP stack itself costs."""
    import httpx

    url = base_url + "/images/generations"
    results: dict[str, float] = {}
    with httpx.Client() as client:
        for _ in range(20):
            client.post(url, content=_RAW_BODY, headers=_RAW_HEADERS)
        started = time.perf_counter()
        for _ in range(requests):
            client.post(url, content=_RAW_BODY, headers=_RAW_HEADERS).json()
        results["raw sync"] = _report(
            "baseline: plain httpx.Client, sequential", requests, time.perf_counter() - started
        )

    async def araw() -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(20):
                await client.post(url, content=_RAW_BODY, headers=_RAW_HEADERS)
            started = time.perf_counter()
            for _ in range(requests):
                (await client.post(url, content=_RAW_BODY, headers=_RAW_HEADERS)).json()
            seconds = time.perf_counter() - started
            results["raw async"] = _report("baseline: plain httpx.AsyncClient, sequential", requests, seconds)

            async def worker(todo: list[int]) -> None:
                while todo:
                    todo.pop()
                    (await client.post(url, content=_RAW_BODY, headers=_RAW_HEADERS)).json()

            warm = list(range(4 * concurrency))
            await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
            todo = list(range(requests))
            started = time.perf_counter()
            await asyncio.gather(*(worker(todo) for _ in range(concurrency)))
            seconds = time.perf_counter() - started
            name = f"baseline: plain httpx.AsyncClient, {concurrency} in flight"
            results["raw async concurrent"] = _report(name, requests, seconds)

    asyncio.run(araw())
    return results


def run(base_url: str, requests: int, concurrency: int) -> dict[str, float]:
    results: dict[str, float] = {}
    backend = _backend(base_url)
    for _ in range(20):  # warm up: connection pool, registry, imports
        backend.generate_image(REQUEST)

    def sequential_sync() -> None:
        for _ in range(requests):
            backend.generate_image(REQUEST)

    results["sequential sync"] = _report("sequential, sync backend", requests, _timed(sequential_sync))

    pool = ThreadPoolExecutor(concurrency)
    list(pool.map(lambda _: backend.generate_image(REQUEST), range(4 * concurrency)))  # warm the pool

    def threads() -> None:
        list(pool.map(lambda _: backend.generate_image(REQUEST), range(requests)))

    results["concurrent threads"] = _report(
        f"concurrent, sync backend, {concurrency} threads", requests, _timed(threads)
    )
    pool.shutdown()
    backend.close()

    async def async_runs() -> None:
        abackend = _backend(base_url)
        for _ in range(20):
            await abackend.agenerate_image(REQUEST)

        started = time.perf_counter()
        for _ in range(requests):
            await abackend.agenerate_image(REQUEST)
        results["sequential async"] = _report(
            "sequential, async backend", requests, time.perf_counter() - started
        )

        async def worker(todo: list[int], call: Callable[[], Any]) -> None:
            while todo:
                todo.pop()
                await call()

        async def concurrent(call: Callable[[], Any]) -> float:
            warm = list(range(4 * concurrency))  # open the pool's connections before timing
            await asyncio.gather(*(worker(warm, call) for _ in range(concurrency)))
            todo = list(range(requests))
            started = time.perf_counter()
            await asyncio.gather(*(worker(todo, call) for _ in range(concurrency)))
            return time.perf_counter() - started

        seconds = await concurrent(lambda: abackend.agenerate_image(REQUEST))
        results["concurrent async"] = _report(
            f"concurrent, async backend, {concurrency} in flight", requests, seconds
        )
        manager = AsyncVisionManager(backend=abackend)
        seconds = await concurrent(lambda: manager.generate_image("a benchmark", width=8, height=8))
        results["concurrent manager"] = _report(
            f"concurrent, AsyncVisionManager, {concurrency} in flight", requests, seconds
        )
        await abackend.aclose()

    asyncio.run(async_runs())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(SERVER),
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        print(
            f"fake OpenAI server (stdlib ThreadingHTTPServer, child process) at {base_url}; cpus={os.cpu_count()}"
        )
        baseline(base_url, args.requests, args.concurrency)
        run(base_url, args.requests, args.concurrency)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
