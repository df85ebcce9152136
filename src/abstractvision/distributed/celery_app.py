"""The Celery application both sides share: broker settings, delivery semantics, queue names.

Delivery is *at least once*: ``task_acks_late`` (a message is acknowledged after its job ran),
prefetch 1 (a worker holds one message at a time), and the Redis transport's visibility
timeout (an unacknowledged message goes back to its queue after that long). A job may thus
run twice; it is idempotent by its id (a worker claims a job atomically and skips one that
finished or that another live worker holds, and a job's results are written once, keyed by
its id). Messages carry only the job id: the request lives in Redis with the job.

Messages are published to the anonymous exchange with the queue name as routing key, so a
Redis that restarted empty (no exchange bindings) still routes them.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["TASK_NAME", "make_celery", "queue_name"]

TASK_NAME = "abstractvision.run_job"
#: seconds before an unacknowledged message is delivered again (above the longest job)
DEFAULT_VISIBILITY_TIMEOUT_S = 6 * 3600


def queue_name(prefix: str, model: str) -> str:
    """One Celery queue per served model name (names may hold ``/``: keep them readable and unique)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)[:80]
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"{prefix}.model.{safe}.{digest}"


def make_celery(broker_url: str, *, visibility_timeout_s: float = DEFAULT_VISIBILITY_TIMEOUT_S) -> Any:
    """A Celery app on ``broker_url`` (Redis), configured for the delivery semantics above."""
    from celery import Celery

    app = Celery("abstractvision", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_exchange="",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=3,
        broker_transport_options={
            "visibility_timeout": int(visibility_timeout_s),
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "retry_on_timeout": True,
        },
    )
    return app
