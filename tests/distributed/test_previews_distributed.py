"""Live previews in the distributed mode: a worker publishes them into the job's Redis event
stream (size-limited, only the newest few kept), an API node streams them on
/v1/jobs/{id}/events and as OpenAI image events; nothing reaches the shared store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fake_workers import api_node_with_workers

from conftest import RedisServer
from fakes import FakeBackend

pytestmark = pytest.mark.server


def _events(response: httpx.Response) -> list[tuple[str, dict]]:
    out, name, data = [], "message", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            out.append((name, json.loads(data)))
            name, data = "message", ""
    return out


def test_previews_travel_through_the_job_stream(redis_server: RedisServer, tmp_path: Path) -> None:
    from abstractvision.server.previews import KEPT_PREVIEWS

    backend = FakeBackend(steps_delay_s=0.01)
    with (
        api_node_with_workers(redis_server, tmp_path, {"pics": backend}) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        job = c.post(
            "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "steps": 10, "preview_every": 1}
        )
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + 20
        while c.get(f"/v1/jobs/{job_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with c.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            events = _events(stream)
        previews = [data for name, data in events if name == "preview"]
        # only the newest previews stay in the stream; they are the last steps
        assert [p["step"] for p in previews] == list(range(10 - KEPT_PREVIEWS + 1, 11))
        assert previews[0]["mime_type"] == "image/jpeg" and previews[0]["b64_json"]
        assert backend.previews_made == 10
        assert len(c.get("/v1/artifacts").json()["data"]) == 1  # the result only
        with c.stream(
            "POST",
            "/v1/images/generations",
            json={"prompt": "x", "stream": True, "partial_images": 2, "steps": 6},
        ) as response:
            names = [name for name, _ in _events(response)]
        assert names == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
