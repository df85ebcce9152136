"""Files served by our server: same seed => same bytes (b64_json and url), the operator's
embed_metadata policy, and output_format/output_compression on the image routes and the job API.

Real engines (tiny Stable Diffusion on Diffusers, tiny Flux on stable-diffusion.cpp) behind a
real uvicorn server on loopback; the fake backend where only the HTTP layer is under test.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from embedded import open_image, parse_infotext, user_comment, xmp_provenance

pytestmark = pytest.mark.server

SD_BODY = {"model": "tiny-sd", "size": "32x32", "steps": 2}
FLUX_BODY = {"model": "tiny-flux", "size": "64x64", "steps": 2}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server on loopback with embed_metadata="full", serving tiny SD and tiny Flux (sd.cpp)."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("stable_diffusion_cpp")
    from abstractvision.backends import (
        HuggingFaceDiffusersBackendConfig,
        HuggingFaceDiffusersVisionBackend,
        StableDiffusionCppBackendConfig,
        StableDiffusionCppVisionBackend,
    )
    from abstractvision.server import create_app, serve_in_thread
    from abstractvision.testing.tiny_diffusers import build_tiny_sd
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    root = tmp_path_factory.mktemp("server-repro")
    flux = build_tiny_flux_sdcpp(root / "flux", gguf=False)
    backends = {
        "tiny-sd": HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id=build_tiny_sd(root / "tiny-sd"), device="cpu")
        ),
        "tiny-flux": StableDiffusionCppVisionBackend(
            StableDiffusionCppBackendConfig(
                diffusion_model=flux.diffusion_model, taesd=flux.taesd, clip_l=flux.clip_l, n_threads=1
            )
        ),
    }
    try:
        with serve_in_thread(create_app(backends, embed_metadata="full")) as server:
            yield server
    finally:
        for backend in backends.values():
            backend.close()


def _generate(c: httpx.Client, body: dict[str, Any]) -> bytes:
    r = c.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    if "b64_json" in item:
        return base64.b64decode(item["b64_json"])
    got = c.get(item["url"])
    assert got.status_code == 200
    return got.content


@pytest.mark.diffusers
@pytest.mark.sdcpp
@pytest.mark.parametrize("body", [SD_BODY, FLUX_BODY], ids=["diffusers-sd", "sdcpp-flux"])
def test_same_seed_same_bytes_as_b64_and_as_url(engines, body) -> None:
    with httpx.Client(base_url=engines.url, timeout=300) as c:
        b64_first = _generate(c, {**body, "prompt": "a lighthouse", "seed": 7})
        b64_again = _generate(c, {**body, "prompt": "a lighthouse", "seed": 7})
        url_body = {**body, "prompt": "a lighthouse", "seed": 7, "response_format": "url"}
        urls = [c.post("/v1/images/generations", json=url_body).json()["data"][0]["url"] for _ in range(2)]
        assert urls[0] == urls[1]  # identical bytes: one content address
        url_bytes = c.get(urls[0]).content
        other = _generate(c, {**body, "prompt": "a lighthouse", "seed": 8})
    assert b64_first == b64_again == url_bytes
    assert other != b64_first
    # the operator's policy ("full") is in the file; volatile facts are not
    text = open_image(b64_first).text
    _, _, fields = parse_infotext(text["parameters"])
    assert fields["Seed"] == "7" and fields["Model"] == body["model"]
    embedded = json.loads(text["abstractvision"])
    assert embedded["model"] == body["model"] and "created_at" not in embedded and "timings" not in embedded


@pytest.mark.diffusers
@pytest.mark.sdcpp
@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_format_on_the_images_route(engines, fmt, pil) -> None:
    body = {**SD_BODY, "prompt": "a boat", "seed": 1, "output_format": fmt, "output_compression": 80}
    with httpx.Client(base_url=engines.url, timeout=300) as c:
        r = c.post("/v1/images/generations", json=body)
        again = c.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["output_format"] == fmt and doc["size"] == "32x32"
    data = base64.b64decode(doc["data"][0]["b64_json"])
    assert data == base64.b64decode(again.json()["data"][0]["b64_json"])
    img = open_image(data)
    assert img.format == pil and img.size == (32, 32)
    prompt, _, fields = parse_infotext(user_comment(img) or "")
    assert prompt == "a boat" and fields["Seed"] == "1"
    assert xmp_provenance(img)["encoding"] == {
        "format": fmt,
        "compression": 80,
        "converted_from": "image/png",
    }


def _wait(c: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_job_api_takes_output_format_and_compression(serve) -> None:
    server = serve()  # the fake backend: only the HTTP layer is under test here
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(
            "/v1/jobs",
            json={
                "task": "text_to_image",
                "prompt": "x",
                "seed": 3,
                "output_format": "webp",
                "output_compression": 70,
            },
        )
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert job["status"] == "completed", job
        (result,) = job["results"]
        assert result["content_type"] == "image/webp"
        assert result["metadata"]["encoding"]["compression"] == 70
        served = c.get(result["url"])
        assert served.headers["content-type"] == "image/webp" and open_image(served.content).format == "WEBP"
        assert open_image(served.content).info.get("exif") is None  # the default policy: no metadata

        upscale = c.post(
            "/v1/jobs",
            json={"task": "image_upscale", "image": _data_url(), "scale": 2, "output_format": "jpeg"},
        )
        assert upscale.status_code == 202, upscale.text
        assert _wait(c, upscale.json()["id"])["results"][0]["content_type"] == "image/jpeg"


def _data_url() -> str:
    from fakes import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(8, 8)).decode()


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/images/generations", {"prompt": "x", "output_compression": 50}, "output_compression"),
        (
            "/v1/images/generations",
            {"prompt": "x", "output_format": "png", "output_compression": 50},
            "output_compression",
        ),
        ("/v1/images/generations", {"prompt": "x", "output_format": "gif"}, "output_format"),
        (
            "/v1/images/generations",
            {"prompt": "x", "output_format": "jpeg", "output_compression": 101},
            "output_compression",
        ),
        ("/v1/jobs", {"task": "text_to_video", "prompt": "x", "output_format": "png"}, "output_format"),
        ("/v1/images/generations", {"prompt": "x", "embed_metadata": "full"}, "embed_metadata"),
    ],
)
def test_bad_output_options_are_400_before_queueing(serve, route, body, param) -> None:
    server = serve()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(route, json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
        assert c.get("/v1/jobs").json()["data"] == []


def test_embed_metadata_is_the_operators_choice(serve) -> None:
    plain = serve()
    chatty = serve(embed_metadata="parameters")
    body = {"prompt": "a secret prompt", "seed": 1}
    with httpx.Client(base_url=plain.url, timeout=30) as c:
        assert open_image(_generate(c, body)).text == {}
    with httpx.Client(base_url=chatty.url, timeout=30) as c:
        text = open_image(_generate(c, body)).text
    assert set(text) == {"parameters"} and text["parameters"].startswith("a secret prompt\n")
    with pytest.raises(Exception, match="embed_metadata"):
        serve(embed_metadata="everything")


def test_openai_sdk_asks_for_webp(serve) -> None:
    openai = pytest.importorskip("openai")
    server = serve()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)
    try:
        result = client.images.generate(prompt="x", output_format="webp", output_compression=50)
    finally:
        client.close()
    assert result.output_format == "webp"
    assert open_image(base64.b64decode(result.data[0].b64_json)).format == "WEBP"
