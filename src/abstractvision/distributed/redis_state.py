"""Jobs, events, cancel flags and worker heartbeats in Redis: one I/O-free base, two clients.

:class:`SharedJobs` (asyncio, ``redis.asyncio``) is what API nodes use; :class:`WorkerJobs`
(blocking ``redis``) is what Celery workers use. Both build the same commands from
:mod:`.keys`; state changes that must not race run as Lua scripts there. A job read back from
Redis is a :class:`JobRecord`, which renders exactly like a job of the single-process server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidRequestError
from ..server.jobs import JobViews
from ..server.previews import KEPT_PREVIEWS
from . import keys as K

__all__ = [
    "JobRecord",
    "SharedJobs",
    "WorkerJobs",
    "redact_url",
]

#: events kept per job (the single-process server keeps the same number)
MAX_EVENTS = 500
#: how long a running job's keys live at most (a safety net; finishing sets the real TTL)
ACTIVE_TTL_S = 7 * 24 * 3600


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass
class JobRecord(JobViews):
    """A job as read from Redis (same attributes and views as the in-process ``Job``)."""

    id: str
    kind: str = "job"
    task: str = ""
    model: str = ""
    status: str = "queued"
    progress: float = 0.0
    created_at: float = 0.0
    started_at: Optional[float] = None
    completed_at: Optional[float] = None
    expires_at: Optional[float] = None
    url_base: str = ""
    attempt: int = 0
    worker: Optional[str] = None
    error_status: Optional[int] = None
    last_event: Optional[dict[str, Any]] = None
    results: list[dict[str, Any]] = field(default_factory=list)
    error: Optional[dict[str, Any]] = None
    error_headers: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    summary_data: dict[str, Any] = field(default_factory=dict)
    cancel_flag: bool = False

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_flag

    @property
    def summary(self) -> dict[str, Any]:
        return self.summary_data

    @property
    def response_format(self) -> str:
        return str(self.spec.get("response_format") or "b64_json")

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> JobRecord:
        data = K.decode_record(dict(raw))
        return cls(
            id=str(data["id"]),
            kind=data["kind"] or "job",
            task=data["task"] or "",
            model=data["model"] or "",
            status=data["status"] or "queued",
            progress=data["progress"] or 0.0,
            created_at=data["created_at"] or 0.0,
            started_at=data["started_at"],
            completed_at=data["completed_at"],
            expires_at=data["expires_at"],
            url_base=data["url_base"] or "",
            attempt=data["attempt"] or 0,
            worker=data["worker"],
            error_status=data["error_status"],
            last_event=data["last_event"],
            results=list(data["results"] or []),
            error=data["error"],
            error_headers=dict(data["error_headers"] or {}),
            spec=dict(data["spec"] or {}),
            summary_data=dict(data["summary"] or {}),
            cancel_flag=bool(data["cancel_requested"]),
        )


def _event_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def new_record(
    job_id: str,
    *,
    kind: str,
    task: str,
    model: str,
    url_base: str,
    spec: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": kind,
        "task": task,
        "model": model,
        "status": "queued",
        "progress": 0.0,
        "created_at": time.time(),
        "url_base": url_base,
        "attempt": 0,
        "cancel_requested": False,
        "spec": spec,
        "summary": summary,
        "results": [],
    }


class _Base:
    """Commands shared by both clients (no I/O here)."""

    def __init__(self, *, prefix: str = "av", job_ttl_s: float = 3600.0) -> None:
        if not prefix or any(c in prefix for c in " \n{}"):
            raise InvalidRequestError(f"Invalid Redis key prefix {prefix!r}.", param="prefix")
        self.keys = K.Keys(prefix)
        self.job_ttl_s = job_ttl_s

    @property
    def ttl(self) -> int:
        return max(1, int(self.job_ttl_s))

    @property
    def tomb_ttl(self) -> int:
        return max(86400, 10 * self.ttl)

    def finish_args(
        self,
        record: JobRecord,
        status: str,
        *,
        results: Optional[list[dict[str, Any]]] = None,
        error: Optional[dict[str, Any]] = None,
        error_status: Optional[int] = None,
        error_headers: Optional[dict[str, str]] = None,
        worker: str = "",
    ) -> tuple[list[str], list[Any]]:
        now = time.time()
        record.status, record.completed_at, record.expires_at = status, now, now + self.job_ttl_s
        record.results = list(results or [])
        if status == "completed":
            record.progress = 1.0
        record.error = error
        fields = K.encode_record(
            {
                "completed_at": now,
                "expires_at": record.expires_at,
                "results": record.results,
                "progress": record.progress,
                "error": error,
                "error_status": error_status,
                "error_headers": error_headers,
            }
        )
        k = self.keys
        keys = [
            k.job(record.id),
            k.events(record.id),
            k.seq(record.id),
            k.cancel(record.id),
            k.running,
            k.queued(record.model),
            k.lease(record.id),
        ]
        args = [
            status,
            json.dumps(fields),
            _event_json(record.status_payload()),
            MAX_EVENTS,
            self.ttl,
            worker,
        ]
        return keys, args

    def claim_args(
        self, record_id: str, model: str, worker: str, lease_ms: int
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        payload = {"id": record_id, "status": "in_progress", "progress": 0.0}
        keys = [
            k.job(record_id),
            k.lease(record_id),
            k.queued(model),
            k.running,
            k.events(record_id),
            k.seq(record_id),
        ]
        return keys, [worker, lease_ms, time.time(), _event_json(payload), MAX_EVENTS, ACTIVE_TTL_S]

    def requeue_args(self, record_id: str, model: str) -> tuple[list[str], list[Any]]:
        k = self.keys
        payload = {"id": record_id, "status": "queued", "progress": 0.0, "requeued": True}
        keys = [
            k.job(record_id),
            k.lease(record_id),
            k.running,
            k.queued(model),
            k.events(record_id),
            k.seq(record_id),
        ]
        return keys, [_event_json(payload), MAX_EVENTS]


# -- API nodes (asyncio) --------------------------------------------------------------------------


class SharedJobs(_Base):
    """The jobs of a deployment as API nodes see them (``redis.asyncio``)."""

    def __init__(self, client: Any, *, prefix: str = "av", job_ttl_s: float = 3600.0) -> None:
        super().__init__(prefix=prefix, job_ttl_s=job_ttl_s)
        self.client = client
        self._publish = client.register_script(K.PUBLISH)
        self._finish = client.register_script(K.FINISH)
        self._requeue = client.register_script(K.REQUEUE)

    async def create(self, record: dict[str, Any]) -> JobRecord:
        k, job_id = self.keys, record["id"]
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(k.job(job_id), mapping=K.encode_record(record))
            pipe.expire(k.job(job_id), ACTIVE_TTL_S)
            pipe.zadd(k.jobs, {job_id: record["created_at"]})
            pipe.sadd(k.queued(record["model"]), job_id)
            await pipe.execute()
        job = JobRecord.from_hash(K.encode_record(record))
        await self._publish(
            keys=[k.events(job_id), k.seq(job_id)],
            args=["status", _event_json(job.status_payload()), MAX_EVENTS, ACTIVE_TTL_S],
        )
        return job

    async def get(self, job_id: str) -> Optional[JobRecord]:
        raw = await self.client.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None

    async def expired(self, job_id: str) -> bool:
        return bool(await self.client.exists(self.keys.tomb(job_id)))

    async def recent(self, *, limit: int = 1000) -> list[JobRecord]:
        ids = await self.client.zrevrange(self.keys.jobs, 0, limit - 1)
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(_text(job_id)))
            rows = await pipe.execute()
        out, gone = [], []
        for job_id, raw in zip(ids, rows, strict=True):
            if raw:
                out.append(JobRecord.from_hash(raw))
            else:
                gone.append(job_id)
        if gone:  # expired: keep their tombstones for 410
            await self.client.zrem(self.keys.jobs, *gone)
            for job_id in gone:
                await self.client.set(self.keys.tomb(_text(job_id)), "1", ex=self.tomb_ttl, nx=True)
        return out

    async def finish(self, record: JobRecord, status: str, **kwargs: Any) -> bool:
        keys, args = self.finish_args(record, status, **kwargs)
        return bool(await self._finish(keys=keys, args=args))

    async def request_cancel(self, record: JobRecord) -> bool:
        """Flag the job for its worker and finish it as cancelled now (``False``: already finished)."""
        await self.client.set(self.keys.cancel(record.id), "1", ex=ACTIVE_TTL_S)
        await self.client.hset(self.keys.job(record.id), "cancel_requested", "1")
        record.cancel_flag = True
        return await self.finish(record, "cancelled")

    async def forget(self, record: JobRecord) -> None:
        await self.client.delete(*self.keys.job_keys(record.id))
        await self.client.zrem(self.keys.jobs, record.id)
        await self.client.set(self.keys.tomb(record.id), "1", ex=self.tomb_ttl)

    async def queue_depth(self, model: str) -> int:
        return int(await self.client.scard(self.keys.queued(model)))

    async def average_s(self, model: str) -> float:
        value = await self.client.get(self.keys.avg(model))
        return float(value) if value else 1.0

    async def read_events(
        self, job_id: str, after: int, block_ms: Optional[int]
    ) -> list[tuple[int, str, str]]:
        reply = await self.client.xread({self.keys.events(job_id): f"0-{after}"}, count=100, block=block_ms)
        out = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                seq = int(_text(entry_id).split("-", 1)[1])
                data = {_text(k): _text(v) for k, v in fields.items()}
                out.append((seq, data.get("name", "message"), data.get("data", "{}")))
        return out

    async def workers(self, *, max_age_s: float) -> list[dict[str, Any]]:
        """Heartbeats of live workers: seen within ``max_age_s``, or three of their own beat
        intervals when they announce a longer one (older ones are removed)."""
        raw = await self.client.hgetall(self.keys.workers)
        now, live, dead = time.time(), [], []
        for worker, text in raw.items():
            try:
                beat = json.loads(_text(text))
            except ValueError:
                dead.append(worker)
                continue
            if now - float(beat.get("ts", 0)) > max(max_age_s, 3 * float(beat.get("heartbeat_s") or 0)):
                dead.append(worker)
            else:
                live.append(beat)
        if dead:
            await self.client.hdel(self.keys.workers, *dead)
        return sorted(live, key=lambda b: str(b.get("worker")))

    async def stale_running(self) -> list[str]:
        """Running jobs whose worker's lease expired (the worker died or lost Redis)."""
        ids = [_text(i) for i in await self.client.smembers(self.keys.running)]
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(self.keys.lease(job_id))
            alive = await pipe.execute()
        return [job_id for job_id, live in zip(ids, alive, strict=True) if not live]

    async def sweep_lock(self, job_id: str, ms: int = 5_000) -> bool:
        """One node at a time handles a stale job (released by :meth:`sweep_unlock`)."""
        return bool(await self.client.set(f"{self.keys.prefix}:sweep:{job_id}", "1", px=ms, nx=True))

    async def sweep_unlock(self, job_id: str) -> None:
        await self.client.delete(f"{self.keys.prefix}:sweep:{job_id}")

    async def requeue(self, record: JobRecord) -> bool:
        keys, args = self.requeue_args(record.id, record.model)
        return bool(await self._requeue(keys=keys, args=args))


# -- workers (blocking) ---------------------------------------------------------------------------


class WorkerJobs(_Base):
    """The jobs of a deployment as a worker sees them (blocking ``redis``)."""

    def __init__(self, client: Any, *, prefix: str = "av", job_ttl_s: float = 3600.0) -> None:
        super().__init__(prefix=prefix, job_ttl_s=job_ttl_s)
        self.client = client
        self._claim = client.register_script(K.CLAIM)
        self._progress = client.register_script(K.PROGRESS)
        self._preview = client.register_script(K.PREVIEW)
        self._finish = client.register_script(K.FINISH)

    def get(self, job_id: str) -> Optional[JobRecord]:
        raw = self.client.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None

    def claim(self, record: JobRecord, worker: str, lease_s: float) -> str:
        keys, args = self.claim_args(record.id, record.model, worker, int(lease_s * 1000))
        return _text(self._claim(keys=keys, args=args))

    def renew(self, job_id: str, worker: str, lease_s: float) -> bool:
        """Extend this worker's lease on the job (``False`` when it is not ours any more)."""
        key = self.keys.lease(job_id)
        if _text(self.client.get(key) or b"") != worker:
            return False
        return bool(self.client.pexpire(key, int(lease_s * 1000)))

    def cancelled(self, job_id: str) -> bool:
        return bool(self.client.exists(self.keys.cancel(job_id)))

    def progress(self, job_id: str, event: dict[str, Any], progress: Optional[float]) -> None:
        k = self.keys
        self._progress(
            keys=[k.job(job_id), k.events(job_id), k.seq(job_id)],
            args=[
                _event_json(event),
                "" if progress is None else f"{progress:.6f}",
                MAX_EVENTS,
                ACTIVE_TTL_S,
            ],
        )

    def preview(self, job_id: str, payload: dict[str, Any]) -> None:
        """Publish a live preview (size-limited by the caller); it replaces the previous one."""
        k = self.keys
        self._preview(
            keys=[k.job(job_id), k.events(job_id), k.seq(job_id), k.previews(job_id)],
            args=[_event_json(payload), MAX_EVENTS, ACTIVE_TTL_S, KEPT_PREVIEWS],
        )

    def finish(self, record: JobRecord, status: str, **kwargs: Any) -> bool:
        keys, args = self.finish_args(record, status, **kwargs)
        return bool(self._finish(keys=keys, args=args))

    def note(self, job_id: str, name: str, value: Any) -> None:
        """Record a worker-side fact on the job (``engine_stopped``...), if the job still exists."""
        key = self.keys.job(job_id)
        if self.client.exists(key):
            self.client.hset(key, f"note:{name}", json.dumps(value, default=str))

    def record_duration(self, model: str, seconds: float) -> None:
        key = self.keys.avg(model)
        old = self.client.get(key)
        avg = seconds if old is None else 0.7 * float(old) + 0.3 * seconds
        self.client.set(key, f"{avg:.3f}")

    def heartbeat(self, worker: str, beat: dict[str, Any]) -> None:
        self.client.hset(self.keys.workers, worker, json.dumps({**beat, "ts": time.time()}, default=str))

    def goodbye(self, worker: str) -> None:
        self.client.hdel(self.keys.workers, worker)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
