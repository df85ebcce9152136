"""stable-diffusion.cpp backend end to end on a tiny Flux model, through VisionManager."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

pytest.importorskip("stable_diffusion_cpp")

from PIL import Image

from abstractvision import VisionManager
from abstractvision.backends import StableDiffusionCppVisionBackend
from abstractvision.errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
)
from abstractvision.types import GeneratedAsset, ProgressEvent

pytestmark = pytest.mark.sdcpp

GEN = {"width": 64, "height": 64, "steps": 2, "guidance_scale": 1.0}  # small and fast


def pixels(asset: Any) -> bytes:
    return asset.to_pil().convert("RGB").tobytes()


def red_png(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def warm(tiny_flux: Any) -> Any:
    """One loaded worker shared by the tests of this module."""
    from abstractvision.backends import StableDiffusionCppBackendConfig

    backend = StableDiffusionCppVisionBackend(
        StableDiffusionCppBackendConfig(
            diffusion_model=tiny_flux.diffusion_model,
            taesd=tiny_flux.taesd,
            clip_l=tiny_flux.clip_l,
            upscaler=tiny_flux.upscaler,
            n_threads=1,
        )
    )
    vm = VisionManager(backend=backend)
    yield vm
    vm.close()


def test_text_to_image_returns_png_with_metadata(warm: Any, tiny_flux: Any) -> None:
    asset = warm.generate_image("a red fox", seed=7, **GEN)
    assert isinstance(asset, GeneratedAsset)
    assert asset.media_type == "image" and asset.mime_type == "image/png"
    img = asset.to_pil()
    assert img.size == (64, 64) and img.mode == "RGB"
    meta = asset.metadata
    assert meta["seed"] == 7
    assert meta["backend"] == "sdcpp" and meta["engine"] == "stable-diffusion.cpp"
    assert meta["model"] == "flux-tiny-s0"
    assert meta["model_files"]["diffusion_model"]["path"] == tiny_flux.diffusion_model
    assert meta["model_files"]["clip_l"]["format"] == "safetensors"
    params = meta["parameters"]
    assert params["steps"] == 2 and params["width"] == 64 and params["guidance_scale"] == 1.0
    assert params["sample_method"] and params["scheduler"]  # the engine's defaults, made explicit
    assert set(meta["timings"]) >= {"load_s", "inference_s", "encode_s", "total_s"}
    assert meta["worker"]["isolated"] is True and meta["worker"]["pid"] != os.getpid()


def test_same_seed_same_image_other_seed_differs(warm: Any) -> None:
    a = warm.generate_image("a red fox", seed=11, **GEN)
    b = warm.generate_image("a red fox", seed=11, **GEN)
    c = warm.generate_image("a red fox", seed=12, **GEN)
    assert pixels(a) == pixels(b)
    assert pixels(a) != pixels(c)


def test_model_is_loaded_once_and_reused(warm: Any) -> None:
    warm.generate_image("one", seed=1, **GEN)
    pid = warm.backend.worker_pid
    second = warm.generate_image("two", seed=1, **GEN)
    assert warm.backend.worker_pid == pid
    assert second.metadata["timings"]["load_s"] == 0.0


def test_progress_events_report_each_step(warm: Any) -> None:
    events: list[ProgressEvent] = []
    warm.generate_image("a red fox", seed=3, on_progress=events.append, **{**GEN, "steps": 3})
    steps = [e for e in events if e.phase == "step"]
    assert [e.step for e in steps] == [1, 2, 3]
    assert all(e.total_steps == 3 and e.task == "text_to_image" for e in steps)
    assert steps[-1].progress == 1.0
    assert events[0].phase == "started" and events[-1].phase == "completed"


def test_batch_reports_every_seed_and_matches_single_runs(warm: Any) -> None:
    events: list[ProgressEvent] = []
    batch = warm.generate_image_batch("a red fox", count=3, seed=20, on_progress=events.append, **GEN)
    assert [a.seed for a in batch] == [20, 21, 22]
    assert pixels(batch[1]) == pixels(warm.generate_image("a red fox", seed=21, **GEN))
    steps = [e.step for e in events if e.phase == "step"]
    assert steps == list(range(1, 7))  # 3 images x 2 steps, one native call
    events.clear()
    explicit = warm.generate_image_batch("a red fox", seeds=[5, 9], on_progress=events.append, **GEN)
    assert [a.seed for a in explicit] == [5, 9]
    assert [e.step for e in events if e.phase == "step"] == [1, 2, 3, 4]  # two engine calls, one count
    assert pixels(explicit[1]) == pixels(warm.generate_image("a red fox", seed=9, **GEN))


def test_image_to_image_strength_and_determinism(warm: Any) -> None:
    edit = {"steps": 4, "guidance_scale": 1.0, "seed": 4}
    a = warm.edit_image("a red fox", red_png(), strength=0.3, **edit)
    b = warm.edit_image("a red fox", red_png(), strength=0.3, **edit)
    c = warm.edit_image("a red fox", red_png(), strength=0.9, **edit)
    assert a.to_pil().size == (64, 64)
    assert pixels(a) == pixels(b)
    assert pixels(a) != pixels(c)
    assert a.metadata["parameters"]["strength"] == 0.3
    assert a.metadata["task"] == "image_to_image"
    blue = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 30, 220)).save(blue, format="PNG")
    assert pixels(warm.edit_image("a red fox", blue.getvalue(), strength=0.3, **edit)) != pixels(a)


def test_inpainting_with_a_mask(warm: Any) -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    masked = warm.edit_image("a red fox", red_png(), mask=buf.getvalue(), seed=4, steps=2, guidance_scale=1.0)
    plain = warm.edit_image("a red fox", red_png(), seed=4, steps=2, guidance_scale=1.0)
    assert masked.to_pil().size == (64, 64)
    assert pixels(masked) != pixels(plain)


def test_edit_batch_with_seeds(warm: Any) -> None:
    out = warm.edit_image_batch("a red fox", red_png(), seeds=[1, 2], steps=2, guidance_scale=1.0)
    assert [a.seed for a in out] == [1, 2]


def test_edit_size_defaults_to_the_input_rounded_down_to_8(warm: Any) -> None:
    asset = warm.edit_image("a red fox", red_png((70, 52)), seed=1, steps=2, guidance_scale=1.0)
    assert asset.to_pil().size == (64, 48)
    assert asset.metadata["parameters"]["input_resized_to"] == [64, 48]


def test_upscale_with_the_configured_upscaler(warm: Any) -> None:
    asset = warm.upscale_image(red_png((40, 24)))
    assert asset.to_pil().size == (80, 48)
    assert asset.metadata["parameters"]["upscale_factor"] == 2
    assert warm.upscale_image(red_png((16, 8)), scale=4).to_pil().size == (64, 32)
    with pytest.raises(InvalidRequestError, match="multiplies by 2"):
        warm.upscale_image(red_png((16, 8)), scale=3)


def test_sizes_that_are_not_multiples_of_8_are_refused(warm: Any) -> None:
    with pytest.raises(InvalidRequestError, match="multiple of 8"):
        warm.generate_image("x", width=60, height=64, steps=2)


def test_bad_engine_parameter_is_an_invalid_request_and_the_worker_survives(warm: Any) -> None:
    warm.generate_image("x", seed=1, **GEN)
    pid = warm.backend.worker_pid
    with pytest.raises(InvalidRequestError, match="sample_method"):
        warm.generate_image("x", seed=1, extra={"sample_method": "no-such-sampler"}, **GEN)
    assert warm.backend.worker_pid == pid
    assert (
        warm.generate_image("x", seed=1, extra={"sample_method": "euler_a"}, **GEN).metadata["parameters"][
            "sample_method"
        ]
        == "euler_a"
    )


def test_other_tasks_are_not_supported(warm: Any) -> None:
    with pytest.raises(CapabilityNotSupportedError):
        warm.generate_video("a clip")
    caps = warm.backend.get_capabilities()
    assert set(caps.supported_tasks) == {"text_to_image", "image_to_image", "image_upscale"}
    assert caps.supports_mask is True


def test_describe_and_catalog(warm: Any, tiny_flux: Any) -> None:
    info = warm.backend.describe()
    assert info["backend"] == "sdcpp" and info["engine"] == "stable-diffusion.cpp"
    assert info["files"]["taesd"] == tiny_flux.taesd
    models = warm.list_provider_models()
    assert [m.id for m in models] == ["flux-tiny-s0"]
    assert warm.list_provider_models(task="text_to_video") == []


def test_upscale_needs_an_upscaler(make_manager: Any) -> None:
    vm = make_manager()
    with pytest.raises(CapabilityNotSupportedError):
        vm.upscale_image(red_png())


def test_decode_only_drops_image_to_image(make_manager: Any) -> None:
    vm = make_manager(vae_decode_only=True)
    with pytest.raises(CapabilityNotSupportedError):
        vm.edit_image("x", red_png(), steps=2)
    assert vm.generate_image("x", seed=1, **GEN).to_pil().size == (64, 64)


def test_gguf_diffusion_model_matches_safetensors(make_manager: Any, tiny_flux: Any, warm: Any) -> None:
    vm = make_manager(diffusion_model=tiny_flux.diffusion_model_gguf, model_id="tiny-gguf")
    asset = vm.generate_image("a red fox", seed=7, **GEN)
    assert asset.metadata["model"] == "tiny-gguf"
    assert asset.metadata["model_files"]["diffusion_model"]["format"] == "gguf"
    assert pixels(asset) == pixels(warm.generate_image("a red fox", seed=7, **GEN))


def test_in_process_mode_gives_the_same_images(make_manager: Any, warm: Any) -> None:
    vm = make_manager(isolate=False)
    events: list[ProgressEvent] = []
    asset = vm.generate_image("a red fox", seed=7, on_progress=events.append, **GEN)
    assert asset.metadata["worker"] == {"pid": os.getpid(), "isolated": False, "restarts": 0}
    assert [e.step for e in events if e.phase == "step"] == [1, 2]
    assert pixels(asset) == pixels(warm.generate_image("a red fox", seed=7, **GEN))


def test_preload_and_unload(make_manager: Any) -> None:
    vm = make_manager()
    assert vm.backend.worker_pid is None
    vm.preload()
    pid = vm.backend.worker_pid
    assert pid is not None
    vm.unload()
    assert vm.backend.worker_pid is None
    assert vm.generate_image("x", seed=1, **GEN).metadata["worker"]["pid"] != pid


def test_upscale_only_backend(make_manager: Any, tiny_flux: Any) -> None:
    vm = make_manager(diffusion_model=None, taesd=None, clip_l=None, upscaler=tiny_flux.upscaler)
    assert vm.backend.get_capabilities().supported_tasks == ("image_upscale",)
    assert vm.upscale_image(red_png((16, 16))).to_pil().size == (32, 32)
    with pytest.raises(CapabilityNotSupportedError):
        vm.generate_image("x", **GEN)
