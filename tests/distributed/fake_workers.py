"""An API node with real Worker objects behind it (their announcement and job code), fed from
Redis by a polling thread instead of Celery: the distributed mode without worker processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from conftest import RedisServer


@contextmanager
def api_node_with_workers(
    redis_server: RedisServer,
    tmp_path: Path,
    backends: Mapping[str, Any],
    registry: Optional[Mapping[str, str]] = None,
) -> Iterator[str]:
    """Serve ``backends`` (name -> backend) through an API node; yields its URL."""
    from abstractvision import LocalAssetStore, VisionManager
    from abstractvision.config import BackendSettings
    from abstractvision.distributed.worker import Worker, _Model
    from abstractvision.served_models import ServedModel
    from abstractvision.server import create_app, serve_in_thread

    registry = registry or {}
    prefix = f"t{time.monotonic_ns()}"
    store = LocalAssetStore(tmp_path / "store")
    served = [ServedModel(n, BackendSettings(backend="fake"), registry_id=registry.get(n)) for n in backends]
    worker = Worker(served, broker_url=redis_server.url, store=store, prefix=prefix, heartbeat_s=60)
    for model in served:
        manager = VisionManager(
            backend=backends[model.name], model_id=model.registry_id, model_label=model.name
        )
        worker.models[model.name] = _Model(model, manager)
        worker.models[model.name].loaded = True
    worker.jobs.heartbeat(worker.worker_id, worker.announcement())  # what API nodes validate with
    stop = threading.Event()

    def take_jobs() -> None:  # Celery's part: hand each queued job to the worker
        done: set[str] = set()
        client = redis_server.client()
        while not stop.is_set():
            for raw in client.zrange(f"{prefix}:jobs", 0, -1):
                job_id = raw.decode()
                if job_id not in done:
                    done.add(job_id)
                    worker.run_job(job_id)
            time.sleep(0.01)

    thread = threading.Thread(target=take_jobs, daemon=True)
    thread.start()
    app = create_app(broker=redis_server.url, store=store, distributed={"prefix": prefix, "sweep_s": 60})
    try:
        with serve_in_thread(app) as server:
            yield server.url
    finally:
        stop.set()
        thread.join(10)
