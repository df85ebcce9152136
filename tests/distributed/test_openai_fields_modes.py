"""OpenAI fields are decided alike in one process and on an API node of the distributed mode.

The same served models (fake engines behind managers with registry entries, one declaring its
own frame rule) are served in one process and through an API node + a real
:class:`~abstractvision.distributed.worker.Worker` (its heartbeat and job code, jobs taken from
Redis by a polling thread instead of Celery). Every body gets the same status, error field and
engine parameters from both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_workers import api_node_with_workers

from conftest import RedisServer
from fakes import FakeBackend, VideoRuleBackend

pytestmark = pytest.mark.server

REGISTRY = {
    "sd": "runwayml/stable-diffusion-v1-5",
    "wan": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "cog": "THUDM/CogVideoX-2b",
}
BODIES: list[tuple[str, dict[str, Any]]] = [
    (
        "/v1/images/generations",
        {"model": "sd", "prompt": "p", "size": "64x64", "quality": "low", "style": "vivid"},
    ),
    ("/v1/images/generations", {"model": "sd", "prompt": "p", "size": "64x64", "quality": "low", "steps": 2}),
    ("/v1/images/generations", {"model": "folder", "prompt": "p", "size": "64x64", "quality": "high"}),
    ("/v1/images/generations", {"model": "sd", "prompt": "p", "background": "transparent"}),
    ("/v1/images/generations", {"model": "sd", "prompt": "p", "stream": True}),
    ("/v1/videos", {"model": "wan", "prompt": "w", "seconds": "4", "size": "64x64"}),
    ("/v1/videos", {"model": "wan", "prompt": "w", "num_frames": 32}),
    ("/v1/videos", {"model": "cog", "prompt": "w", "seconds": "2"}),
    ("/v1/videos", {"model": "cog", "prompt": "w", "seconds": "8"}),
    ("/v1/videos", {"model": "folder", "prompt": "w", "seconds": "3"}),
    ("/v1/videos", {"model": "folder", "prompt": "w", "num_frames": 10}),
    ("/v1/videos", {"model": "folder", "prompt": "w", "size": "24x16"}),
]
_KEYS = ("num_frames", "fps", "steps", "ignored_parameters")


def _backends() -> dict[str, FakeBackend]:
    return {"sd": FakeBackend(), "wan": FakeBackend(), "cog": FakeBackend(), "folder": VideoRuleBackend()}


def _managers(backends: dict[str, FakeBackend]) -> dict[str, Any]:
    from abstractvision import VisionManager

    return {n: VisionManager(backend=b, model_id=REGISTRY.get(n), model_label=n) for n, b in backends.items()}


def _engine_params(backend: FakeBackend) -> dict[str, Any]:
    request = backend.calls[-1][1]
    return {k: getattr(request, k, None) for k in ("num_frames", "fps", "steps")}


def _outcome(c: httpx.Client, path: str, body: dict[str, Any]) -> tuple[int, Any, str]:
    r = c.post(path, json=body)
    if r.status_code != 200:
        return r.status_code, r.json()["error"]["param"], ""
    job_id = r.headers["X-Job-Id"]
    deadline = time.monotonic() + 20
    while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    assert job["status"] == "completed", job
    return 200, None, job_id


@pytest.fixture
def distributed(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[str, dict[str, FakeBackend]]]:
    backends = _backends()
    with api_node_with_workers(redis_server, tmp_path, backends, REGISTRY) as url:
        yield url, backends


def test_every_body_gets_the_same_answer_in_both_modes(distributed: Any) -> None:
    from abstractvision.server import create_app, serve_in_thread

    node_url, node_backends = distributed
    local_backends = _backends()
    with (
        serve_in_thread(create_app(_managers(local_backends))) as local,
        httpx.Client(base_url=local.url, timeout=30) as one,
        httpx.Client(base_url=node_url, timeout=30) as node,
    ):
        for path, body in BODIES:
            here = _outcome(one, path, body)
            there = _outcome(node, path, body)
            assert here[:2] == there[:2], (body, here, there)
            if here[0] != 200:
                continue
            model = body["model"]
            assert _engine_params(local_backends[model]) == _engine_params(node_backends[model]), body
            metas = [
                c.get(f"/v1/jobs/{job_id}").json()["results"][0]["metadata"]
                for c, job_id in ((one, here[2]), (node, there[2]))
            ]
            here_params, there_params = ({k: m["parameters"].get(k) for k in _KEYS} for m in metas)
            assert here_params == there_params, body
            assert metas[0].get("ignored_parameters") == metas[1].get("ignored_parameters"), body
    # the bodies above exercise every outcome
    assert _engine_params(local_backends["wan"]) == {"num_frames": 65, "fps": 16, "steps": None}
