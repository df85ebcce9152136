"""What one running server holds: its served models (engines), jobs, artifacts and limits.

An :class:`Engine` is one served model: an :class:`~abstractvision.AsyncVisionManager` over
a backend, the tasks it runs and its :class:`~abstractvision.server.jobs.JobRunner`.
:class:`ServerState` resolves a request's ``model`` to an engine, pre-validates a call with
the manager (so a bad request is a 400 at submission, not a failed job later) and queues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from .._core import _REQUEST_TYPES, ManagerCore
from ..async_manager import AsyncVisionManager
from ..config import create_backend
from ..errors import InvalidRequestError
from ..served_models import ServedModel, check_name, default_served_name, looks_like_hub_id, unique_names
from ..types import TASKS, GeneratedAsset
from .artifacts import ArtifactIndex
from .errors import APIError, Redactor, error_from_exception
from .jobs import Job, JobRunner, JobStore, iter_events, sse_events, wants_previews
from .openai_fields import apply_openai_fields
from .options import ServerOptions
from .params import CallSpec
from .residency import Residency, ResidencyState
from .schemas.requests import Limits

__all__ = ["Engine", "ServerState", "engines_from_target"]

_CATALOG_TTL_S = 60.0


class Engine:
    """One served model: its public name, manager, tasks, limits and job runner."""

    def __init__(
        self,
        name: str,
        manager: AsyncVisionManager,
        *,
        kind: Optional[str] = None,
        aliases: tuple[str, ...] = (),
        workers: Optional[int] = None,
        queue_size: Optional[int] = None,
        paths: tuple[str, ...] = (),
        description: Optional[str] = None,
        request_defaults: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.name = name
        self.description = description  #: one line clients see (``serve --demo``: "makes noise")
        #: parameters a request gets when it leaves them out (:attr:`ServedModel.request_defaults`)
        self.request_defaults: dict[str, Any] = dict(request_defaults or {})
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
        self.kind = kind or str(getattr(backend, "name", None) or type(backend).__name__)
        self.owned_by = self.kind
        self.aliases = aliases
        self.workers = workers
        self.queue_size = queue_size
        self.paths = paths  #: local paths of this model (replaced by its name in what clients see)
        self.created = int(time.time())
        self.runner: Optional[JobRunner] = None
        self.residency: Optional[ResidencyState] = None
        self._catalog: Optional[tuple[float, list[dict[str, Any]]]] = None

    @property
    def registry_id(self) -> Optional[str]:
        return self.manager.model_id

    async def catalog(self) -> list[dict[str, Any]]:
        """Other models the backend's catalog offers (cached for a minute).

        Local engines list their own model (by path or hub id): those entries are this served
        model itself and are left out. Empty when the backend cannot list.
        """
        now = time.monotonic()
        if self._catalog is not None and now - self._catalog[0] < _CATALOG_TTL_S:
            return self._catalog[1]
        entries: list[dict[str, Any]] = []
        if self.residency is None or not self.residency.holds_weights:
            try:
                infos = await self.manager.list_provider_models()
            except Exception:  # a catalog failure must not take /v1/models down
                infos = []
            entries = [info.to_dict() for info in infos]
        self._catalog = (now, entries)
        return entries


def _backend_model(backend: Any) -> Optional[str]:
    describe = getattr(backend, "describe", None)
    if callable(describe):
        try:
            model = describe().get("model")
        except Exception:
            model = None
        if isinstance(model, str) and model:
            return model
    return None


def _local_paths(spec: Optional[str]) -> tuple[str, ...]:
    if not spec or looks_like_hub_id(spec):
        return ()
    path = Path(spec).expanduser()
    if not path.exists():
        return ()
    return tuple(dict.fromkeys((str(path.absolute()), str(path.resolve()))))


def _engine(
    name: str, target: Any, *, served: Optional[ServedModel] = None, spec: Optional[str] = None
) -> Engine:
    manager = _as_async_manager(target, name)
    if served is not None:
        settings = served.settings
        spec = settings.model or settings.options.get("diffusion_model") or settings.options.get("model")
    spec = str(spec) if spec else _backend_model(manager.backend)
    aliases = (spec,) if spec and spec != name and looks_like_hub_id(spec) else ()
    return Engine(
        name,
        manager,
        kind=served.settings.backend if served is not None else None,
        aliases=aliases,
        workers=served.workers if served is not None else None,
        queue_size=served.queue_size if served is not None else None,
        paths=_local_paths(spec),
        description=served.description if served is not None else None,
        request_defaults=served.request_defaults if served is not None else None,
    )


def _as_async_manager(target: Any, name: str) -> AsyncVisionManager:
    if isinstance(target, ManagerCore):
        return AsyncVisionManager(
            backend=target.backend,
            model_id=target.model_id,
            registry=target.registry,
            model_label=name,
            embed_metadata=target.embed_metadata,
            on_size_mismatch=target.on_size_mismatch,
        )
    if not callable(getattr(target, "generate_image", None)) and not callable(
        getattr(target, "get_capabilities", None)
    ):
        raise TypeError(
            f"Cannot serve {type(target).__name__}: pass a VisionBackend, a VisionManager, a mapping of them "
            "or a list of ServedModel."
        )
    return AsyncVisionManager(backend=target, model_label=name)


def engines_from_target(target: Any, model_name: Optional[str]) -> tuple[list[Engine], Any]:
    """Engines for a backend, a manager, ``{model name: backend or manager}`` or ``[ServedModel, ...]``.

    Also returns the store of a given manager (used when the server gets no store).
    """
    if isinstance(target, Sequence) and not isinstance(target, (str, bytes)):
        served = list(target)
        if not served or not all(isinstance(m, ServedModel) for m in served):
            raise ValueError("A list of models to serve must hold ServedModel entries (at least one).")
        engines = []
        for model in unique_names(served):
            try:
                backend = create_backend(model.settings)
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"Served model {model.name!r}: {exc}", param=exc.param) from None
            manager = AsyncVisionManager(backend=backend, model_id=model.registry_id, model_label=model.name)
            engines.append(_engine(model.name, manager, served=model))
        return engines, None
    if isinstance(target, Mapping):
        if not target:
            raise ValueError("The mapping of models to serve is empty.")
        engines = [_engine(check_name(str(name)), t) for name, t in target.items()]
        stores = [t.store for t in target.values() if isinstance(t, ManagerCore) and t.store is not None]
        return engines, (stores[0] if stores else None)
    backend = target.backend if isinstance(target, ManagerCore) else target
    spec = _backend_model(backend)
    fallback = default_served_name(spec) if spec else str(getattr(backend, "name", None) or "default")
    name = check_name(model_name or fallback)
    store = target.store if isinstance(target, ManagerCore) else None
    return [_engine(name, target, spec=spec)], store


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


class BaseState:
    """What every server holds, wherever its jobs run: served models, routing, validation.

    :class:`ServerState` runs jobs in this process; the distributed mode's state
    (:class:`abstractvision.distributed.api.DistributedState`) keeps them in Redis and runs them
    on Celery workers. Routes only call the async methods both define.
    """

    def __init__(
        self,
        engines: list[Engine],
        *,
        opts: ServerOptions,
        artifacts: ArtifactIndex,
        paths: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.opts = opts
        self.engines = {e.name: e for e in engines}
        self.artifacts = artifacts
        self.redact = Redactor(
            (opts.api_key, *opts.secrets),
            paths={**{p: e.name for e in engines for p in e.paths}, **(paths or {})},
        )
        self.started = time.time()
        self.limits = _limits(engines) if engines else Limits()
        from .schemas.openapi import build_openapi
        from .validation import BodyValidators

        #: what /openapi.json serves, and the validators built from exactly that document
        self.openapi: dict[str, Any] = build_openapi(opts, self.limits)
        self.validators = BodyValidators(self.openapi)

    async def startup(self) -> None:
        """Called once the event loop runs (before the first request)."""

    async def shutdown(self) -> None:
        """Called when the app stops."""

    async def refresh(self) -> None:
        """Bring :attr:`engines` up to date (the distributed mode reads live workers)."""

    def _lookup(self, model: str) -> Optional[Engine]:
        engine = self.engines.get(model)
        if engine is not None:
            return engine
        for candidate in self.engines.values():
            if model in candidate.aliases:  # a hub id served under another name
                return candidate
        return None

    async def resolve(self, model: Optional[str], task: Optional[str] = None) -> Engine:
        """The engine serving ``model``; without one, the first served model that runs ``task``.

        A model that cannot run ``task`` is a 400 naming the served models that can.
        """
        await self.refresh()
        if model is None or model == "":
            if task is None and self.engines:
                return next(iter(self.engines.values()))
            for engine in self.engines.values():
                if task in engine.tasks:
                    return engine
            raise APIError(
                400,
                f"No served model runs {task}. Served: {self._served_list()}.",
                code="unsupported_task",
            )
        found = self._lookup(model)
        if found is None:
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
                f"The model {model[:200]!r} does not exist on this server. Served: {self._served_list()}.",
                param="model",
                code="model_not_found",
            )
        engine = found
        if task is not None and task not in engine.tasks:
            able = [e.name for e in self.engines.values() if task in e.tasks]
            where = f"served models that run it: {', '.join(able)}" if able else "no served model runs it"
            raise APIError(
                400,
                f"Model {engine.name!r} does not run {task} (it runs: {', '.join(engine.tasks) or 'nothing'}); "
                f"{where}.",
                param="model",
                code="unsupported_task",
            )
        return engine

    def _served_list(self) -> str:
        return "; ".join(f"{e.name} ({', '.join(e.tasks) or 'no tasks'})" for e in self.engines.values())

    def prepare(self, engine: Engine, spec: CallSpec) -> None:
        """Complete ``spec`` for ``engine`` before it is validated (the same in every mode): the
        request's OpenAI fields (:mod:`.openai_fields`), then what the operator decides for every
        request (clients cannot): the ``embed_metadata`` policy."""
        apply_openai_fields(engine, spec)
        if self.opts.embed_metadata is not None:
            spec.params["embed_metadata"] = self.opts.embed_metadata

    async def _prevalidate(self, engine: Engine, spec: CallSpec) -> None:
        """Fill the model's request defaults into ``spec``, then plan the call (a 400 when it is bad)."""
        if engine.request_defaults:
            accepted = {f.name for f in dataclasses.fields(_REQUEST_TYPES[spec.task])}
            for key, value in engine.request_defaults.items():
                if key in accepted and spec.params.get(key) is None:
                    spec.params[key] = value
        params = dict(spec.params)
        if wants_previews(params):  # the runner adds the real callback
            params["on_preview"] = print
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


class ServerState(BaseState):
    """A server whose jobs run in this process: a queue, workers and an engine per served model."""

    def __init__(self, engines: list[Engine], *, opts: ServerOptions, artifacts: ArtifactIndex) -> None:
        super().__init__(engines, opts=opts, artifacts=artifacts)
        self.default = engines[0]
        self.jobs = JobStore(opts)
        self.residency = Residency(opts.max_loaded)
        for engine in engines:
            engine.residency = self.residency.add(engine.name, engine.manager.backend)
            engine.runner = JobRunner(
                engine.name,
                engine.manager,
                opts=dataclasses.replace(
                    opts,
                    workers=engine.workers or opts.workers,
                    queue_size=engine.queue_size or opts.queue_size,
                ),
                store=self.jobs,
                artifacts=artifacts,
                redact=self.redact,
                native_batch=engine.native_batch,
                max_batch=engine.max_batch,
                residency=self.residency,
            )

    async def submit(self, spec: CallSpec, *, kind: str, url_base: str, keep_assets: bool = False) -> Job:
        """Validate ``spec`` with the model's manager, then queue it as a job."""
        engine = await self.resolve(spec.model, spec.task)
        self.prepare(engine, spec)
        await self._prevalidate(engine, spec)
        job = Job(spec, model=engine.name, kind=kind, url_base=self.opts.public_url or url_base)
        job.keep_assets = keep_assets
        assert engine.runner is not None
        return engine.runner.submit(job)

    async def startup(self) -> None:
        for engine in self.engines.values():
            assert engine.runner is not None
            if not engine.runner.started:
                engine.runner.start()
        if self.opts.preload:
            await self.residency.preload()
        self._janitor = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        janitor = getattr(self, "_janitor", None)
        if janitor is not None:
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor
        for engine in self.engines.values():
            assert engine.runner is not None
            await engine.runner.stop()

    async def _sweep_forever(self) -> None:
        period = max(0.5, min(60.0, self.opts.job_ttl_s / 2))
        while True:
            await asyncio.sleep(period)
            self.jobs.sweep()

    def runner(self, job: Job) -> JobRunner:
        runner = self.engines[job.model].runner
        assert runner is not None
        return runner

    # -- jobs: what the routes call (the distributed mode's state answers the same) -------------

    async def get_job(self, job_id: str, *, kind: Optional[str] = None) -> Any:
        """The job (404 unknown, 410 expired); ``kind="video"`` only finds video jobs."""
        return self.jobs.get(job_id, kind=kind)

    async def list_jobs(self, *, kind: Optional[str] = None) -> list[Any]:
        return list(self.jobs.list(kind=kind))

    async def cancel_job(self, job: Any) -> bool:
        """Cancel a queued or running job now; ``False`` when it had already finished."""
        return self.runner(job).cancel(job)

    async def delete_job(self, job: Any) -> None:
        self.runner(job).cancel(job)
        self.jobs.remove(job.id)

    def job_events(self, job: Any, after: int) -> AsyncIterator[str]:
        return sse_events(job, after=after)

    def iter_job_events(
        self, job: Any, after: int = 0
    ) -> AsyncIterator[Optional[tuple[int, str, dict[str, Any]]]]:
        """The job's events as ``(seq, name, data)`` until its terminal status (``None``: a quiet while)."""
        return iter_events(job, after=after)

    async def wait_job(self, job: Any, *, outputs: bool) -> tuple[Any, list[GeneratedAsset]]:
        """Wait until ``job`` finished (``outputs``: until its outputs exist; a ``b64_json``
        response does not wait for the store). Returns the job and the outputs, when asked."""
        await (job.ready if outputs else job.done).wait()
        assets, job.assets = job.assets, []
        return job, assets

    async def model_entries(self) -> list[dict[str, Any]]:
        """The served models as ``/v1/models`` lists them (remote catalogs after them)."""
        from .openai_routes import catalog_entry, served_model_entry

        entries = [served_model_entry(engine) for engine in self.engines.values()]
        seen = {engine.name for engine in self.engines.values()}
        for engine in self.engines.values():
            for info in await engine.catalog():
                if str(info.get("id")) not in seen:
                    seen.add(str(info.get("id")))
                    entries.append(catalog_entry(engine, info))
        return [self.redact.obj(entry) for entry in entries]

    async def health(self) -> dict[str, Any]:
        queues = {}
        for name, engine in self.engines.items():
            runner = engine.runner
            assert runner is not None
            queues[name] = {
                "pending": len(runner.pending),
                "running": runner.running,
                "workers": runner.opts.workers,
                "queue_size": runner.opts.queue_size,
                "loaded": engine.residency.view()["loaded"] if engine.residency is not None else None,
            }
        return {"models": list(self.engines), "max_loaded": self.residency.max_loaded, "queues": queues}
