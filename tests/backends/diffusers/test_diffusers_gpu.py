"""Checks that need a CUDA or MPS device (skipped on CPU-only machines)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

_HAS_GPU = torch.cuda.is_available() or bool(
    getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
)
pytestmark = [
    pytest.mark.diffusers,
    pytest.mark.gpu,
    pytest.mark.skipif(not _HAS_GPU, reason="needs CUDA or MPS"),
]


def test_auto_device_picks_the_gpu_with_a_half_dtype(make_manager: Any, tiny_sd: str) -> None:
    asset = make_manager(tiny_sd).generate_image("a cat", steps=2, seed=0)
    assert asset.metadata["device"] in ("cuda", "mps")
    assert asset.metadata["dtype"] in ("float16", "bfloat16")


def test_cpu_generator_gives_the_same_image_on_cpu_and_gpu(make_manager: Any, tiny_sd: str, px: Any) -> None:
    gpu = make_manager(tiny_sd, torch_dtype="float32").generate_image("a cat", steps=2, seed=3)
    cpu = make_manager(tiny_sd, device="cpu").generate_image("a cat", steps=2, seed=3)
    assert abs(px(gpu) - px(cpu)).mean() < 2.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload needs CUDA")
def test_offload_modes_switch_and_back(make_manager: Any, tiny_sd: str, px: Any) -> None:
    vm = make_manager(tiny_sd, offload="model", torch_dtype="float32")
    first = vm.generate_image("a cat", steps=2, seed=1)
    assert first.metadata["offload"] == "model"
    vm.edit_image("a dog", first.data, strength=0.5, steps=2, seed=1)  # hooks move to the derived pipeline
    vm.backend.set_offload("sequential")
    assert vm.generate_image("a cat", steps=2, seed=1).metadata["offload"] == "sequential"
    vm.backend.set_offload("none")
    back = vm.generate_image("a cat", steps=2, seed=1)
    assert back.metadata["offload"] == "none"
    assert abs(px(back) - px(first)).mean() < 2.0
    entry = next(iter(vm.backend._cache))
    assert entry.pipe.unet.device.type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures CUDA memory")
def test_unload_frees_gpu_memory(make_backend: Any, tiny_sd: str) -> None:
    backend = make_backend(tiny_sd)
    before = torch.cuda.memory_allocated()
    backend.preload()
    assert torch.cuda.memory_allocated() > before
    backend.unload()
    assert torch.cuda.memory_allocated() == before
