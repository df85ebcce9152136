"""Images over real HTTP: generations (b64 and url), batches, sizes, edits with masks."""

from __future__ import annotations

import threading

import pytest
from openai_fake_server import Reply, png_bytes

from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError
from abstractvision.types import ImageGenerationRequest
from conftest import API_KEY


def test_generation_b64_sends_diffusion_fields_to_a_local_server(vm, server):
    asset = vm.generate_image(
        "a lighthouse",
        width=64,
        height=48,
        steps=4,
        guidance_scale=2.5,
        seed=7,
        negative_prompt="blurry",
        extra={"sampler": "euler"},
    )
    assert asset.media_type == "image" and asset.mime_type == "image/png"
    assert asset.to_pil().size == (8, 8)
    [call] = server.calls("POST", "/images/generations")
    body = call.json()
    assert body == {
        "prompt": "a lighthouse",
        "n": 1,
        "size": "64x48",
        "response_format": "b64_json",
        "negative_prompt": "blurry",
        "steps": 4,
        "guidance_scale": 2.5,
        "width": 64,
        "height": 48,
        "seed": 7,
        "sampler": "euler",
    }
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["content-type"] == "application/json"
    meta = asset.metadata
    assert meta["seed"] == 7 and meta["backend"] == "openai" and meta["request_id"] == "req_123"
    assert meta["revised_prompt"] == "a lighthouse (revised)"
    assert meta["timings"]["inference_s"] >= 0 and meta["output_source"] == "b64_json"
    assert meta["base_url"] == server.base_url


def test_generation_url_output_is_downloaded_from_the_provider(vm, server):
    asset = vm.generate_image("a lighthouse", extra={"response_format": "url"})
    assert asset.mime_type == "image/png" and asset.to_pil().size == (8, 8)
    [download] = [r for r in server.requests if r.path.startswith("/files/")]
    assert download.headers["authorization"] == f"Bearer {API_KEY}"  # same origin as base_url
    assert asset.metadata["output_source"] == "url"
    assert "download_s" in asset.metadata["timings"]


def test_batch_of_three_is_one_request_with_n_3(vm, server):
    assets = vm.generate_image_batch("a lighthouse", count=3, seed=100)
    assert len(assets) == 3
    assert [a.metadata["seed"] for a in assets] == [100, 101, 102]
    assert len({a.data for a in assets}) == 3
    [call] = server.calls("POST", "/images/generations")
    body = call.json()
    assert body["n"] == 3 and body["seed"] == 100 and "seeds" not in body


def test_batch_with_arbitrary_seeds_requests_each_image_alone(vm, server):
    assets = vm.generate_image_batch("x", seeds=[5, 42, 7])
    assert [a.metadata["seed"] for a in assets] == [5, 42, 7]
    assert [(c.json()["n"], c.json()["seed"]) for c in server.calls("POST", "/images/generations")] == [
        (1, 5),
        (1, 42),
        (1, 7),
    ]


def test_batch_reports_seeds_the_provider_returns(vm, server):
    server.echo_seeds = True
    assets = vm.generate_image_batch("x", count=2, seed=5)
    assert [(a.metadata["seed"], a.metadata["seed_source"]) for a in assets] == [
        (1005, "engine"),
        (1006, "engine"),
    ]


def test_batch_is_split_by_max_batch(runner, make_backend, server):
    vm = runner.manager(make_backend(max_batch=2))
    assets = vm.generate_image_batch("x", count=5, seed=1)
    assert len(assets) == 5
    assert [c.json()["n"] for c in server.calls("POST", "/images/generations")] == [2, 2, 1]


def test_a_short_answer_keeps_what_arrived_and_asks_for_the_rest(vm, server):
    """A server that caps n silently (here: 2 of 3) loses nothing: the rest is asked for with the
    seeds that continue the numbering, and every output says which max_batch to set."""
    import base64

    two = {"data": [{"b64_json": base64.b64encode(png_bytes(color=(i, 0, 0))).decode()} for i in (1, 2)]}
    server.script("POST", "/images/generations", Reply(json=two))
    assets = vm.generate_image_batch("x", count=3, seed=1)
    assert len(assets) == 3 and len({a.data for a in assets}) == 3
    calls = [c.json() for c in server.calls("POST", "/images/generations")]
    assert [(c["n"], c["seed"]) for c in calls] == [(3, 1), (1, 3)]
    assert [a.metadata["seed"] for a in assets] == [1, 2, 3]
    for asset in assets:
        [warning] = asset.metadata["warnings"]
        assert "answered 2 of the 3 images" in warning and "max_batch=2" in warning


def test_openai_model_gets_only_openai_fields_and_a_valid_size(runner, make_backend, server):
    backend = make_backend(model_id="gpt-image-1", send_diffusion_params=False)
    vm = runner.manager(backend)
    vm.generate_image(
        "x",
        width=1536,
        height=1024,
        extra={
            "quality": "low",
            "background": "transparent",
            "output_format": "png",
            "user": "u1",
            "sampler": "euler",
        },
    )
    body = server.calls("POST", "/images/generations")[0].json()
    assert body == {
        "prompt": "x",
        "n": 1,
        "model": "gpt-image-1",
        "size": "1536x1024",
        "quality": "low",
        "background": "transparent",
        "output_format": "png",
        "user": "u1",
    }


def test_invalid_size_for_an_openai_model_lists_the_valid_ones(runner, make_backend, server):
    vm = runner.manager(make_backend(model_id="gpt-image-1", send_diffusion_params=False))
    with pytest.raises(
        InvalidRequestError,
        match=r"512x512 is not valid for model gpt-image-1; valid sizes: 1024x1024, 1536x1024",
    ):
        vm.generate_image("x", width=512, height=512)
    with pytest.raises(InvalidRequestError, match="quality"):
        vm.generate_image("x", extra={"quality": "hd"})
    assert server.calls("POST", "/images/generations") == []


def test_diffusion_parameters_are_refused_for_the_openai_api(runner, make_backend, server):
    vm = runner.manager(make_backend(model_id="gpt-image-1", send_diffusion_params=False))
    with pytest.raises(InvalidRequestError, match="steps, seed: not supported by the OpenAI API"):
        vm.generate_image("x", steps=20, seed=3)
    assets = vm.generate_image_batch("x", count=2, seed=3)  # planned batch seeds are not sent
    assert [a.metadata["seed"] for a in assets] == [None, None]
    assert "seed" not in server.calls("POST", "/images/generations")[0].json()


def test_dall_e_3_batches_one_image_per_request(runner, make_backend, server):
    backend = make_backend(model_id="dall-e-3", send_diffusion_params=False)
    assert backend.get_capabilities().max_batch == 1
    vm = runner.manager(backend)
    assert len(vm.generate_image_batch("x", count=2)) == 2
    bodies = [c.json() for c in server.calls("POST", "/images/generations")]
    assert [b["n"] for b in bodies] == [1, 1] and bodies[0]["response_format"] == "b64_json"
    assert not backend.get_capabilities().supported_tasks.__contains__("image_to_image")


def test_edit_with_mask_is_multipart_with_real_content_types(vm, server):
    import io

    from PIL import Image

    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(jpeg, format="JPEG")
    asset = vm.edit_image("paint it red", jpeg.getvalue(), mask=png_bytes(), strength=0.6, seed=9)
    assert asset.mime_type == "image/png"
    [call] = server.calls("POST", "/images/edits")
    fields, files = call.form()
    assert fields["prompt"] == ["paint it red"] and fields["strength"] == ["0.6"] and fields["seed"] == ["9"]
    assert [(f.name, f.filename, f.content_type) for f in files] == [
        ("image", "image_0.jpg", "image/jpeg"),
        ("mask", "mask.png", "image/png"),
    ]
    assert files[0].data == jpeg.getvalue()


def test_edit_batch_with_reference_images(vm, server):
    assets = vm.edit_image_batch(
        "combine", png_bytes(), reference_images=[png_bytes(color=(1, 1, 1))] * 2, count=2, seed=4
    )
    assert len(assets) == 2
    fields, files = server.calls("POST", "/images/edits")[0].form()
    assert fields["n"] == ["2"]
    assert [f.name for f in files] == ["image[]", "image[]", "image[]"]


def test_dall_e_2_refuses_reference_images(runner, make_backend, server):
    vm = runner.manager(make_backend(model_id="dall-e-2", send_diffusion_params=False))
    with pytest.raises(InvalidRequestError, match="single image"):
        vm.edit_image("x", png_bytes(), reference_images=[png_bytes()])
    assert server.calls("POST", "/images/edits") == []


def test_progress_is_reported_and_async_is_native(runner, vm, server):
    events = []
    threads = set()

    def on_progress(event):
        events.append(event.phase)
        threads.add(threading.get_ident())

    vm.generate_image("x", on_progress=on_progress, extra={"response_format": "url"})
    assert events == ["started", "in_progress", "downloading", "completed"]
    assert threads == {threading.get_ident()}  # async: on the event loop's thread, not a worker


def test_single_method_refuses_n_above_one(make_backend):
    backend = make_backend()
    with pytest.raises(InvalidRequestError, match="batch"):
        backend.generate_image(ImageGenerationRequest(prompt="x", n=2))


def test_lora_adapters_are_refused(vm):
    with pytest.raises(InvalidRequestError, match="lora_adapters"):
        vm.generate_image("x", lora_adapters=[{"source": "a.safetensors"}])


def test_capabilities_and_describe(make_backend, server):
    backend = make_backend(model_id="gpt-image-1", send_diffusion_params=False)
    caps = backend.get_capabilities()
    assert set(caps.supported_tasks) == {"text_to_image", "image_to_image"}  # gpt-image-1 has no video tasks
    assert caps.supports_mask and caps.max_batch == 10
    assert backend.describe() == {
        "backend": "openai",
        "model": "gpt-image-1",
        "base_url": server.base_url,
        "profile": "openai",
    }
    vm_backend = make_backend(video_model_id="sora-2")
    assert set(vm_backend.get_capabilities().supported_tasks) == {
        "text_to_image",
        "image_to_image",
        "text_to_video",
        "image_to_video",
    }


def test_unsupported_task_is_gated_before_any_request(runner, make_backend, server):
    vm = runner.manager(make_backend(model_id="dall-e-3", send_diffusion_params=False))
    with pytest.raises(CapabilityNotSupportedError):
        vm.edit_image("x", png_bytes())
    assert server.requests == []


def test_masks_are_sent_so_that_both_conventions_read_the_same_area(vm, server):
    """white = repaint (library) becomes white *and* transparent (OpenAI: transparent = edit;
    sd-server and other greyscale readers: white = repaint); OpenAI-style masks too."""
    import io

    from PIL import Image

    from abstractvision.server.params import openai_mask as server_side

    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 4, 8))  # repaint the left half
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    vm.edit_image("x", png_bytes(), mask=buf.getvalue())
    [call] = server.calls("POST", "/images/edits")
    sent = next(f for f in call.form()[1] if f.name == "mask").data
    sent_img = Image.open(io.BytesIO(sent))
    alpha = sent_img.convert("RGBA").getchannel("A")
    grey = sent_img.convert("L")  # how a greyscale reader (stb_image, 1 channel) sees it
    assert alpha.getpixel((1, 1)) == 0 and alpha.getpixel((6, 1)) == 255
    assert grey.getpixel((1, 1)) == 255 and grey.getpixel((6, 1)) == 0
    # our own server reads it back as the same white = repaint mask
    back = Image.open(io.BytesIO(server_side(sent))).convert("L")
    assert back.getpixel((1, 1)) == 255 and back.getpixel((6, 1)) == 0

    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 255))  # an OpenAI mask: black, transparent = edit
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    vm.edit_image("x", png_bytes(), mask=buf.getvalue())
    sent = next(f for f in server.calls("POST", "/images/edits")[-1].form()[1] if f.name == "mask").data
    sent_img = Image.open(io.BytesIO(sent))
    assert sent_img.convert("RGBA").getpixel((0, 0)) == (255, 255, 255, 0)
    assert sent_img.convert("RGBA").getpixel((5, 5)) == (0, 0, 0, 255)
