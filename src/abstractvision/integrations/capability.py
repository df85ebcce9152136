"""The AbstractCore vision capability, implemented on :class:`~abstractvision.VisionManager`.

:class:`AbstractVisionCapability` implements AbstractCore's ``VisionCapability`` protocol
(``abstractcore.capabilities.types``): ``t2i``, ``t2i_batch``, ``i2i``, ``i2i_batch``,
``t2v``, ``t2v_batch``, ``i2v``, ``i2v_batch``, ``upscale_image``, the catalog calls
``list_provider_models(task=)`` / ``list_provider_adapters`` and the residency calls
``load_resident_model`` / ``list_loaded_models`` / ``list_resident_models`` /
``unload_resident_model``. It adds ``multi_view_image``, ``available_providers`` and
``list_operations``.

Every task call returns ``bytes`` (a list for batches and multi-view) or, when the host
passes an ``artifact_store``, artifact ref dicts; ``run_id``, ``tags`` and ``metadata`` are
written with the artifact. Everything the catalog and residency calls return is JSON-safe.
Per call, ``provider=`` (``"openai"``, ``"diffusers"``, ``"sdcpp"`` or an alias) and
``model=`` select another engine/model than the configured default.

Example (without AbstractCore)::

    cap = AbstractVisionCapability(settings={"backend": "openai", "base_url": "http://127.0.0.1:1234/v1"})
    png = cap.t2i("a lighthouse at dusk", width=512, height=512)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ..config import BackendSettings, create_backend, resolve_settings
from ..errors import InvalidRequestError
from ..types import TASKS, GeneratedAsset
from . import _inputs
from ._bindings import (
    Binding,
    BindingPool,
    normalize_backend_name,
    owner_flag,
    provider_name,
    settings_from_owner,
)
from ._capability_tasks import TaskMethods
from ._catalog import LocalCatalog

__all__ = ["DEFAULT_BACKEND_ID", "AbstractVisionCapability"]

#: The backend id the settings-driven capability registers under.
DEFAULT_BACKEND_ID = "abstractvision"
NO_BACKEND_MESSAGE = (
    "No vision backend configured for AbstractVision. Set the owner config vision_backend "
    "(openai | diffusers | sdcpp) or vision_base_url, ABSTRACTVISION_BACKEND / "
    "ABSTRACTVISION_BASE_URL, or a config file (~/.config/abstractvision/config.toml); "
    "or pass model= one of list_provider_models() (models found on this machine)."
)


_IMAGE_TASK_OPS = {
    "text_to_image": ("t2i", ["text"], ["image"], ["prompt"]),
    "image_to_image": ("i2i", ["text", "image"], ["image"], ["prompt", "image"]),
    "image_upscale": ("upscale_image", ["image"], ["image"], ["image"]),
    "multi_view_image": ("multi_view_image", ["text", "image"], ["image"], ["prompt"]),
    "text_to_video": ("t2v", ["text"], ["video"], ["prompt"]),
    "image_to_video": ("i2v", ["image", "text"], ["video"], ["image"]),
}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _plain(out: Any) -> Any:
    """Manager output -> protocol output: bytes for assets, refs unchanged, lists mapped."""
    if isinstance(out, list):
        return [_plain(item) for item in out]
    if isinstance(out, GeneratedAsset):
        return bytes(out.data)
    return out


class AbstractVisionCapability(TaskMethods):
    """AbstractCore ``VisionCapability`` on abstractvision backends.

    Args:
        owner: the AbstractCore host (an LLM instance); its ``config`` supplies settings
            (see :func:`~abstractvision.integrations._bindings.settings_from_owner`).
        backend_id: the id this instance was registered under.
        backend: force one engine (``"openai"``, ``"diffusers"``, ``"sdcpp"``).
        settings: explicit resolver settings (``backend``, ``model``, ``base_url``,
            ``options``...) applied over the owner's config.
        allow_local_paths: accept plain filesystem paths as image inputs (default: the
            owner's ``vision_allow_local_paths``, else ``False``: tool arguments come from
            models and must not read host files).
        backend_factory: builds a backend from :class:`BackendSettings` (default
            :func:`abstractvision.config.create_backend`); tests inject fakes here.
        max_local_models: local bindings (Diffusers, sd.cpp) kept at once; opening one more
            closes the least recently used one that is not pinned by ``load_resident_model``.
        env: environment mapping for the resolver (default ``os.environ``).
    """

    def __init__(
        self,
        owner: Any = None,
        *,
        backend_id: str = DEFAULT_BACKEND_ID,
        backend: Optional[str] = None,
        settings: Optional[Mapping[str, Any]] = None,
        allow_local_paths: Optional[bool] = None,
        backend_factory: Optional[Callable[[BackendSettings], Any]] = None,
        max_local_models: int = 1,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.owner = owner
        self.backend_id = backend_id
        self._forced = normalize_backend_name(backend) if backend is not None else None
        self._overrides = dict(settings or {})
        self._env = env
        flag = (
            allow_local_paths
            if allow_local_paths is not None
            else owner_flag(owner, "vision_allow_local_paths")
        )
        self.allow_local_paths = bool(flag)
        # never fails for a missing configuration: listing works without one (local models),
        # and a task call without a backend raises NO_BACKEND_MESSAGE
        self.settings = settings_from_owner(owner, backend=self._forced, overrides=self._overrides, env=env)
        self._local = LocalCatalog(env, models_dir=self.settings.models_dir)
        self._pool = BindingPool(
            backend_factory or create_backend, backend_id=backend_id, max_local=max_local_models
        )
        self._registry: Any = None
        self._default_store: Any = None

    def __repr__(self) -> str:
        return (
            f"AbstractVisionCapability(backend_id={self.backend_id!r}, backend={self.settings.backend!r}, "
            f"model={self.settings.model!r})"
        )

    # -- bindings ---------------------------------------------------------------------

    def _local_model(self, provider: Optional[str], model: Any) -> Any:
        """A discovered local model named by ``model`` (its name or routed id), else ``None``."""
        if not isinstance(model, str) or not model or model == self.settings.model:
            return None
        return self._local.find(normalize_backend_name(provider) if provider else None, model)

    def _settings_for(self, provider: Optional[str], model: Optional[str]) -> BackendSettings:
        base = self.settings
        local = self._local_model(provider, model)
        if local is not None:
            return self._local.settings_for(local, base)
        kind = normalize_backend_name(provider) if provider else base.backend
        if kind is None:
            raise InvalidRequestError(NO_BACKEND_MESSAGE, param="backend")
        if kind == base.backend and (model is None or model == base.model):
            return base
        if kind == base.backend:
            return settings_from_owner(
                self.owner, backend=kind, overrides={**self._overrides, "model": model}, env=self._env
            )
        # another engine: the default binding's model/options/url belong to its own engine
        return resolve_settings({"backend": kind, "model": model}, env=self._env)

    def _unroute(self, provider: Optional[str], model: Any) -> Optional[str]:
        """``"diffusers/<id>"`` (a routed id from :meth:`list_provider_models`) -> ``"<id>"``."""
        if model is None or model == "":
            return None
        if not isinstance(model, str):
            raise InvalidRequestError("model must be a string.", param="model")
        prefix = provider_name(self._settings_for(provider, None)) + "/"
        return model[len(prefix) :] if model.startswith(prefix) else model

    def _binding(self, provider: Optional[str] = None, model: Optional[str] = None) -> Binding:
        return self._pool.get(self._settings_for(provider, model))

    def close(self) -> None:
        """Close every backend this capability opened."""
        self._pool.close()

    def _model_registry(self) -> Any:
        if self._registry is None:
            from ..model_capabilities import VisionModelCapabilitiesRegistry

            self._registry = VisionModelCapabilitiesRegistry()
        return self._registry

    def _gating_model(self, model: Optional[str]) -> Optional[str]:
        if not model:
            return None
        registry = self._model_registry()
        return model if model in registry else None

    def default_store(self) -> Any:
        """The local artifact store used by the agent tools (``store_dir`` setting or the default)."""
        if self._default_store is None:
            from ..artifacts import LocalAssetStore

            self._default_store = LocalAssetStore(self.settings.store_dir)
        return self._default_store

    # -- task plumbing ----------------------------------------------------------------

    def _call(
        self,
        task: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        artifact_store: Any,
        run_id: Optional[str],
        tags: Optional[dict[str, str]],
        metadata: Optional[dict[str, Any]],
        images: Optional[dict[str, Any]] = None,
    ) -> Any:
        from ..vision_manager import VisionManager

        provider = kwargs.pop("provider", None)
        requested = kwargs.pop("model", None)
        local = self._local_model(provider, requested)
        model = local.registry_id if local is not None else self._unroute(provider, requested)
        kind = normalize_backend_name(provider) if provider else self.settings.backend
        if local is not None:  # a model found on this machine, named by list_provider_models()
            binding = self._pool.get(self._local.settings_for(local, self.settings))
        elif kind == "openai" and model:
            # the HTTP backend takes the model per request: one client for every model
            kwargs["extra"] = {**dict(kwargs.get("extra") or {}), "model": model}
            binding = self._binding(provider, None)
        else:
            binding = self._binding(provider, model)
        store = _inputs.as_media_store(artifact_store)
        for name, value in (images or {}).items():
            if value is not None:
                kwargs[name] = _inputs.resolve_image_input(
                    value, name=name, store=store, allow_local_paths=self.allow_local_paths
                )
        if store is not None:
            store = _inputs.CallScopedStore(store, run_id=run_id, tags=tags, metadata=metadata)
        gating = self._gating_model(model or binding.settings.model)
        registry = self._registry if gating is not None else None
        # a local engine runs one call at a time; HTTP calls may overlap
        with contextlib.nullcontext() if binding.remote else binding.lock:
            manager = VisionManager(backend=binding.get(), store=store, model_id=gating, registry=registry)
            out = getattr(manager, method)(*args, **kwargs)
            binding.touch(task)
        return _plain(out)

    @staticmethod
    def _check_task(task: Optional[str]) -> Optional[str]:
        if task is None or task == "":
            return None
        if task not in TASKS:
            raise InvalidRequestError(
                f"Unknown task {task!r}. Known tasks: {', '.join(TASKS)}.", param="task"
            )
        return task

    def list_provider_models(self, *, task: Optional[str] = None) -> list[dict[str, Any]]:
        """Models usable here: those found on this machine (no configuration needed; see
        :mod:`abstractvision.discovery`), then the configured provider's catalog (``GET /models``
        or the local inventory) when a backend is configured.

        Each entry is a JSON-safe dict: ``id``, ``object``, ``created``, ``owned_by``,
        ``capabilities``, ``raw`` (from :class:`~abstractvision.ProviderModelInfo`) plus
        ``provider``, ``backend``, ``backend_id``, ``model`` / ``routed_model``
        (``"<provider>/<id>"``, what a task call takes as ``model=``), ``tasks``, ``configured``
        (the default model) and, for models found on this machine, ``local: true``.
        Listing never changes the configured model and never loads weights.
        """
        task = self._check_task(task)
        out = self._local.entries(task, self.backend_id)
        if self.settings.backend is None:
            return list(_json_safe(out))
        binding = self._binding()
        provider = provider_name(binding.settings)
        with binding.lock:
            infos = list(binding.get().list_provider_models(task=task) or ())
        for info in infos:
            entry = info.to_dict() if callable(getattr(info, "to_dict", None)) else dict(info)
            model_id = str(entry.get("id"))
            routed = f"{provider}/{model_id}"
            entry.update(
                provider=provider,
                backend=binding.kind,
                backend_id=self.backend_id,
                model=routed,
                routed_model=routed,
                tasks=[c for c in entry.get("capabilities") or () if c in TASKS],
                configured=bool(binding.settings.model) and model_id == binding.settings.model,
            )
            out.append(entry)
        return list(_json_safe(out))

    def list_provider_adapters(
        self,
        *,
        model: Optional[str] = None,
        task: Optional[str] = None,
        provider: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """Adapters (LoRAs) the provider advertises; ``[]`` when its backend has no adapter catalog."""
        task = self._check_task(task)
        binding = self._binding(provider, None)
        with binding.lock:
            backend = binding.get()
            lister = getattr(backend, "list_provider_adapters", None)
            if not callable(lister):
                return []
            raw = lister(model=model, task=task)
        out = []
        for item in raw or ():
            entry = item.to_dict() if callable(getattr(item, "to_dict", None)) else dict(item)
            entry.setdefault("provider", provider_name(binding.settings))
            out.append(entry)
        return list(_json_safe(out))

    def available_providers(self, *, task: Optional[str] = None) -> dict[str, Any]:
        """Which engines exist, which are installed here, and which one is configured.

        A provider's ``tasks`` are those its registry models declare; with ``task`` given,
        only providers with a model for it are listed (multi-view is orchestrated on any).
        """
        import importlib.util

        task = self._check_task(task)
        registry = self._model_registry()
        needs = {
            "openai": ("httpx",),
            "diffusers": ("torch", "diffusers"),
            "sdcpp": ("stable_diffusion_cpp",),
        }
        providers, available, details = [], [], []
        for kind, modules in needs.items():
            tasks = [t for t in TASKS if registry.list_models(task=t, backend=kind)]
            if task is not None and task != "multi_view_image" and task not in tasks:
                continue
            installed = all(importlib.util.find_spec(m) is not None for m in modules)
            providers.append(kind)
            if installed:
                available.append(kind)
            details.append(
                {
                    "provider": kind,
                    "tasks": tasks,
                    "installed": installed,
                    "selected": kind == self.settings.backend,
                    "install_hint": None if installed else f'pip install "abstractvision[{kind}]"',
                }
            )
        return {
            "backend_id": self.backend_id,
            "task": task,
            "providers": providers,
            "available_providers": available,
            "selected": self.settings.backend,
            "details": details,
        }

    def supported_tasks(self) -> list[str]:
        """Tasks the default backend will run (as it declares them)."""
        binding = self._binding()
        with binding.lock:
            binding.get()
            tasks = binding.supported_tasks()
        return list(tasks) if tasks is not None else list(TASKS)

    def task_defaults(self, task: str) -> dict[str, Any]:
        """Registry defaults of the configured model for ``task`` (``{}`` when it is not in the registry)."""
        self._check_task(task)
        model = self._gating_model(self.settings.model)
        registry = self._model_registry()
        if model is None or not registry.supports(model, task):
            return {}
        return dict(_json_safe(registry.defaults(model, task)))

    def task_constraints(self, task: str) -> dict[str, dict[str, Any]]:
        """Registry constraints (``min``, ``max``, ``multiple_of``, ``enum``...) of the configured model."""
        self._check_task(task)
        model = self._gating_model(self.settings.model)
        registry = self._model_registry()
        if model is None or not registry.supports(model, task):
            return {}
        return {k: v.to_dict() for k, v in registry.param_constraints(model, task).items()}

    def list_operations(self, *, task: Optional[str] = None) -> list[dict[str, Any]]:
        """The operations (one per task the default backend runs), with their registry defaults."""
        task = self._check_task(task)
        out = []
        for name in self.supported_tasks():
            if name not in _IMAGE_TASK_OPS or (task is not None and name != task):
                continue
            op, inputs, outputs, required = _IMAGE_TASK_OPS[name]
            out.append(
                {
                    "operation_id": op,
                    "capability": "vision",
                    "task": name,
                    "input_modalities": inputs,
                    "output_modalities": outputs,
                    "required_parameters": required,
                    "artifact_output": True,
                    "metadata": {"defaults": self.task_defaults(name), "backend": self.settings.backend},
                }
            )
        return out

    # -- residency ------------------------------------------------------------------------

    def load_resident_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Load a model now and keep it (``pin``, default true) across evictions.

        ``request``: ``provider``/``backend`` and ``model`` (default: the configured ones),
        optional ``task``. The record's ``loaded`` comes from the backend afterwards, and
        ``loaded_new`` says whether this call loaded it.
        """
        payload = dict(request or {})
        provider = payload.get("provider") or payload.get("backend") or payload.get("backend_kind")
        settings = self._settings_for(provider, self._unroute(provider, payload.get("model")))
        task = payload.get("task") if payload.get("task") in TASKS else None
        return dict(_json_safe(self._pool.load(settings, pin=bool(payload.get("pin", True)), task=task)))

    def list_loaded_models(self, filters: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
        """Every backend this capability holds, with its real state (``loaded`` may be false).

        Filters: ``task``, ``provider``/``backend``, ``model``, ``load_id``, ``loaded``.
        """
        return list(_json_safe(self._pool.records(filters)))

    def list_resident_models(self, filters: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
        """The held backends whose weights the backend reports as loaded in this process."""
        return [r for r in self.list_loaded_models(filters) if r["loaded"] is True]

    def unload_resident_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Unload and close one backend, chosen by ``load_id`` or ``provider`` + ``model``.

        With one backend held, an empty request selects it. Raises
        :class:`~abstractvision.errors.InvalidRequestError` when nothing or several match.
        """
        filters = {k: v for k, v in dict(request or {}).items() if v not in (None, "")}
        return dict(_json_safe(self._pool.unload(filters)))

    # Aliases some AbstractCore routes use.
    def load_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.load_resident_model(request)

    def unload_model(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return self.unload_resident_model(request)
