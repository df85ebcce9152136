"""abstractvision: one model-agnostic API for generative vision.

Text-to-image, image editing (image-to-image, inpainting), upscaling, text-to-video,
image-to-video and multi-view images, on pluggable backends (OpenAI-compatible HTTP,
local Diffusers, local stable-diffusion.cpp). See ``docs/`` for the guides.

Importing this package is cheap: no torch, diffusers, Pillow, numpy or httpx is loaded
until a backend or an image operation needs it.
"""

from __future__ import annotations

from ._version import __version__

TYPE_CHECKING = False  # not `from typing import ...`: keeps the import path free of typing
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .artifacts import LocalAssetStore, RuntimeArtifactStoreAdapter, is_artifact_ref, make_media_ref
    from .async_manager import AsyncVisionManager
    from .errors import (
        AbstractVisionError,
        ArtifactIntegrityError,
        ArtifactNotFoundError,
        BackendNotConfiguredError,
        CapabilityNotSupportedError,
        GenerationCancelledError,
        GenerationTimeoutError,
        InvalidRequestError,
        OptionalDependencyMissingError,
        ProviderError,
        UnknownModelError,
    )
    from .model_capabilities import VisionModelCapabilitiesRegistry
    from .types import GeneratedAsset, PreviewEvent, ProgressEvent, ProviderModelInfo
    from .vision_manager import VisionManager

# Public name -> defining module. Names load on first access, so that `import abstractvision`
# costs almost nothing (no dataclasses, pathlib, asyncio...) until something is used.
_EXPORTS: dict[str, str] = {
    "AbstractVisionError": "errors",
    "ArtifactIntegrityError": "errors",
    "ArtifactNotFoundError": "errors",
    "AsyncVisionManager": "async_manager",
    "BackendNotConfiguredError": "errors",
    "CapabilityNotSupportedError": "errors",
    "GeneratedAsset": "types",
    "GenerationCancelledError": "errors",
    "GenerationTimeoutError": "errors",
    "InvalidRequestError": "errors",
    "LocalAssetStore": "artifacts",
    "OptionalDependencyMissingError": "errors",
    "PreviewEvent": "types",
    "ProgressEvent": "types",
    "ProviderError": "errors",
    "ProviderModelInfo": "types",
    "RuntimeArtifactStoreAdapter": "artifacts",
    "UnknownModelError": "errors",
    "VisionManager": "vision_manager",
    "VisionModelCapabilitiesRegistry": "model_capabilities",
    "is_artifact_ref": "artifacts",
    "make_media_ref": "artifacts",
}

__all__ = [
    "AbstractVisionError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "AsyncVisionManager",
    "BackendNotConfiguredError",
    "CapabilityNotSupportedError",
    "GeneratedAsset",
    "GenerationCancelledError",
    "GenerationTimeoutError",
    "InvalidRequestError",
    "LocalAssetStore",
    "OptionalDependencyMissingError",
    "PreviewEvent",
    "ProgressEvent",
    "ProviderError",
    "ProviderModelInfo",
    "RuntimeArtifactStoreAdapter",
    "UnknownModelError",
    "VisionManager",
    "VisionModelCapabilitiesRegistry",
    "__version__",
    "is_artifact_ref",
    "make_media_ref",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'abstractvision' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
