"""The official ``openai`` SDK against the server on loopback, serving tiny random-weight Diffusers models."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from server_helpers import TINY_KEY, WAN, image_size, png

pytestmark = [pytest.mark.server, pytest.mark.diffusers]

openai = pytest.importorskip("openai")
IMG = {"steps": 2}


@pytest.fixture(scope="module")
def sdk(tiny_server):
    """The official client, with the server's API key (without it: 401, see test_security)."""
    client = openai.OpenAI(base_url=tiny_server.url + "/v1", api_key=TINY_KEY, max_retries=0, timeout=120)
    yield client
    client.close()


def pixels(data: bytes) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


def close(a: bytes, b: bytes) -> bool:
    """Batched and single engine calls may differ in the last bit of a few pixels."""
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 2


def test_models_list(sdk):
    models = {m.id: m for m in sdk.models.list()}
    assert {"tiny-sd", "tiny-wan"} <= set(models)
    assert models["tiny-sd"].object == "model"
    assert "text_to_image" in models["tiny-sd"].model_extra["capabilities"]
    assert "text_to_video" in models["tiny-wan"].model_extra["capabilities"]
    assert sdk.models.retrieve("tiny-sd").id == "tiny-sd"


def test_images_generate_b64_json_is_deterministic_per_seed(sdk):
    first = sdk.images.generate(
        model="tiny-sd", prompt="a lighthouse", size="64x64", n=2, extra_body={**IMG, "seed": 5}
    )
    assert len(first.data) == 2 and first.size == "64x64" and first.output_format == "png"
    a, b = (base64.b64decode(d.b64_json) for d in first.data)
    assert image_size(a) == (64, 64) and pixels(a) != pixels(b)
    alone = [
        sdk.images.generate(
            model="tiny-sd", prompt="a lighthouse", size="64x64", extra_body={**IMG, "seed": seed}
        )
        for seed in (5, 5, 6)
    ]
    first_alone, again, second_alone = (pixels(base64.b64decode(r.data[0].b64_json)) for r in alone)
    assert first_alone == again  # same seed, same call shape: identical
    assert close(first_alone, pixels(a)) and close(second_alone, pixels(b))  # n=2 used seeds 5 and 6


def test_images_generate_url_is_served_from_the_artifact_store(sdk, tiny_server):
    result = sdk.images.generate(
        prompt="a red boat",
        response_format="url",
        extra_body={**IMG, "negative_prompt": "blurry", "guidance_scale": 3.0},
    )
    url = result.data[0].url
    assert url.startswith(tiny_server.url + "/v1/artifacts/")
    r = httpx.get(url, headers={"Authorization": f"Bearer {TINY_KEY}"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert image_size(r.content) == (64, 64)
    from abstractvision._media import read_png_text

    # the server's default embed_metadata is the library's, "none": the file carries no text
    # (tests/server/test_reproducible_server.py checks "parameters" and "full" through the server)
    assert read_png_text(r.content) == {}


def test_images_edit_with_image_and_mask(sdk):
    from PIL import Image

    src = png(64, 64, (200, 100, 50))
    mask_img = Image.new("L", (64, 64), 0)
    mask_img.paste(255, (16, 16, 48, 48))
    buf = io.BytesIO()
    mask_img.save(buf, format="PNG")
    edited = sdk.images.edit(
        model="tiny-sd",
        image=("src.png", src, "image/png"),
        mask=("mask.png", buf.getvalue(), "image/png"),
        prompt="a blue square",
        extra_body={**IMG, "seed": 1, "strength": 0.8},
    )
    data = base64.b64decode(edited.data[0].b64_json)
    assert image_size(data) == (64, 64)
    plain = sdk.images.edit(
        model="tiny-sd", image=("src.png", src, "image/png"), prompt="a blue square", extra_body=IMG
    )
    assert image_size(base64.b64decode(plain.data[0].b64_json)) == (64, 64)


def test_video_job_protocol(sdk):
    video = sdk.videos.create(
        model="tiny-wan", prompt="waves on a beach", extra_body={**WAN, "num_frames": 5, "seed": 3, "fps": 8}
    )
    assert video.object == "video" and video.status in ("queued", "in_progress", "completed")
    deadline = time.monotonic() + 120
    while video.status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        video = sdk.videos.retrieve(video.id)
    assert video.status == "completed", video.error
    assert video.progress == 100 and video.size == "16x16" and video.seconds == "0.625"
    content = sdk.videos.download_content(video.id)
    data = content.read()
    assert data[4:8] == b"ftyp"  # an MP4
    listed = [v.id for v in sdk.videos.list()]
    assert video.id in listed
    deleted = sdk.videos.delete(video.id)
    assert deleted.deleted and deleted.id == video.id
    with pytest.raises(openai.APIStatusError) as info:
        sdk.videos.retrieve(video.id)
    assert info.value.status_code == 410


def test_video_content_before_completion_is_409_and_unknown_is_404(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve("job_0123456789abcdef01234567")
    video = sdk.videos.create(
        model="tiny-wan", prompt="slow clouds", extra_body={**WAN, "num_frames": 5, "steps": 40}
    )
    with pytest.raises(openai.ConflictError) as info:
        sdk.videos.download_content(video.id)
    assert info.value.body["code"] == "video_not_ready"
    sdk.videos.delete(video.id)  # cancels it


def test_sdk_errors_for_bad_requests(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="tiny-sd", prompt="x", size="64x64", n=0)
    assert info.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        sdk.images.generate(model="dall-e-3", prompt="x")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="tiny-wan", prompt="x")
    assert info.value.body["code"] == "unsupported_task"


# -- OpenAI fields a plain client sends (docs/server.md, "OpenAI fields") ---------------------------


@pytest.fixture(scope="module")
def plain_sdk(tiny_models):
    """tiny-sd served with the SD 1.5 registry entry (its step presets), tiny-wan without one
    (the frame rule its own VAE config declares) and with the operator's request defaults for
    the size the tiny model can make (its 832x480 pipeline default is beyond its 32-position
    rotary table); the client sends OpenAI fields only."""
    from abstractvision.config import BackendSettings
    from abstractvision.served_models import ServedModel
    from abstractvision.server import create_app, serve_in_thread

    def settings(name: str) -> BackendSettings:
        return BackendSettings(backend="diffusers", model=tiny_models[name], device="cpu")

    served = [
        ServedModel("tiny-sd", settings("tiny-sd"), registry_id="runwayml/stable-diffusion-v1-5"),
        ServedModel("tiny-wan", settings("tiny-wan"), request_defaults={"width": 16, "height": 16}),
    ]
    with serve_in_thread(create_app(served)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        yield client
        client.close()


def job_metadata(client, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/jobs/{job_id}", cast_to=httpx.Response).json()
        if job["status"] == "completed":
            return job["results"][0]["metadata"]
        assert job["status"] in ("queued", "in_progress") and time.monotonic() < deadline, job
        time.sleep(0.05)


def test_quality_and_style_from_the_openai_sdk(plain_sdk):
    raw = plain_sdk.images.with_raw_response.generate(
        model="tiny-sd", prompt="a lighthouse", size="64x64", quality="low", style="vivid", user="u-1"
    )
    result = raw.parse()
    assert result.quality == "low" and image_size(base64.b64decode(result.data[0].b64_json)) == (64, 64)
    meta = job_metadata(plain_sdk, raw.headers["x-job-id"])
    assert meta["parameters"]["steps"] == 13  # SD 1.5's 50 default steps / 4, rounded up
    assert set(meta["ignored_parameters"]) == {"style", "user"}
    high = plain_sdk.images.generate(model="tiny-sd", prompt="a lighthouse", size="64x64", quality="high")
    assert high.quality == "high"


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_format_from_the_openai_sdk(plain_sdk, fmt, pil_format):
    from PIL import Image

    result = plain_sdk.images.generate(
        model="tiny-sd", prompt="a lighthouse", size="64x64", output_format=fmt, output_compression=80
    )
    assert result.output_format == fmt
    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))) as img:
        assert img.format == pil_format and img.size == (64, 64)


def test_a_wan_video_from_seconds_alone(plain_sdk):
    """Only OpenAI's own fields: 4 seconds at Wan's 16 fps -> 65 frames (4k+1); the default 50 steps."""
    video = plain_sdk.videos.create(model="tiny-wan", prompt="waves on a beach", seconds="4")
    deadline = time.monotonic() + 240
    while video.status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        video = plain_sdk.videos.retrieve(video.id)
    assert video.status == "completed", video.error
    assert video.seconds == "4"
    data = plain_sdk.videos.download_content(video.id).read()
    assert data[4:8] == b"ftyp"
    meta = job_metadata(plain_sdk, video.id)
    parameters = meta["parameters"]
    assert (parameters["num_frames"], parameters["fps"], parameters["width"]) == (65, 16, 16)
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 65 and float(stream.average_rate) == 16.0
    with pytest.raises(openai.BadRequestError) as info:  # 4k+1 is checked at submission
        plain_sdk.videos.create(model="tiny-wan", prompt="x", size="20x16")  # type: ignore[arg-type]
    assert info.value.body["param"] == "width"


# -- live previews: OpenAI's image streaming (docs/previews.md) -------------------------------------


def test_stream_partial_images_with_the_openai_sdk(plain_sdk):
    from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent

    stream = plain_sdk.images.generate(
        model="tiny-sd", prompt="a lighthouse", size="64x64", quality="low", stream=True, partial_images=2
    )
    events = list(stream)
    assert [type(e) for e in events] == [
        ImageGenPartialImageEvent,
        ImageGenPartialImageEvent,
        ImageGenCompletedEvent,
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    assert image_size(base64.b64decode(events[0].b64_json)) == (64, 64)
    done = events[-1]
    assert done.quality == "low" and done.output_format == "png" and done.size == "64x64"
    assert image_size(base64.b64decode(done.b64_json)) == (64, 64)


def test_stream_an_edit_with_the_openai_sdk(plain_sdk):
    from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent

    events = list(
        plain_sdk.images.edit(
            model="tiny-sd",
            image=("src.png", png(64, 64, (200, 100, 50)), "image/png"),
            prompt="a blue square",
            stream=True,
            partial_images=1,
            extra_body={"steps": 4, "strength": 0.8},
        )
    )
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]
