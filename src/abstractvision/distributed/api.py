"""An API node of the distributed mode: the server's routes over Redis and Celery, no engine here.

:class:`DistributedState` answers the same calls as the in-process
:class:`~abstractvision.server.state.ServerState`, so every route works unchanged on any API
node for any job:

- the served models are those live workers announce in their heartbeats; a request is
  validated exactly as in one process, by a manager over the capabilities the workers announced
  (:class:`AnnouncedBackend`), then recorded in Redis and sent to its model's Celery queue;
- job state, the event log (SSE ids are the stream's event numbers) and cancel flags live in
  Redis, so any node polls, streams, cancels or deletes any job;
- a sweep (on every node) puts a job whose worker stopped renewing its lease back in its queue,
  up to ``max_attempts`` runs, then fails it with the reason; no job stays ``in_progress``.

Redis being unreachable is a 503 with the (redacted) URL, never a hang or a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from ..async_manager import AsyncVisionManager
from ..backends.base_backend import VisionBackend
from ..server.artifacts import ArtifactIndex
from ..server.errors import APIError
from ..server.jobs import new_job_id
from ..server.openai_routes import served_model_entry
from ..server.options import ServerOptions
from ..server.params import CallSpec
from ..server.previews import sse
from ..server.state import BaseState, Engine
from ..types import GeneratedAsset, VisionBackendCapabilities
from .celery_app import DEFAULT_VISIBILITY_TIMEOUT_S, TASK_NAME, make_celery, queue_name
from .keys import TERMINAL, encode_params
from .redis_state import JobRecord, SharedJobs, new_record, redact_url

__all__ = ["AnnouncedBackend", "DistributedState", "capabilities_from_dict", "capabilities_to_dict"]

logger = logging.getLogger("abstractvision.distributed")
#: longest blocking read, kept well under the client's socket timeout
_BLOCK_MS = 2000
_SEEDED_TASKS = frozenset(
    {"text_to_image", "image_to_image", "text_to_video", "image_to_video", "multi_view_image"}
)


def capabilities_to_dict(caps: Optional[VisionBackendCapabilities]) -> Optional[dict[str, Any]]:
    if caps is None:
        return None
    return json.loads(json.dumps(dataclasses.asdict(caps), default=str))


def capabilities_from_dict(data: Any) -> Optional[VisionBackendCapabilities]:
    if not isinstance(data, dict):
        return None
    names = {f.name for f in dataclasses.fields(VisionBackendCapabilities)}
    known = {k: v for k, v in data.items() if k in names}
    if isinstance(known.get("supported_tasks"), list):
        known["supported_tasks"] = tuple(known["supported_tasks"])
    return VisionBackendCapabilities(**known)


class AnnouncedBackend(VisionBackend):
    """A served model as its workers announce it: its capabilities, and no engine.

    API nodes validate requests with a manager over it; its task methods are never called.
    """

    name = "announced"

    def __init__(self, announcement: dict[str, Any]) -> None:
        self.announcement = announcement
        self._caps = capabilities_from_dict(announcement.get("capabilities"))

    def get_capabilities(self) -> Optional[VisionBackendCapabilities]:
        if self._caps is not None:
            return self._caps
        return VisionBackendCapabilities(supported_tasks=tuple(self.announcement.get("tasks") or ()))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": str(self.announcement.get("backend") or "remote"),
            "model": self.announcement["name"],
        }


class DistributedState(BaseState):
    """The state of an API node (see the module docstring)."""

    def __init__(
        self,
        broker_url: str,
        *,
        opts: ServerOptions,
        artifacts: ArtifactIndex,
        prefix: str = "av",
        heartbeat_s: float = 2.0,
        max_attempts: int = 2,
        sweep_s: float = 2.0,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        client: Any = None,
    ) -> None:
        super().__init__([], opts=opts, artifacts=artifacts)
        import redis.asyncio

        self.broker_url = broker_url
        self.shown_url = redact_url(broker_url)
        self.prefix = prefix
        self.heartbeat_s = heartbeat_s
        self.max_attempts = max_attempts
        self.sweep_s = sweep_s
        self.client = client or redis.asyncio.Redis.from_url(
            broker_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
        )
        self.jobs = SharedJobs(self.client, prefix=prefix, job_ttl_s=opts.job_ttl_s)
        self.celery = make_celery(broker_url, visibility_timeout_s=visibility_timeout_s)
        self.beats: list[dict[str, Any]] = []
        self._sweeper: Optional[asyncio.Task[None]] = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def startup(self) -> None:
        async with self._redis_errors():
            await self.client.ping()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        with contextlib.suppress(Exception):
            await self.client.aclose()
        with contextlib.suppress(Exception):
            self.celery.close()

    @contextlib.asynccontextmanager
    async def _redis_errors(self) -> AsyncIterator[None]:
        """Redis (or the Celery broker connection) unreachable -> 503 naming the URL and what to check."""
        import kombu.exceptions
        import redis.exceptions

        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError,
                OSError) as exc:  # fmt: skip
            raise APIError(
                503,
                f"The job store and queue at {self.shown_url} is unreachable ({type(exc).__name__}: {exc}); "
                "check that Redis is running and that this node can reach it.",
                type="server_error",
                code="broker_unavailable",
                headers={"Retry-After": "5"},
            ) from None

    # -- served models: what live workers announce -----------------------------------------------

    async def refresh(self) -> None:
        """Read the live workers' heartbeats (one Redis round trip; engines are rebuilt only on change)."""
        async with self._redis_errors():
            beats = await self.jobs.workers(max_age_s=3 * self.heartbeat_s)
        self.beats = beats
        current: dict[str, Engine] = {}
        for beat in beats:
            for model in beat.get("models") or ():
                name = str(model.get("name"))
                if name in current:
                    continue
                engine = self.engines.get(name)
                if engine is None or getattr(engine.manager.backend, "announcement", None) != model:
                    manager = AsyncVisionManager(
                        backend=AnnouncedBackend(model),
                        model_id=model.get("registry_id") or None,
                        model_label=name,
                    )
                    engine = Engine(
                        name,
                        manager,
                        kind=str(model.get("backend") or "remote"),
                        description=model.get("description") or None,
                        request_defaults=model.get("request_defaults") or None,
                    )
                current[name] = engine
        self.engines = current

    def _workers_of(self, name: str) -> list[dict[str, Any]]:
        return [b for b in self.beats if any(m.get("name") == name for m in b.get("models") or ())]

    async def model_entries(self) -> list[dict[str, Any]]:
        await self.refresh()
        out = []
        for engine in self.engines.values():
            workers = self._workers_of(engine.name)
            states = [
                m.get("loaded")
                for b in workers
                for m in b.get("models") or ()
                if m.get("name") == engine.name
            ]
            loaded = True if True in states else (False if False in states else None)
            out.append(served_model_entry(engine, loaded=loaded, workers=len(workers)))
        return [self.redact.obj(entry) for entry in out]

    async def health(self) -> dict[str, Any]:
        await self.refresh()
        queues = {}
        async with self._redis_errors():
            for name in self.engines:
                queues[name] = {
                    "pending": await self.jobs.queue_depth(name),
                    "workers": len(self._workers_of(name)),
                    "queue_size": self.opts.queue_size,
                }
        now = time.time()
        workers = [
            {
                "worker": b.get("worker"),
                "models": [m.get("name") for m in b.get("models") or ()],
                "running": b.get("running"),
                "age_s": round(now - float(b.get("ts", now)), 3),
            }
            for b in self.beats
        ]
        return {"mode": "distributed", "models": list(self.engines), "queues": queues, "workers": workers}

    # -- jobs -------------------------------------------------------------------------------------

    async def submit(
        self, spec: CallSpec, *, kind: str, url_base: str, keep_assets: bool = False
    ) -> JobRecord:
        engine = await self.resolve(spec.model, spec.task)
        self.prepare(engine, spec)  # what it adds travels to the workers with the job's parameters
        await self._prevalidate(engine, spec)
        async with self._redis_errors():
            depth = await self.jobs.queue_depth(engine.name)
            if depth >= self.opts.queue_size:
                workers = max(1, len(self._workers_of(engine.name)))
                seconds = int(min(3600, max(1, await self.jobs.average_s(engine.name) * depth / workers)))
                raise APIError(
                    429,
                    f"The queue of model {engine.name!r} is full ({self.opts.queue_size} waiting); "
                    f"retry in about {seconds} s.",
                    type="rate_limit_error",
                    code="queue_full",
                    headers={"Retry-After": str(seconds)},
                )
            params = dict(spec.params)
            if spec.task in _SEEDED_TASKS and params.get("seed") is None:
                # a redelivered job must produce the same results: its seed is fixed now
                params["seed"] = random.SystemRandom().randrange(0, 2**32)
            record = new_record(
                new_job_id(),
                kind=kind,
                task=spec.task,
                model=engine.name,
                url_base=(self.opts.public_url or url_base).rstrip("/"),
                spec={"params": encode_params(params), "n": spec.n, "response_format": spec.response_format},
                summary=spec.summary,
            )
            job = await self.jobs.create(record)
        try:
            await asyncio.to_thread(self._dispatch, job)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.jobs.finish(
                    job, "failed", error={"message": "could not be queued", "code": "broker_unavailable"}
                )
            raise APIError(
                503,
                f"The job could not be queued on {self.shown_url} ({type(exc).__name__}: {exc}); "
                "check that Redis is running and reachable.",
                type="server_error",
                code="broker_unavailable",
                headers={"Retry-After": "5"},
            ) from None
        return job

    def _dispatch(self, job: JobRecord) -> None:
        self.celery.send_task(
            TASK_NAME,
            args=[job.id],
            queue=queue_name(self.prefix, job.model),  # sent through the anonymous exchange
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )

    async def get_job(self, job_id: str, *, kind: Optional[str] = None) -> JobRecord:
        noun = "video" if kind == "video" else "job"
        async with self._redis_errors():
            record = await self.jobs.get(job_id)
            if record is not None and (kind is None or record.kind == kind):
                return record
            if record is None and await self.jobs.expired(job_id):
                raise APIError(
                    410,
                    f"The {noun} {job_id!r} finished and expired (kept {self.opts.job_ttl_s:g} s).",
                    code=f"{noun}_expired",
                )
        raise APIError(404, f"No {noun} with id {job_id[:80]!r}.", code=f"{noun}_not_found")

    async def list_jobs(self, *, kind: Optional[str] = None) -> list[Any]:
        async with self._redis_errors():
            records = await self.jobs.recent()
        return [r for r in records if kind is None or r.kind == kind]

    async def cancel_job(self, job: Any) -> bool:
        async with self._redis_errors():
            return await self.jobs.request_cancel(job)

    async def delete_job(self, job: Any) -> None:
        async with self._redis_errors():
            await self.jobs.request_cancel(job)
            await self.jobs.forget(job)

    async def iter_job_events(
        self, job: Any, after: int = 0
    ) -> AsyncIterator[Optional[tuple[int, str, dict[str, Any]]]]:
        """The job's events ``(seq, name, data)`` from ``after`` to its terminal status (``None``:
        15 quiet seconds)."""
        cursor, quiet_since = after, time.monotonic()
        while True:
            async with self._redis_errors():
                events = await self.jobs.read_events(job.id, cursor, block_ms=_BLOCK_MS)
                if not events:
                    record = await self.jobs.get(job.id)
                    if record is None or (record.terminal and not await self._more_events(job.id, cursor)):
                        return
            if not events:
                if time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield None
                continue
            quiet_since = time.monotonic()
            for seq, name, text in events:
                cursor = seq
                data = json.loads(text)
                yield seq, name, data
                if name == "status" and data.get("status") in TERMINAL:
                    return

    async def job_events(self, job: Any, after: int) -> AsyncIterator[str]:
        """The job's events as server-sent events, from ``after`` on (ids: event numbers)."""
        yield "retry: 2000\n\n"
        async for item in self.iter_job_events(job, after):
            yield ": keepalive\n\n" if item is None else sse(item[1], item[2], item[0])

    async def _more_events(self, job_id: str, cursor: int) -> bool:
        return bool(await self.jobs.read_events(job_id, cursor, block_ms=None))

    async def wait_job(self, job: Any, *, outputs: bool) -> tuple[Any, list[GeneratedAsset]]:
        cursor = 0
        while True:
            async with self._redis_errors():
                record = await self.jobs.get(job.id)
                if record is None:
                    raise APIError(410, f"The job {job.id!r} is gone.", code="job_expired")
                if record.terminal:
                    break
                for seq, _name, _data in await self.jobs.read_events(job.id, cursor, block_ms=_BLOCK_MS):
                    cursor = seq
        assets: list[GeneratedAsset] = []
        if record.status == "completed":  # the images response names their format and size
            for ref in record.results:
                data, mime = await asyncio.to_thread(self.artifacts.load, ref["$artifact"])
                assets.append(
                    GeneratedAsset(
                        media_type=mime.split("/", 1)[0],
                        data=data,
                        mime_type=mime,
                        metadata=ref.get("metadata") or {},
                    )
                )
        return record, assets

    # -- the stale-job sweep ------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                await self.sweep()
            except Exception:  # Redis down for a while: the next round tries again
                logger.debug("sweep failed", exc_info=True)

    async def sweep(self) -> list[str]:
        """Requeue (or fail) running jobs whose worker stopped renewing its lease."""
        touched = []
        for job_id in await self.jobs.stale_running():
            if not await self.jobs.sweep_lock(job_id):
                continue  # another node handles it
            try:
                record = await self.jobs.get(job_id)
                if record is None or record.terminal:
                    continue
                if record.attempt < self.max_attempts and await self.jobs.requeue(record):
                    logger.warning("job %s: its worker %s stopped; queued again", job_id, record.worker)
                    await asyncio.to_thread(self._dispatch, record)
                else:
                    error = APIError(
                        503,
                        f"The worker running this job stopped responding (its lease expired) after "
                        f"{record.attempt} attempt(s); the job was not retried again.",
                        type="server_error",
                        code="worker_lost",
                    )
                    await self.jobs.finish(record, "failed", error=error.body()["error"], error_status=503)
                touched.append(job_id)
            finally:
                await self.jobs.sweep_unlock(job_id)
        return touched
