"""stable-diffusion.cpp: LoRA adapters applied for real (looked up by name, missing ones are
errors), and video refused with a reason and an alternative."""

from __future__ import annotations

import os
from typing import Any

import pytest

pytestmark = pytest.mark.sdcpp

SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 11}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from abstractvision.testing.tiny_sdcpp import write_tiny_flux_lora

    folder = tmp_path_factory.mktemp("sdcpp-loras")
    write_tiny_flux_lora(folder / "tiny-style.safetensors", seed=5)
    write_tiny_flux_lora(folder / "for-another-model.safetensors", seed=6, foreign=True)
    return str(folder)


@pytest.fixture(scope="module")
def vm(tiny_flux: Any, lora_dir: str) -> Any:
    from abstractvision import VisionManager
    from abstractvision.backends import StableDiffusionCppBackendConfig, StableDiffusionCppVisionBackend

    config = StableDiffusionCppBackendConfig(
        diffusion_model=tiny_flux.diffusion_model,
        taesd=tiny_flux.taesd,
        clip_l=tiny_flux.clip_l,
        lora_model_dir=lora_dir,
        # at run time, adapters are not merged into the weights: removing one restores the base exactly
        engine_options={"lora_apply_mode": "at_runtime"},
        n_threads=1,
        hang_timeout_s=60.0,
    )
    manager = VisionManager(backend=StableDiffusionCppVisionBackend(config))
    yield manager
    manager.close()


def _pixels(asset: Any) -> bytes:
    return bytes(asset.to_pil().convert("RGB").tobytes())


def test_lora_by_name_is_applied_and_removed(vm: Any, lora_dir: str) -> None:
    base = vm.generate_image("a lighthouse", **SMALL)
    styled = vm.generate_image(
        "a lighthouse", lora_adapters=[{"source": "tiny-style", "scale": 1.0}], **SMALL
    )
    assert _pixels(styled) != _pixels(base)
    (used,) = styled.metadata["parameters"]["lora_adapters"]
    assert used["path"] == os.path.join(lora_dir, "tiny-style.safetensors")
    assert used["applied_tensors"] == "6/6" and used["scale"] == 1.0
    again = vm.generate_image("a lighthouse", lora_adapters=[{"source": "tiny-style", "scale": 1.0}], **SMALL)
    assert _pixels(again) == _pixels(styled)
    assert _pixels(vm.generate_image("a lighthouse", **SMALL)) == _pixels(base)  # removed again
    by_path = vm.generate_image(
        "a lighthouse",
        lora_adapters=[{"source": os.path.join(lora_dir, "tiny-style.safetensors"), "scale": 1.0}],
        **SMALL,
    )
    assert _pixels(by_path) == _pixels(styled)


def test_missing_lora_is_an_error_listing_what_exists(vm: Any) -> None:
    from abstractvision.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"'no-such-style' was not found in lora_model_dir") as info:
        vm.generate_image("a lighthouse", lora_adapters=[{"source": "no-such-style"}], **SMALL)
    assert "tiny-style" in str(info.value) and "for-another-model" in str(info.value)
    with pytest.raises(ModelLoadError, match="no such file"):
        vm.generate_image("a lighthouse", lora_adapters=[{"source": "/nowhere/style.safetensors"}], **SMALL)


def test_a_name_without_lora_model_dir_is_an_error(make_manager: Any) -> None:
    from abstractvision.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="no lora_model_dir is configured"):
        make_manager().generate_image("a cat", lora_adapters=[{"source": "tiny-style"}], **SMALL)


def test_lora_for_another_family_is_refused(vm: Any) -> None:
    from abstractvision.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=r"matched none of the model's tensors \(0 of 6 applied\)"):
        vm.generate_image("a lighthouse", lora_adapters=[{"source": "for-another-model"}], **SMALL)


def test_video_is_refused_with_the_alternative(vm: Any) -> None:
    from abstractvision.errors import CapabilityNotSupportedError
    from abstractvision.types import VideoGenerationRequest

    assert vm.backend.get_capabilities().supported_tasks == ("text_to_image", "image_to_image")
    with pytest.raises(CapabilityNotSupportedError, match="HuggingFaceDiffusersVisionBackend"):
        vm.generate_video("a cat", num_frames=5)
    with pytest.raises(CapabilityNotSupportedError, match="Wan") as info:
        vm.backend.generate_video(VideoGenerationRequest(prompt="a cat"))
    assert info.value.task == "text_to_video"
