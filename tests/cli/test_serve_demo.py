"""`abstractvision serve --demo`: a real server process on two tiny noise models, driven by the
official OpenAI SDK (an image and a video), then stopped with Ctrl-C: the models' folder is gone."""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections.abc import Iterator

import pytest
from cli_helpers import DemoServer, start_demo_server
from cli_helpers import stop_demo_server as stop

pytestmark = [pytest.mark.server, pytest.mark.diffusers]

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def demo_server() -> Iterator[DemoServer]:
    server = start_demo_server("--log-level", "warning")
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            stop(server)


def test_the_demo_models_are_labelled_as_noise(demo_server: DemoServer) -> None:
    sdk = openai.OpenAI(base_url=demo_server.url + "/v1", api_key="unused-on-localhost", max_retries=0)
    models = {m.id: m.model_dump() for m in sdk.models.list()}
    assert set(models) == {"tiny-sd-noise", "tiny-wan-noise"}
    assert "noise" in models["tiny-sd-noise"]["description"]
    assert "noise" in models["tiny-wan-noise"]["description"]
    assert models["tiny-sd-noise"]["tasks"] == ["text_to_image", "image_to_image"]
    assert models["tiny-wan-noise"]["tasks"] == ["text_to_video"]
    # the temporary folder's absolute path is the operator's business, not the client's
    assert "abstractvision-serve-demo-" not in httpx.get(demo_server.url + "/v1/models").text


def test_an_image_with_the_openai_sdk(demo_server: DemoServer) -> None:
    from PIL import Image

    sdk = openai.OpenAI(base_url=demo_server.url + "/v1", api_key="unused-on-localhost", max_retries=0)
    result = sdk.images.generate(
        model="tiny-sd-noise", prompt="a lighthouse", size="64x64", extra_body={"steps": 2, "seed": 7}
    )
    def pixels(b64: str | None) -> bytes:
        with Image.open(io.BytesIO(base64.b64decode(b64 or ""))) as img:
            assert (img.format, img.size) == ("PNG", (64, 64))
            return img.tobytes()

    first = pixels(result.data[0].b64_json)
    again = sdk.images.generate(
        model="tiny-sd-noise", prompt="a lighthouse", size="64x64", extra_body={"steps": 2, "seed": 7}
    )
    assert pixels(again.data[0].b64_json) == first  # same seed, same noise (timings differ in metadata)
    # no size, no steps: the demo model's request defaults (64x64, 4 steps) keep it valid and fast
    plain = sdk.images.generate(model="tiny-sd-noise", prompt="a lighthouse")
    with Image.open(io.BytesIO(base64.b64decode(plain.data[0].b64_json or ""))) as img:
        assert img.size == (64, 64)


def test_a_video_with_the_openai_sdk(demo_server: DemoServer, tmp_path) -> None:
    sdk = openai.OpenAI(base_url=demo_server.url + "/v1", api_key="unused-on-localhost", max_retries=0)
    for extra in ({"num_frames": 9, "fps": 8, "steps": 2, "seed": 1}, {}):  # {}: the model's defaults
        video = sdk.videos.create(model="tiny-wan-noise", prompt="waves", size="32x32", extra_body=extra)
        deadline = time.monotonic() + 120
        while video.status not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, video
            time.sleep(0.2)
            video = sdk.videos.retrieve(video.id)
        assert video.status == "completed", video.error
        out = tmp_path / f"waves-{len(extra)}.mp4"
        sdk.videos.download_content(video.id).write_to_file(out)
        data = out.read_bytes()
        assert data[4:8] == b"ftyp", data[:16]  # an MP4 container
        import av

        with av.open(str(out)) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
        assert len(frames) == 9 and (frames[0].width, frames[0].height) == (32, 32)


def test_ctrl_c_stops_it_and_deletes_the_models_folder() -> None:
    server = start_demo_server()
    err_start = ""
    try:
        assert httpx.get(server.url + "/").status_code == 200  # the playground page
        # load both models once, so their loading shows (or not) in the server log
        image = httpx.post(server.url + "/v1/images/generations", json={"model": "tiny-sd-noise", "prompt": "x"}, timeout=120)
        assert image.status_code == 200, image.text
        job = httpx.post(server.url + "/v1/jobs", json={"model": "tiny-wan-noise", "task": "text_to_video", "prompt": "x"})
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.url}/v1/jobs/{job.json()['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        code, err_start = stop(server)
    assert code == 0, err_start
    found = re.search(r"in (\S*abstractvision-serve-demo-\S+) \(deleted at exit\)", err_start)
    assert found, err_start
    assert not os.path.exists(found.group(1))
    line = next(x for x in err_start.splitlines() if x.startswith("abstractvision serve: serving"))
    assert "tiny-sd-noise (diffusers backend; random-weight demo model: its images are noise" in line
    assert "tiny-wan-noise (diffusers backend; random-weight demo model: its videos are noise" in line
    assert "requires torchvision" not in err_start  # the transformers notice is dropped (issue 20, item 7)
    # the tiny models' load bars and library warnings stay out of the demo's log
    assert "it/s" not in err_start and "Loading pipeline components" not in err_start
    assert "Expected types for text_encoder" not in err_start
    assert "Traceback" not in err_start


def test_demo_refuses_models_of_its_own(cli) -> None:
    result = cli("serve", "--demo", "--backend", "diffusers", "--model", "/models/sd")
    assert result.code == 2
    assert "--demo serves its own two tiny models; drop --model, --backend" in result.err
