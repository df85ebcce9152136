"""OpenAI-compatible HTTP backend (placeholder until its implementation lands)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import AbstractVisionError
from .base_backend import VisionBackend


@dataclass
class OpenAICompatibleBackendConfig:
    """Configuration of the OpenAI-compatible HTTP backend."""

    model_id: Any = None


class OpenAICompatibleVisionBackend(VisionBackend):
    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        raise AbstractVisionError("OpenAICompatibleVisionBackend is not implemented yet in this version.")
