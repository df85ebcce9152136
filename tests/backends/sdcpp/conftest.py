"""Fixtures for the stable-diffusion.cpp backend: a tiny Flux model set built once per session."""

from __future__ import annotations

from typing import Any

import pytest

from abstractvision.testing.tiny_sdcpp import TinyFluxFiles, build_tiny_flux_sdcpp


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxFiles:
    """Tiny Flux DiT, TAESD, ESRGAN x2 and a random full-size CLIP-L (about 2 s, 255 MB)."""
    return build_tiny_flux_sdcpp(tmp_path_factory.mktemp("sdcpp-tiny"))


@pytest.fixture
def make_config(tiny_flux: TinyFluxFiles) -> Any:
    """Build a StableDiffusionCppBackendConfig for the tiny model, with overrides."""
    from abstractvision.backends import StableDiffusionCppBackendConfig

    def make(**overrides: Any) -> Any:
        fields: dict[str, Any] = {
            "diffusion_model": tiny_flux.diffusion_model,
            "taesd": tiny_flux.taesd,
            "clip_l": tiny_flux.clip_l,
            "n_threads": 1,  # ggml threads spin: one thread is robust on a busy 2-core CI box
            "hang_timeout_s": 60.0,
        }
        fields.update(overrides)
        return StableDiffusionCppBackendConfig(**fields)

    return make


@pytest.fixture
def make_manager(make_config: Any) -> Any:
    """A VisionManager over a fresh backend; every backend made here is closed afterwards."""
    from abstractvision import VisionManager
    from abstractvision.backends import StableDiffusionCppVisionBackend

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        vm = VisionManager(backend=StableDiffusionCppVisionBackend(make_config(**overrides)))
        made.append(vm)
        return vm

    yield make
    for vm in made:
        vm.close()
