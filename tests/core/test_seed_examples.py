"""The seed API reference's examples, run as written where no real engine is needed."""

from __future__ import annotations

import pytest


def test_registry_example():
    from abstractvision import VisionModelCapabilitiesRegistry

    reg = VisionModelCapabilitiesRegistry()
    tasks = reg.list_tasks()
    assert set(tasks) == {
        "text_to_image",
        "image_to_image",
        "image_upscale",
        "multi_view_image",
        "text_to_video",
        "image_to_video",
    }
    t2i = reg.models_for_task("text_to_image")
    assert "runwayml/stable-diffusion-v1-5" in t2i and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" not in t2i
    assert reg.require_support("runwayml/stable-diffusion-v1-5", "text_to_image").params["prompt"].required
    from abstractvision.errors import CapabilityNotSupportedError

    with pytest.raises(CapabilityNotSupportedError):
        reg.require_support("runwayml/stable-diffusion-v1-5", "text_to_video")


def test_store_round_trip_example(fake_backend):
    from abstractvision import LocalAssetStore, VisionManager, is_artifact_ref

    store = LocalAssetStore()
    vm = VisionManager(backend=fake_backend, store=store)
    ref = vm.generate_image("a studio photo of an espresso machine", width=768, height=768, steps=20)
    assert is_artifact_ref(ref)
    png_bytes = store.load_bytes(ref["$artifact"])
    assert png_bytes.startswith(b"\x89PNG")


def test_extra_example(fake_backend):
    from abstractvision import VisionManager

    vm = VisionManager(backend=fake_backend)
    asset_or_ref = vm.generate_image(
        "a product photo of a matte black espresso machine",
        steps=8,
        guidance_scale=1.0,
        extra={
            "loras_json": [{"source": "lightx2v/Qwen-Image-Edit-2511-Lightning", "scale": 1.0}],
            "rapid_aio_repo": "linoyts/Qwen-Image-Edit-Rapid-AIO",
        },
    )
    assert fake_backend.calls[-1][1].extra["rapid_aio_repo"] == "linoyts/Qwen-Image-Edit-Rapid-AIO"
    assert asset_or_ref.metadata["parameters"]["extra"]["loras_json"][0]["scale"] == 1.0


def test_errors_example():
    from abstractvision import VisionManager
    from abstractvision.errors import (
        BackendNotConfiguredError,
        CapabilityNotSupportedError,
        OptionalDependencyMissingError,
        UnknownModelError,
    )

    with pytest.raises(BackendNotConfiguredError):
        VisionManager().generate_image("x")
    with pytest.raises(UnknownModelError):
        VisionManager(model_id="not/a-model")
    from abstractvision import VisionModelCapabilitiesRegistry

    with pytest.raises(CapabilityNotSupportedError):
        VisionModelCapabilitiesRegistry().require_support("dall-e-3", "text_to_video")
    err = OptionalDependencyMissingError("diffusers", "diffusers")
    assert 'pip install "abstractvision[diffusers]"' in str(err)
