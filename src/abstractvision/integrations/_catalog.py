"""The capability's model catalog: local models found on this machine, plus the configured backend's.

Without any configuration, :func:`abstractvision.discovery.discover_local_models` lists what
this machine has (Hugging Face cache, ``ABSTRACTVISION_MODELS_DIR``); each model becomes a
routed id ``"<backend>/<name>"`` that a task call can name as ``model=`` to run it. The
configured backend's own catalog (a remote server's ``/models``, or the local inventory) is
added when a backend is configured. Discovery is cached for a minute per capability.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Optional

from ..config import BackendSettings, override_settings
from ..types import TASKS

__all__ = ["LocalCatalog", "local_entry"]

_TTL_S = 60.0


class LocalCatalog:
    """Discovered local models, cached, looked up by name or routed id."""

    def __init__(self, env: Optional[Mapping[str, str]] = None, models_dir: Optional[str] = None) -> None:
        self._env = env
        self._models_dir = models_dir
        self._cached: Optional[tuple[float, Any]] = None

    def discovery(self) -> Any:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > _TTL_S:
            from ..discovery import discover_local_models

            self._cached = (now, discover_local_models(models_dir=self._models_dir, env=self._env))
        return self._cached[1]

    def find(self, provider: Optional[str], model: Optional[str]) -> Any:
        """The servable local model named ``model`` (or ``"<backend>/<name>"``), else ``None``."""
        if not model:
            return None
        for local in self.discovery().models:
            if not local.servable or (provider and provider != local.backend):
                continue
            if model in (local.name, f"{local.backend}/{local.name}"):
                return local
        return None

    def settings_for(self, local: Any, base: BackendSettings) -> BackendSettings:
        """Settings that run ``local``, keeping ``base``'s machine-wide settings (device, dtype...)."""
        start = BackendSettings()
        for key in ("device", "dtype", "allow_download", "timeout_s", "store_dir"):
            setattr(start, key, getattr(base, key))
        return override_settings(start, local.settings(), source="local model")

    def entries(self, task: Optional[str], backend_id: str) -> list[dict[str, Any]]:
        return [
            local_entry(m, backend_id)
            for m in self.discovery().models
            if m.servable and (task is None or task in m.tasks)
        ]


def local_entry(model: Any, backend_id: str) -> dict[str, Any]:
    """A discovered model as a ``list_provider_models`` entry (JSON-safe, no weights read)."""
    routed = f"{model.backend}/{model.name}"
    tasks = [t for t in model.tasks if t in TASKS]
    return {
        "id": model.name,
        "object": "model",
        "created": None,
        "owned_by": "local",
        "capabilities": tasks,
        "raw": {
            "source": model.source,
            "format": model.format,
            "size_bytes": model.size_bytes,
            "registry_id": model.registry_id,
            "pipeline_class": model.pipeline_class,
            "architecture": model.architecture,
            "path": model.path,
        },
        "provider": model.backend,
        "backend": model.backend,
        "backend_id": backend_id,
        "model": routed,
        "routed_model": routed,
        "tasks": tasks,
        "configured": False,
        "local": True,
    }
