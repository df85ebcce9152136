"""Fixtures for the Diffusers backend: tiny random-weight pipelines built once per session.

Every model is built from configs (no hub), saved with ``save_pretrained`` and loaded back
through the public backend with ``local_files_only=True``. Building all of them takes a
few seconds on two CPU cores (most of it importing torch and diffusers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("diffusers-tiny"))


@pytest.fixture(scope="session")
def tiny_sd(tiny_root: str) -> str:
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(os.path.join(tiny_root, "tiny-sd"))


@pytest.fixture(scope="session")
def tiny_flux(tiny_root: str) -> str:
    from abstractvision.testing.tiny_diffusers import build_tiny_flux

    return build_tiny_flux(os.path.join(tiny_root, "tiny-flux"))


@pytest.fixture(scope="session")
def tiny_wan(tiny_root: str) -> str:
    from abstractvision.testing.tiny_diffusers import build_tiny_wan

    return build_tiny_wan(os.path.join(tiny_root, "tiny-wan"))


@pytest.fixture(scope="session")
def tiny_wan_i2v(tiny_root: str) -> str:
    pytest.importorskip("ftfy", reason="diffusers' WanImageToVideoPipeline needs ftfy to clean prompts")
    from abstractvision.testing.tiny_diffusers import build_tiny_wan_i2v

    return build_tiny_wan_i2v(os.path.join(tiny_root, "tiny-wan-i2v"))


@pytest.fixture(scope="session")
def tiny_upscaler(tiny_root: str) -> str:
    from abstractvision.testing.tiny_diffusers import build_tiny_sd_upscaler

    return build_tiny_sd_upscaler(os.path.join(tiny_root, "tiny-sd-x4-upscaler"))


@pytest.fixture(scope="session")
def tiny_lora(tiny_root: str) -> str:
    pytest.importorskip("peft")
    from abstractvision.testing.tiny_diffusers import build_tiny_lora

    return build_tiny_lora(os.path.join(tiny_root, "tiny-sd-lora"))


@pytest.fixture
def make_backend() -> Iterator[Any]:
    """Build HuggingFaceDiffusersVisionBackend objects from config fields; all are closed afterwards."""
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

    made: list[Any] = []

    def make(model_id: str, **fields: Any) -> Any:
        backend = HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id=model_id, **fields)
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        with contextlib.suppress(Exception):
            backend.close()


@pytest.fixture
def make_manager(make_backend: Any) -> Any:
    from abstractvision import VisionManager

    def make(model_id: str, **fields: Any) -> Any:
        return VisionManager(backend=make_backend(model_id, **fields))

    return make


def pixels(asset: Any) -> Any:
    """The decoded RGB pixels of an image asset (PNG bytes differ by their metadata chunks)."""
    import numpy as np

    return np.asarray(asset.to_pil().convert("RGB"), dtype=np.int16)


@pytest.fixture
def px() -> Any:
    return pixels


@pytest.fixture(scope="session")
def tiny_family(tiny_root: str) -> Any:
    """``tiny_family(name)``: the folder of a tiny model of that family, built once per session.

    Names are builder suffixes in :mod:`abstractvision.testing` (``"sdxl"`` ->
    ``build_tiny_sdxl``); ``"kandinsky22_inpaint"`` is the inpainting Kandinsky 2.2.
    """
    from abstractvision.testing import (
        tiny_diffusers,
        tiny_image_families,
        tiny_unet_families,
        tiny_video_families,
    )

    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            folder = os.path.join(tiny_root, f"family-{name}")
            if name == "kandinsky22_inpaint":
                built[name] = tiny_unet_families.build_tiny_kandinsky22(folder, inpaint=True)
            else:
                for module in (tiny_image_families, tiny_unet_families, tiny_video_families, tiny_diffusers):
                    builder = getattr(module, f"build_tiny_{name}", None)
                    if builder is not None:
                        built[name] = builder(folder)
                        break
                else:
                    raise LookupError(f"no tiny builder for {name!r}")
        return built[name]

    return get
