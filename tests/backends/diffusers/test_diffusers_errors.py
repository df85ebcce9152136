"""Native failures mapped to abstractvision errors: out-of-memory, bad arguments, missing extras."""

from __future__ import annotations

import sys
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers


def _failing_call(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import functools

    import diffusers

    @functools.wraps(diffusers.StableDiffusionPipeline.__call__)  # keeps the signature the backend checks
    def boom(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", boom)


@pytest.mark.parametrize(
    "native",
    [
        "torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')",
        "RuntimeError('MPS backend out of memory (MPS allocated: 8 GB)')",
    ],
)
def test_out_of_memory_advises_offload(
    make_manager: Any, tiny_sd: str, monkeypatch: pytest.MonkeyPatch, native: str
) -> None:
    import torch

    from abstractvision.errors import OutOfMemoryError

    vm = make_manager(tiny_sd)
    vm.backend.preload()
    exc = eval(native, {"torch": torch})
    _failing_call(monkeypatch, exc)
    with pytest.raises(OutOfMemoryError, match="offload='model'") as info:
        vm.generate_image("a cat", steps=1)
    assert info.value.__cause__ is exc


def test_pipeline_value_error_is_an_invalid_request(
    make_manager: Any, tiny_sd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abstractvision.errors import BackendError, InvalidRequestError

    vm = make_manager(tiny_sd)
    vm.backend.preload()
    _failing_call(monkeypatch, ValueError("`height` and `width` have to be divisible by 8"))
    with pytest.raises(InvalidRequestError, match="divisible by 8"):
        vm.generate_image("a cat", steps=1)
    _failing_call(monkeypatch, RuntimeError("cuDNN error"))
    with pytest.raises(BackendError, match="cuDNN error"):
        vm.generate_image("a cat", steps=1)


def test_errors_raised_by_callbacks_pass_through(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import GenerationCancelledError

    def stop(event: Any) -> None:
        if event.phase == "step":
            raise GenerationCancelledError("stopped by the caller")

    with pytest.raises(GenerationCancelledError, match="stopped by the caller"):
        make_manager(tiny_sd).generate_image("a cat", steps=2, on_progress=stop)


@pytest.mark.parametrize("module", ["torch", "diffusers"])
def test_missing_extra_names_the_install_command(
    make_backend: Any, tiny_sd: str, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    from abstractvision.errors import OptionalDependencyMissingError

    backend = make_backend(tiny_sd)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail
    with pytest.raises(OptionalDependencyMissingError, match=r'pip install "abstractvision\[diffusers\]"'):
        backend.preload()


def test_missing_peft_for_lora(
    make_manager: Any, tiny_sd: str, tiny_lora: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abstractvision.errors import OptionalDependencyMissingError

    vm = make_manager(tiny_sd)
    vm.backend.preload()
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(OptionalDependencyMissingError, match="peft"):
        vm.generate_image("a cat", steps=1, lora_adapters=[tiny_lora])
