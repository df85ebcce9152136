"""LoRA adapters: applied with scales, switched and removed without reloading the base model."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.diffusers


def test_lora_apply_scale_disable_and_remove(
    make_manager: Any, tiny_sd: str, tiny_lora: str, px: Any
) -> None:
    from abstractvision.types import LoRAAdapterSpec

    vm = make_manager(tiny_sd)
    base = vm.generate_image("a cat", steps=2, seed=0, width=32, height=32)
    full = vm.generate_image(
        "a cat", steps=2, seed=0, width=32, height=32, lora_adapters=[{"source": tiny_lora, "scale": 1.0}]
    )
    half = vm.generate_image(
        "a cat",
        steps=2,
        seed=0,
        width=32,
        height=32,
        lora_adapters=[LoRAAdapterSpec(source=tiny_lora, scale=0.5)],
    )
    assert (px(full) != px(base)).any()
    assert (px(half) != px(full)).any()
    assert full.metadata["parameters"]["lora_adapters"][0]["scale"] == 1.0
    # a request without adapters runs the base model again, bit for bit
    after = vm.generate_image("a cat", steps=2, seed=0, width=32, height=32)
    assert (px(after) == px(base)).all()
    (info,) = vm.backend.loaded_models()
    assert len(info["lora_adapters"]) == 1
    assert vm.backend.remove_lora_adapters() == info["lora_adapters"]
    assert vm.backend.loaded_models()[0]["lora_adapters"] == []
    assert (px(vm.generate_image("a cat", steps=2, seed=0, width=32, height=32)) == px(base)).all()
    assert vm.backend.load_count == 1


def test_several_adapters_with_names_and_edit_tasks(
    make_manager: Any, tiny_sd: str, tiny_lora: str, px: Any
) -> None:
    from abstractvision.errors import InvalidRequestError, ModelLoadError

    vm = make_manager(tiny_sd)
    file_path = f"{tiny_lora}/pytorch_lora_weights.safetensors"
    two = [
        {"source": tiny_lora, "scale": 0.7, "adapter_name": "style"},
        {"source": file_path, "scale": 0.3, "adapter_name": "detail"},
    ]
    asset = vm.generate_image("a cat", steps=2, seed=0, width=32, height=32, lora_adapters=two)
    assert [a["adapter_name"] for a in asset.metadata["parameters"]["lora_adapters"]] == ["style", "detail"]
    edited = vm.edit_image(
        "a dog", asset.data, strength=0.5, steps=2, seed=0, width=32, height=32, lora_adapters=two[:1]
    )
    assert edited.metadata["parameters"]["lora_adapters"][0]["adapter_name"] == "style"
    with pytest.raises(InvalidRequestError, match="already used"):
        vm.generate_image(
            "a cat", steps=1, lora_adapters=[{"source": "/elsewhere/lora", "adapter_name": "style"}]
        )
    with pytest.raises(ModelLoadError, match="does not exist"):
        vm.generate_image("a cat", steps=1, lora_adapters=["/no/such/lora.safetensors"])
    assert vm.backend.load_count == 1
