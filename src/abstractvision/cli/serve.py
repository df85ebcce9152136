"""``serve``: run the HTTP server (:func:`abstractvision.server.run`) on the resolved backend settings."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import OptionalDependencyMissingError
from .common import settings_from_args

SERVER_API_KEY_ENV = "ABSTRACTVISION_SERVER_API_KEY"


def serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        from .. import server
    except OptionalDependencyMissingError:
        raise
    except ImportError as exc:
        raise OptionalDependencyMissingError(
            getattr(exc, "name", None) or "starlette", "server", purpose="abstractvision serve"
        ) from exc
    kwargs: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "api_key": args.server_api_key or os.environ.get(SERVER_API_KEY_ENV) or None,
        "cors_origins": tuple(args.cors_origin),
    }
    for key, value in (
        ("workers", args.workers),
        ("queue_size", args.queue_size),
        ("store_dir", settings.store_dir),
        ("job_ttl_s", args.job_ttl),
        ("max_body_bytes", args.max_body_bytes),
        ("public_url", args.public_url),
        ("allowed_extra_keys", tuple(args.allow_extra_key) or None),
        ("preload", args.preload or None),
        ("log_level", args.log_level or ("warning" if args.quiet else None)),
    ):
        if value is not None:
            kwargs[key] = value
    if not args.quiet:
        host = f"[{args.host}]" if ":" in args.host else args.host
        sys.stderr.write(
            f"abstractvision serve: backend {settings.backend or '(none)'}"
            f"{' model ' + str(settings.model) if settings.model else ''} on http://{host}:{args.port}/"
            f"{' (API key required)' if kwargs['api_key'] else ''}; Ctrl-C stops it.\n"
        )
        sys.stderr.flush()
    server.run(settings, **kwargs)
    return 0
