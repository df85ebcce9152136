"""What one running server holds: its served models (engines), jobs, artifacts and limits.

An :class:`Engine` is one served model: an :class:`~abstractvision.AsyncVisionManager` over
a backend, the tasks it runs and its :class:`~abstractvision.server.jobs.JobRunner`.
:class:`ServerState` resolves a request's ``model`` to an engine, pre-validates a call with
the manager (so a bad request is a 400 at submission, not a failed job later) and queues it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Optional

from .._core import ManagerCore
from ..async_manager import AsyncVisionManager
from ..types import TASKS
from .artifacts import ArtifactIndex
from .errors import APIError, Redactor, error_from_exception
from .jobs import Job, JobRunner, JobStore
from .options import ServerOptions
from .params import CallSpec
from .schemas.requests import Limits, validation_schemas

__all__ = ["Engine", "ServerState", "engines_from_target"]

_CATALOG_TTL_S = 60.0


class Engine:
    """One served model."""

    def __init__(self, name: str, manager: AsyncVisionManager) -> None:
        self.name = name
        self.manager = manager
        backend = manager.backend
        caps = manager.backend_capabilities(backend)
        tasks: Any = caps.supported_tasks if caps is not None else None
        if tasks is None:
            getter = getattr(backend, "supported_tasks", None)
            tasks = getter() if callable(getter) else TASKS
        self.tasks: tuple[str, ...] = tuple(t for t in TASKS if t in set(tasks))
        self.native_batch = bool(caps is not None and caps.supports_native_batch)
        self.caps = caps
        self.max_batch = caps.max_batch if caps is not None else None
        self.owned_by = str(getattr(backend, "name", None) or type(backend).__name__)
        self.created = int(time.time())
        self.runner: Optional[JobRunner] = None
        self._catalog: Optional[tuple[float, list[dict[str, Any]]]] = None

    async def catalog(self) -> list[dict[str, Any]]:
        """The backend's catalog (cached for a minute); empty when the backend cannot list."""
        now = time.monotonic()
        if self._catalog is not None and now - self._catalog[0] < _CATALOG_TTL_S:
            return self._catalog[1]
        try:
            infos = await self.manager.list_provider_models()
        except Exception:  # a catalog failure must not take /v1/models down
            infos = []
        entries = [info.to_dict() for info in infos]
        self._catalog = (now, entries)
        return entries


def _model_name(backend: Any, fallback: str) -> str:
    describe = getattr(backend, "describe", None)
    if callable(describe):
        try:
            model = describe().get("model")
        except Exception:
            model = None
        if isinstance(model, str) and model:
            return model
    return fallback


def _as_async_manager(target: Any) -> AsyncVisionManager:
    if isinstance(target, ManagerCore):
        return AsyncVisionManager(backend=target.backend, model_id=target.model_id, registry=target.registry)
    if not callable(getattr(target, "generate_image", None)) and not callable(
        getattr(target, "get_capabilities", None)
    ):
        raise TypeError(
            f"Cannot serve {type(target).__name__}: pass a VisionBackend, a VisionManager or a mapping of them."
        )
    return AsyncVisionManager(backend=target)


def engines_from_target(target: Any, model_name: Optional[str]) -> tuple[list[Engine], Any]:
    """Engines for a backend, a manager or a ``{model name: backend or manager}`` mapping.

    Also returns the store of a given manager (used when the server gets no store).
    """
    if isinstance(target, Mapping):
        if not target:
            raise ValueError("The mapping of models to serve is empty.")
        engines = [Engine(str(name), _as_async_manager(t)) for name, t in target.items()]
        stores = [t.store for t in target.values() if isinstance(t, ManagerCore) and t.store is not None]
        return engines, (stores[0] if stores else None)
    manager = _as_async_manager(target)
    fallback = getattr(manager.backend, "name", None) or "default"
    name = model_name or _model_name(manager.backend, str(fallback))
    store = target.store if isinstance(target, ManagerCore) else None
    return [Engine(name, manager)], store


def _limits(engines: list[Engine]) -> Limits:
    """The largest output any served model declares (the library's maxima where one declares none)."""
    default = Limits()
    values = {}
    for name in ("max_width", "max_height", "max_frames", "max_fps"):
        declared = [getattr(e.caps, name, None) for e in engines]
        known = [d for d in declared if isinstance(d, int)]
        ceiling = getattr(default, name)
        values[name] = min(ceiling, max(known)) if known and len(known) == len(declared) else ceiling
    return Limits(**values)


class ServerState:
    def __init__(self, engines: list[Engine], *, opts: ServerOptions, artifacts: ArtifactIndex) -> None:
        self.opts = opts
        self.engines = {e.name: e for e in engines}
        self.default = engines[0]
        self.artifacts = artifacts
        self.jobs = JobStore(opts)
        self.redact = Redactor((opts.api_key, *opts.secrets))
        self.started = time.time()
        self.limits = _limits(engines)
        self.schemas = validation_schemas(opts, self.limits)
        self.openapi: Optional[dict[str, Any]] = None
        for engine in engines:
            engine.runner = JobRunner(
                engine.name,
                engine.manager,
                opts=opts,
                store=self.jobs,
                artifacts=artifacts,
                redact=self.redact,
                native_batch=engine.native_batch,
                max_batch=engine.max_batch,
            )

    def runner(self, job: Job) -> JobRunner:
        runner = self.engines[job.model].runner
        assert runner is not None
        return runner

    async def resolve(self, model: Optional[str]) -> Engine:
        """The engine serving ``model`` (the first one when ``None``)."""
        if model is None or model == "":
            return self.default
        engine = self.engines.get(model)
        if engine is not None:
            return engine
        served = ", ".join(self.engines)
        for candidate in self.engines.values():
            if any(entry.get("id") == model for entry in await candidate.catalog()):
                raise APIError(
                    400,
                    f"Model {model!r} is in the backend catalog but this server runs {candidate.name!r}; "
                    f"start a server for {model!r} or use one of: {served}.",
                    param="model",
                    code="model_not_served",
                )
        raise APIError(
            404,
            f"The model {model[:200]!r} does not exist on this server. Served: {served}.",
            param="model",
            code="model_not_found",
        )

    async def submit(self, spec: CallSpec, *, kind: str, url_base: str, keep_assets: bool = False) -> Job:
        """Validate ``spec`` with the model's manager, then queue it as a job."""
        engine = await self.resolve(spec.model)
        if spec.task not in engine.tasks:
            raise APIError(
                400,
                f"Model {engine.name!r} does not run {spec.task}; it runs: {', '.join(engine.tasks) or 'nothing'}.",
                param="model" if spec.model else None,
                code="unsupported_task",
            )
        await self._prevalidate(engine, spec)
        job = Job(spec, model=engine.name, kind=kind, url_base=self.opts.public_url or url_base)
        job.keep_assets = keep_assets
        assert engine.runner is not None
        return engine.runner.submit(job)

    async def _prevalidate(self, engine: Engine, spec: CallSpec) -> None:
        params = dict(spec.params)
        batch = spec.n > 1

        def plan() -> None:
            engine.manager.plan(spec.task, params, batch=batch, count=spec.n if batch else None)

        try:
            if any(isinstance(v, (bytes, tuple)) for v in params.values()):
                await asyncio.to_thread(plan)  # decodes input images: keep the loop free
            else:
                plan()
        except APIError:
            raise
        except Exception as exc:
            raise error_from_exception(exc) from None
