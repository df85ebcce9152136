"""Live previews through the server: ``preview`` events on /v1/jobs/{id}/events (size-limited, only
the newest kept), OpenAI's image streaming on both image routes, and nothing stored."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import httpx
import pytest
from server_helpers import png, sse_events

from fakes import FakeBackend

pytestmark = pytest.mark.server


def finished(c: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_job_events_carry_previews_only_when_asked(serve, client):
    backend = FakeBackend(steps_delay_s=0.01)
    c = client(serve(backend))
    job = c.post(
        "/v1/jobs", json={"task": "text_to_image", "prompt": "a cat", "steps": 3, "preview_every": 1}
    )
    assert job.status_code == 202, job.text
    with c.stream("GET", f"/v1/jobs/{job.json()['id']}/events") as stream:
        events = sse_events(stream)
    names = [name for name, _ in events]
    assert names.count("preview") == 3 and names.index("preview") < len(names) - 1
    first = next(data for name, data in events if name == "preview")
    assert first["mime_type"] == "image/jpeg" and (first["step"], first["total_steps"]) == (1, 3)
    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(first["b64_json"]))).size == (16, 16)
    done = finished(c, job.json()["id"])
    assert len(done["results"]) == 1 and "preview" not in str(done["results"][0]["metadata"])
    assert len(c.get("/v1/artifacts").json()["data"]) == 1  # previews are never stored
    made = backend.previews_made
    plain = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "a cat", "steps": 3}).json()
    with c.stream("GET", f"/v1/jobs/{plain['id']}/events") as stream:
        assert "preview" not in [name for name, _ in sse_events(stream)]
    assert backend.previews_made == made  # no listener, no preview made


def test_the_log_keeps_only_the_newest_previews(serve, client):
    from abstractvision.server.previews import KEPT_PREVIEWS

    c = client(serve(FakeBackend()))
    job = c.post(
        "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "steps": 12, "preview_every": 1}
    ).json()
    finished(c, job["id"])
    with c.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:  # replayed from the start
        steps = [data["step"] for name, data in sse_events(stream) if name == "preview"]
    assert steps == list(range(12 - KEPT_PREVIEWS + 1, 13))


def test_preview_options_are_checked_at_submission(serve, client):
    c = client(serve(FakeBackend()))
    both = c.post(
        "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "preview_every": 1, "partial_images": 2}
    )
    assert both.status_code == 400 and both.json()["error"]["param"] == "partial_images"
    bad = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", "preview_every": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "preview_every"


def test_previews_are_size_limited():
    from PIL import Image

    from abstractvision.server.previews import MAX_BYTES, MAX_SIDE, preview_payload
    from abstractvision.types import PreviewEvent

    noise = Image.effect_noise((2048, 1024), 120).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    payload = preview_payload(PreviewEvent(task="text_to_image", image=buf.getvalue(), step=3, total_steps=9))
    data = base64.b64decode(payload["b64_json"])
    assert len(data) <= MAX_BYTES and max(payload["width"], payload["height"]) <= MAX_SIDE
    assert payload["width"] == 2 * payload["height"]  # the aspect ratio is kept


def _stream(c: httpx.Client, path: str, **kwargs: Any) -> tuple[httpx.Response, list[tuple[str, Any]]]:
    with c.stream("POST", path, **kwargs) as response:
        assert response.status_code == 200, response.read()
        events = sse_events(response)
    return response, events


def test_openai_image_streaming_on_both_routes(serve, client):
    c = client(serve(FakeBackend()))
    r, events = _stream(
        c,
        "/v1/images/generations",
        json={"prompt": "a cat", "stream": True, "partial_images": 2, "steps": 4, "output_format": "webp"},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [data["partial_image_index"] for _, data in events[:2]] == [0, 1]
    done = events[-1][1]
    assert done["type"] == "image_generation.completed" and done["output_format"] == "webp"
    assert base64.b64decode(done["b64_json"])[8:12] == b"WEBP" and done["usage"]["total_tokens"] == 0
    assert base64.b64decode(events[0][1]["b64_json"])[8:12] == b"WEBP"  # partials in the same format
    r, events = _stream(
        c,
        "/v1/images/edits",
        data={"prompt": "make it blue", "stream": "true", "partial_images": "1", "steps": "3"},
        files={"image": ("a.png", png(24, 24), "image/png")},
    )
    assert [name for name, _ in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert events[-1][1]["size"] == "24x24"
    r, events = _stream(c, "/v1/images/generations", json={"prompt": "a cat", "stream": True})
    assert [name for name, _ in events] == ["image_generation.completed"]  # partial_images defaults to 0


def test_streaming_limits_and_partial_images_without_stream(serve, client):
    c = client(serve(FakeBackend()))
    many = c.post("/v1/images/generations", json={"prompt": "x", "stream": True, "n": 2})
    assert many.status_code == 400 and many.json()["error"]["param"] == "n"
    url = c.post("/v1/images/generations", json={"prompt": "x", "stream": True, "response_format": "url"})
    assert url.status_code == 400 and url.json()["error"]["param"] == "response_format"
    four = c.post("/v1/images/generations", json={"prompt": "x", "stream": True, "partial_images": 4})
    assert four.status_code == 400 and four.json()["error"]["param"] == "partial_images"
    plain = c.post("/v1/images/generations", json={"prompt": "x", "partial_images": 2})
    assert plain.status_code == 200
    job = finished(c, plain.headers["X-Job-Id"])
    assert "partial_images" in job["results"][0]["metadata"]["ignored_parameters"]


def test_a_stream_the_client_leaves_cancels_the_job(serve, client):
    backend = FakeBackend(steps_delay_s=0.02)
    c = client(serve(backend))
    with c.stream(
        "POST",
        "/v1/images/generations",
        json={"prompt": "x", "stream": True, "partial_images": 3, "steps": 5000},
    ) as response:
        job_id = response.headers["X-Job-Id"]
        assert backend.started.wait(10)
    job = finished(c, job_id)
    assert job["status"] == "cancelled"
