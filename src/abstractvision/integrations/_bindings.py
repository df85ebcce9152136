"""Backend bindings of the capability: settings from the host, lazily created backends, residency.

A *binding* is one configured backend (engine + model) the capability holds. The default
binding comes from the host's settings; a call with ``provider=`` / ``model=`` may open
another one. Settings are resolved by :func:`abstractvision.config.resolve_settings`, the
resolver the CLI and the server use: explicit host options (AbstractCore owner config) >
``ABSTRACTVISION_*`` environment > config file.

Residency records describe what a binding really holds: the ``loaded`` flag is read from the
backend itself (:func:`probe_loaded`), never assumed. A remote (HTTP) backend holds no
weights in this process and reports ``state="configured"``, ``loaded=False``; a local backend
that cannot tell reports ``state="unknown"``, ``loaded=None``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ..config import BackendSettings, resolve_settings
from ..config import normalize_backend_name as config_normalize_backend_name
from ..errors import InvalidRequestError

__all__ = [
    "OWNER_CONFIG_KEYS",
    "Binding",
    "BindingPool",
    "loaded_details",
    "normalize_backend_name",
    "probe_loaded",
    "provider_name",
    "settings_from_owner",
]

#: AbstractCore owner-config key -> resolver key. The ``vision_*`` names are the ones
#: AbstractCore's own server passes to the vision plugin.
OWNER_CONFIG_KEYS: dict[str, str] = {
    "vision_backend": "backend",
    "vision_provider": "backend",
    "vision_model_id": "model",
    "vision_model": "model",
    "vision_base_url": "base_url",
    "vision_api_key": "api_key",
    "vision_device": "device",
    "vision_dtype": "dtype",
    "vision_torch_dtype": "dtype",
    "vision_allow_download": "allow_download",
    "vision_timeout_s": "timeout_s",
    "vision_store_dir": "store_dir",
    "vision_config": "config",
}
_REMOTE_BACKENDS = {"openai"}


def normalize_backend_name(name: Any) -> str:
    """``"openai-compatible"`` -> ``"openai"``, ``"huggingface"`` -> ``"diffusers"``... (raises when unknown)."""
    return config_normalize_backend_name(name, param="provider")


def _owner_config(owner: Any) -> Mapping[str, Any]:
    config = getattr(owner, "config", None) if owner is not None else None
    return config if isinstance(config, Mapping) else {}


def settings_from_owner(
    owner: Any,
    *,
    backend: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
) -> BackendSettings:
    """Resolve the backend settings for an AbstractCore ``owner``.

    The owner's ``config`` may hold an ``abstractvision`` dict with the resolver's keys
    (``backend``, ``model``, ``base_url``, ``options``...) and/or the flat ``vision_*`` keys
    of :data:`OWNER_CONFIG_KEYS` plus ``vision_options`` (a dict of backend options); the
    flat keys win. ``backend`` (from the registered backend id) and ``overrides`` win over
    both. Environment variables and the config file fill what is left.
    """
    config = _owner_config(owner)
    explicit: dict[str, Any] = {}
    nested = config.get("abstractvision")
    if isinstance(nested, Mapping):
        explicit.update({str(k): v for k, v in nested.items()})
    for key, target in OWNER_CONFIG_KEYS.items():
        value = config.get(key)
        if isinstance(value, str):
            value = value.strip() or None
        if value is not None:
            explicit[target] = value
    options = config.get("vision_options")
    if isinstance(options, Mapping):
        explicit["options"] = {**dict(explicit.get("options") or {}), **dict(options)}
    if backend is not None:
        explicit["backend"] = backend
    explicit.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return resolve_settings(explicit, env=env)


def owner_flag(owner: Any, key: str) -> Optional[bool]:
    """A boolean from the owner's config (``True``/``"1"``/``"true"``...), ``None`` when unset."""
    value = _owner_config(owner).get(key)
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def provider_name(settings: BackendSettings) -> str:
    """The provider name used in records and routed model ids (AbstractCore vocabulary)."""
    if settings.backend == "openai":
        url = str(settings.base_url or "https://api.openai.com/v1").lower()
        return "openai" if "//api.openai.com" in url else "openai-compatible"
    return str(settings.backend or "unknown")


def loaded_details(backend: Any) -> Optional[list[dict[str, Any]]]:
    """``backend.loaded_models()`` when the backend has it (a list of dicts), else ``None``."""
    lister = getattr(backend, "loaded_models", None)
    if not callable(lister):
        return None
    models = lister()
    if not isinstance(models, (list, tuple)):
        return None
    return [dict(m) if isinstance(m, Mapping) else {"model": str(m)} for m in models]


def probe_loaded(backend: Any, model: Optional[str] = None) -> Optional[bool]:
    """Whether ``backend`` holds ``model`` (or any model) in memory now, as the backend reports it.

    Reads ``is_loaded`` (a method or a bool attribute) or ``loaded_models()`` (a list, whose
    entries name their ``model``); ``None`` when the backend exposes neither: the state is
    then unknown, never guessed.
    """
    attr = getattr(backend, "is_loaded", None)
    value = attr() if callable(attr) else attr
    if isinstance(value, bool):
        return value
    details = loaded_details(backend)
    if details is None:
        return None
    if model is None or not any("model" in d for d in details):
        return bool(details)
    return any(d.get("model") == model for d in details)


@dataclass
class Binding:
    """One backend held by the capability, created on first use."""

    settings: BackendSettings
    factory: Callable[[BackendSettings], Any]
    backend: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    created_at: Optional[float] = None
    last_used_at: Optional[float] = None
    request_count: int = 0
    pinned: bool = False
    source: str = "request"
    tasks_used: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.settings.backend)

    @property
    def remote(self) -> bool:
        return self.kind in _REMOTE_BACKENDS

    @property
    def model_label(self) -> str:
        return str(self.settings.model or "default")

    @property
    def load_id(self) -> str:
        return f"{self.kind}:{self.model_label}"

    def get(self) -> Any:
        """The backend, created with the factory on first use."""
        with self.lock:
            if self.backend is None:
                self.backend = self.factory(self.settings)
                self.created_at = time.time()
            return self.backend

    def touch(self, task: Optional[str]) -> None:
        self.last_used_at = time.time()
        self.request_count += 1
        if task and task not in self.tasks_used:
            self.tasks_used.append(task)

    def supported_tasks(self) -> Optional[list[str]]:
        if self.backend is None:
            return None
        getter = getattr(self.backend, "get_capabilities", None)
        caps = getter() if callable(getter) else None
        tasks = getattr(caps, "supported_tasks", None)
        return [str(t) for t in tasks] if tasks is not None else None

    def loaded(self) -> Optional[bool]:
        if self.backend is None or self.remote:
            return False
        return probe_loaded(self.backend, self.settings.model)

    def _loaded_at(self) -> Optional[int]:
        for entry in loaded_details(self.backend) or []:
            if entry.get("model") == self.settings.model and isinstance(entry.get("loaded_at"), (int, float)):
                return int(entry["loaded_at"])
        return int(self.created_at) if self.created_at else None

    def record(self, backend_id: str) -> dict[str, Any]:
        """The residency record (JSON-safe) of this binding, from the backend's real state."""
        loaded = self.loaded()
        if self.remote:
            state = "configured"
        elif loaded is None:
            state = "unknown"
        else:
            state = "loaded" if loaded else "not_loaded"
        tasks = self.supported_tasks() or list(self.tasks_used)
        options = {
            k: v
            for k, v in {
                "base_url": self.settings.base_url if self.remote else None,
                "device": self.settings.device,
                "dtype": self.settings.dtype,
                "allow_download": self.settings.allow_download,
            }.items()
            if v is not None
        }
        return {
            "runtime_id": self.load_id,
            "load_id": self.load_id,
            "backend_id": backend_id,
            "task": tasks[0] if tasks else None,
            "tasks": tasks,
            "provider": provider_name(self.settings),
            "backend_kind": self.kind,
            "model": self.model_label,
            "state": state,
            "loaded": loaded,
            "resident": loaded,
            "instantiated": self.backend is not None,
            "created_at": int(self.created_at) if self.created_at else None,
            "loaded_at": self._loaded_at() if loaded else None,
            "last_used_at": int(self.last_used_at) if self.last_used_at else None,
            "request_count": self.request_count,
            "pinned": self.pinned,
            "source": self.source,
            "scope": "remote" if self.remote else "process",
            "isolation": "remote" if self.remote else "local",
            "error": None,
            "options": options,
            "weights": (loaded_details(self.backend) or [])
            if self.backend is not None and not self.remote
            else [],
        }

    def matches(self, filters: Mapping[str, Any], backend_id: str) -> bool:
        """Whether this binding matches residency ``filters`` (task, provider, model, load_id)."""
        record = self.record(backend_id)
        task = filters.get("task")
        if task and task not in (record["tasks"] or [task]):
            return False
        provider = filters.get("provider") or filters.get("backend") or filters.get("backend_kind")
        if provider:
            try:
                wanted = normalize_backend_name(provider)
            except InvalidRequestError:
                wanted = str(provider).strip().lower()
            if wanted not in (self.kind, record["provider"]):
                return False
        model = filters.get("model")
        if model and str(model) not in (
            self.model_label,
            self.load_id,
            f"{record['provider']}/{self.model_label}",
        ):
            return False
        load_id = filters.get("load_id") or filters.get("runtime_id")
        if load_id and str(load_id) != self.load_id:
            return False
        loaded = filters.get("loaded")
        return not (isinstance(loaded, bool) and record["loaded"] is not loaded)


def _key(settings: BackendSettings) -> tuple[str, Optional[str]]:
    return (str(settings.backend), settings.model)


class BindingPool:
    """The bindings of one capability: creation, eviction of local engines, residency.

    At most ``max_local`` local bindings (Diffusers, sd.cpp) are kept: opening one more
    closes the least recently used one that is not pinned. HTTP bindings are not counted.
    """

    def __init__(
        self, factory: Callable[[BackendSettings], Any], *, backend_id: str, max_local: int = 1
    ) -> None:
        self._factory = factory
        self._backend_id = backend_id
        self._max_local = max(1, int(max_local))
        self._lock = threading.Lock()
        self._bindings: dict[tuple[str, Optional[str]], Binding] = {}

    def get(self, settings: BackendSettings) -> Binding:
        """The binding for ``settings`` (engine + model), opened when new."""
        evicted: list[Binding] = []
        with self._lock:
            binding = self._bindings.get(_key(settings))
            if binding is None:
                binding = Binding(settings=settings, factory=self._factory)
                self._bindings[_key(settings)] = binding
                if not binding.remote:
                    local = [b for b in self._bindings.values() if not b.remote and b is not binding]
                    spare = sorted((b for b in local if not b.pinned), key=lambda b: b.last_used_at or 0.0)
                    while len(local) + 1 > self._max_local and spare:
                        victim = spare.pop(0)
                        local.remove(victim)
                        evicted.append(victim)
                        self._bindings.pop(_key(victim.settings), None)
        for victim in evicted:
            self._close(victim, unload=False)
        return binding

    @staticmethod
    def _close(binding: Binding, *, unload: bool) -> None:
        with binding.lock:
            backend, binding.backend = binding.backend, None
            if backend is not None:
                if unload:
                    backend.unload()
                backend.close()

    def close(self) -> None:
        with self._lock:
            bindings = list(self._bindings.values())
            self._bindings.clear()
        for binding in bindings:
            self._close(binding, unload=False)

    def _held(self) -> list[Binding]:
        with self._lock:
            return [b for b in self._bindings.values() if b.backend is not None]

    def records(self, filters: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
        """Records of the instantiated bindings matching ``filters``, sorted by ``load_id``."""
        wanted = dict(filters or {})
        out = [b.record(self._backend_id) for b in self._held() if b.matches(wanted, self._backend_id)]
        return sorted(out, key=lambda r: str(r["load_id"]))

    def load(self, settings: BackendSettings, *, pin: bool, task: Any = None) -> dict[str, Any]:
        """Preload the backend of ``settings`` and pin it; the record says what the backend holds."""
        binding = self.get(settings)
        with binding.lock:
            was_loaded = binding.backend is not None and binding.loaded() is True
            binding.get().preload()
            binding.pinned = pin
            binding.source = "explicit_preload"
            if binding.last_used_at is None:
                binding.last_used_at = binding.created_at
            if isinstance(task, str) and task and task not in binding.tasks_used:
                binding.tasks_used.append(task)
            record = binding.record(self._backend_id)
        record["loaded_new"] = not was_loaded and record["loaded"] is True
        return record

    def unload(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """Unload and close the one binding matching ``filters`` (see ``Binding.matches``)."""
        with self._lock:
            held = [b for b in self._bindings.values() if b.backend is not None]
            matched = [b for b in held if b.matches(filters, self._backend_id)]
            if len(matched) > 1:
                raise InvalidRequestError(
                    "Ambiguous unload request: several models match; give load_id, or provider and model. "
                    f"Held: {', '.join(sorted(b.load_id for b in matched))}.",
                    param="load_id",
                )
            if not matched:
                listed = ", ".join(sorted(b.load_id for b in held)) or "none"
                raise InvalidRequestError(
                    f"No loaded vision model matches {dict(filters)!r}. Held: {listed}.", param="load_id"
                )
            target = matched[0]
            record = target.record(self._backend_id)
            self._bindings.pop(_key(target.settings), None)
        self._close(target, unload=True)
        record.update(
            state="unloaded",
            loaded=False,
            resident=False,
            unloaded=True,
            instantiated=False,
            loaded_at=None,
            weights=[],
        )
        return record
