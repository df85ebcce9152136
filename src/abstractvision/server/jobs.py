"""Jobs: a bounded queue per served model, worker tasks, progress events, cancel and expiry.

Every generation the server runs, synchronous OpenAI routes included, is a :class:`Job`.
A :class:`JobRunner` owns the queue and ``workers`` asyncio worker tasks for one served
model; each worker awaits the :class:`~abstractvision.AsyncVisionManager` (local engines run
in a thread), forwards the engine's :class:`~abstractvision.ProgressEvent` s into the job's
event log (which ``/v1/jobs/{id}/events`` streams as server-sent events), and stores the
outputs as artifacts. Cancelling sets the job's :class:`threading.Event`, which the manager
passes to the engine as ``cancel=``.

When ``coalesce`` is on and the backend batches natively, queued jobs with the same task,
model and parameters (seed and ``n`` aside) are merged into one batched engine call; each
job still gets its own outputs, seeds and progress.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import math
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional

from ..backends.base_backend import TASK_METHODS
from ..errors import GenerationCancelledError, InvalidRequestError
from ..types import GeneratedAsset, PreviewEvent, ProgressEvent
from .artifacts import ArtifactIndex
from .errors import APIError, Redactor, error_from_exception
from .job_store import JobStore
from .options import ServerOptions
from .params import CallSpec
from .previews import KEPT_PREVIEWS, preview_payload, sse
from .residency import Residency

__all__ = [
    "JOB_STATES",
    "Job",
    "JobRunner",
    "JobStore",
    "JobViews",
    "manager_call",
    "new_job_id",
    "sse_events",
    "store_results",
]

JOB_STATES = ("queued", "in_progress", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
_BATCH_TASKS = frozenset({"text_to_image", "image_to_image", "text_to_video", "image_to_video"})
_MAX_EVENTS = 500


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


class JobViews:
    """The JSON views of a job, for every kind of job record (this process's :class:`Job`, or a
    record read back from the distributed mode's shared state).

    Needs the attributes ``id, task, model, status, progress, created_at, started_at,
    completed_at, expires_at, cancel_requested, summary, last_event, results, error, url_base``.
    """

    id: str
    task: str
    model: str
    status: str
    progress: float
    created_at: float
    started_at: Optional[float]
    completed_at: Optional[float]
    expires_at: Optional[float]
    last_event: Optional[dict[str, Any]]
    results: list[dict[str, Any]]
    error: Optional[dict[str, Any]]
    url_base: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def cancel_requested(self) -> bool:
        raise NotImplementedError

    @property
    def summary(self) -> dict[str, Any]:
        raise NotImplementedError

    def url_for(self, artifact_id: str) -> str:
        return f"{self.url_base}/v1/artifacts/{artifact_id}"

    def result_views(self) -> list[dict[str, Any]]:
        return [{**ref, "url": self.url_for(ref["$artifact"])} for ref in self.results]

    def status_payload(self) -> dict[str, Any]:
        """The ``status`` event's data."""
        out: dict[str, Any] = {"id": self.id, "status": self.status, "progress": round(self.progress, 4)}
        if self.terminal:
            out["results"] = self.result_views()
            out["error"] = self.error
        return out

    def view(self) -> dict[str, Any]:
        """The job as the job API returns it."""
        return {
            "id": self.id,
            "object": "job",
            "task": self.task,
            "model": self.model,
            "status": self.status,
            "progress": round(self.progress, 4),
            "created_at": int(self.created_at),
            "started_at": _int_or_none(self.started_at),
            "completed_at": _int_or_none(self.completed_at),
            "expires_at": _int_or_none(self.expires_at),
            "cancel_requested": self.cancel_requested,
            "params": self.summary,
            "event": self.last_event,
            "results": self.result_views(),
            "error": self.error,
        }


class Job(JobViews):
    """One request's life: state, progress, event log, results (artifact refs) or error.

    Mutated only on the event-loop thread; engine threads reach it through
    ``loop.call_soon_threadsafe``.
    """

    def __init__(self, spec: CallSpec, *, model: str, kind: str = "job", url_base: str = "") -> None:
        self.id = new_job_id()
        self.spec = spec
        self.task = spec.task
        self.model = model
        self.kind = kind
        self.url_base = url_base.rstrip("/")
        self.status = "queued"
        self.created_at = time.time()
        self.started_at: Optional[float] = None
        self.completed_at: Optional[float] = None
        self.expires_at: Optional[float] = None
        self.progress = 0.0
        self.last_event: Optional[dict[str, Any]] = None
        self.results: list[dict[str, Any]] = []
        self.error: Optional[dict[str, Any]] = None
        self.error_status: Optional[int] = None
        self.error_headers: dict[str, str] = {}
        self.cancel = threading.Event()
        self.keep_assets = False
        self.assets: list[GeneratedAsset] = []
        self.events: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque(
            maxlen=_MAX_EVENTS
        )
        self.seq = 0
        self.changed = asyncio.Event()
        self.done = asyncio.Event()
        self.ready = asyncio.Event()  # outputs in memory (keep_assets), or finished
        self._publish("status", self.status_payload())

    # -- state ------------------------------------------------------------------------

    @property
    def cancel_requested(self) -> bool:
        return self.cancel.is_set()

    @property
    def summary(self) -> dict[str, Any]:
        return self.spec.summary

    @property
    def response_format(self) -> str:
        return self.spec.response_format

    def _publish(self, name: str, data: dict[str, Any]) -> None:
        self.seq += 1
        self.events.append((self.seq, name, data))
        self.changed.set()
        self.changed = asyncio.Event()

    def start(self) -> None:
        self.status = "in_progress"
        self.started_at = time.time()
        self._publish("status", self.status_payload())

    def on_progress(self, event: ProgressEvent) -> None:
        if self.terminal:
            return
        data = event.to_dict()
        value = event.progress
        if value is None and event.step is not None and event.total_steps:
            value = event.step / event.total_steps
        if value is not None and math.isfinite(value):
            self.progress = min(1.0, max(0.0, float(value)))
        self.last_event = data
        self._publish("progress", data)

    def on_preview(self, payload: dict[str, Any]) -> None:
        """A live preview (:func:`~.previews.preview_payload`); only the latest few stay in the log."""
        if self.terminal:
            return
        previews = [seq for seq, name, _ in self.events if name == "preview"]
        if len(previews) >= KEPT_PREVIEWS:
            dropped = set(previews[: len(previews) - KEPT_PREVIEWS + 1])
            self.events = collections.deque(
                (e for e in self.events if e[0] not in dropped), maxlen=_MAX_EVENTS
            )
        self._publish("preview", payload)

    def finish(
        self,
        status: str,
        *,
        ttl_s: float,
        results: Iterable[dict[str, Any]] = (),
        error: Optional[APIError] = None,
        redact: Optional[Redactor] = None,
    ) -> bool:
        """Move to a terminal state (once); ``False`` when the job had already finished."""
        if self.terminal:
            return False
        self.status = status
        self.completed_at = time.time()
        self.expires_at = self.completed_at + ttl_s
        self.results = list(results)
        if status == "completed":
            self.progress = 1.0
        if error is not None:
            self.error = error.body(redact)["error"]
            self.error_status = error.status
            self.error_headers = dict(error.headers)
        self._publish("status", self.status_payload())
        self.done.set()
        self.ready.set()
        return True


def _int_or_none(value: Optional[float]) -> Optional[int]:
    return None if value is None else int(value)


class _GroupCancel:
    """The engine call of a coalesced group stops only when every member is cancelled."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs

    def is_set(self) -> bool:
        return all(job.cancel.is_set() for job in self.jobs)


def _fingerprint(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {k: _fingerprint(v) for k, v in value.items()}
    return value


def coalesce_key(spec: CallSpec, model: str) -> str:
    params = {k: v for k, v in spec.params.items() if k != "seed"}
    return json.dumps([model, spec.task, _fingerprint(params)], sort_keys=True, default=str)


class JobRunner:
    """The queue and workers of one served model."""

    def __init__(
        self,
        name: str,
        manager: Any,
        *,
        opts: ServerOptions,
        store: JobStore,
        artifacts: ArtifactIndex,
        redact: Redactor,
        native_batch: bool = False,
        max_batch: Optional[int] = None,
        residency: Optional[Residency] = None,
    ) -> None:
        self.name = name
        self.residency = residency
        self.manager = manager
        self.opts = opts
        self.store = store
        self.artifacts = artifacts
        self.redact = redact
        self.coalesce = opts.coalesce and native_batch
        self.max_group = min(opts.coalesce_max_batch, max_batch or opts.coalesce_max_batch)
        self.pending: collections.deque[Job] = collections.deque()
        self.running = 0
        self.avg_s = 1.0
        self.calls = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._storing: set[asyncio.Task[None]] = set()

    # -- lifecycle --------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start the worker tasks (on the running loop; also done by the first submit)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"av-worker-{self.name}-{i}")
            for i in range(self.opts.workers)
        ]

    async def stop(self) -> None:
        for job in list(self.pending):
            job.cancel.set()
            job.finish("cancelled", ttl_s=self.opts.job_ttl_s)
        self.pending.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._storing, return_exceptions=True)
        self._tasks = []

    # -- queue ------------------------------------------------------------------------

    def retry_after_s(self) -> int:
        waiting = len(self.pending) + self.running
        return int(min(3600, max(1, math.ceil(self.avg_s * waiting / self.opts.workers))))

    def submit(self, job: Job) -> Job:
        """Queue ``job`` (429 with ``Retry-After`` when the queue is full)."""
        if len(self.pending) >= self.opts.queue_size:
            seconds = self.retry_after_s()
            raise APIError(
                429,
                f"The queue of model {self.name!r} is full ({self.opts.queue_size} waiting); retry in about {seconds} s.",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(seconds)},
            )
        if not self.started:
            self.start()
        self.store.add(job)
        self.pending.append(job)
        self._wake.set()
        return job

    def cancel(self, job: Job) -> bool:
        """Cancel a queued or running job now; ``False`` when it had already finished."""
        if job.terminal:
            return False
        job.cancel.set()
        try:
            self.pending.remove(job)
        except ValueError:
            pass
        return job.finish("cancelled", ttl_s=self.opts.job_ttl_s)

    def _take_group(self) -> list[Job]:
        first = self.pending.popleft()
        group = [first]
        if not self.coalesce or first.task not in _BATCH_TASKS:
            return group
        key = coalesce_key(first.spec, self.name)
        total = first.spec.n
        for other in list(self.pending):
            if total + other.spec.n > self.max_group:
                continue
            if coalesce_key(other.spec, self.name) == key:
                self.pending.remove(other)
                group.append(other)
                total += other.spec.n
        return group

    async def _worker(self) -> None:
        while True:
            while not self.pending:
                self._wake.clear()
                await self._wake.wait()
            group = self._take_group()
            self.running += len(group)
            try:
                await self._run_group(group)
            finally:
                self.running -= len(group)

    # -- running ----------------------------------------------------------------------

    async def _run_group(self, group: list[Job]) -> None:
        live = [job for job in group if not job.terminal]
        if not live:
            return
        for job in live:
            job.start()
        started = time.perf_counter()
        try:
            assets = await self._call(live)
        except InvalidRequestError as exc:
            if len(live) == 1:
                self._fail(live, exc)
                return
            for job in live:  # a merged call was refused (a batch limit...): run them one by one
                await self._run_group([job])
            return
        except asyncio.CancelledError:
            for job in live:
                job.cancel.set()
                job.finish("cancelled", ttl_s=self.opts.job_ttl_s)
            raise
        except Exception as exc:
            self._fail(live, exc)
            return
        finally:
            self.calls += 1
        await asyncio.sleep(0)  # let queued progress callbacks land before the terminal status
        self.avg_s = 0.7 * self.avg_s + 0.3 * (time.perf_counter() - started) / max(1, len(live))
        offset = 0
        for job in live:
            mine = assets[offset : offset + job.spec.n] if job.task in _BATCH_TASKS else assets
            offset += job.spec.n
            if job.terminal:
                continue
            if job.keep_assets:  # a synchronous b64_json response needs no store round trip
                job.assets = list(mine)
                job.ready.set()
            # storing runs beside the workers: a worker slot bounds engine calls, not disk writes
            task = asyncio.get_running_loop().create_task(self._complete(job, mine))
            self._storing.add(task)
            task.add_done_callback(self._storing.discard)

    async def _complete(self, job: Job, assets: list[GeneratedAsset]) -> None:
        try:
            refs = await asyncio.to_thread(self._store_all, job, assets)
        except Exception as exc:
            self._fail([job], exc)
            return
        job.finish("completed", ttl_s=self.opts.job_ttl_s, results=refs)

    def _store_all(self, job: Job, assets: list[GeneratedAsset]) -> list[dict[str, Any]]:
        return store_results(self.artifacts, self.redact, job.id, job.task, assets)

    def _fail(self, jobs: list[Job], exc: BaseException) -> None:
        if isinstance(exc, GenerationCancelledError):
            for job in jobs:
                job.finish("cancelled", ttl_s=self.opts.job_ttl_s)
            return
        error = error_from_exception(exc)
        for job in jobs:
            job.finish("failed", ttl_s=self.opts.job_ttl_s, error=error, redact=self.redact)

    async def _call(self, jobs: list[Job]) -> list[GeneratedAsset]:
        """One engine call for ``jobs`` (one job, or a coalesced group with equal parameters)."""
        loop = asyncio.get_running_loop()

        def deliver(event: ProgressEvent) -> None:
            if event.message:
                event = dataclasses.replace(event, message=self.redact(event.message))
            if event.raw:
                event = dataclasses.replace(event, raw=self.redact.obj(event.raw))
            for job in jobs:
                job.on_progress(event)

        def on_progress(event: ProgressEvent) -> None:
            loop.call_soon_threadsafe(deliver, event)

        spec = jobs[0].spec
        kwargs = dict(spec.params)
        kwargs["on_progress"] = on_progress
        if wants_previews(spec.params):

            def on_preview(event: PreviewEvent) -> None:  # sized in the engine thread, off the loop
                payload = preview_payload(event)
                for job in jobs:
                    loop.call_soon_threadsafe(job.on_preview, payload)

            kwargs["on_preview"] = on_preview
        kwargs["cancel"] = jobs[0].cancel if len(jobs) == 1 else _GroupCancel(jobs)
        if self.residency is not None:
            async with self.residency.hold(self.name, deliver, spec.task):
                return await self._run_manager(jobs, kwargs)
        return await self._run_manager(jobs, kwargs)

    async def _run_manager(self, jobs: list[Job], kwargs: dict[str, Any]) -> list[GeneratedAsset]:
        spec = jobs[0].spec
        total = sum(job.spec.n for job in jobs)
        if len(jobs) > 1 and total > 1 and any(job.spec.params.get("seed") is not None for job in jobs):
            kwargs.pop("seed", None)
            kwargs["seeds"] = [s for job in jobs for s in _plan(job.spec)]
        method, extra = manager_call(spec.task, total)
        result = await getattr(self.manager, method)(**kwargs, **extra)
        return list(result) if isinstance(result, list) else [result]


def manager_call(task: str, n: int) -> tuple[str, dict[str, Any]]:
    """The manager method (and its extra keyword arguments) that runs ``n`` outputs of ``task``.

    Shared by the in-process runner and the distributed mode's workers.
    """
    method = TASK_METHODS[task]
    if task in _BATCH_TASKS and n > 1:
        return method + "_batch", {"count": n}
    return method, {}


def store_results(
    artifacts: ArtifactIndex, redact: Redactor, job_id: str, task: str, assets: list[GeneratedAsset]
) -> list[dict[str, Any]]:
    """Store a job's outputs as artifacts of this server (metadata redacted) and return their refs."""
    return [artifacts.put(a, job_id=job_id, task=task, metadata=redact.obj(a.metadata)) for a in assets]


def _plan(spec: CallSpec) -> list[int]:
    seed = spec.params.get("seed")
    if seed is None:
        rng = random.SystemRandom()
        return [rng.randrange(0, 2**32) for _ in range(spec.n)]
    return [int(seed) + i for i in range(spec.n)]


def wants_previews(params: dict[str, Any]) -> bool:
    """Whether a job asked for live previews (``preview_every`` or ``partial_images`` > 0)."""
    return params.get("preview_every") is not None or bool(params.get("partial_images"))


async def iter_events(
    job: Job, *, after: int = 0, keepalive_s: float = 15.0
) -> AsyncIterator[Optional[tuple[int, str, dict[str, Any]]]]:
    """The job's events ``(seq, name, data)`` from ``after`` to the terminal ``status`` (``None``:
    nothing for ``keepalive_s``)."""
    cursor = after
    while True:
        changed = job.changed
        for seq, name, data in list(job.events):
            if seq > cursor:
                yield seq, name, data
                cursor = seq
        if job.terminal:
            return
        try:
            await asyncio.wait_for(changed.wait(), keepalive_s)
        except asyncio.TimeoutError:
            yield None


async def sse_events(job: Job, *, after: int = 0, keepalive_s: float = 15.0) -> AsyncIterator[str]:
    """The job's events as server-sent events, from ``after`` (``Last-Event-ID``) to the end.

    Events: ``status`` (``{"id", "status", "progress"}``, plus ``results`` and ``error`` once
    finished), ``progress`` (a :class:`~abstractvision.ProgressEvent` as a dict) and, when the
    job asked for them, ``preview`` (:func:`~.previews.preview_payload`). The stream closes
    after the terminal ``status`` event.
    """
    yield "retry: 2000\n\n"
    async for item in iter_events(job, after=after, keepalive_s=keepalive_s):
        yield ": keepalive\n\n" if item is None else sse(item[1], item[2], item[0])
