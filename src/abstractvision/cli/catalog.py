"""``models`` (the packaged capability registry) and ``provider-models`` (the backend's catalog)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .common import settings_from_args
from .output import print_json


def write_table(out: Any, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns under a header line; the last column is not padded (paths, long text)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [f"{v:{w}}" for v, w in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[-1]]).rstrip() + "\n")


def _constraint(spec: Any) -> str:
    parts = []
    if not spec.supported:
        return "not supported"
    if spec.required:
        parts.append("required")
    if spec.has_default:
        parts.append(f"default {spec.default}")
    if spec.min is not None and spec.max is not None:
        parts.append(f"{spec.min:g}..{spec.max:g}")
    elif spec.min is not None:
        parts.append(f">= {spec.min:g}")
    elif spec.max is not None:
        parts.append(f"<= {spec.max:g}")
    if spec.multiple_of and spec.offset:
        parts.append(f"{spec.multiple_of}k+{spec.offset}")
    elif spec.multiple_of:
        parts.append(f"multiple of {spec.multiple_of}")
    if spec.enum is not None:
        parts.append("one of " + ", ".join(str(v) for v in spec.enum))
    return ", ".join(parts) or "-"


def _show_model(registry: Any, model_id: str, as_json: bool) -> int:
    spec = registry.get(model_id)
    if as_json:
        print_json({"model_id": spec.model_id, **registry.to_dict(spec.model_id)})
        return 0
    out = sys.stdout
    out.write(f"{spec.model_id}\n")
    for label, value in (
        ("provider", spec.provider),
        ("family", spec.family),
        ("license", spec.license),
        ("source", spec.source),
        ("backends", ", ".join(spec.backends) or "none built in"),
        ("pipeline", spec.diffusers_pipeline or ""),
        ("sd.cpp", "; ".join(f"{k}: {v}" for k, v in spec.sdcpp_components.items())),
        ("runs with", spec.runs_with),
        ("aliases", ", ".join(spec.aliases)),
        ("notes", spec.notes),
    ):
        if value:
            out.write(f"  {label + ':':10} {value}\n")
    for task, tspec in spec.tasks.items():
        out.write(f"\n  {task}  ({' + '.join(tspec.inputs)} -> {' + '.join(tspec.outputs)})\n")
        if tspec.pipeline:
            out.write(f"    pipeline: {tspec.pipeline}\n")
        width = max((len(name) for name in tspec.params), default=0)
        for name, param in tspec.params.items():
            out.write(f"    {name:{width}}  {_constraint(param)}\n")
        if tspec.requires:
            needs = ", ".join(f"{k}={v}" for k, v in tspec.requires.items())
            out.write(f"    requires: {needs}\n")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value / 1024:.1f} GB"


def local_models(args: argparse.Namespace) -> int:
    """``models --local``: what :func:`abstractvision.discovery.discover_local_models` finds."""
    from ..config import resolve_settings
    from ..discovery import discover_local_models

    settings = resolve_settings({"models_dir": args.models_dir})
    found = discover_local_models(models_dir=settings.models_dir)
    models = [m for m in found.models if args.task is None or args.task in m.tasks]
    models = [m for m in models if args.backend is None or m.backend == args.backend]
    if args.json:
        print_json({**found.to_dict(), "models": [m.to_dict() for m in models]})
        return 0
    out = sys.stdout
    if not models:
        sys.stderr.write(f"no local model found (searched: {', '.join(found.searched) or 'nothing'}).\n")
    else:
        rows = [
            (
                m.name,
                m.backend,
                ",".join(m.tasks) or "-",
                _size(m.size_bytes),
                m.registry_id or "-",
                "yes" if m.servable else "no",
                m.path,
            )
            for m in models
        ]
        header = ("NAME", "BACKEND", "TASKS", "SIZE", "REGISTRY", "SERVABLE", "PATH")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        out.write("  ".join([*(f"{v:{w}}" for v, w in zip(header, widths, strict=False)), header[-1]]) + "\n")
        for row, model in zip(rows, models, strict=True):
            out.write("  ".join([*(f"{v:{w}}" for v, w in zip(row, widths, strict=False)), row[-1]]) + "\n")
            for note in model.notes:
                out.write(f"  - {note}\n")
    if found.skipped:
        sys.stderr.write(f"skipped {len(found.skipped)}:\n")
        for entry in found.skipped:
            sys.stderr.write(f"  {entry.path}: {entry.reason}\n")
    return 0


def models(args: argparse.Namespace) -> int:
    if getattr(args, "local", False):
        return local_models(args)
    from ..model_capabilities import VisionModelCapabilitiesRegistry

    registry = VisionModelCapabilitiesRegistry()
    if args.list_tasks:
        tasks = {name: registry.get_task(name) for name in registry.list_tasks()}
        if args.json:
            print_json(tasks)
        else:
            for name, info in tasks.items():
                sys.stdout.write(f"{name:18} {info.get('description', '')}\n")
        return 0
    if args.model_id:
        return _show_model(registry, args.model_id, args.json)
    ids = registry.list_models(task=args.task, backend=args.backend)
    specs = [registry.get(mid) for mid in ids]
    if args.json:
        print_json(
            [
                {
                    "model_id": s.model_id,
                    "tasks": list(s.tasks),
                    "backends": list(s.backends),
                    "provider": s.provider,
                }
                for s in specs
            ]
        )
        return 0
    if not specs:
        sys.stderr.write("no model matches.\n")
        return 0
    write_table(
        sys.stdout,
        ("MODEL", "TASKS", "BACKENDS"),
        [(s.model_id, ",".join(s.tasks), ",".join(s.backends) or "-") for s in specs],
    )
    return 0


def provider_models(args: argparse.Namespace) -> int:
    from .tasks import build_manager

    settings = settings_from_args(args)
    manager = build_manager(settings, use_store=False, registry_check=False)
    try:
        entries = manager.list_provider_models(task=args.task)
    finally:
        manager.close()
    if args.json:
        print_json([entry.to_dict() for entry in entries])
        return 0
    if not entries:
        sys.stderr.write(
            f"the {settings.backend} backend lists no models"
            + (f" for {args.task}.\n" if args.task else ".\n")
        )
        return 0
    write_table(
        sys.stdout,
        ("MODEL", "TASKS", "OWNED BY"),
        [(e.id, ",".join(e.capabilities) or "-", e.owned_by or "-") for e in entries],
    )
    return 0
