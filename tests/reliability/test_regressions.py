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
