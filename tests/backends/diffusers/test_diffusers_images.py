"""Text-to-image, image-to-image and inpainting on tiny Stable Diffusion and Flux pipelines."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers

SD_STEPS = 2
S = {"width": 32, "height": 32}  # small and fast; 64 is the tiny model's default size


def _mask(size: int = 64) -> Any:
    from PIL import Image

    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return mask


def test_seed_example_config_works_with_a_local_folder(tiny_sd: str, px: Any) -> None:
    # the seed's local example, with a local folder instead of a hub id
    from abstractvision import VisionManager
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        config=HuggingFaceDiffusersBackendConfig(model_id=tiny_sd, device="auto", allow_download=False)
    )
    with VisionManager(backend=backend) as vm:
        asset = vm.generate_image(
            "a watercolor painting of a lighthouse", width=64, height=64, steps=SD_STEPS
        )
    assert asset.mime_type == "image/png"
    assert asset.to_pil().size == (64, 64)
    assert isinstance(asset.seed, int)


def test_same_seed_same_pixels_other_seed_differs(make_manager: Any, tiny_sd: str, px: Any) -> None:
    vm = make_manager(tiny_sd)
    a = vm.generate_image("a cat", steps=SD_STEPS, seed=7, **S)
    b = vm.generate_image("a cat", steps=SD_STEPS, seed=7, **S)
    c = vm.generate_image("a cat", steps=SD_STEPS, seed=8, **S)
    assert (px(a) == px(b)).all()
    assert (px(a) != px(c)).any()
    # a second backend (fresh load) reproduces the same image from the seed
    other = make_manager(tiny_sd).generate_image("a cat", steps=SD_STEPS, seed=7, **S)
    assert (px(other) == px(a)).all()


def test_metadata_and_png_text_chunks(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision._media import read_png_text

    asset = make_manager(tiny_sd).generate_image(
        "a red cat", steps=SD_STEPS, seed=3, guidance_scale=5.0, embed_metadata="full"
    )
    meta = asset.metadata
    assert meta["backend"] == "diffusers"
    assert meta["model"] == tiny_sd
    assert meta["task"] == "text_to_image"
    from abstractvision.backends._diffusers.runtime import dtype_name, resolve_device, resolve_dtype

    device = resolve_device("auto")  # the default device: cpu here, cuda or mps on a GPU machine
    assert (meta["seed"], meta["device"], meta["dtype"]) == (3, device, dtype_name(resolve_dtype(None, device)))
    assert meta["offload"] == "none"
    assert meta["pipeline"] == "StableDiffusionPipeline"
    params = meta["parameters"]
    assert (params["steps"], params["guidance_scale"], params["width"], params["height"]) == (
        SD_STEPS,
        5.0,
        64,
        64,
    )
    assert set(meta["timings"]) >= {"load_s", "inference_s", "encode_s", "total_s"}
    assert meta["timings"]["load_s"] > 0
    chunks = read_png_text(asset.data)
    assert chunks["parameters"].startswith("a red cat\n")
    embedded = json.loads(chunks["abstractvision"])
    assert embedded["seed"] == 3 and embedded["parameters"]["steps"] == SD_STEPS


def test_unseeded_call_reports_the_seed_it_used(make_manager: Any, tiny_sd: str, px: Any) -> None:
    vm = make_manager(tiny_sd)
    first = vm.generate_image("a dog", steps=SD_STEPS, **S)
    again = vm.generate_image("a dog", steps=SD_STEPS, seed=first.seed, **S)
    assert (px(first) == px(again)).all()


def test_native_batch_is_one_pipeline_call_with_every_seed(
    make_manager: Any, tiny_sd: str, px: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffusers

    calls: list[dict[str, Any]] = []
    original = diffusers.StableDiffusionPipeline.__call__

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", spy)
    vm = make_manager(tiny_sd)
    assets = vm.generate_image_batch("a cat", count=3, seed=40, steps=SD_STEPS, **S)
    assert len(calls) == 1
    assert calls[0]["num_images_per_prompt"] == 3
    assert [g.initial_seed() for g in calls[0]["generator"]] == [40, 41, 42]
    assert all(g.device.type == "cpu" for g in calls[0]["generator"])
    assert [a.seed for a in assets] == [40, 41, 42]
    assert [a.metadata["batch"]["index"] for a in assets] == [0, 1, 2]
    assert (px(assets[0]) != px(assets[1])).any()
    # each image of the batch is reproducible alone from its seed (batched kernels may round differently)
    single = vm.generate_image("a cat", seed=41, steps=SD_STEPS, **S)
    assert abs(px(single) - px(assets[1])).max() <= 2
    again = vm.generate_image_batch("a cat", seeds=[40, 41, 42], steps=SD_STEPS, **S)
    assert all((px(x) == px(y)).all() for x, y in zip(assets, again, strict=True))


def test_task_switches_reuse_the_loaded_weights(
    make_manager: Any, tiny_sd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffusers

    loads: list[str] = []
    original = diffusers.DiffusionPipeline.from_pretrained.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(args[0]))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", classmethod(counting))
    vm = make_manager(tiny_sd)
    base = vm.generate_image("a cat", steps=SD_STEPS, seed=1, **S)
    edited = vm.edit_image("a dog", base.data, strength=0.5, steps=4, seed=1)
    painted = vm.edit_image("a dog", base.data, mask=_mask(32), strength=0.9, steps=SD_STEPS, seed=1)
    again = vm.generate_image("a cat", steps=SD_STEPS, seed=1, **S)
    assert loads == [tiny_sd]
    assert vm.backend.load_count == 1
    assert edited.metadata["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert painted.metadata["pipeline"] == "StableDiffusionInpaintPipeline"
    assert edited.metadata["timings"]["load_s"] == 0.0 and again.metadata["timings"]["load_s"] == 0.0
    assert edited.metadata["steps_run"] == 2  # strength 0.5 of 4 steps
    assert edited.metadata["parameters"]["strength"] == 0.5
    assert painted.metadata["parameters"]["inpainting"] is True
    (info,) = vm.backend.loaded_models()
    assert info["derived"] == ["img2img", "inpaint", "text2img"]
    # derived pipelines share the modules of the loaded one
    entry = next(iter(vm.backend._cache))
    assert all(p.unet is entry.pipe.unet for p in entry.derived.values())


def test_inpainting_keeps_unmasked_pixels_closer(make_manager: Any, tiny_sd: str, px: Any) -> None:
    """The mask decides where the image changes: against the same edit with an empty mask, the
    masked square changes more than twice as much as the pixels away from it. (Random weights
    decode tiny latents with a whole-image receptive field, so pixels outside move too; an edit
    that ignored the mask would change both alike, a ratio near 1.)"""
    import numpy as np
    from PIL import Image

    vm = make_manager(tiny_sd)
    base = vm.generate_image("a cat", steps=SD_STEPS, seed=2, width=64, height=64)
    painted = vm.edit_image("a dog", base.data, mask=_mask(64), strength=1.0, steps=SD_STEPS, seed=5)
    empty = vm.edit_image("a dog", base.data, mask=Image.new("L", (64, 64), 0), strength=1.0, steps=SD_STEPS, seed=5)
    assert painted.to_pil().size == (64, 64)
    change = abs(px(painted).astype(float) - px(empty).astype(float)).mean(axis=-1)
    inside = change[24:40, 24:40].mean()  # the mask is 16..48; 8 px margin for the blurred edge
    outside = change.copy()
    outside[8:56, 8:56] = np.nan
    assert inside > 2 * np.nanmean(outside), (inside, np.nanmean(outside))


def test_edit_defaults_to_the_input_size_and_reports_resizes(make_manager: Any, tiny_sd: str) -> None:
    from PIL import Image

    vm = make_manager(tiny_sd)
    img = Image.new("RGB", (48, 40), "blue")
    same = vm.edit_image("x", img, steps=SD_STEPS, strength=0.5, seed=0)
    assert same.to_pil().size == (48, 40)
    assert "input_resized_from" not in same.metadata["parameters"]
    smaller = vm.edit_image("x", img, width=32, height=32, steps=SD_STEPS, strength=0.5, seed=0)
    assert smaller.to_pil().size == (32, 32)
    assert smaller.metadata["parameters"]["input_resized_from"] == [48, 40]


def test_progress_events_per_step_and_loading(make_manager: Any, tiny_sd: str) -> None:
    events: list[Any] = []
    make_manager(tiny_sd).generate_image("a cat", steps=3, seed=0, on_progress=events.append, **S)
    phases = [e.phase for e in events]
    assert phases[0] == "started" and phases[-1] == "completed"
    assert phases.count("loading") == 2
    steps = [e for e in events if e.phase == "step"]
    assert [(e.step, e.total_steps) for e in steps] == [(1, 3), (2, 3), (3, 3)]
    assert steps[-1].progress == pytest.approx(1.0)
    assert all(e.task == "text_to_image" and e.elapsed_s is not None for e in events)


def test_cancel_stops_within_one_step(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import GenerationCancelledError

    vm = make_manager(tiny_sd)
    cancel = threading.Event()
    steps: list[int] = []

    def on_progress(event: Any) -> None:
        if event.phase == "step":
            steps.append(event.step)
            cancel.set()

    with pytest.raises(GenerationCancelledError):
        vm.generate_image("a cat", steps=8, seed=0, on_progress=on_progress, cancel=cancel, **S)
    assert steps == [1]
    # the pipeline is usable again afterwards
    assert vm.generate_image("a cat", steps=SD_STEPS, seed=0, **S).to_pil().size == (32, 32)


def test_unsupported_parameters_are_rejected(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import InvalidRequestError

    vm = make_manager(tiny_sd)
    with pytest.raises(
        InvalidRequestError, match=r"extra\['sharpness'\] is not supported by StableDiffusionPipeline"
    ):
        vm.generate_image("a cat", steps=SD_STEPS, extra={"sharpness": 2})
    with pytest.raises(InvalidRequestError, match="set by the backend"):
        vm.generate_image("a cat", steps=SD_STEPS, extra={"generator": None})
    with pytest.raises(InvalidRequestError, match="multiple of 2"):
        vm.generate_image("a cat", steps=SD_STEPS, width=63)
    # a valid pipeline argument passes through extra and is reported
    asset = vm.generate_image("a cat", steps=SD_STEPS, seed=0, extra={"eta": 0.0}, **S)
    assert asset.metadata["parameters"]["eta"] == 0.0


def test_capabilities_follow_the_pipeline_family(make_backend: Any, tiny_sd: str, tiny_flux: str) -> None:
    sd = make_backend(tiny_sd)
    caps = sd.get_capabilities()
    assert set(caps.supported_tasks) == {"text_to_image", "image_to_image"}
    assert caps.supports_mask is True and caps.supports_native_batch is True
    assert caps.raw["pipeline"] == "StableDiffusionPipeline"
    assert sd.load_count == 0  # read from model_index.json, nothing loaded
    assert make_backend(tiny_flux).get_capabilities().raw["pipeline"] == "FluxPipeline"


def test_flux_text_to_image_and_image_to_image(make_manager: Any, tiny_flux: str, px: Any) -> None:
    vm = make_manager(tiny_flux)
    extra = {"max_sequence_length": 32}
    a = vm.generate_image("a cat", width=32, height=32, steps=2, seed=0, extra=extra)
    b = vm.generate_image("a cat", width=32, height=32, steps=2, seed=0, extra=extra)
    assert a.metadata["pipeline"] == "FluxPipeline"
    assert (px(a) == px(b)).all()
    edited = vm.edit_image("a dog", a.data, strength=0.8, steps=2, seed=0, extra=extra)
    assert edited.metadata["pipeline"] == "FluxImg2ImgPipeline"
    assert edited.to_pil().size == (32, 32)
    assert vm.backend.load_count == 1
    batch = vm.generate_image_batch("a cat", count=2, seed=0, width=32, height=32, steps=2, extra=extra)
    assert [x.seed for x in batch] == [0, 1]


def test_explicit_dtype_and_device(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import InvalidRequestError

    asset = make_manager(tiny_sd, device="cpu", torch_dtype="bfloat16").generate_image(
        "a cat", steps=1, seed=0
    )
    assert asset.metadata["dtype"] == "bfloat16"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InvalidRequestError, match="CUDA is not available"):
            make_manager(tiny_sd, device="cuda").generate_image("a cat", steps=1)
    with pytest.raises(InvalidRequestError, match="torch_dtype"):
        make_manager(tiny_sd, torch_dtype="float8").generate_image("a cat", steps=1)


def test_async_manager_runs_the_backend(tiny_sd: str, make_backend: Any) -> None:
    import asyncio

    from abstractvision import AsyncVisionManager

    async def main() -> Any:
        async with AsyncVisionManager(backend=make_backend(tiny_sd)) as vm:
            return await vm.generate_image("a cat", steps=SD_STEPS, seed=0, **S)

    asset = asyncio.run(main())
    from PIL import Image

    assert Image.open(io.BytesIO(asset.data)).size == (32, 32)


def test_concurrent_calls_share_one_load(make_manager: Any, tiny_sd: str, px: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    vm = make_manager(tiny_sd)
    with ThreadPoolExecutor(max_workers=3) as pool:
        assets = list(pool.map(lambda s: vm.generate_image("a cat", steps=1, seed=s, **S), [1, 2, 1]))
    assert vm.backend.load_count == 1
    assert (px(assets[0]) == px(assets[2])).all() and (px(assets[0]) != px(assets[1])).any()


def test_edit_batch_is_native_too(make_manager: Any, tiny_sd: str, px: Any) -> None:
    vm = make_manager(tiny_sd)
    base = vm.generate_image("a cat", steps=1, seed=0, **S)
    edits = vm.edit_image_batch("a dog", base.data, count=2, seed=9, strength=1.0, steps=1)
    assert [e.seed for e in edits] == [9, 10]
    assert all(e.metadata["parameters"]["num_images_per_prompt"] == 2 for e in edits)
    assert (px(edits[0]) != px(edits[1])).any()
