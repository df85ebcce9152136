"""Loading, errors for missing weights, the LRU of loaded models, unload and the local catalog."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import weakref
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers


def test_module_import_stays_light() -> None:
    code = (
        "import sys, abstractvision.backends.huggingface_diffusers as m; "
        "m.HuggingFaceDiffusersBackendConfig(model_id='x'); "
        "print(sorted(k for k in ('torch', 'diffusers', 'transformers', 'numpy', 'av') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_config_validation() -> None:
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig
    from abstractvision.errors import InvalidRequestError

    config = HuggingFaceDiffusersBackendConfig(model_id="runwayml/stable-diffusion-v1-5")
    assert (config.device, config.allow_download, config.offload, config.max_loaded_models) == (
        "auto",
        False,
        "none",
        1,
    )
    for bad in ({"offload": "gpu"}, {"max_loaded_models": 0}, {"video_fps": 0}, {"model_id": ""}):
        with pytest.raises(InvalidRequestError):
            HuggingFaceDiffusersBackendConfig(**{"model_id": "m", **bad})


def test_hub_id_with_downloads_disabled_says_how_to_fix(
    make_manager: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abstractvision.errors import ModelLoadError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    vm = make_manager("runwayml/stable-diffusion-v1-5", cache_dir=str(tmp_path / "empty-hub-cache"))
    with pytest.raises(ModelLoadError) as info:
        vm.generate_image("a watercolor painting of a lighthouse", width=512, height=512, steps=10)
    message = str(info.value)
    assert "allow_download=False" in message
    assert "huggingface-cli download runwayml/stable-diffusion-v1-5" in message
    assert "allow_download=True" in message
    assert vm.backend.load_count == 0


def test_missing_directory_and_not_a_pipeline(make_backend: Any, tmp_path: Any) -> None:
    from abstractvision.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="does not exist"):
        make_backend(str(tmp_path / "nope" / "model")).preload()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        make_backend(str(tmp_path / "empty")).preload()


def test_missing_weights_and_missing_pipeline_class(make_backend: Any, tiny_sd: str, tmp_path: Any) -> None:
    from abstractvision.errors import ModelLoadError

    broken = tmp_path / "no-unet-weights"
    shutil.copytree(tiny_sd, broken)
    os.remove(broken / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ModelLoadError, match="could not be loaded") as info:
        make_backend(str(broken)).preload()
    assert isinstance(info.value.__cause__, OSError)

    future = tmp_path / "future-pipeline"
    shutil.copytree(tiny_sd, future)
    index = json.loads((future / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusion9Pipeline"
    (future / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match=r"StableDiffusion9Pipeline.*Upgrade diffusers"):
        make_backend(str(future)).preload()


def test_lru_keeps_at_most_max_loaded_models(
    make_manager: Any, tiny_sd: str, tiny_flux: str, tiny_upscaler: str
) -> None:
    vm = make_manager(tiny_sd, max_loaded_models=2, upscaler_model_id=tiny_upscaler)
    backend = vm.backend
    vm.generate_image("a cat", steps=1, seed=0)
    vm.generate_image(
        "a cat",
        steps=1,
        seed=0,
        width=32,
        height=32,
        extra={"model_id": tiny_flux, "max_sequence_length": 16},
    )
    assert [m["model"] for m in backend.loaded_models()] == [tiny_sd, tiny_flux]
    vm.generate_image("a cat", steps=1, seed=0)  # tiny_sd becomes most recent
    vm.upscale_image(vm.generate_image("x", steps=1, seed=0, width=8, height=8).data, steps=1, seed=0)
    assert [m["model"] for m in backend.loaded_models()] == [tiny_sd, tiny_upscaler]  # flux evicted
    assert backend.load_count == 3
    for info in backend.list_provider_models():
        assert info.owned_by == "local"
    listed = {m.id: m for m in backend.list_provider_models()}
    assert listed[tiny_sd].raw["loaded"] and listed[tiny_upscaler].raw["loaded"]
    assert listed[tiny_upscaler].capabilities == ("image_upscale",)
    assert [m.id for m in backend.list_provider_models(task="image_upscale")] == [tiny_upscaler]


def test_preload_then_unload_releases_the_pipeline(make_backend: Any, tiny_sd: str) -> None:
    backend = make_backend(tiny_sd)
    backend.preload()
    assert backend.load_count == 1
    entry = next(iter(backend._cache))
    unet = weakref.ref(entry.pipe.unet)
    pipe = weakref.ref(entry.pipe)
    del entry
    backend.unload()
    gc.collect()
    assert backend.loaded_models() == []
    assert unet() is None and pipe() is None
    backend.preload()  # loads again after an unload
    assert backend.load_count == 2


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_unload_returns_memory_to_the_os(make_backend: Any, tiny_root: str, tiny_sd: str) -> None:
    from abstractvision.backends._diffusers.runtime import free_memory
    from abstractvision.testing.tiny_diffusers import build_tiny_sd
    from abstractvision.types import ImageGenerationRequest

    wide = build_tiny_sd(os.path.join(tiny_root, "wide-sd"), block_out_channels=(128, 256))
    weights = sum(
        os.path.getsize(os.path.join(r, f))
        for r, _, fs in os.walk(wide)
        for f in fs
        if f.endswith(".safetensors")
    )
    # warm torch up on the small model so one-time runtime allocations are not counted
    make_backend(tiny_sd).generate_image(
        ImageGenerationRequest(prompt="x", steps=1, seed=0, width=32, height=32)
    )
    backend = make_backend(wide)
    backend.generate_image(ImageGenerationRequest(prompt="x", steps=1, seed=0, width=32, height=32))
    free_memory(None)
    loaded = _rss_bytes()
    backend.unload()
    released = loaded - _rss_bytes()
    print(f"weights {weights / 1e6:.1f} MB, RSS released by unload() {released / 1e6:.1f} MB")
    assert released > 0.6 * weights


def test_upscaler_pipeline_and_clear_error_without_one(
    make_manager: Any, tiny_sd: str, tiny_upscaler: str
) -> None:
    from PIL import Image

    from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError

    low = Image.new("RGB", (8, 8), "red")
    with pytest.raises(CapabilityNotSupportedError, match="image_upscale"):
        make_manager(tiny_sd).upscale_image(low)
    with pytest.raises(CapabilityNotSupportedError, match="upscaler_model_id"):
        from abstractvision.types import ImageUpscaleRequest

        make_manager(tiny_sd).backend.upscale_image(ImageUpscaleRequest(image=b"x"))

    events: list[Any] = []
    up = make_manager(tiny_upscaler)  # the upscaler itself as the model
    assert up.backend.get_capabilities().supported_tasks == ("image_upscale",)
    asset = up.upscale_image(low, steps=2, seed=0, on_progress=events.append)
    assert asset.to_pil().size == (32, 32)
    assert asset.metadata["parameters"]["native_scale"] == 4
    assert [e.step for e in events if e.phase == "step"] == [1, 2]
    half = up.upscale_image(low, steps=1, seed=0, scale=2)
    assert half.to_pil().size == (16, 16)
    assert half.metadata["parameters"]["resampled_from"] == [32, 32]
    with pytest.raises(InvalidRequestError, match="scale=8"):
        up.upscale_image(low, steps=2, scale=8)
    combined = make_manager(tiny_sd, upscaler_model_id=tiny_upscaler)
    assert "image_upscale" in combined.backend.get_capabilities().supported_tasks
    assert combined.upscale_image(low, steps=1, seed=0).metadata["model"] == tiny_upscaler


def test_offload_on_cpu_is_refused_not_ignored(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import InvalidRequestError

    vm = make_manager(tiny_sd, device="cpu", offload="model")
    with pytest.raises(InvalidRequestError, match="offload='model'"):
        vm.generate_image("a cat", steps=1)
    auto = make_manager(tiny_sd, device="cpu", offload="auto")
    assert auto.generate_image("a cat", steps=1, seed=0).metadata["offload"] == "none"
    auto.backend.set_offload("none")
    with pytest.raises(InvalidRequestError):
        auto.backend.set_offload("sometimes")


def test_memory_options_are_applied(make_manager: Any, tiny_sd: str) -> None:
    vm = make_manager(tiny_sd, vae_slicing=True, vae_tiling=True, attention="slicing")
    vm.generate_image("a cat", steps=1, seed=0, width=32, height=32)
    entry = next(iter(vm.backend._cache))
    assert entry.runtime_options == {"vae_slicing": True, "vae_tiling": True, "attention": "slicing"}
    assert entry.pipe.vae.use_slicing and entry.pipe.vae.use_tiling
    sdpa = make_manager(tiny_sd, attention="sdpa")
    assert sdpa.generate_image("a cat", steps=1, seed=0, width=32, height=32).to_pil().size == (32, 32)


def test_describe(make_backend: Any, tiny_sd: str) -> None:
    backend = make_backend(tiny_sd)
    assert backend.describe() == {"backend": "diffusers", "model": tiny_sd, "device": "auto", "dtype": "auto"}
    backend.preload()
    from abstractvision.backends._diffusers.runtime import dtype_name, resolve_device, resolve_dtype

    device = resolve_device("auto")  # cuda or mps on a GPU machine, cpu here
    assert backend.describe() == {
        "backend": "diffusers",
        "model": tiny_sd,
        "device": device,
        "dtype": dtype_name(resolve_dtype(None, device)),
    }


def test_compile_option_compiles_the_denoiser_in_place(make_backend: Any, tiny_sd: str) -> None:
    # nn.Module.compile() only installs the compiled call; tracing would happen on the first step
    backend = make_backend(tiny_sd, compile=True, compile_backend="eager")
    backend.preload()
    entry = next(iter(backend._cache))
    assert entry.runtime_options["compile"] == {"backend": "eager", "mode": None}
    assert type(entry.pipe.unet).__name__ == "UNet2DConditionModel"
    assert entry.pipe.unet._compiled_call_impl is not None
