"""An API node and a worker at their edges: start-up checks, queue limits, the stale-job sweep.

Real Redis (loopback); the API node runs in-process (``create_app(broker=...)`` served by uvicorn
on a free port), workers are announced by writing their heartbeat the way a worker does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from abstractvision.distributed.keys import decode_params, encode_params
from abstractvision.distributed.redis_state import WorkerJobs, redact_url
from conftest import RedisServer, S3Server, free_port

REPO = Path(__file__).resolve().parents[2]


def test_redacted_urls_and_param_encoding() -> None:
    assert redact_url("redis://user:s3cret@10.0.0.5:6379/0") == "redis://user:***@10.0.0.5:6379/0"
    assert redact_url("redis://:s3cret@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    params = {"prompt": "x", "image": b"\x89PNG", "reference_images": (b"a", b"b"), "extra": {"k": [1, 2]}}
    assert decode_params(json.loads(json.dumps(encode_params(params)))) == params


def _announce(client: Any, prefix: str, worker: str, models: list[dict[str, Any]]) -> None:
    WorkerJobs(client, prefix=prefix).heartbeat(
        worker, {"worker": worker, "heartbeat_s": 60, "models": models}
    )


@pytest.fixture
def api_node(redis_server: RedisServer, tmp_path: Path) -> Any:
    from abstractvision import LocalAssetStore
    from abstractvision.server import create_app, serve_in_thread

    prefix = f"t{time.monotonic_ns()}"
    app = create_app(
        broker=redis_server.url,
        store=LocalAssetStore(tmp_path / "store"),
        queue_size=2,
        distributed={"prefix": prefix, "sweep_s": 0.2},
    )
    with serve_in_thread(app) as server:
        yield server, prefix, app.state.av


def test_models_come_from_live_heartbeats_and_full_queues_answer_429(
    api_node: Any, redis_server: RedisServer
) -> None:
    server, prefix, _state = api_node
    client = redis_server.client()
    c = httpx.Client(base_url=server.url, timeout=10)
    assert c.get("/v1/models").json()["data"] == []
    r = c.post("/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 400 and "No served model runs text_to_image" in r.json()["error"]["message"]
    caps = {"supported_tasks": ["text_to_image"], "supports_mask": False, "max_width": 128}
    _announce(client, prefix, "w1", [{"name": "pics", "backend": "diffusers", "tasks": ["text_to_image"],
                                      "capabilities": caps, "loaded": True}])  # fmt: skip
    (entry,) = c.get("/v1/models").json()["data"]
    assert (entry["id"], entry["tasks"], entry["loaded"], entry["workers"]) == (
        "pics",
        ["text_to_image"],
        True,
        1,
    )
    # validated with the announced capabilities, exactly as in one process
    r = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "width": 256, "height": 64})
    assert r.status_code == 400 and "exceeds the backend's maximum of 128" in r.json()["error"]["message"]
    r = c.post("/v1/jobs", json={"task": "image_to_image", "prompt": "x", "image": "data:,"})
    assert r.status_code == 400
    # nobody consumes the queue: the third waiting job is refused with Retry-After
    for _ in range(2):
        assert (
            c.post(
                "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "width": 64, "height": 64}
            ).status_code
            == 202
        )
    r = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "width": 64, "height": 64})
    assert (
        r.status_code == 429
        and r.json()["error"]["code"] == "queue_full"
        and int(r.headers["retry-after"]) >= 1
    )
    jobs = c.get("/v1/jobs").json()["data"]
    assert [j["status"] for j in jobs] == ["queued", "queued"] and jobs[0]["params"]["width"] == 64
    assert isinstance(jobs[0]["params"].get("prompt"), str)
    health = c.get("/healthz").json()
    assert health["mode"] == "distributed" and health["queues"]["pics"]["pending"] == 2
    # a cancelled queued job frees its place and reads cancelled everywhere at once
    assert c.post(f"/v1/jobs/{jobs[0]['id']}/cancel").json()["status"] == "cancelled"
    assert c.get("/healthz").json()["queues"]["pics"]["pending"] == 1
    assert c.delete(f"/v1/jobs/{jobs[1]['id']}").json()["deleted"] is True
    assert c.get(f"/v1/jobs/{jobs[1]['id']}").status_code == 410
    assert c.get("/v1/jobs/job_000000000000000000000000").status_code == 404
    client.hdel(f"{prefix}:workers", "w1")
    assert c.get("/v1/models").json()["data"] == []  # a worker that stopped announcing is gone


def test_the_sweep_requeues_a_job_whose_worker_vanished_then_gives_up(
    api_node: Any, redis_server: RedisServer
) -> None:
    server, prefix, _state = api_node
    client = redis_server.client()
    _announce(
        client,
        prefix,
        "w1",
        [{"name": "pics", "backend": "x", "tasks": ["text_to_image"], "capabilities": None}],
    )
    c = httpx.Client(base_url=server.url, timeout=10)
    job = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x"}).json()
    worker = WorkerJobs(client, prefix=prefix)
    record = worker.get(job["id"])
    assert worker.claim(record, "dead-worker", lease_s=0.1) == "ok"
    assert worker.claim(record, "another", lease_s=5) == "busy"  # held while the lease lives
    deadline = time.monotonic() + 10
    while c.get(f"/v1/jobs/{job['id']}").json()["status"] != "queued":  # the lease expired: requeued
        assert time.monotonic() < deadline
        time.sleep(0.05)
    record = worker.get(job["id"])
    assert worker.claim(record, "dead-again", lease_s=0.1) == "ok"  # second attempt, and it dies too
    while (view := c.get(f"/v1/jobs/{job['id']}").json())["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert view["error"]["code"] == "worker_lost" and "after 2 attempt(s)" in view["error"]["message"]
    assert worker.claim(worker.get(job["id"]), "late", lease_s=1) == "terminal"
    # a worker that lost its job cannot finish it any more
    assert worker.finish(worker.get(job["id"]), "completed", worker="dead-again") is False
    assert client.smembers(f"{prefix}:running") == set()  # nothing left in progress


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTVISION_")}
    full.update(PYTHONPATH=str(REPO / "src"), **env)
    return subprocess.run(
        [sys.executable, "-m", "abstractvision", *args], capture_output=True, text=True, timeout=120, env=full
    )


def test_start_up_fails_fast_with_what_to_check(
    redis_server: RedisServer, s3_server: S3Server, tmp_path: Path
) -> None:
    closed = f"redis://user:hunter22@127.0.0.1:{free_port()}/0"
    node = _run("serve", "--broker", closed, "--store", str(tmp_path), "--port", str(free_port()))
    assert node.returncode == 2, node.stderr
    assert (
        "Cannot reach the broker at redis://user:***@127.0.0.1" in node.stderr
        and "hunter22" not in node.stderr
    )
    worker = _run(
        "worker", "--broker", closed, "--store", str(tmp_path), "--backend", "diffusers", "-m", str(tmp_path)
    )
    assert worker.returncode == 1 and "Cannot reach the broker at redis://user:***@" in worker.stderr
    bad_store = _run(
        "serve", "--broker", redis_server.url, "--store", "s3://no-such-bucket-av/x", "--port", str(free_port()),
        **s3_server.env,
    )  # fmt: skip
    assert bad_store.returncode == 1 and "s3://no-such-bucket-av/x does not exist" in bad_store.stderr
    models = _run("serve", "--broker", redis_server.url, "--store", str(tmp_path), "-m", "x")
    assert models.returncode == 2 and "loads no model" in models.stderr
    missing = _run("worker", "--store", str(tmp_path), "-m", "x")
    assert missing.returncode == 2 and "--broker redis://HOST:6379/0" in missing.stderr


def test_a_worker_whose_model_fails_to_load_takes_no_jobs(redis_server: RedisServer, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    broken = tmp_path / "broken-sd"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    prefix = f"t{time.monotonic_ns()}"
    result = _run(
        "worker", "--broker", redis_server.url, "--prefix", prefix, "--store", str(tmp_path / "s"),
        "--backend", "diffusers", "--device", "cpu", "-m", f"broken={broken}",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Model 'broken' failed to load" in result.stderr and "this worker takes no jobs" in result.stderr
    assert str(tmp_path) not in result.stderr.split("error:", 1)[1]
    assert redis_server.client().hlen(f"{prefix}:workers") == 0  # it never announced itself


def test_everything_else_works_without_the_distributed_packages(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """No celery, redis, fsspec or s3fs: the library, the CLI and the single-process server still work."""
    for name in ("celery", "redis", "redis.asyncio", "kombu", "fsspec", "s3fs"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails
    from abstractvision.cli import main
    from abstractvision.server import create_app, serve_in_thread
    from abstractvision.stores import open_store
    from fakes import FakeBackend

    with serve_in_thread(create_app(FakeBackend())) as server:
        assert (
            httpx.post(server.url + "/v1/images/generations", json={"prompt": "x"}, timeout=10).status_code
            == 200
        )
    assert main(["serve", "--broker", "redis://127.0.0.1:6379/0", "--store", "/tmp/x"]) == 3
    assert 'pip install "abstractvision[distributed]"' in capsys.readouterr().err
    assert main(["worker", "--broker", "redis://127.0.0.1:6379/0", "--store", "/tmp/x", "-m", "x"]) == 3
    from abstractvision.errors import OptionalDependencyMissingError

    with pytest.raises(OptionalDependencyMissingError, match=r"abstractvision\[distributed\]"):
        open_store("s3://bucket/prefix")


def test_importing_the_library_and_the_server_loads_no_distributed_package() -> None:
    code = (
        "import sys, abstractvision, abstractvision.server, abstractvision.stores, abstractvision.cli\n"
        "from abstractvision import VisionManager\n"
        "loaded = [m for m in ('celery', 'redis', 'kombu', 'fsspec', 's3fs', 'botocore') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")}
    )
    assert result.returncode == 0, result.stderr
