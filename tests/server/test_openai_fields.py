"""OpenAI request fields on the server: honoured, mapped to parameters, or recorded as ignored.

The fake backend runs behind managers with real registry entries (step presets, frame rules);
the published OpenAPI schema is checked against what the server enforces.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from server_helpers import png

from abstractvision import VisionManager
from fakes import FakeBackend, VideoRuleBackend

pytestmark = pytest.mark.server

SD15 = "runwayml/stable-diffusion-v1-5"
SD_TURBO = "stabilityai/sd-turbo"
WAN = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
COGVIDEOX = "THUDM/CogVideoX-2b"


def finished_job(c: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def models(serve, client):
    """``sd`` (SD 1.5 entry), ``turbo`` (SD-Turbo: explicit presets), ``plain`` (no registry entry),
    ``wan`` / ``cog`` (registry video rules), ``wan-folder`` (the backend's declared rule only)."""
    backends = {name: FakeBackend() for name in ("sd", "turbo", "plain", "wan", "cog")}
    backends["wan-folder"] = VideoRuleBackend()
    registry = {"sd": SD15, "turbo": SD_TURBO, "wan": WAN, "cog": COGVIDEOX}
    target = {name: VisionManager(backend=b, model_id=registry.get(name)) for name, b in backends.items()}
    c = client(serve(target))
    return c, backends


def image(c: httpx.Client, **body: Any) -> httpx.Response:
    return c.post("/v1/images/generations", json={"prompt": "a lighthouse", "size": "64x64", **body})


@pytest.mark.parametrize(
    ("model", "quality", "steps"),
    [
        ("sd", "low", 13),  # the rule: ceil(50 / 4)
        ("sd", "medium", 25),
        ("sd", "high", 50),
        ("sd", "standard", 25),  # DALL-E 3's names
        ("sd", "hd", 50),
        ("turbo", "low", 1),  # the registry's explicit presets
        ("turbo", "high", 4),
    ],
)
def test_quality_maps_to_the_models_step_presets(models, model, quality, steps):
    c, backends = models
    r = image(c, model=model, quality=quality)
    assert r.status_code == 200, r.text
    assert backends[model].calls[-1][1].steps == steps
    assert r.json()["quality"] == {"standard": "medium", "hd": "high"}.get(quality, quality)
    job = finished_job(c, r.headers["X-Job-Id"])
    meta = job["results"][0]["metadata"]
    assert meta["parameters"]["steps"] == steps and "ignored_parameters" not in meta
    assert job["params"]["quality"] in ("low", "medium", "high")


def test_quality_auto_keeps_the_engine_default_and_explicit_steps_win(models):
    c, backends = models
    assert image(c, model="sd", quality="auto").status_code == 200
    assert backends["sd"].calls[-1][1].steps is None
    r = image(c, model="sd", quality="low", steps=3)
    assert r.status_code == 200 and backends["sd"].calls[-1][1].steps == 3
    assert "quality" not in r.json()
    ignored = finished_job(c, r.headers["X-Job-Id"])["results"][0]["metadata"]["ignored_parameters"]
    assert ignored == {"quality": "'steps'=3 was given; it decides the quality"}


def test_without_presets_quality_is_recorded_as_ignored(models):
    c, backends = models
    r = image(c, model="plain", quality="high")
    assert r.status_code == 200 and backends["plain"].calls[-1][1].steps is None
    assert "quality" not in r.json()
    ignored = finished_job(c, r.headers["X-Job-Id"])["results"][0]["metadata"]["ignored_parameters"]
    assert set(ignored) == {"quality"} and "registry id" in ignored["quality"]


def test_style_user_moderation_are_accepted_and_recorded_as_ignored(models):
    c, _ = models
    r = image(c, model="sd", style="vivid", user="user-42", moderation="low", safety_identifier="h(user)")
    assert r.status_code == 200, r.text
    meta = finished_job(c, r.headers["X-Job-Id"])["results"][0]["metadata"]
    assert set(meta["ignored_parameters"]) == {"style", "user", "moderation", "safety_identifier"}
    assert "prompt" in meta["ignored_parameters"]["style"]
    assert "user" not in meta["parameters"] and "style" not in meta["parameters"]
    edit = c.post(
        "/v1/images/edits",
        data={"prompt": "x", "model": "sd", "input_fidelity": "high", "style": "natural"},
        files={"image": ("a.png", png(64, 64), "image/png")},
    )
    assert edit.status_code == 200, edit.text
    ignored = finished_job(c, edit.headers["X-Job-Id"])["results"][0]["metadata"]["ignored_parameters"]
    assert set(ignored) == {"input_fidelity", "style"}


def test_background_opaque_is_honoured_and_transparent_refused(models):
    c, backends = models
    ok = image(c, model="sd", background="opaque")
    assert ok.status_code == 200 and ok.json()["background"] == "opaque"
    assert image(c, model="sd", background="auto").status_code == 200
    calls = len(backends["sd"].calls)
    refused = image(c, model="sd", background="transparent", output_format="png")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "background" and error["code"] == "unsupported_background"
    assert "opaque" in error["message"] and len(backends["sd"].calls) == calls  # nothing ran


def test_unknown_values_name_the_field(models):
    c, _ = models
    edit = c.post(
        "/v1/images/edits",
        data={"prompt": "x", "stream": "maybe"},
        files={"image": ("a.png", png(64, 64), "image/png")},
    )
    assert edit.status_code == 400 and edit.json()["error"]["param"] == "stream"
    for field, value in (
        ("quality", "ultra"),
        ("background", "green"),
        ("style", "moody"),
        ("moderation", "off"),
        ("stream", "yes"),
    ):
        bad = image(c, **{field: value})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == field, bad.text


@pytest.mark.parametrize(("fmt", "magic"), [("jpeg", b"\xff\xd8\xff"), ("webp", b"RIFF")])
def test_output_format_is_real_encoding(models, fmt, magic):
    import base64

    c, _ = models
    r = image(c, model="sd", output_format=fmt, output_compression=60)
    assert r.status_code == 200 and r.json()["output_format"] == fmt
    assert base64.b64decode(r.json()["data"][0]["b64_json"]).startswith(magic)


def video(c: httpx.Client, **body: Any) -> httpx.Response:
    return c.post("/v1/videos", json={"prompt": "waves", **body})


def wait_video(c: httpx.Client, video_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        view = c.get(f"/v1/videos/{video_id}").json()
        if view["status"] in ("completed", "failed"):
            return view
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("model", "seconds", "frames", "fps"),
    [
        ("wan", "4", 65, 16),  # 64 frames at Wan's 16 fps -> the nearest 4k+1
        ("wan", "1", 17, 16),
        ("wan-folder", "4", 65, 16),  # the backend's declared rule, no registry entry
        ("cog", "2", 17, 8),  # 16 at CogVideoX's 8 fps -> 17
        ("cog", "6", 49, 8),  # 48 -> 49, the model's maximum
        ("plain", "2", 16, 8),  # no rule at all: seconds x 8 fps
    ],
)
def test_seconds_become_a_frame_count_the_model_accepts(models, model, seconds, frames, fps):
    c, backends = models
    r = video(c, model=model, seconds=seconds)
    assert r.status_code == 200, r.text
    assert r.json()["seconds"] == seconds
    view = wait_video(c, r.json()["id"])
    assert view["status"] == "completed", view
    request = backends[model].calls[-1][1]
    assert (request.num_frames, request.fps) == (frames, fps)


def test_a_video_the_model_cannot_make_is_a_400_at_submission(models):
    c, backends = models
    too_long = video(c, model="cog", seconds="8")  # 64 frames: CogVideoX-2b makes at most 49
    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert error["param"] == "seconds" and "at most 49 frames" in error["message"]
    bad_frames = video(c, model="wan", num_frames=32)
    assert bad_frames.status_code == 400 and bad_frames.json()["error"]["param"] == "num_frames"
    declared = video(c, model="wan-folder", num_frames=32)  # the backend's rule, checked while planning
    assert declared.status_code == 400 and "4k+1" in declared.json()["error"]["message"]
    assert "33" in declared.json()["error"]["message"]  # a valid count nearby
    size = video(c, model="wan-folder", seconds="1", size="24x16")
    assert size.status_code == 400 and size.json()["error"]["param"] == "width"
    assert not backends["cog"].calls and not backends["wan-folder"].calls  # no job ran
    explicit = video(c, model="wan", seconds="4", num_frames=9, fps=8)  # num_frames wins
    assert explicit.status_code == 200, explicit.text
    wait_video(c, explicit.json()["id"])
    assert (backends["wan"].calls[-1][1].num_frames, backends["wan"].calls[-1][1].fps) == (9, 8)
    job = finished_job(c, explicit.json()["id"])
    assert set(job["results"][0]["metadata"]["ignored_parameters"]) == {"seconds"}


# -- the published schema is what the server enforces ----------------------------------------------

IMAGE_BODIES = [
    {"prompt": "a", "quality": "low"},
    {"prompt": "a", "quality": "xhigh"},
    {"prompt": "a", "background": "opaque", "style": "natural", "moderation": "auto", "user": "u"},
    {"prompt": "a", "background": "nope"},
    {"prompt": "a", "output_format": "webp", "output_compression": 50},
    {"prompt": "a", "output_format": "gif"},
    {"prompt": "a", "stream": False},
    {"prompt": "a", "stream": True},
    {"prompt": "a", "safety_identifier": "x" * 513},
    {"prompt": "a", "input_fidelity": "high"},  # an edit-only field
]


@pytest.mark.parametrize("body", IMAGE_BODIES)
def test_published_image_schema_agrees_with_the_server(serve, client, body):
    jsonschema = pytest.importorskip("jsonschema")
    c = client(serve(FakeBackend()))
    doc = c.get("/openapi.json").json()
    schema = {"$ref": "#/components/schemas/ImageGenerationRequest", "components": doc["components"]}
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    r = c.post("/v1/images/generations", json=body)
    assert (r.status_code == 200) == valid, (valid, r.text)


def test_fields_pass_through_to_a_remote_that_takes_them(serve, client):
    """Server B serves an OpenAI-compatible backend pointed at server A: B passes quality and
    background on untouched, A maps or refuses them."""
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    backend_a = FakeBackend()
    server_a = serve({"sd": VisionManager(backend=backend_a, model_id=SD15)})
    remote = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url=server_a.url + "/v1", model_id="sd", profile="generic")
    )
    try:
        c = client(serve({"proxy": remote}))
        r = c.post("/v1/images/generations", json={"prompt": "x", "quality": "low", "size": "64x64"})
        assert r.status_code == 200, r.text
        assert backend_a.calls[-1][1].steps == 13  # A mapped the level B passed on
        refused = c.post("/v1/images/generations", json={"prompt": "x", "background": "transparent"})
        assert refused.status_code == 400 and "opaque" in refused.json()["error"]["message"]
    finally:
        remote.close()
