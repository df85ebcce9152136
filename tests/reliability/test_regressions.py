"""Regression tests for the bugs the reliability suites found (one test per bug).

Each test names the bug; the fix is in the commit that added the test.
"""

from __future__ import annotations

import pytest

from abstractvision import VisionManager
from abstractvision.errors import InvalidRequestError
from fakes import FakeBackend


@pytest.fixture
def vm() -> VisionManager:
    return VisionManager(backend=FakeBackend())


@pytest.mark.parametrize("value", [10**400, -(10**400)])
@pytest.mark.parametrize("name", ["guidance_scale", "strength"])
def test_float_params_given_ints_too_large_for_a_float(vm, name, value):
    """Bug: check_float called float() on huge ints and leaked OverflowError."""
    call = vm.edit_image if name == "strength" else vm.generate_image
    args = ("a", b"unused") if name == "strength" else ("a",)
    with pytest.raises(InvalidRequestError, match=f"'{name}' must be a finite number") as info:
        call(*args, **{name: value})
    assert info.value.param == name


@pytest.mark.parametrize(
    "adapters",
    [
        [{"source": "x", 1: 2, "a": 3}],  # keys of mixed types: sorted() raised TypeError
        [{"scale": 1.0}],
        [42],
        [{"source": "  "}],
        b"lora.safetensors",  # bytes are a Sequence of ints
    ],
)
def test_lora_adapter_errors_are_typed_and_name_the_parameter(vm, adapters):
    """Bug: a LoRA dict with keys of mixed types leaked TypeError; messages did not name the parameter."""
    with pytest.raises(InvalidRequestError, match="lora_adapters") as info:
        vm.generate_image("a", lora_adapters=adapters)
    assert info.value.param == "lora_adapters"


def test_cancel_given_the_event_class_instead_of_an_instance(vm):
    """Bug: cancel=threading.Event (the class) passed validation, then is_set() raised TypeError."""
    import threading

    with pytest.raises(InvalidRequestError, match=r"'cancel' must be an instance") as info:
        vm.generate_image("a", cancel=threading.Event)
    assert info.value.param == "cancel"
