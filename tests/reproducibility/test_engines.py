"""Same request + same seed => the same file bytes, on the real engines (in-process).

Tiny random-weight models: Stable Diffusion and Wan 2.1 on Diffusers, Flux on
stable-diffusion.cpp. Also the honest-metadata mechanism on real engines: a parameter a
real backend does not take (sd.cpp's upscaler has no seed) and a real pipeline that returns
another size than requested.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from abstractvision import VisionManager
from abstractvision.errors import SizeMismatchError
from embedded import mp4_tags, open_image, parse_infotext, user_comment, xmp_provenance

SD = {"steps": 2, "width": 32, "height": 32, "guidance_scale": 5.0}
FLUX = {"steps": 2, "width": 64, "height": 64}
POLICIES = ("none", "parameters", "full")


# -- Diffusers: tiny Stable Diffusion ---------------------------------------------------------


@pytest.fixture(scope="module")
def sd_backend(tiny_sd: str) -> Any:
    """One loaded tiny SD backend for the module (loading is what costs time here)."""
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        config=HuggingFaceDiffusersBackendConfig(model_id=tiny_sd, device="cpu")
    )
    yield backend
    backend.close()


@pytest.mark.diffusers
@pytest.mark.parametrize("policy", POLICIES)
def test_diffusers_same_seed_same_file(sd_backend, policy):
    vm = VisionManager(backend=sd_backend, embed_metadata=policy)
    first = vm.generate_image("a lighthouse", negative_prompt="fog", seed=7, **SD)
    second = vm.generate_image("a lighthouse", negative_prompt="fog", seed=7, **SD)
    assert first.data == second.data
    other = vm.generate_image("a lighthouse", negative_prompt="fog", seed=8, **SD)
    assert other.data != first.data
    assert other.to_pil().tobytes() != first.to_pil().tobytes()  # different pixels, not only metadata


@pytest.mark.diffusers
def test_diffusers_fresh_load_gives_the_same_file(sd_backend, diffusers_backend, tiny_sd):
    args = {"negative_prompt": "fog", "seed": 7, "embed_metadata": "full", **SD}
    first = VisionManager(backend=sd_backend).generate_image("a lighthouse", **args)
    fresh = VisionManager(backend=diffusers_backend(tiny_sd)).generate_image("a lighthouse", **args)
    assert fresh.data == first.data


@pytest.mark.diffusers
def test_diffusers_parameters_chunk_has_every_field(sd_backend):
    vm = VisionManager(backend=sd_backend, embed_metadata="parameters")
    asset = vm.generate_image("a red cat, sitting", negative_prompt="dogs", seed=3, **SD)
    img = open_image(asset.data)
    assert img.format == "PNG" and set(img.text) == {"parameters"}
    prompt, negative, fields = parse_infotext(img.text["parameters"])
    assert (prompt, negative) == ("a red cat, sitting", "dogs")
    assert fields == {
        "Steps": "2",
        "Sampler": "EulerDiscreteScheduler",
        "CFG scale": "5",
        "Seed": "3",
        "Size": "32x32",
        "Model": "tiny-sd",  # the folder name: no local path inside a file
    }
    assert asset.metadata["seed_source"] == "requested" and "ignored_parameters" not in asset.metadata


@pytest.mark.diffusers
@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_diffusers_jpeg_and_webp(sd_backend, fmt, pil):
    vm = VisionManager(backend=sd_backend, embed_metadata="full")
    asset = vm.generate_image("a boat", seed=1, output_format=fmt, output_compression=90, **SD)
    again = vm.generate_image("a boat", seed=1, output_format=fmt, output_compression=90, **SD)
    assert asset.data == again.data
    img = open_image(asset.data)
    assert img.format == pil and img.size == (32, 32) and asset.mime_type == f"image/{fmt}"
    prompt, _, fields = parse_infotext(user_comment(img) or "")
    assert prompt == "a boat" and fields["Seed"] == "1" and fields["Model"] == "tiny-sd"
    embedded = xmp_provenance(img)
    assert embedded["encoding"] == {"format": fmt, "compression": 90, "converted_from": "image/png"}
    assert "created_at" not in embedded and "timings" not in embedded
    assert embedded["model"] == "tiny-sd"


@pytest.mark.diffusers
def test_diffusers_unseeded_call_says_the_seed_was_generated(sd_backend):
    vm = VisionManager(backend=sd_backend, embed_metadata="full")
    first = vm.generate_image("a dog", **SD)
    assert first.metadata["seed_source"] == "generated" and isinstance(first.seed, int)
    again = vm.generate_image("a dog", seed=first.seed, **SD)
    assert again.metadata["seed_source"] == "requested"
    assert again.to_pil().tobytes() == first.to_pil().tobytes()
    # the files differ only by the recorded seed source: same pixels, honest provenance
    assert json.loads(open_image(first.data).text["abstractvision"])["seed_source"] == "generated"


class FixedSizeDiffusersBackend:
    """A real Diffusers pipeline that renders at its native size whatever is asked.

    Wraps the built-in backend through the public contract, as a pipeline that picks its own
    output size (Flux Kontext, Qwen-Image-Edit's resolution binning) behaves.
    """

    def __new__(cls, base: Any) -> Any:
        from abstractvision.backends import HuggingFaceDiffusersVisionBackend

        class Native(HuggingFaceDiffusersVisionBackend):
            def generate_image(self, request: Any) -> Any:
                return super().generate_image(dataclasses.replace(request, width=None, height=None))

        backend = Native(config=base.config)
        return backend


@pytest.mark.diffusers
def test_real_pipeline_that_changes_the_size(diffusers_backend, tiny_sd, store):
    backend = FixedSizeDiffusersBackend(diffusers_backend(tiny_sd))
    try:
        vm = VisionManager(backend=backend, store=store)
        ref = vm.generate_image("a house", seed=2, steps=2, width=32, height=48)
        meta = ref["metadata"]
        assert meta["size_adjusted"] == {
            "requested": {"width": 32, "height": 48},
            "returned": {"width": 64, "height": 64},
        }
        assert (meta["parameters"]["width"], meta["parameters"]["height"]) == (64, 64)
        assert open_image(store.load_bytes(ref["$artifact"])).size == (64, 64)
        kept = len(store.list())
        with pytest.raises(SizeMismatchError, match="returned 64x64 for a 32x48"):
            vm.generate_image("a house", seed=2, steps=2, width=32, height=48, on_size_mismatch="error")
        assert len(store.list()) == kept
    finally:
        backend.close()


# -- Diffusers: tiny Wan 2.1 (MP4) --------------------------------------------------------------

WAN = {"steps": 2, "width": 16, "height": 16, "num_frames": 5, "extra": {"max_sequence_length": 16}}


@pytest.mark.diffusers
def test_diffusers_video_same_seed_same_mp4_with_the_policy_applied(diffusers_backend, tiny_wan):
    vm = VisionManager(backend=diffusers_backend(tiny_wan))
    plain = vm.generate_video("waves", seed=4, **WAN)
    tags, frames = mp4_tags(plain.data)
    assert not {"encoder", "comment", "abstractvision"} & set(tags) and len(frames) == 5
    full = vm.generate_video("waves", seed=4, embed_metadata="full", **WAN)
    assert vm.generate_video("waves", seed=4, embed_metadata="full", **WAN).data == full.data
    tags, full_frames = mp4_tags(full.data)
    prompt, _, fields = parse_infotext(tags["comment"])
    assert prompt == "waves" and fields["Seed"] == "4" and fields["Frames"] == "5"
    assert json.loads(tags["abstractvision"])["model"] == "tiny-wan"
    assert all((a == b).all() for a, b in zip(frames, full_frames, strict=True))
    assert vm.generate_video("waves", seed=5, **WAN).data != plain.data


# -- stable-diffusion.cpp: tiny Flux -----------------------------------------------------------


@pytest.mark.sdcpp
@pytest.mark.parametrize("policy", POLICIES)
def test_sdcpp_same_seed_same_file(sdcpp_backend, policy):
    vm = VisionManager(backend=sdcpp_backend(), embed_metadata=policy)
    first = vm.generate_image("a lighthouse", seed=11, **FLUX)
    second = vm.generate_image("a lighthouse", seed=11, **FLUX)
    assert first.data == second.data
    assert first.metadata["worker"]["pid"] == second.metadata["worker"]["pid"]  # volatile facts stay out...
    if policy == "full":
        embedded = json.loads(open_image(first.data).text["abstractvision"])
        assert "worker" not in embedded and "model_files" not in embedded and "files" not in embedded
    other = vm.generate_image("a lighthouse", seed=12, **FLUX)
    assert other.data != first.data


@pytest.mark.sdcpp
def test_sdcpp_parameters_chunk_has_every_field(sdcpp_backend):
    vm = VisionManager(backend=sdcpp_backend(), embed_metadata="parameters")
    asset = vm.generate_image("a fox", negative_prompt="a cat", seed=5, guidance_scale=3.5, **FLUX)
    prompt, negative, fields = parse_infotext(open_image(asset.data).text["parameters"])
    assert (prompt, negative) == ("a fox", "a cat")
    assert fields == {
        "Steps": "2",
        "Sampler": "euler",
        "Schedule type": "discrete",
        "CFG scale": "3.5",
        "Seed": "5",
        "Size": "64x64",
        "Model": "flux-tiny-s0",
    }


@pytest.mark.sdcpp
def test_sdcpp_upscaler_ignores_what_it_cannot_take(sdcpp_backend, tiny_flux_sdcpp):
    from embedded import open_image as decode

    vm = VisionManager(backend=sdcpp_backend(upscaler=tiny_flux_sdcpp.upscaler), embed_metadata="parameters")
    source = vm.generate_image("a fox", seed=5, **FLUX)
    up = vm.upscale_image(source.data, prompt="sharper", steps=4, seed=9)
    meta = up.metadata
    assert decode(up.data).size == (128, 128)
    assert set(meta["ignored_parameters"]) == {"prompt", "steps", "seed"}
    assert "ESRGAN upscaler takes no seed" in meta["ignored_parameters"]["seed"]
    assert meta["seed"] is None and meta["seed_source"] == "unknown"
    assert "seed" not in meta["parameters"] and "steps" not in meta["parameters"]
    _, _, fields = parse_infotext(decode(up.data).text["parameters"])
    assert "Seed" not in fields and "Steps" not in fields and fields["Size"] == "128x128"
