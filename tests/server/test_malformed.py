"""Malformed requests get a 4xx in the OpenAI error shape with a message that says what to fix: never a 500."""

from __future__ import annotations

import json

import pytest
from server_helpers import data_url, png

from fakes import FakeBackend

pytestmark = pytest.mark.server

# (method, path, kwargs for httpx, expected status, expected param or None, text expected in the message)
JSON_CASES = [
    ("POST", "/v1/images/generations", {"content": b"{not json"}, 400, None, "not valid JSON"),
    ("POST", "/v1/images/generations", {"content": b""}, 400, None, "empty"),
    ("POST", "/v1/images/generations", {"json": ["a", "list"]}, 400, None, "JSON object"),
    ("POST", "/v1/images/generations", {"json": {}}, 400, "prompt", "required"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "   "}}, 400, "prompt", "prompt"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "a\u0000b"}}, 400, "prompt", "prompt"),
    ("POST", "/v1/images/generations", {"json": {"prompt": 5}}, 400, "prompt", "string"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 0}}, 400, "n", "minimum"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 11}}, 400, "n", "maximum"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 1.5}}, 400, "n", "integer"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": True}}, 400, "n", "integer"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "big"}}, 400, "size", "match"),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "size": "99999x99999"}},
        400,
        "size",
        "match",
    ),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "width": 2048, "height": 1024}},
        400,
        "size",
        "pixels",
    ),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "response_format": "png"}},
        400,
        "response_format",
        "",
    ),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "stream": True, "n": 2}},
        400,
        "n",
        "one image",
    ),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "steps": -1}}, 400, "steps", "minimum"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "width": 4097}}, 400, "width", "maximum"),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "seed": -5}}, 400, "seed", "minimum"),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "guidance_scale": "high"}},
        400,
        "guidance_scale",
        "",
    ),
    (
        "POST",
        "/v1/images/generations",
        {"json": {"prompt": "x", "model": "dall-e-3"}},
        404,
        "model",
        "does not exist",
    ),
    ("POST", "/v1/images/generations", {"content": b'{"prompt": "x", "seed": NaN}'}, 400, None, "JSON"),
    ("POST", "/v1/images/generations", {"content": b"[" * 100_000 + b"]" * 100_000}, 400, None, "JSON"),
    ("POST", "/v1/images/generations", {"data": {"prompt": "x"}}, 415, None, "JSON"),
    ("POST", "/v1/images/edits", {"json": {"prompt": "x"}}, 415, None, "multipart"),
    ("POST", "/v1/jobs", {"json": {"prompt": "x"}}, 400, "task", "task"),
    ("POST", "/v1/jobs", {"json": {"task": "paint", "prompt": "x"}}, 400, "task", "text_to_image"),
    ("POST", "/v1/jobs", {"json": {"task": "image_to_image", "prompt": "x"}}, 400, "image", "required"),
    ("POST", "/v1/jobs", {"json": {"task": "image_to_image", "prompt": "x", "image": 3}}, 400, "image", ""),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "image_to_image", "prompt": "x", "image": "data:image/png;base64,@@"}},
        400,
        "image",
        "base64",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "image_to_image", "prompt": "x", "image": data_url(b"not an image")}},
        400,
        "image",
        "image",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "text_to_image", "prompt": "x", "num_frames": 3}},
        400,
        "num_frames",
        "Unknown field",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "multi_view_image", "prompt": "x", "angles": []}},
        400,
        "angles",
        "at least",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "image_upscale", "image": data_url(png()), "n": 2}},
        400,
        "n",
        "Unknown field",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "text_to_image", "prompt": "x", "strength": 0.5}},
        400,
        "strength",
        "",
    ),
    (
        "POST",
        "/v1/jobs",
        {"json": {"task": "image_to_image", "prompt": "x", "image": data_url(png()), "strength": 0}},
        400,
        "strength",
        "greater",
    ),
    ("POST", "/v1/videos", {"json": {"prompt": "x", "seconds": "4.5"}}, 400, "seconds", ""),
    (
        "POST",
        "/v1/videos",
        {"json": {"prompt": "x", "input_reference": "/etc/hosts"}},
        400,
        "input_reference",
        "",
    ),
    (
        "POST",
        "/v1/videos",
        {"json": {"prompt": "x", "input_reference": {"file_id": "f" * 64}}},
        404,
        "input_reference",
        "",
    ),
    ("GET", "/v1/videos", {"params": {"limit": "lots"}}, 400, "limit", "integer"),
    ("GET", "/v1/videos", {"params": {"order": "sideways"}}, 400, "order", ""),
    ("GET", "/v1/videos", {"params": {"after": "job_nope"}}, 404, "after", "no video"),
    (
        "GET",
        "/v1/jobs/job_0123456789abcdef01234567/events",
        {"headers": {"Last-Event-ID": "x"}},
        404,
        None,
        "",
    ),
    ("GET", "/v1/artifacts", {"params": {"content_type": "text"}}, 400, "content_type", ""),
    ("GET", "/v1/artifacts/not-an-id", {}, 400, "artifact_id", "hex"),
    ("GET", "/v1/videos/job_0123456789abcdef01234567/content", {}, 404, None, ""),
    ("DELETE", "/v1/models", {}, 405, None, "not allowed"),
    ("GET", "/v2/nothing", {}, 404, None, "No route"),
]


@pytest.fixture(scope="module")
def fake_server():
    from abstractvision.server import create_app, serve_in_thread

    with serve_in_thread(create_app(FakeBackend(), max_output_pixels=1024 * 1024)) as server:
        yield server


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "param", "text"), JSON_CASES)
def test_malformed_requests_get_a_useful_4xx(fake_server, method, path, kwargs, status, param, text):
    import httpx

    with httpx.Client(base_url=fake_server.url, timeout=30) as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert text in error["message"], error


def test_multipart_edge_cases(fake_server):
    import httpx

    with httpx.Client(base_url=fake_server.url, timeout=30) as c:
        no_image = c.post(
            "/v1/images/edits", data={"prompt": "x"}, files={"mask": ("m.png", png(), "image/png")}
        )
        assert no_image.status_code == 400 and no_image.json()["error"]["param"] == "image"
        garbage = c.post(
            "/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", b"garbage", "image/png")}
        )
        assert garbage.status_code == 400 and "not a readable image" in garbage.json()["error"]["message"]
        empty = c.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", b"", "image/png")})
        assert empty.status_code == 400
        mismatch = c.post(
            "/v1/images/edits",
            data={"prompt": "x"},
            files={"image": ("a.png", png(32, 32), "image/png"), "mask": ("m.png", png(16, 16), "image/png")},
        )
        assert mismatch.status_code == 400 and "same size" in mismatch.json()["error"]["message"]
        bad_n = c.post(
            "/v1/images/edits",
            data={"prompt": "x", "n": "two"},
            files={"image": ("a.png", png(), "image/png")},
        )
        assert bad_n.status_code == 400 and bad_n.json()["error"]["param"] == "n"
        twice = c.post(
            "/v1/images/edits",
            data={"prompt": "x"},
            files=[
                ("image", ("a.png", png(), "image/png")),
                ("mask", ("m.png", png(), "image/png")),
                ("mask", ("m.png", png(), "image/png")),
            ],
        )
        assert twice.status_code == 400 and "more than once" in twice.json()["error"]["message"]
        text_as_file = c.post("/v1/images/edits", data={"prompt": "x", "image": "/etc/passwd"})
        assert text_as_file.status_code == 400 and "uploaded file" in text_as_file.json()["error"]["message"]
        broken = c.post(
            "/v1/images/edits",
            content=b'--xyz\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nunterminated',
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert 400 <= broken.status_code < 500
        unknown_field = c.post(
            "/v1/images/edits",
            data={"prompt": "x", "complexity": "high"},  # an OpenAI field this server does not take
            files={"image": ("a.png", png(), "image/png")},
        )
        assert unknown_field.status_code == 400 and unknown_field.json()["error"]["param"] == "complexity"


def test_unsupported_task_for_the_model_is_a_400():
    import httpx

    from abstractvision.server import create_app, serve_in_thread
    from fakes import TextOnlyBackend

    with serve_in_thread(create_app(TextOnlyBackend())) as server, httpx.Client(base_url=server.url) as c:
        r = c.post("/v1/videos", json={"prompt": "waves"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_task"
        assert "text_to_image" in r.json()["error"]["message"]
        r = c.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", png(), "image/png")})
        assert r.status_code == 400


def test_random_json_bodies_never_cause_a_500(fake_server):
    """A small fuzz: random JSON values for every field of every JSON route."""
    import random

    import httpx

    rng = random.Random(1234)
    values = [
        None,
        True,
        -1,
        0,
        1,
        2**70,
        1.5,
        -0.0,
        "",
        " ",
        "x" * 300,
        "\u0000",
        "data:",
        [],
        [1],
        {},
        {"$artifact": "0" * 64},
    ]
    fields = [
        "prompt",
        "n",
        "size",
        "seed",
        "steps",
        "width",
        "height",
        "guidance_scale",
        "negative_prompt",
        "response_format",
        "model",
        "task",
        "image",
        "mask",
        "strength",
        "angles",
        "num_frames",
        "fps",
        "seconds",
        "extra",
        "input_reference",
    ]
    routes = ["/v1/images/generations", "/v1/jobs", "/v1/videos"]
    with httpx.Client(base_url=fake_server.url, timeout=30) as c:
        for _ in range(80):
            body = {
                "prompt": "ok",
                "task": rng.choice(["text_to_image", "image_to_image", "text_to_video", "oops"]),
            }
            for name in rng.sample(fields, rng.randint(1, 4)):
                body[name] = rng.choice(values)
            r = c.post(
                rng.choice(routes), content=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            assert r.status_code < 500, (body, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["message"], body
