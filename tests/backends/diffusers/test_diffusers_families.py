"""Every supported pipeline family, built tiny from diffusers' own test configs, through VisionManager.

For each family: the backend declares exactly the tasks (and mask handling) the family can
run, and every declared task runs end to end through ``VisionManager`` on the real
pipeline, with the output type, size and frame count checked. Then the family-specific rules
of issue 17: Flux Fill needs a mask, Kontext honours the size (and reports when it cannot),
InstructPix2Pix edits, Sana takes 96x96, Kandinsky 2.2 base weights refuse masks, an SDXL edit
without denoising steps is refused up front, SVD accepts and reports an ignored prompt.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers

I2I, T2I, T2V, I2V = "image_to_image", "text_to_image", "text_to_video", "image_to_video"

#: family -> (declared tasks, mask: "yes" | "no" | "required", pipeline class in model_index.json)
IMAGE_FAMILIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "sd": ((T2I, I2I), "yes", "StableDiffusionPipeline"),
    "sd_inpaint": ((I2I,), "required", "StableDiffusionInpaintPipeline"),
    "pix2pix": ((I2I,), "no", "StableDiffusionInstructPix2PixPipeline"),
    "sdxl": ((T2I, I2I), "yes", "StableDiffusionXLPipeline"),
    "sd3": ((T2I, I2I), "yes", "StableDiffusion3Pipeline"),
    "flux": ((T2I, I2I), "yes", "FluxPipeline"),
    "flux_fill": ((I2I,), "required", "FluxFillPipeline"),
    "flux_kontext": ((T2I, I2I), "yes", "FluxKontextPipeline"),
    "qwen_image": ((T2I, I2I), "yes", "QwenImagePipeline"),
    "pixart_sigma": ((T2I,), "no", "PixArtSigmaPipeline"),
    "sana": ((T2I,), "no", "SanaPipeline"),
    "lumina2": ((T2I,), "no", "Lumina2Pipeline"),
    "cogview4": ((T2I,), "no", "CogView4Pipeline"),
    "chroma": ((T2I, I2I), "no", "ChromaPipeline"),
    "z_image": ((T2I, I2I), "yes", "ZImagePipeline"),
    "kandinsky22": ((T2I, I2I), "no", "KandinskyV22CombinedPipeline"),
    "kandinsky22_inpaint": ((I2I,), "required", "KandinskyV22InpaintCombinedPipeline"),
}

#: family -> (declared tasks, frames to ask for, width/height, fps of the MP4)
VIDEO_FAMILIES: dict[str, tuple[tuple[str, ...], int, int, int]] = {
    "wan": ((T2V,), 5, 16, 16),
    "wan22_ti2v": ((T2V, I2V), 5, 32, 16),
    "ltx": ((T2V, I2V), 9, 32, 24),
    "cogvideox": ((T2V,), 9, 32, 8),
    "mochi": ((T2V,), 7, 32, 30),
    "svd": ((I2V,), 4, 32, 7),
}

# Kontext resizes the *reference* image to its preferred ~1 MP resolutions (right for real
# weights); the tiny VAE has no downsampling, so the tests keep the reference as given.
EXTRA = {"flux_kontext": {"_auto_resize": False}}


def _png(size: tuple[int, int] = (64, 64), color: str = "red") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _mask(size: tuple[int, int] = (64, 64)) -> bytes:
    from PIL import Image

    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    return buf.getvalue()


def _image(asset: Any, size: tuple[int, int]) -> None:
    assert asset.media_type == "image" and asset.mime_type == "image/png"
    assert asset.to_pil().size == size
    assert "size_adjusted" not in asset.metadata


def _decode(data: bytes) -> tuple[int, tuple[int, int], float]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return len(frames), (frames[0].shape[1], frames[0].shape[0]), float(stream.average_rate)


@pytest.mark.parametrize("family", sorted(IMAGE_FAMILIES))
def test_image_family_runs_every_declared_task(family: str, tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError

    tasks, mask, pipeline = IMAGE_FAMILIES[family]
    vm = make_manager(tiny_family(family))
    caps = vm.backend.get_capabilities()
    assert caps.raw["pipeline"] == pipeline
    assert caps.supported_tasks == tasks
    assert caps.supports_mask is (mask != "no")
    assert caps.raw["mask_required"] is (mask == "required")
    extra = EXTRA.get(family, {})
    if T2I in tasks:
        asset = vm.generate_image("a red cat", width=64, height=48, steps=2, seed=1, extra=extra)
        _image(asset, (64, 48))
    else:
        with pytest.raises(CapabilityNotSupportedError):
            vm.generate_image("a red cat", width=64, height=64, steps=2)
    if I2I not in tasks:
        with pytest.raises(CapabilityNotSupportedError):
            vm.edit_image("make it blue", _png(), steps=4)
        return
    if mask == "required":
        with pytest.raises(InvalidRequestError, match="pass a mask"):
            vm.edit_image("make it blue", _png(), steps=4)
    else:
        edited = vm.edit_image("make it blue", _png(), steps=4, seed=1, extra=extra)
        _image(edited, (64, 64))
        assert edited.metadata["parameters"]["inpainting"] is False
    if mask == "no":
        with pytest.raises(CapabilityNotSupportedError, match="inpainting"):
            vm.edit_image("make it blue", _png(), mask=_mask(), steps=4, extra=extra)
    else:
        painted = vm.edit_image("a blue square", _png(), mask=_mask(), steps=4, seed=1, extra=extra)
        _image(painted, (64, 64))
        assert painted.metadata["parameters"]["inpainting"] is True


@pytest.mark.parametrize("family", sorted(VIDEO_FAMILIES))
def test_video_family_runs_every_declared_task(family: str, tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.errors import CapabilityNotSupportedError

    tasks, frames, size, fps = VIDEO_FAMILIES[family]
    vm = make_manager(tiny_family(family))
    assert vm.backend.get_capabilities().supported_tasks == tasks
    common = {"width": size, "height": size, "num_frames": frames, "steps": 2, "seed": 3}
    for task in (T2V, I2V):
        if task not in tasks:
            with pytest.raises(CapabilityNotSupportedError):
                if task == T2V:
                    vm.generate_video("a cat", **common)
                else:
                    vm.image_to_video(_png((size, size)), "a cat", **common)
            continue
        if task == T2V:
            video = vm.generate_video("a cat walking", **common)
        else:
            video = vm.image_to_video(_png((size, size)), "the cat walks", **common)
        assert video.media_type == "video" and video.mime_type == "video/mp4"
        assert _decode(video.data) == (frames, (size, size), float(fps))
        assert "size_adjusted" not in video.metadata and "frames_adjusted" not in video.metadata


@pytest.mark.parametrize("family", sorted(VIDEO_FAMILIES))
def test_video_rule_is_declared_before_loading_and_matches_the_pipeline(
    family: str, tiny_family: Any, make_manager: Any
) -> None:
    """The frame rule read from the VAE/transformer configs is what the loaded pipeline computes,
    so a frame count or size it cannot run is refused while planning, before any weights load."""
    from abstractvision.backends._diffusers.tasks import _video_multiple
    from abstractvision.errors import InvalidRequestError

    _tasks, frames, size, fps = VIDEO_FAMILIES[family]
    vm = make_manager(tiny_family(family))
    declared = vm.backend.get_capabilities().raw["video"]
    assert declared["fps"] == fps
    rule = declared.get("num_frames")
    if rule is not None:
        bad = frames + 1
        with pytest.raises(InvalidRequestError, match=f"{rule['multiple_of']}k\\+1") as info:
            vm.generate_video("a cat", num_frames=bad, width=size, height=size, steps=1)
        assert info.value.param == "num_frames"
        with pytest.raises(InvalidRequestError) as info:
            vm.generate_video("a cat", num_frames=frames, width=size + 1, height=size, steps=1)
        assert info.value.param == "width"
        assert vm.backend.loaded_models() == []  # refused before loading
    vm.backend.preload()
    pipe = next(iter(vm.backend._cache)).pipe
    temporal = (
        getattr(pipe, "vae_scale_factor_temporal", None)
        or getattr(pipe, "vae_temporal_compression_ratio", None)
        or getattr(pipe, "vae_temporal_scale_factor", None)
    )
    assert (rule or {}).get("multiple_of") == (
        temporal if isinstance(temporal, int) and temporal > 1 else None
    )
    assert declared.get("size_multiple") == _video_multiple(pipe)


# -- the failures listed in issue 17 ---------------------------------------------------------------


def test_flux_fill_inpaints_and_says_a_mask_is_needed(tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.errors import InvalidRequestError

    vm = make_manager(tiny_family("flux_fill"))
    painted = vm.edit_image("a blue square", _png(), mask=_mask(), steps=2, seed=5)
    assert painted.metadata["pipeline"] == "FluxFillPipeline" and painted.to_pil().size == (64, 64)
    with pytest.raises(InvalidRequestError, match="fill/inpainting model") as info:
        vm.edit_image("a blue square", _png(), steps=2)
    assert info.value.param == "mask"


def test_flux_kontext_masked_edit_and_size(tiny_family: Any, make_manager: Any) -> None:
    vm = make_manager(tiny_family("flux_kontext"))
    keep = {"_auto_resize": False}
    masked = vm.edit_image("a blue square", _png(), mask=_mask(), steps=2, seed=1, extra=keep)
    assert masked.metadata["pipeline"] == "FluxKontextInpaintPipeline"
    # Kontext scales its output to max_area (1024^2 by default): the backend asks for width x height
    wide = vm.generate_image("a red cat", width=96, height=32, steps=2, seed=1)
    assert wide.to_pil().size == (96, 32) and "size_adjusted" not in wide.metadata
    edited = vm.edit_image("make it blue", _png((80, 48)), steps=2, seed=1, extra=keep)
    assert edited.to_pil().size == (80, 48)
    # when the engine still returns another size, it is reported, never silent
    forced = vm.generate_image("a red cat", width=64, height=64, steps=2, seed=1, extra={"max_area": 32 * 32})
    assert forced.to_pil().size == (32, 32)
    assert forced.metadata["size_adjusted"] == {
        "requested": {"width": 64, "height": 64},
        "returned": {"width": 32, "height": 32},
    }


def test_instruct_pix2pix_edits(tiny_family: Any, make_manager: Any) -> None:
    vm = make_manager(tiny_family("pix2pix"))
    edited = vm.edit_image("turn it blue", _png((48, 32)), steps=2, seed=2)
    assert edited.metadata["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    assert edited.to_pil().size == (48, 32)
    assert "ignored_parameters" not in edited.metadata
    # model-agnostic code passes a strength: accepted, reported, not applied
    same = vm.edit_image("turn it blue", _png((48, 32)), steps=2, seed=2, strength=0.6)
    assert same.metadata["ignored_parameters"]["strength"].startswith(
        "StableDiffusionInstructPix2PixPipeline takes no strength"
    )
    assert same.to_pil().tobytes() == edited.to_pil().tobytes()  # indeed not applied


def test_multi_view_orchestrates_on_a_reference_editing_model(tiny_family: Any, make_manager: Any) -> None:
    """Kontext has no strength: the orchestrated views' strength is reported, not applied."""
    vm = make_manager(tiny_family("flux_kontext"))
    views = vm.generate_angles(
        "a red chair",
        angles=["front", "side"],
        width=32,
        height=32,
        steps=2,
        seed=4,
        extra={"_auto_resize": False},
    )
    assert views.strategy == "orchestrated" and [v.metadata["angle"] for v in views] == ["front", "side"]
    assert views[1].metadata["pipeline"] == "FluxKontextPipeline"
    assert "strength" in views[1].metadata["ignored_parameters"]
    assert all(v.to_pil().size == (32, 32) for v in views)


def test_sana_size_rule_comes_from_the_patch_size(tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.backends._diffusers.tasks import size_multiple

    vm = make_manager(tiny_family("sana"))
    asset = vm.generate_image("a lighthouse", width=96, height=96, steps=2, seed=0)
    assert asset.to_pil().size == (96, 96) and "size_adjusted" not in asset.metadata
    entry = next(iter(vm.backend._cache))
    pipe = entry.pipe
    assert pipe.transformer.config.patch_size == 1
    assert size_multiple(pipe) == pipe.vae_scale_factor  # VAE factor x patch size 1, not x 2


def test_size_multiples_follow_each_family(tiny_family: Any, make_backend: Any) -> None:
    from abstractvision.backends._diffusers.tasks import size_multiple

    expected = {
        "flux": lambda p: p.vae_scale_factor * 2,  # packs 2x2 latent patches itself
        "qwen_image": lambda p: p.vae_scale_factor * 2,
        "sd3": lambda p: p.vae_scale_factor * p.transformer.config.patch_size,
        "pixart_sigma": lambda p: p.vae_scale_factor * 2,
        "sdxl": lambda p: p.vae_scale_factor,
        "kandinsky22": lambda p: 4,  # MoVQ factor 2, squared
    }
    for family, rule in expected.items():
        backend = make_backend(tiny_family(family))
        backend.preload()
        pipe = next(iter(backend._cache)).pipe
        assert size_multiple(pipe) == rule(pipe), family
        backend.close()


def test_kandinsky_masks_need_inpainting_weights(tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.errors import CapabilityNotSupportedError

    base = make_manager(tiny_family("kandinsky22"))
    assert base.backend.get_capabilities().supports_mask is False
    with pytest.raises(CapabilityNotSupportedError, match="masked edits"):
        base.edit_image("a hat", _png(), mask=_mask(), steps=4)
    inpaint = make_manager(tiny_family("kandinsky22_inpaint"))
    painted = inpaint.edit_image("a hat", _png(), mask=_mask(), steps=2, seed=0)
    assert painted.metadata["pipeline"] == "KandinskyV22InpaintCombinedPipeline"


def test_edit_without_denoising_steps_is_refused_before_the_engine(
    tiny_family: Any, make_manager: Any
) -> None:
    from abstractvision.errors import InvalidRequestError

    vm = make_manager(tiny_family("sdxl"))
    with pytest.raises(
        InvalidRequestError, match=r"steps=2 with strength=0.3 leaves no denoising step"
    ) as info:
        vm.edit_image("make it blue", _png(), steps=2)
    assert "steps >= 4" in str(info.value) and info.value.param == "steps"
    assert vm.edit_image("make it blue", _png(), steps=2, strength=0.5, seed=0).metadata["steps_run"] == 1


def test_svd_accepts_the_prompt_and_reports_it_ignored(tiny_family: Any, make_manager: Any) -> None:
    vm = make_manager(tiny_family("svd"))
    video = vm.image_to_video(_png((32, 32)), "a prompt", num_frames=4, steps=2, seed=0, fps=6)
    assert video.metadata["ignored_parameters"] == {
        "prompt": "StableVideoDiffusionPipeline has no text conditioning; the prompt was not used"
    }
    assert video.metadata["parameters"]["fps"] == 6  # also the motion conditioning of SVD
    assert _decode(video.data)[0] == 4
    silent = vm.image_to_video(_png((32, 32)), num_frames=4, steps=2, seed=0)
    assert "ignored_parameters" not in silent.metadata


def test_frame_rules_come_from_the_vae(tiny_family: Any, make_manager: Any) -> None:
    from abstractvision.errors import InvalidRequestError

    vm = make_manager(tiny_family("mochi"))
    with pytest.raises(InvalidRequestError, match=r"6k\+1 \(for example 7 or 13\)"):
        vm.generate_video("a cat", width=32, height=32, num_frames=9, steps=2)


def test_missing_component_package_names_what_to_install(
    tiny_sd: str, tmp_path: Any, make_backend: Any
) -> None:
    """A component whose class needs an uninstalled package (Qwen-Image-Edit's processor needs
    torchvision) fails with the package to install, not with 'upgrade diffusers'."""
    import importlib.util
    import json
    import shutil

    from abstractvision.errors import ModelLoadError

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the failure cannot be reproduced")
    folder = tmp_path / "needs-torchvision"
    shutil.copytree(tiny_sd, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "Qwen2VLImageProcessorFast"]
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "feature_extractor").mkdir()
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "Qwen2VLImageProcessorFast"})
    )
    with pytest.raises(
        ModelLoadError, match=r"needs the 'torchvision' package.*pip install torchvision"
    ) as info:
        make_backend(str(folder)).preload()
    assert "upgrade" not in str(info.value).lower()


def test_import_errors_name_the_package_to_install() -> None:
    """The ImportError transformers raises for a class whose backend is missing maps to the package."""
    import importlib.util

    import transformers

    from abstractvision.backends._diffusers.models import missing_package

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the failure cannot be reproduced")
    with pytest.raises(ImportError) as info:
        transformers.Qwen2VLImageProcessorFast()
    assert missing_package(info.value) == "torchvision"
    assert missing_package(ModuleNotFoundError("No module named 'sentencepiece'", name="sentencepiece")) == (
        "sentencepiece"
    )
    # diffusers' or transformers' own modules are a version problem, not a package to install
    assert missing_package(ModuleNotFoundError("x", name="diffusers.pipelines.nothing")) is None
