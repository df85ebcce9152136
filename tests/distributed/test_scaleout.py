"""The distributed mode as deployed: two API nodes and two workers as real processes.

Redis (Debian's redis-server) and an S3-protocol server (moto) run on loopback; the API nodes
are ``abstractvision serve --broker ... --store s3://...`` (uvicorn), the workers
``abstractvision worker ...`` (Celery) serving a tiny random-weight Stable Diffusion; the client
is the official ``openai`` SDK plus raw HTTP. The tests run in file order and share the cluster:
the worker killed with ``kill -9`` is restarted, Redis restarted, before the next test.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RedisServer, S3Server, free_port

pytestmark = [pytest.mark.diffusers, pytest.mark.server, pytest.mark.slow]

openai = pytest.importorskip("openai")
REPO = Path(__file__).resolve().parents[2]
LONG = {"task": "text_to_image", "model": "sd", "prompt": "a long one", "width": 64, "height": 64}


def _env(s3: S3Server, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTVISION_")}
    env.update(s3.env, PYTHONPATH=str(REPO / "src"), **extra)
    return env


class Cluster:
    """Two API nodes and two workers over one Redis and one S3 bucket."""

    def __init__(self, root: Path, redis: RedisServer, s3: S3Server, model: str) -> None:
        self.root, self.redis, self.s3, self.model = root, redis, s3, model
        self.store = f"s3://{s3.bucket()}/artifacts"
        self.env = _env(s3)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.nodes: list[tuple[subprocess.Popen[bytes], str]] = []
        for name in ("w1", "w2"):
            self.start_worker(name)
        for name in ("a", "b"):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "abstractvision", "serve", "--broker", redis.url, "--store", self.store,
                 "--port", str(port), "--log-level", "warning", "-q"],
                env=self.env, stdout=self._log(f"node-{name}"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            self.nodes.append((proc, f"http://127.0.0.1:{port}"))
        self.wait_for_workers(2)

    def _log(self, name: str) -> Any:
        return open(self.root / f"{name}.log", "ab")

    def start_worker(self, name: str) -> None:
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "abstractvision", "worker", "--broker", self.redis.url, "--store", self.store,
             "--backend", "diffusers", "--device", "cpu", "-m", f"sd={self.model}", "--lease", "3",
             "--heartbeat", "1", "-q"],
            env={**self.env, "OMP_NUM_THREADS": "1"}, stdout=self._log(f"worker-{name}"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def a(self) -> str:
        return self.nodes[0][1]

    @property
    def b(self) -> str:
        return self.nodes[1][1]

    def wait_for_workers(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                health = httpx.get(self.b + "/healthz", timeout=5).json()
                if len(health.get("workers", [])) >= count and all(
                    httpx.get(url + "/healthz", timeout=5).status_code == 200 for _, url in self.nodes
                ):
                    return
            except (httpx.TransportError, ValueError):
                pass
            for name, proc in self.workers.items():
                assert proc.poll() is None, (self.root / f"worker-{name}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "workers did not come up"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in [*self.workers.values(), *(p for p, _ in self.nodes)]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers.values(), *(p for p, _ in self.nodes)]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, s3_server: S3Server
) -> Iterator[Cluster]:
    pytest.importorskip("diffusers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    root = tmp_path_factory.mktemp("cluster")
    model = build_tiny_sd(str(root / "tiny-sd"))
    cluster = Cluster(root, redis_server, s3_server, model)
    yield cluster
    cluster.stop()


def _wait(url: str, job_id: str, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size


def test_an_image_through_node_a_with_the_openai_sdk_and_its_file_from_node_b(cluster: Cluster) -> None:
    sdk = openai.OpenAI(base_url=cluster.a + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["sd"]
    listed = sdk.models.retrieve("sd").model_extra
    assert listed["tasks"] == ["text_to_image", "image_to_image"] and listed["workers"] == 2
    result = sdk.images.generate(
        model="sd", prompt="a red cube", size="64x64", extra_body={"steps": 2, "seed": 5}
    )
    png = base64.b64decode(result.data[0].b64_json)
    assert _png_size(png) == (64, 64)
    url = sdk.images.generate(model="sd", prompt="a red cube", size="64x64", response_format="url",
                              extra_body={"steps": 2, "seed": 5}).data[0].url  # fmt: skip
    on_b = httpx.get(cluster.b + "/v1/artifacts/" + url.rsplit("/", 1)[1], timeout=10)
    assert on_b.status_code == 200 and _png_size(on_b.content) == (64, 64)
    from PIL import Image

    with Image.open(io.BytesIO(png)) as one, Image.open(io.BytesIO(on_b.content)) as two:
        assert one.tobytes() == two.tobytes()  # same seed, same pixels, whichever worker ran it


def test_a_job_from_node_a_streamed_polled_and_cancelled_on_node_b(cluster: Cluster) -> None:
    job = httpx.post(cluster.a + "/v1/jobs", json={**LONG, "steps": 2000}, timeout=10).json()
    assert job["status"] == "queued"
    steps: list[tuple[int, float]] = []
    cancelled_at = 0.0
    with httpx.stream("GET", f"{cluster.b}/v1/jobs/{job['id']}/events", timeout=60) as events:
        name = ""
        for line in events.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name == "progress":
                data = json.loads(line[5:])
                if data["phase"] == "step":
                    steps.append((data["step"], data["elapsed_s"]))
                    if len(steps) == 5:
                        reply = httpx.post(f"{cluster.b}/v1/jobs/{job['id']}/cancel", timeout=10)
                        cancelled_at = time.time()
                        assert reply.status_code == 200 and reply.json()["status"] == "cancelled"
            elif (
                line.startswith("data:")
                and name == "status"
                and json.loads(line[5:])["status"] == "cancelled"
            ):
                break
    assert len(steps) >= 5
    polled = httpx.get(f"{cluster.b}/v1/jobs/{job['id']}", timeout=10).json()
    assert polled["status"] == "cancelled" and polled["cancel_requested"] is True
    assert httpx.get(f"{cluster.a}/v1/jobs/{job['id']}", timeout=10).json()["status"] == "cancelled"
    # the engine itself stopped: the worker records where, within a step of the cancel
    client = cluster.redis.client()
    deadline = time.monotonic() + 30
    while not client.hexists(f"av:job:{job['id']}", "note:engine_stopped"):
        assert time.monotonic() < deadline, "the worker never saw the cancel"
        time.sleep(0.05)
    stopped = json.loads(client.hget(f"av:job:{job['id']}", "note:engine_stopped"))
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(steps)]
    step_s = max(gaps)
    assert stopped["at"] - cancelled_at <= 2 * step_s + 0.5, (stopped, cancelled_at, gaps)
    assert stopped["step"] < 2000


def test_kill_9_of_a_worker_mid_job_completes_on_the_other_once(cluster: Cluster) -> None:
    job = httpx.post(
        cluster.a + "/v1/jobs", json={**LONG, "steps": 150, "n": 2, "seed": 11}, timeout=10
    ).json()
    running = _wait(cluster.b, job["id"], ("in_progress", "completed"))
    assert running["status"] == "in_progress"
    client = cluster.redis.client()
    worker_id = client.hget(f"av:job:{job['id']}", "worker").decode()
    pid = int(worker_id.split(":")[1])
    victim = next(name for name, proc in cluster.workers.items() if proc.pid == pid)
    time.sleep(0.5)  # mid-job
    os.kill(pid, signal.SIGKILL)
    cluster.workers[victim].wait(10)
    done = _wait(cluster.a, job["id"], ("completed", "failed", "cancelled"), timeout=180)
    assert done["status"] == "completed", done
    record = client.hgetall(f"av:job:{job['id']}")
    assert int(record[b"attempt"]) == 2 and record[b"worker"].decode() != worker_id
    assert len(done["results"]) == 2
    assert [r["metadata"]["seed"] for r in done["results"]] == [11, 12]
    listed = httpx.get(cluster.b + "/v1/artifacts?limit=1000", timeout=10).json()["data"]
    assert sorted(a["id"] for a in listed if a["job"] == job["id"]) == sorted(
        r["$artifact"] for r in done["results"]
    )
    assert not client.smembers("av:running")  # nothing left in progress
    cluster.start_worker(victim)
    cluster.wait_for_workers(2)


def test_redis_down_is_a_503_and_a_restart_is_survived(cluster: Cluster) -> None:
    cluster.redis.stop()
    started = time.monotonic()
    for url, path in ((cluster.a, "/v1/models"), (cluster.b, "/v1/jobs")):
        reply = httpx.get(url + path, timeout=30)
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "broker_unavailable" and cluster.redis.url in error["message"]
        assert "check that Redis is running" in error["message"]
    reply = httpx.post(cluster.a + "/v1/images/generations", json={"prompt": "x", "model": "sd"}, timeout=30)
    assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
    assert time.monotonic() - started < 30  # answers, never hangs
    cluster.redis.start()  # empty: no jobs, no heartbeats, no queue bindings
    cluster.wait_for_workers(2, timeout=60)
    sdk = openai.OpenAI(base_url=cluster.b + "/v1", api_key="unused", max_retries=0)
    result = sdk.images.generate(
        model="sd", prompt="after the restart", size="64x64", extra_body={"steps": 2}
    )
    assert _png_size(base64.b64decode(result.data[0].b64_json)) == (64, 64)
    for proc, _ in cluster.nodes:
        assert proc.poll() is None
    for proc in cluster.workers.values():
        assert proc.poll() is None
