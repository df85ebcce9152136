"""Server profiles against the loopback fake: what each sends, batch limits, auto detection.

The same behaviours against the real third-party server (stable-diffusion.cpp's sd-server)
are in tests/interop/test_sd_server.py.
"""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from openai_fake_server import Reply, png_bytes

from abstractvision import _media
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
from abstractvision.backends._openai.sdapi import parse_infotext
from abstractvision.config import create_backend, resolve_settings
from abstractvision.errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    ProviderBadRequestError,
    ProviderConnectionError,
    ProviderResponseError,
    ProviderServerError,
)
from conftest import FAST

BLOCK = re.compile(r"<sd_cpp_extra_args>(.*)</sd_cpp_extra_args>$")


def _extra_args(body: dict) -> dict:
    match = BLOCK.search(body["prompt"])
    assert match, body["prompt"]
    return json.loads(match.group(1))


def _mask_png() -> bytes:
    from PIL import Image

    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))  # repaint the left half
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


# -- sdcpp: sd-server's OpenAI routes ------------------------------------------------------


def test_sdcpp_sends_parameters_in_the_extra_args_block(runner, make_backend, server):
    vm = runner.manager(make_backend(profile="sdcpp", model_id="flux"))
    asset = vm.generate_image(
        "a lighthouse",
        width=64,
        height=48,
        steps=4,
        guidance_scale=2.5,
        seed=7,
        negative_prompt="blurry",
        extra={
            "sample_params": {"sample_method": "euler"},
            "clip_skip": 2,
            "quality": "high",
            "sampler": "x",
        },
    )
    [call] = server.calls("POST", "/images/generations")
    body = call.json()
    assert body["prompt"].startswith("a lighthouse<sd_cpp_extra_args>")
    assert _extra_args(body) == {
        "sample_params": {"sample_method": "euler", "sample_steps": 4, "guidance": {"txt_cfg": 2.5}},
        "clip_skip": 2,
        "negative_prompt": "blurry",
        "seed": 7,
    }
    assert {k: v for k, v in body.items() if k != "prompt"} == {"n": 1, "size": "64x48"}
    ignored = asset.metadata["ignored_parameters"]
    assert set(ignored) == {"quality", "sampler", "model"}
    assert "sd-server" in ignored["quality"] and "not sent" in ignored["quality"]
    assert asset.metadata["profile"] == "sdcpp"
    assert (asset.metadata["seed"], asset.metadata["seed_source"]) == (7, "requested")


def test_sdcpp_edit_sends_strength_and_a_mask_both_conventions_read(runner, make_backend, server):
    from PIL import Image

    vm = runner.manager(make_backend(profile="sdcpp"))
    vm.edit_image("x", png_bytes(), mask=_mask_png(), strength=0.6, seed=3)
    [call] = server.calls("POST", "/images/edits")
    fields, files = call.form()
    assert _extra_args({"prompt": fields["prompt"][0]}) == {"strength": 0.6, "seed": 3}
    mask = Image.open(io.BytesIO(next(f.data for f in files if f.name == "mask")))
    assert mask.convert("L").getpixel((1, 1)) == 255 and mask.convert("L").getpixel((6, 1)) == 0
    assert mask.convert("RGBA").getchannel("A").getpixel((1, 1)) == 0


def test_sdcpp_sends_a_lone_width_in_the_block(runner, make_backend, server):
    runner.manager(make_backend(profile="sdcpp")).generate_image("x", width=96)
    body = server.calls("POST", "/images/generations")[0].json()
    assert "size" not in body and _extra_args(body) == {"width": 96}


def test_sdcpp_refuses_a_prompt_that_already_holds_a_block(runner, make_backend, server):
    vm = runner.manager(make_backend(profile="sdcpp"))
    with pytest.raises(InvalidRequestError, match="already holds a <sd_cpp_extra_args> block"):
        vm.generate_image('x<sd_cpp_extra_args>{"seed": 1}</sd_cpp_extra_args>', seed=2)
    assert server.calls("POST", "/images/generations") == []


def test_sdcpp_splits_a_batch_of_9_at_its_limit_of_8(runner, make_backend, server):
    backend = make_backend(profile="sdcpp")
    assert backend.get_capabilities().max_batch == 8
    assets = runner.manager(backend).generate_image_batch("x", count=9, seed=7)
    assert len(assets) == 9 and [a.metadata["seed"] for a in assets] == list(range(7, 16))
    calls = [c.json() for c in server.calls("POST", "/images/generations")]
    assert [(c["n"], _extra_args(c)["seed"]) for c in calls] == [(8, 7), (1, 15)]
    assert all("warnings" not in a.metadata for a in assets)  # a known limit is no surprise


def test_a_direct_backend_batch_is_split_too(runner, make_backend, server):
    from abstractvision.types import ImageGenerationRequest

    backend = make_backend(profile="sdcpp")
    assets = runner.call(backend, "generate_image_batch", ImageGenerationRequest("x", n=9, seed=1))
    assert len(assets) == 9
    assert [c.json()["n"] for c in server.calls("POST", "/images/generations")] == [8, 1]


def test_sdcpp_has_no_video_route(runner, make_backend, server):
    backend = make_backend(profile="sdcpp")
    assert "text_to_video" not in backend.get_capabilities().supported_tasks
    with pytest.raises(CapabilityNotSupportedError, match="no video route"):
        runner.manager(backend).generate_video("waves")
    assert server.calls("POST", "/videos") == []


# -- a1111: /sdapi/v1 ---------------------------------------------------------------------


@pytest.fixture
def a1111(server):
    server.sdapi = True
    return server


def test_a1111_txt2img_sends_every_parameter_and_reports_the_echoed_seeds(runner, make_backend, a1111):
    vm = runner.manager(make_backend(base_url=a1111.origin, profile="a1111", model_id="tiny"))
    assets = vm.generate_image_batch(
        "a cat",
        count=2,
        seed=5,
        steps=3,
        guidance_scale=4.0,
        negative_prompt="dogs",
        width=64,
        height=32,
        extra={"sampler_name": "Euler", "output_format": "webp"},
    )
    [call] = a1111.calls("POST", "/sdapi/v1/txt2img")
    assert call.json() == {
        "prompt": "a cat",
        "batch_size": 2,
        "sampler_name": "Euler",
        "override_settings": {"sd_model_checkpoint": "tiny"},
        "negative_prompt": "dogs",
        "steps": 3,
        "cfg_scale": 4.0,
        "width": 64,
        "height": 32,
        "seed": 5,
    }
    assert [(a.metadata["seed"], a.metadata["seed_source"]) for a in assets] == [(5, "engine"), (6, "engine")]
    assert set(assets[0].metadata["ignored_parameters"]) == {"output_format"}


def test_a1111_unseeded_call_reports_the_seed_the_engine_chose(runner, make_backend, a1111):
    asset = runner.manager(make_backend(base_url=a1111.origin, profile="a1111")).generate_image("x")
    assert "seed" not in a1111.calls("POST", "/sdapi/v1/txt2img")[0].json()
    assert (asset.metadata["seed"], asset.metadata["seed_source"]) == (1234, "engine")


def test_a1111_img2img_sends_the_init_image_and_a_grey_mask(runner, make_backend, a1111):
    from PIL import Image

    vm = runner.manager(make_backend(base_url=a1111.origin, profile="a1111"))
    image = png_bytes(8, 8)
    vm.edit_image("x", image, mask=_mask_png(), strength=0.4, seed=1)
    body = a1111.calls("POST", "/sdapi/v1/img2img")[0].json()
    assert base64.b64decode(body["init_images"][0]) == image
    assert body["denoising_strength"] == 0.4 and body["inpainting_mask_invert"] == 0
    mask = Image.open(io.BytesIO(base64.b64decode(body["mask"])))
    assert "A" not in mask.getbands()  # A1111 reads an RGBA mask's alpha as opaque = inpaint
    assert mask.convert("L").getpixel((1, 1)) == 255 and mask.convert("L").getpixel((6, 1)) == 0
    with pytest.raises(InvalidRequestError, match="edits a single image"):
        vm.edit_image("x", image, reference_images=[image])


def test_a1111_batch_is_split_and_short_answers_are_completed(runner, make_backend, a1111):
    a1111.max_n = 3
    backend = make_backend(base_url=a1111.origin, profile="a1111")
    assets = runner.manager(backend).generate_image_batch("x", count=9, seed=10)
    assert [a.metadata["seed"] for a in assets] == list(range(10, 19))
    calls = [c.json() for c in a1111.calls("POST", "/sdapi/v1/txt2img")]
    # the manager splits 9 at the profile's 8; the backend completes each short answer
    assert [(c["batch_size"], c["seed"]) for c in calls] == [(8, 10), (5, 13), (2, 16), (1, 18)]
    assert "max_batch=3" in assets[0].metadata["warnings"][0]


def test_a1111_catalog_comes_from_sd_models(runner, make_backend, a1111):
    backend = make_backend(base_url=a1111.origin, profile="a1111")
    [model] = runner.call(backend, "list_provider_models", task="image_to_image")
    assert model.id == "tiny" and model.capabilities == ("text_to_image", "image_to_image")
    assert runner.call(backend, "list_provider_models", task="text_to_video") == []


def test_a1111_base_url_is_the_server_root():
    with pytest.raises(InvalidRequestError, match="server root"):
        OpenAICompatibleBackendConfig(base_url="http://127.0.0.1:7860/v1", profile="a1111")


# -- openai and generic -------------------------------------------------------------------


def test_openai_profile_reports_planned_seeds_as_not_sent(runner, make_backend, server):
    vm = runner.manager(make_backend(profile="openai", model_id="gpt-image-1"))
    assets = vm.generate_image_batch("x", count=2, extra={"quality": "low", "sampler": "x"})
    body = server.calls("POST", "/images/generations")[0].json()
    assert "seed" not in body and "sampler" not in body and body["quality"] == "low"
    for asset in assets:
        meta = asset.metadata
        assert meta["seed"] is None and meta["seed_source"] == "unknown"
        assert set(meta["ignored_parameters"]) == {"seed", "sampler"}
        assert "the OpenAI API does not take 'seed'" in meta["ignored_parameters"]["seed"]


def test_generic_lists_what_the_engine_reports_it_did_not_apply(runner, make_backend, server):
    """A server that ignores top-level fields but writes A1111 infotext into its PNGs (sd-server
    does): the generic profile notices and lists those parameters as ignored."""
    text = 'x\nSteps: 20, CFG scale: 7.000000, Seed: 42, Size: 8x8, Model: m, SDCPP: {"a": 1, "b": 2}'
    png = _media.embed_png_text(png_bytes(), {"parameters": text})
    server.script(
        "POST", "/images/generations", Reply(json={"data": [{"b64_json": base64.b64encode(png).decode()}]})
    )
    asset = runner.manager(make_backend()).generate_image(
        "x", seed=7, steps=4, guidance_scale=7.0, negative_prompt="blurry"
    )
    meta = asset.metadata
    assert (meta["seed"], meta["seed_source"]) == (42, "engine")
    assert set(meta["ignored_parameters"]) == {"seed", "steps", "negative_prompt"}  # CFG 7 matched
    assert "sent seed=7, but the server ran 42" in meta["ignored_parameters"]["seed"]


def test_infotext_parsing():
    text = "a cat, red\nNegative prompt: dogs\nSteps: 2, Sampler: Euler, CFG scale: 1.5, Seed: 7, Size: 64x64"
    assert parse_infotext(text) == {
        "negative_prompt": "dogs",
        "steps": 2,
        "guidance_scale": 1.5,
        "seed": 7,
        "size": "64x64",
    }
    assert parse_infotext("no settings line") == {}


# -- error bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "prompt required"}, "HTTP 400: prompt required"),
        (
            500,
            {"error": "server_error", "message": "parse error at line 1"},
            "server_error: parse error at line 1",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "steps"], "msg": "not an integer"}]},
            "body.steps: not an integer",
        ),
        (400, {"detail": "Sampler not found"}, "HTTP 400: Sampler not found"),
        (
            500,
            {"error": "OutOfMemoryError", "detail": "", "errors": "CUDA out of memory"},
            "OutOfMemoryError: CUDA out of memory",
        ),
        (400, {"error": {"message": "Invalid size", "code": "invalid_size"}}, "Invalid size (invalid_size)"),
        (400, "plain words from a proxy", "HTTP 400: plain words from a proxy"),
        (502, "<html><head><title>502</title></head><body><h1>Bad Gateway</h1></body></html>", "Bad Gateway"),
    ],
)
def test_every_common_error_shape_keeps_its_message(runner, make_backend, server, status, body, expected):
    reply = Reply(status, json=body) if not isinstance(body, str) else Reply(status, body=body.encode())
    server.script("POST", "/images/generations", *[reply] * 3)
    error = ProviderServerError if status >= 500 else ProviderBadRequestError
    with pytest.raises(error) as info:
        runner.manager(make_backend(max_retries=0)).generate_image("x")
    assert expected in str(info.value)


# -- auto detection -----------------------------------------------------------------------


def test_auto_detects_sd_server_from_its_models_entry(runner, make_backend, server):
    server.models = [{"id": "sd-cpp-local", "object": "model", "owned_by": "local"}]
    backend = make_backend(profile="auto")
    assert backend.profile is None and backend.describe()["profile"] == "auto (not detected yet)"
    runner.manager(backend).generate_image("x", seed=3)
    assert backend.profile == "sdcpp"
    assert _extra_args(server.calls("POST", "/images/generations")[0].json()) == {"seed": 3}
    runner.manager(backend).generate_image("x")
    assert len(server.calls("GET", "/models")) == 1  # probed once


def test_auto_detects_the_a1111_api_at_the_server_root(runner, make_backend, a1111):
    a1111.models = []
    backend = make_backend(base_url=a1111.origin, profile="auto")
    assert runner.call(backend, "detect_profile") == "a1111"
    assert [c.path for c in a1111.requests] == ["/models", "/sdapi/v1/options"]


def test_auto_falls_back_to_generic_for_a_plain_catalog(runner, make_backend, server):
    assert runner.call(make_backend(profile="auto"), "detect_profile") == "generic"


def test_auto_fails_loudly_when_nothing_answers(runner, make_backend, server):
    server.script("GET", "/models", Reply(404, json={"detail": "Not Found"}))
    with pytest.raises(
        ProviderResponseError, match=r"could not identify.*GET /models: HTTP 404.*Set profile"
    ):
        runner.call(make_backend(profile="auto"), "detect_profile")


def test_auto_probes_time_out_quickly(runner, make_backend, server):
    server.script("GET", "/models", Reply(json={"data": []}, delay_s=1.0))
    with pytest.raises(ProviderResponseError, match=r"no answer within 0\.2 s"):
        runner.call(make_backend(profile="auto", probe_timeout_s=0.2), "detect_profile")


def test_auto_against_a_closed_port_is_a_connection_error(runner):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAICompatibleVisionBackend(base_url=f"http://127.0.0.1:{port}/v1", profile="auto", **FAST)
    try:
        with pytest.raises(ProviderConnectionError):
            runner.call(backend, "detect_profile")
    finally:
        backend.close()


def test_the_openai_api_is_known_without_a_probe():
    backend = OpenAICompatibleVisionBackend(base_url="https://api.openai.com/v1", api_key="k", profile="auto")
    assert backend.detect_profile() == "openai"  # no I/O: nothing listens there in tests
    backend.close()


# -- configuration ------------------------------------------------------------------------


def test_profile_setting_is_validated_and_resolved():
    with pytest.raises(InvalidRequestError, match="profile must be one of"):
        OpenAICompatibleBackendConfig(profile="forge")
    with pytest.raises(InvalidRequestError, match="contradicts profile='sdcpp'"):
        OpenAICompatibleVisionBackend(base_url="http://x/v1", profile="sdcpp", send_diffusion_params=False)
    assert (
        OpenAICompatibleVisionBackend(base_url="http://x/v1", send_diffusion_params=False).profile == "openai"
    )
    assert OpenAICompatibleVisionBackend(base_url="http://x/v1", profile="SDCPP").profile == "sdcpp"
    settings = resolve_settings(
        {"base_url": "http://127.0.0.1:1/v1"}, env={"ABSTRACTVISION_OPT_PROFILE": "sdcpp"}, config_path=None
    )
    backend = create_backend(settings)
    assert backend.profile == "sdcpp" and backend.get_capabilities().max_batch == 8
    backend.close()
