"""The jobs of one server process, by id: lookup, listing and expiry (410 after expiry, not 404)."""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Optional

from .errors import APIError
from .options import ServerOptions

if TYPE_CHECKING:  # pragma: no cover
    from .jobs import Job

__all__ = ["JobStore"]

_MAX_TOMBSTONES = 10_000


class JobStore:
    """All jobs of the server by id; finished jobs expire after ``ttl_s`` (then 410, not 404)."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.jobs: dict[str, Job] = {}
        self.tombstones: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.sweep()

    def get(self, job_id: str, *, kind: Optional[str] = None) -> Job:
        self.sweep()
        noun = "video" if kind == "video" else "job"
        job = self.jobs.get(job_id)
        if job is not None and (kind is None or job.kind == kind):
            return job
        if job_id in self.tombstones:
            raise APIError(
                410,
                f"The {noun} {job_id!r} finished and expired (kept {self.opts.job_ttl_s:g} s).",
                code=f"{noun}_expired",
            )
        raise APIError(404, f"No {noun} with id {job_id[:80]!r}.", code=f"{noun}_not_found")

    def remove(self, job_id: str) -> None:
        if self.jobs.pop(job_id, None) is not None:
            self._bury(job_id)

    def list(self, *, kind: Optional[str] = None) -> list[Job]:
        self.sweep()
        return [j for j in self.jobs.values() if kind is None or j.kind == kind]

    def sweep(self, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        finished = [j for j in self.jobs.values() if j.terminal]
        for job in finished:
            if job.expires_at is not None and job.expires_at <= now:
                self.remove(job.id)
        excess = len(self.jobs) - self.opts.max_jobs
        if excess > 0:
            for job in sorted((j for j in self.jobs.values() if j.terminal), key=lambda j: j.created_at)[
                :excess
            ]:
                self.remove(job.id)

    def _bury(self, job_id: str) -> None:
        self.tombstones[job_id] = time.time()
        while len(self.tombstones) > _MAX_TOMBSTONES:
            self.tombstones.popitem(last=False)
