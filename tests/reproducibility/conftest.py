"""Tiny random-weight engines for the reproducibility tests, built once per session.

Diffusers: a tiny Stable Diffusion pipeline and a tiny Wan 2.1 (text-to-video), saved with
``save_pretrained`` and loaded back through the public backend. stable-diffusion.cpp: a tiny
Flux DiT, TAESD, ESRGAN x2 and a random CLIP-L, run by the sd.cpp backend in its worker process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(os.path.join(tmp_path_factory.mktemp("repro-diffusers"), "tiny-sd"))


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("av")
    from abstractvision.testing.tiny_diffusers import build_tiny_wan

    return build_tiny_wan(os.path.join(tmp_path_factory.mktemp("repro-wan"), "tiny-wan"))


@pytest.fixture(scope="session")
def tiny_flux_sdcpp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("stable_diffusion_cpp")
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    return build_tiny_flux_sdcpp(tmp_path_factory.mktemp("repro-sdcpp"), gguf=False)


@pytest.fixture
def diffusers_backend() -> Iterator[Any]:
    """``make(model_dir)`` -> a HuggingFaceDiffusersVisionBackend on the CPU; all closed afterwards."""
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

    made: list[Any] = []

    def make(model_id: str, cls: Any = HuggingFaceDiffusersVisionBackend) -> Any:
        backend = cls(config=HuggingFaceDiffusersBackendConfig(model_id=model_id, device="cpu"))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        with contextlib.suppress(Exception):
            backend.close()


@pytest.fixture
def sdcpp_backend(tiny_flux_sdcpp: Any) -> Iterator[Any]:
    """``make(**config)`` -> a StableDiffusionCppVisionBackend on the tiny Flux; all closed afterwards."""
    from abstractvision.backends import StableDiffusionCppBackendConfig, StableDiffusionCppVisionBackend

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        fields: dict[str, Any] = {
            "diffusion_model": tiny_flux_sdcpp.diffusion_model,
            "taesd": tiny_flux_sdcpp.taesd,
            "clip_l": tiny_flux_sdcpp.clip_l,
            "n_threads": 1,
            "hang_timeout_s": 60.0,
        }
        fields.update(overrides)
        backend = StableDiffusionCppVisionBackend(StableDiffusionCppBackendConfig(**fields))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        with contextlib.suppress(Exception):
            backend.close()
