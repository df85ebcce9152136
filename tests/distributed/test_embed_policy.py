"""The operator's embed_metadata policy in the distributed mode: the API node puts it into the
job's parameters, so every worker's manager applies it (real Redis on loopback)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from abstractvision.distributed.keys import decode_params
from abstractvision.distributed.redis_state import WorkerJobs
from conftest import RedisServer
from embedded import open_image
from fakes import FakeBackend


def test_the_api_node_sends_the_policy_with_every_job(redis_server: RedisServer, tmp_path: Path) -> None:
    from abstractvision import LocalAssetStore, VisionManager
    from abstractvision.server import create_app, serve_in_thread
    from abstractvision.server.jobs import manager_call

    prefix = f"t{time.monotonic_ns()}"
    app = create_app(
        broker=redis_server.url,
        store=LocalAssetStore(tmp_path / "store"),
        distributed={"prefix": prefix, "sweep_s": 60},
        embed_metadata="parameters",
    )
    client = redis_server.client()
    jobs = WorkerJobs(client, prefix=prefix)
    caps = {"supported_tasks": ["text_to_image"], "supports_mask": False}
    model = {
        "name": "pics",
        "backend": "fake",
        "tasks": ["text_to_image"],
        "capabilities": caps,
        "loaded": True,
    }
    jobs.heartbeat("w1", {"worker": "w1", "heartbeat_s": 60, "models": [model]})
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "a secret prompt", "seed": 3})
        assert r.status_code == 202, r.text
        record = jobs.get(r.json()["id"])
        # a client cannot set it
        refused = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "embed_metadata": "none"})
        assert refused.status_code == 400
    assert record is not None
    params: dict[str, Any] = decode_params(record.spec["params"])
    assert params["embed_metadata"] == "parameters"
    # what a worker does with them (worker._execute calls the manager exactly so)
    method, extra = manager_call(record.task, int(record.spec.get("n") or 1))
    asset = getattr(VisionManager(backend=FakeBackend()), method)(**params, **extra)
    assert open_image(asset.data).text["parameters"].startswith("a secret prompt\n")
