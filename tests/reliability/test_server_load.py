"""Server load: 64 concurrent clients against a real loopback uvicorn server.

Clients mix synchronous image generations, queued jobs followed over server-sent events,
and clients that hang up mid-request or mid-stream. The run must see no error other than
explicit 429s (each with ``Retry-After``); it reports p50/p95 latency and RSS growth, then
checks that no orphaned work remains (queues drain to zero, every job reaches a terminal
state) and that finished jobs expire. The fake backend (through the real contract, with a
per-step delay standing in for compute) always runs; the tiny random-weight Diffusers SD
model runs when torch is installed. CI: 12 s per run; ``ABSTRACTVISION_FUZZ=long``: 60 s.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fakes import FakeBackend
from reliability._support import STATS, is_long

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.server, pytest.mark.timeout(400 if is_long() else 150)]

CLIENTS = 64
DURATION_S = 60.0 if is_long() else 12.0
RSS_GROWTH_LIMIT_MB = 400.0


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def _served(target: Any, **options: Any) -> Iterator[tuple[Any, Any]]:
    from abstractvision.server import create_app, serve_in_thread

    app = create_app(target, **options)
    with serve_in_thread(app) as server:
        yield server, app


class _Load:
    """Shared tallies of one load run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []

    def record(self, outcome: str, latency: float | None = None, error: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if latency is not None:
                self.latencies.append(latency)
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)


def _check(load: _Load, r: Any, ok: int, started: float) -> bool:
    if r.status_code == ok:
        load.record("ok", time.perf_counter() - started)
        return True
    if r.status_code == 429:
        if "retry-after" not in r.headers:
            load.record("error", error="429 without Retry-After")
        else:
            load.record("429")
        time.sleep(random.uniform(0.05, 0.3))
        return False
    load.record("error", error=f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
    return False


def _job_body(body: dict[str, Any]) -> dict[str, Any]:
    """The job API spells ``size`` as ``width``/``height``."""
    out = {k: v for k, v in body.items() if k != "size"}
    width, height = body["size"].split("x")
    return {"task": "text_to_image", **out, "width": int(width), "height": int(height)}


def _client(url: str, body: dict[str, Any], load: _Load, stop: float, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as c:
        while time.monotonic() < stop:
            kind = rng.choices(["sync", "job_sse", "drop_sync", "drop_sse"], [5, 3, 1, 1])[0]
            started = time.perf_counter()
            try:
                if kind == "sync":
                    r = c.post("/v1/images/generations", json={**body, "seed": rng.randrange(1000)})
                    _check(load, r, 200, started)
                elif kind == "job_sse":
                    r = c.post("/v1/jobs", json=_job_body(body))
                    if not _check(load, r, 202, started):
                        continue
                    job_id = r.json()["id"]
                    with c.stream("GET", f"/v1/jobs/{job_id}/events") as events:
                        last = ""
                        for line in events.iter_lines():
                            if line.startswith("data:"):
                                last = json.loads(line[5:]).get("status", last)
                    if last != "completed":
                        load.record("error", error=f"job {job_id} ended with event {last!r}")
                elif kind == "drop_sync":
                    # hang up before the answer: the server must cancel that job
                    try:
                        httpx.post(url + "/v1/images/generations", json=body, timeout=0.02)
                    except httpx.TimeoutException:
                        pass
                    load.record("dropped")
                else:
                    r = c.post("/v1/jobs", json=_job_body(body))
                    if not _check(load, r, 202, started):
                        continue
                    with c.stream("GET", f"/v1/jobs/{r.json()['id']}/events") as events:
                        for _line in events.iter_lines():
                            break  # leave mid-stream
                    load.record("dropped")
            except httpx.HTTPError as exc:
                load.record("error", error=f"{kind}: {exc!r}")


def _drained(c: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        queues = c.get("/healthz").json()["queues"]
        jobs = c.get("/v1/jobs").json()["data"]
        live = [j for j in jobs if j["status"] in ("queued", "in_progress")]
        idle = all(q["pending"] == 0 and q["running"] == 0 for q in queues.values())
        if (idle and not live) or time.monotonic() > deadline:
            return {"queues": queues, "live_jobs": len(live), "jobs": len(jobs)}
        time.sleep(0.1)


def _run_load(name: str, target: Any, body: dict[str, Any]) -> None:
    with (
        _served(target, queue_size=16, workers=1, job_ttl_s=30) as (server, _app),
        httpx.Client(base_url=server.url, timeout=120) as c,
    ):
        assert c.post("/v1/images/generations", json=body).status_code == 200  # warm-up
        threads_before = threading.active_count()
        rss_before = _rss_mb()
        load = _Load()
        stop = time.monotonic() + DURATION_S
        clients = [
            threading.Thread(target=_client, args=(server.url, body, load, stop, i), daemon=True)
            for i in range(CLIENTS)
        ]
        t0 = time.perf_counter()
        for t in clients:
            t.start()
        for t in clients:
            t.join(DURATION_S + 180)
        wall = time.perf_counter() - t0
        assert not any(t.is_alive() for t in clients), "a client hung"
        drained = _drained(c)
        rss_growth = _rss_mb() - rss_before
        lat = sorted(load.latencies)
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
        figures = dict(
            clients=CLIENTS,
            duration_s=round(wall, 1),
            requests=sum(load.outcomes.values()),
            ok=load.outcomes["ok"],
            rate_limited_429=load.outcomes["429"],
            dropped_by_client=load.outcomes["dropped"],
            errors=load.outcomes["error"],
            p50_s=round(p50, 3),
            p95_s=round(p95, 3),
            rss_growth_mb=round(rss_growth, 1),
            live_jobs_after=drained["live_jobs"],
        )
        STATS.figure(f"server_load[{name}]", **figures)
        print(f"server load [{name}]: {figures}")
        assert load.outcomes["error"] == 0, load.errors
        assert load.outcomes["ok"] > 0
        assert drained["live_jobs"] == 0, drained
        assert all(q["pending"] == 0 and q["running"] == 0 for q in drained["queues"].values())
        assert rss_growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {rss_growth:.0f} MB"
        # client threads are gone; the server keeps at most its bounded to_thread pool
        pool = min(32, (os.cpu_count() or 1) + 4)
        assert threading.active_count() <= threads_before + pool
        # the cancelled synchronous jobs of hung-up clients ended as cancelled, not orphaned
        statuses = Counter(j["status"] for j in c.get("/v1/jobs").json()["data"])
        assert set(statuses) <= {"completed", "cancelled"}, statuses


def test_64_clients_against_the_fake_backend() -> None:
    _run_load("fake", FakeBackend(steps_delay_s=0.005), {"prompt": "load", "size": "32x32", "steps": 2})


@pytest.mark.diffusers
def test_64_clients_against_the_tiny_diffusers_model(tmp_path: Any) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    path = build_tiny_sd(os.path.join(tmp_path, "tiny-sd"))
    backend = HuggingFaceDiffusersVisionBackend(
        config=HuggingFaceDiffusersBackendConfig(model_id=path, device="cpu")
    )
    try:
        _run_load("tiny-sd", backend, {"prompt": "load", "size": "32x32", "steps": 1})
    finally:
        backend.close()


def test_finished_jobs_expire_and_are_removed() -> None:
    with (
        _served(FakeBackend(), job_ttl_s=0.5) as (server, app),
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "ttl", "steps": 1}).json()
        with c.stream("GET", f"/v1/jobs/{job['id']}/events") as events:
            for _line in events.iter_lines():
                pass
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "completed"
        store = app.state.av.jobs
        deadline = time.monotonic() + 10
        # the janitor (not a request) sweeps: poll the internal store, not the API
        while job["id"] in store.jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job["id"] not in store.jobs
        r = c.get(f"/v1/jobs/{job['id']}")
        assert r.status_code == 410 and r.json()["error"]["code"] == "job_expired"
        assert c.get("/v1/jobs").json()["data"] == []
