"""Hugging Face Diffusers backend (placeholder until its implementation lands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import AbstractVisionError
from .base_backend import VisionBackend


@dataclass
class HuggingFaceDiffusersBackendConfig:
    """Configuration of the Hugging Face Diffusers backend."""

    model_id: Any = None


class HuggingFaceDiffusersVisionBackend(VisionBackend):
    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        raise AbstractVisionError("HuggingFaceDiffusersVisionBackend is not implemented yet in this version.")
