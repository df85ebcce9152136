"""``worker``: a worker of the distributed mode (:class:`abstractvision.distributed.worker.Worker`)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InvalidRequestError, OptionalDependencyMissingError
from .serve import served_models

BROKER_ENV = "ABSTRACTVISION_BROKER"
PREFIX_ENV = "ABSTRACTVISION_PREFIX"


def distributed_settings(args: argparse.Namespace, *, required: bool) -> tuple[str, str]:
    """The broker URL and key prefix of ``--broker`` / ``--prefix`` (or their variables)."""
    broker = getattr(args, "broker", None) or os.environ.get(BROKER_ENV) or ""
    if required and not broker:
        raise InvalidRequestError(
            "A worker needs the deployment's Redis: --broker redis://HOST:6379/0 (or ABSTRACTVISION_BROKER).",
            param="broker",
        )
    if broker and not broker.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidRequestError(
            f"--broker must be a Redis URL (redis://HOST:6379/0, rediss://... or unix://...), got {broker[:60]!r}.",
            param="broker",
        )
    prefix = getattr(args, "prefix", None) or os.environ.get(PREFIX_ENV) or "av"
    return broker, prefix


def require_distributed_extra() -> None:
    for module, package in (("celery", "celery"), ("redis", "redis")):
        try:
            __import__(module)
        except ImportError as exc:
            raise OptionalDependencyMissingError(
                package, "distributed", purpose="the distributed mode"
            ) from exc


def worker(args: argparse.Namespace) -> int:
    broker, prefix = distributed_settings(args, required=True)
    require_distributed_extra()
    from ..distributed.worker import Worker
    from ..stores import open_store

    models = served_models(args)
    location = args.store_url or next((m.settings.store_dir for m in models if m.settings.store_dir), None)
    if not location:
        raise InvalidRequestError(
            "A worker needs the store its API nodes read: --store s3://BUCKET/PREFIX (or a shared folder).",
            param="store",
        )
    store = open_store(location, check=True)
    options = {
        "prefix": prefix,
        "heartbeat_s": args.heartbeat,
        "lease_s": args.lease,
        "max_loaded": args.max_loaded,
    }
    if args.job_ttl is not None:
        options["job_ttl_s"] = args.job_ttl
    if args.visibility_timeout is not None:
        options["visibility_timeout_s"] = args.visibility_timeout
    node = Worker(models, broker_url=broker, store=store, **options)
    if not args.quiet:
        sys.stderr.write(f"abstractvision worker: loading {', '.join(m.name for m in models)}...\n")
        sys.stderr.flush()
    node.prepare()
    if not args.quiet:
        sys.stderr.write(
            f"abstractvision worker {node.worker_id}: serving {', '.join(node.models)} from {len(node.queues())} "
            "queue(s); Ctrl-C stops it after the running job.\n"
        )
        sys.stderr.flush()
    node.serve_forever(loglevel=(args.log_level or ("error" if args.quiet else "warning")).upper())
    return 0
