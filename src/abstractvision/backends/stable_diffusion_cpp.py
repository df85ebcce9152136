"""stable-diffusion.cpp backend (placeholder until its implementation lands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import AbstractVisionError
from .base_backend import VisionBackend


@dataclass
class StableDiffusionCppBackendConfig:
    """Configuration of the stable-diffusion.cpp backend."""

    model_id: Any = None


class StableDiffusionCppVisionBackend(VisionBackend):
    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        raise AbstractVisionError("StableDiffusionCppVisionBackend is not implemented yet in this version.")
