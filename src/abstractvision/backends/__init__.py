"""Execution backends.

:class:`VisionBackend` is the contract. The built-in backends are imported lazily on first
attribute access so that ``import abstractvision.backends`` stays light:

- ``OpenAICompatibleBackendConfig`` / ``OpenAICompatibleVisionBackend`` (HTTP, httpx)
- ``HuggingFaceDiffusersBackendConfig`` / ``HuggingFaceDiffusersVisionBackend`` (extra ``diffusers``)
- ``StableDiffusionCppBackendConfig`` / ``StableDiffusionCppVisionBackend`` (extra ``sdcpp``)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base_backend import TASK_METHODS, VisionBackend

if TYPE_CHECKING:  # pragma: no cover
    from .huggingface_diffusers import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
    from .openai_compatible import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
    from .stable_diffusion_cpp import StableDiffusionCppBackendConfig, StableDiffusionCppVisionBackend

_LAZY: dict[str, str] = {
    "OpenAICompatibleBackendConfig": ".openai_compatible",
    "OpenAICompatibleVisionBackend": ".openai_compatible",
    "HuggingFaceDiffusersBackendConfig": ".huggingface_diffusers",
    "HuggingFaceDiffusersVisionBackend": ".huggingface_diffusers",
    "StableDiffusionCppBackendConfig": ".stable_diffusion_cpp",
    "StableDiffusionCppVisionBackend": ".stable_diffusion_cpp",
}

__all__ = [
    "TASK_METHODS",
    "HuggingFaceDiffusersBackendConfig",
    "HuggingFaceDiffusersVisionBackend",
    "OpenAICompatibleBackendConfig",
    "OpenAICompatibleVisionBackend",
    "StableDiffusionCppBackendConfig",
    "StableDiffusionCppVisionBackend",
    "VisionBackend",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'abstractvision.backends' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
