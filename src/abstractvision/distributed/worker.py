"""A worker of the distributed mode: a Celery worker that owns its engines and runs their jobs.

One process per GPU. It serves the same models (same names) as ``serve`` would from the same
flags, loads them before taking any job (a model that fails to load stops the worker with the
reason: it never takes jobs it cannot run), announces them with a heartbeat, and consumes one
Celery queue per served model. A job runs through the same manager code as in one process:

1. claim it in Redis (atomically; a job that finished, or that another live worker holds, is
   skipped: delivery is at least once, jobs are idempotent by id), with a lease renewed while
   it runs (if this process dies, the lease expires and an API node's sweep requeues the job);
2. run the manager call with progress (and, when the job asked for them, size-limited live
   previews: only the latest is kept) going to the job's event stream and a cancel token that
   reads the job's cancel flag in Redis at every engine step;
3. store the outputs in the shared store and finish the job with their refs (only the worker
   holding the job can finish it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Optional

from ..errors import AbstractVisionError, GenerationCancelledError, InvalidRequestError
from ..served_models import ServedModel
from .celery_app import DEFAULT_VISIBILITY_TIMEOUT_S, TASK_NAME, make_celery, queue_name
from .keys import decode_params
from .redis_state import JobRecord, WorkerJobs, redact_url

__all__ = ["Worker", "WorkerStartError"]

logger = logging.getLogger("abstractvision.distributed")


class WorkerStartError(AbstractVisionError):
    """The worker cannot start: a model failed to load, the broker or the store is unreachable."""


class _Cancel:
    """The engine's cancel token: the job's cancel flag in Redis, read at every step."""

    def __init__(self, jobs: WorkerJobs, job_id: str) -> None:
        self.jobs = jobs
        self.job_id = job_id
        self.local = threading.Event()

    def set(self) -> None:
        self.local.set()

    def is_set(self) -> bool:
        if self.local.is_set():
            return True
        try:
            if self.jobs.cancelled(self.job_id):
                self.local.set()
        except Exception:  # Redis briefly unreachable: keep running, the lease decides
            return False
        return self.local.is_set()


class _Model:
    """One served model of this worker: its manager and whether it holds its weights."""

    def __init__(self, served: ServedModel, manager: Any) -> None:
        self.served = served
        self.manager = manager
        self.loaded = False
        self.last_used = 0.0

    @property
    def name(self) -> str:
        return self.served.name


class Worker:
    """Builds the engines, announces them, and runs jobs from their queues (see the module docstring).

    Args:
        models: the served models (as ``serve`` builds them from the same flags).
        broker_url: the Redis URL shared with the API nodes.
        store: the :class:`~abstractvision.artifacts.MediaStore` shared with the API nodes.
        prefix: the deployment's Redis key prefix (the API nodes' too).
        heartbeat_s: seconds between announcements (API nodes forget a worker after 3 missed).
        lease_s: how long a claimed job stays this worker's without a renewal.
        max_loaded: most models holding weights at once (least recently used unloaded first).
        job_ttl_s: how long finished jobs stay (the API nodes' setting).
    """

    def __init__(
        self,
        models: Sequence[ServedModel],
        *,
        broker_url: str,
        store: Any,
        prefix: str = "av",
        heartbeat_s: float = 2.0,
        lease_s: float = 10.0,
        max_loaded: Optional[int] = None,
        job_ttl_s: float = 3600.0,
        visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S,
        worker_id: Optional[str] = None,
    ) -> None:
        import redis

        from ..server.artifacts import ArtifactIndex
        from ..server.errors import Redactor

        if not models:
            raise InvalidRequestError(
                "A worker needs at least one model (--model or --models-file).", param="model"
            )
        self.served = list(models)
        self.broker_url = broker_url
        self.prefix = prefix
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.max_loaded = max_loaded
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.client = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=10)
        self.jobs = WorkerJobs(self.client, prefix=prefix, job_ttl_s=job_ttl_s)
        self.artifacts = ArtifactIndex(store)
        self.redact = Redactor(paths={p: m.name for m in self.served for p in m.local_paths})
        self.celery = make_celery(broker_url, visibility_timeout_s=visibility_timeout_s)
        self.models: dict[str, _Model] = {}
        self.running: Optional[str] = None
        self._stop = threading.Event()

    # -- start-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Reach Redis, build the engines and load them (up to ``max_loaded``); raise if anything fails."""
        from ..config import create_backend
        from ..vision_manager import VisionManager

        try:
            self.client.ping()
        except Exception as exc:
            raise WorkerStartError(
                f"Cannot reach the broker at {redact_url(self.broker_url)} ({type(exc).__name__}: {exc}); "
                "check that Redis is running and reachable from this machine."
            ) from None
        for served in self.served:
            try:
                backend = create_backend(served.settings)
                manager = VisionManager(backend=backend, model_id=served.registry_id, model_label=served.name)
            except AbstractVisionError as exc:
                raise WorkerStartError(f"Model {served.name!r} cannot be served: {exc}") from None
            self.models[served.name] = _Model(served, manager)
        for model in list(self.models.values())[: self.max_loaded or len(self.models)]:
            self._load(model)

    def _load(self, model: _Model) -> None:
        started = time.perf_counter()
        try:
            model.manager.require_backend().preload()
        except Exception as exc:
            message = self.redact(f"{type(exc).__name__}: {exc}")
            raise WorkerStartError(
                f"Model {model.name!r} failed to load ({message}); this worker takes no jobs."
            ) from None
        model.loaded, model.last_used = True, time.monotonic()
        logger.info("loaded %s in %.2fs", model.name, time.perf_counter() - started)

    def _make_room(self, wanted: _Model) -> None:
        if wanted.loaded:
            return
        loaded = [m for m in self.models.values() if m.loaded]
        while self.max_loaded is not None and len(loaded) >= self.max_loaded:
            victim = min(loaded, key=lambda m: m.last_used)
            victim.manager.require_backend().unload()
            victim.loaded = False
            loaded.remove(victim)
        self._load(wanted)

    def announcement(self) -> dict[str, Any]:
        from .api import capabilities_to_dict

        models = []
        for model in self.models.values():
            manager = model.manager
            caps = manager.backend_capabilities(manager.require_backend())
            tasks = (
                list(caps.supported_tasks) if caps is not None and caps.supported_tasks is not None else []
            )
            models.append(
                {
                    "name": model.name,
                    "backend": model.served.settings.backend,
                    "registry_id": model.served.registry_id,
                    "description": model.served.description,
                    "request_defaults": dict(model.served.request_defaults or {}),
                    "tasks": tasks,
                    "capabilities": capabilities_to_dict(caps),
                    "loaded": model.loaded,
                    "queue": queue_name(self.prefix, model.name),
                }
            )
        return {
            "worker": self.worker_id,
            "pid": os.getpid(),
            "heartbeat_s": self.heartbeat_s,
            "models": models,
            "running": self.running,
        }

    def _heartbeat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.jobs.heartbeat(self.worker_id, self.announcement())
            except Exception:  # Redis restarting: announce again at the next beat
                logger.debug("heartbeat failed", exc_info=True)
            self._stop.wait(self.heartbeat_s)

    # -- running ----------------------------------------------------------------------------------

    def run_job(self, job_id: str) -> str:
        """Run one job (the Celery task's body); returns what happened, for logs and tests."""
        record = self.jobs.get(job_id)
        if record is None:
            return "gone"
        model = self.models.get(record.model)
        if model is None:  # a message routed to the wrong queue: leave it to the right workers
            return "not-mine"
        outcome = self.jobs.claim(record, self.worker_id, self.lease_s)
        if outcome != "ok":
            return outcome
        record = self.jobs.get(job_id) or record
        self.running = job_id
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(job_id, done), daemon=True, name=f"lease-{job_id}"
        )
        renewer.start()
        started = time.perf_counter()
        try:
            return self._execute(model, record)
        finally:
            done.set()
            renewer.join(5)
            self.running = None
            self.jobs.record_duration(record.model, time.perf_counter() - started)

    def _renew(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(self.lease_s / 3):
            try:
                self.jobs.renew(job_id, self.worker_id, self.lease_s)
            except Exception:
                logger.debug("lease renewal failed", exc_info=True)

    def _execute(self, model: _Model, record: JobRecord) -> str:
        from ..server.errors import error_from_exception
        from ..server.jobs import manager_call, store_results, wants_previews
        from ..server.previews import preview_payload

        cancel = _Cancel(self.jobs, record.id)
        last_step: list[Optional[int]] = [None]

        def on_progress(event: Any) -> None:
            if event.step is not None:
                last_step[0] = event.step
            data = event.to_dict()
            if data.get("message"):
                data["message"] = self.redact(str(data["message"]))
            if data.get("raw"):
                data["raw"] = self.redact.obj(data["raw"])
            value = event.progress
            if value is None and event.step is not None and event.total_steps:
                value = event.step / event.total_steps
            self.jobs.progress(record.id, data, value)

        try:
            self._make_room(model)
            model.last_used = time.monotonic()
            params = decode_params(record.spec.get("params"))
            if wants_previews(params):  # the job asked for live previews: into its event stream
                params["on_preview"] = lambda event: self.jobs.preview(record.id, preview_payload(event))
            method, extra = manager_call(record.task, int(record.spec.get("n") or 1))
            result = getattr(model.manager, method)(**params, **extra, on_progress=on_progress, cancel=cancel)
            assets = list(result) if isinstance(result, list) else [result]
            refs = store_results(self.artifacts, self.redact, record.id, record.task, assets)
        except GenerationCancelledError:
            # where the engine stopped: the evidence that a cancel reached it within a step
            self.jobs.note(record.id, "engine_stopped", {"step": last_step[0], "at": time.time()})
            self.jobs.finish(record, "cancelled", worker=self.worker_id)
            return "cancelled"
        except Exception as exc:
            error = error_from_exception(exc)
            self.jobs.finish(
                record,
                "failed",
                error=error.body(self.redact)["error"],
                error_status=error.status,
                error_headers=error.headers,
                worker=self.worker_id,
            )
            return "failed"
        finished = self.jobs.finish(record, "completed", results=refs, worker=self.worker_id)
        return "completed" if finished else "superseded"

    # -- the Celery worker ------------------------------------------------------------------------

    def queues(self) -> list[str]:
        return [queue_name(self.prefix, name) for name in self.models]

    def serve_forever(self, *, loglevel: str = "WARNING") -> None:
        """Announce the models and consume their queues until stopped (SIGTERM / Ctrl-C)."""
        worker = self

        @self.celery.task(name=TASK_NAME, acks_late=True, ignore_result=True)
        def run_job(job_id: str) -> str:
            return worker.run_job(job_id)

        beats = threading.Thread(target=self._heartbeat_forever, daemon=True, name="heartbeat")
        beats.start()
        try:
            self.celery.worker_main(
                [
                    "worker",
                    "--pool=solo",
                    "--concurrency=1",
                    f"--queues={','.join(self.queues())}",
                    f"--loglevel={loglevel}",
                    f"--hostname={self.worker_id}@%h",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "--prefetch-multiplier=1",
                ]
            )
        finally:
            self._stop.set()
            try:
                self.jobs.goodbye(self.worker_id)
            except Exception:
                logger.debug("could not remove the heartbeat", exc_info=True)
            for model in self.models.values():
                model.manager.close()
