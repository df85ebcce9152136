"""``serve``: run the HTTP server (:func:`abstractvision.server.run`) on the served models the flags name."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from ..errors import InvalidRequestError, OptionalDependencyMissingError
from ..served_models import ServedModel, served_models_from_args, unique_names
from .common import quiet_libraries, settings_from_args

SERVER_API_KEY_ENV = "ABSTRACTVISION_SERVER_API_KEY"


def served_models(args: argparse.Namespace) -> list[ServedModel]:
    """The models ``serve`` (or ``worker``) serves: ``--model``, ``--models-file``, ``--discover``."""
    settings = settings_from_args(args)
    explicit = bool(args.model or args.models_file or args.served_model_name)
    models: list[ServedModel] = []
    if explicit or not args.discover:
        models = served_models_from_args(
            settings,
            models=args.model,
            served_model_name=args.served_model_name,
            models_file=args.models_file,
        )
    if args.discover:
        from ..discovery import discover_local_models, served_models_from_discovery

        found = discover_local_models(models_dir=settings.models_dir)
        taken = {m.name for m in models}
        extra = [m for m in served_models_from_discovery(found, settings) if m.name not in taken]
        if not models and not extra:
            from ..errors import InvalidRequestError

            where = ", ".join(found.searched) or "nowhere"
            raise InvalidRequestError(
                f"--discover found no servable model (searched: {where}). Put Diffusers folders or GGUF/"
                "safetensors checkpoints under --models-dir (ABSTRACTVISION_MODELS_DIR), or name models "
                "with --model / --models-file; 'abstractvision models --local' shows what is found and why "
                "entries were skipped.",
                param="discover",
            )
        models = unique_names([*models, *extra])
    return models


_DEMO_CONFLICTS = (
    ("model", "--model"),
    ("models_file", "--models-file"),
    ("discover", "--discover"),
    ("served_model_name", "--served-model-name"),
    ("broker", "--broker"),
    ("backend", "--backend"),
    ("base_url", "--base-url"),
)


def serve(args: argparse.Namespace) -> int:
    if getattr(args, "demo", False):
        return _serve_demo(args)
    return _serve(args, None)


def _serve_demo(args: argparse.Namespace) -> int:
    """``serve --demo``: build the two tiny noise models in a temporary folder, serve them, delete it."""
    given = [flag for attr, flag in _DEMO_CONFLICTS if getattr(args, attr, None)]
    if given:
        raise InvalidRequestError(
            f"--demo serves its own two tiny models; drop {', '.join(given)} (or drop --demo to serve yours).",
            param="demo",
        )
    import tempfile
    from pathlib import Path

    from .demo import build_demo_models

    device = settings_from_args(args).device or "cpu"
    # the tiny models' own load bars and warnings (a T5 where Wan expects UMT5) are noise here
    with (
        quiet_libraries(enabled=not args.debug),
        tempfile.TemporaryDirectory(prefix="abstractvision-serve-demo-") as tmp,
    ):
        if not args.quiet:
            sys.stderr.write(
                "abstractvision serve --demo: building two tiny random-weight models (nothing is downloaded) "
                f"in {tmp} (deleted at exit)\n"
            )
            sys.stderr.flush()
        return _serve(args, build_demo_models(Path(tmp), device=device))


def _serve(args: argparse.Namespace, demo: Optional[list[ServedModel]]) -> int:
    from .worker import distributed_settings

    broker, prefix = distributed_settings(args, required=False)
    models: list[ServedModel] = []
    if demo is not None:
        broker, models = "", demo  # the demo runs in this process, whatever ABSTRACTVISION_BROKER says
    elif broker:
        if args.model or args.models_file or args.discover or args.served_model_name:
            raise InvalidRequestError(
                "An API node (--broker) loads no model: give --model/--models-file/--discover to "
                "'abstractvision worker' processes instead; it serves what they announce.",
                param="broker",
            )
    else:
        models = served_models(args)
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
    location = args.store_url or args.store_dir
    if args.store_url and args.store_dir and args.store_url != args.store_dir:
        raise InvalidRequestError("Give the store once: --store URL or --store-dir DIR.", param="store")
    location = location or next((m.settings.store_dir for m in models if m.settings.store_dir), None)
    if broker:
        from .worker import require_distributed_extra

        require_distributed_extra()
        if not location:
            location = os.environ.get("ABSTRACTVISION_STORE_DIR")
        if not location:
            raise InvalidRequestError(
                "An API node needs the store its workers write to: --store s3://BUCKET/PREFIX (or a shared folder).",
                param="store",
            )
        kwargs["broker"] = broker
        kwargs["distributed"] = {"prefix": prefix}
    for key, value in (
        ("workers", args.workers),
        ("queue_size", args.queue_size),
        ("store", location),
        ("job_ttl_s", args.job_ttl),
        ("max_body_bytes", args.max_body_bytes),
        ("public_url", args.public_url),
        ("allowed_extra_keys", tuple(args.allow_extra_key) or None),
        ("preload", args.preload or None),
        ("max_loaded", args.max_loaded),
        ("embed_metadata", args.embed_metadata),
        ("log_level", args.log_level or ("warning" if args.quiet else None)),
    ):
        if value is not None:
            kwargs[key] = value
    if not args.quiet:
        host = f"[{args.host}]" if ":" in args.host else args.host
        listed = ", ".join(
            f"{m.name} ({m.settings.backend or 'no'} backend{'; ' + m.description if m.description else ''})"
            for m in models
        )
        if broker:
            from ..distributed.redis_state import redact_url

            listed = f"the models of the workers on {redact_url(broker)} (API node)"
        sys.stderr.write(
            f"abstractvision serve: serving {listed} on http://{host}:{args.port}/"
            f"{' (API key required)' if kwargs['api_key'] else ''}; Ctrl-C stops it.\n"
        )
        sys.stderr.flush()
    server.run(models, **kwargs)
    return 0
