"""The generation commands: generate, edit, upscale, video, i2v, angles.

Each command turns its flags into one :class:`~abstractvision.VisionManager` call (the
``*_batch`` method with ``--count``), shows progress on a terminal, lets Ctrl-C cancel the
engine at its next step, then writes the outputs and prints the result.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, Optional

from ..errors import GenerationCancelledError, InvalidRequestError
from .common import (
    cancel_on_sigint,
    image_input,
    parse_pairs,
    quiet_libraries,
    settings_from_args,
    wants_tty,
)
from .output import OutputItem, check_output, format_from_output, item_record, print_json, write_outputs
from .progress import ProgressRenderer

_NOUNS = {"video": "video", "i2v": "video"}
_IMAGE_METHODS = frozenset({"generate_image", "edit_image", "upscale_image", "generate_angles"})


def file_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """``embed_metadata``, and for images ``output_format``/``output_compression``, from the flags.

    ``--format`` wins when given; otherwise ``-o NAME.jpg`` (``.png``, ``.webp``) implies the
    format. A ``--format`` that contradicts ``-o``'s extension is a usage error.
    """
    out: dict[str, Any] = {}
    if getattr(args, "embed_metadata", None):
        out["embed_metadata"] = args.embed_metadata
    if method not in _IMAGE_METHODS:
        return out
    chosen = getattr(args, "output_format", None)
    chosen = "jpeg" if chosen == "jpg" else chosen
    implied = format_from_output(getattr(args, "output", None))
    if chosen and implied and chosen != implied:
        raise InvalidRequestError(
            f"--format {chosen} does not match --output {args.output!r} (a {implied} file name); "
            "change one of them.",
            param="output_format",
        )
    if chosen or implied:
        out["output_format"] = chosen or implied
    if getattr(args, "output_compression", None) is not None:
        out["output_compression"] = args.output_compression
    return out


class PreviewWriter:
    """``on_preview`` for ``--previews DIR``: each preview as a file, and ``latest.jpg``, written atomically."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.written = 0

    def __call__(self, event: Any) -> None:
        import os

        from .._fileio import atomic_write_bytes, extension_for_mime

        ext = extension_for_mime(event.mime_type)
        prefix = f"{event.index}-" if event.index else ""
        name = (
            f"{prefix}step-{event.step:04d}{ext}"
            if event.step is not None
            else f"{prefix}preview-{self.written:04d}{ext}"
        )
        atomic_write_bytes(os.path.join(self.folder, name), event.image)
        atomic_write_bytes(os.path.join(self.folder, f"latest{ext}"), event.image)
        self.written += 1


def preview_options(args: argparse.Namespace) -> dict[str, Any]:
    """``on_preview`` (a :class:`PreviewWriter`) and ``preview_every`` from ``--previews DIR``."""
    folder = getattr(args, "previews", None)
    every = getattr(args, "preview_every", None)
    if folder is None:
        if every is not None:
            raise InvalidRequestError("--preview-every needs --previews DIR.", param="preview_every")
        return {}
    import os

    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InvalidRequestError(f"--previews {folder!r} is a file; give a folder.", param="previews")
    os.makedirs(folder, exist_ok=True)
    out: dict[str, Any] = {"on_preview": PreviewWriter(folder)}
    if every is not None:
        out["preview_every"] = every
    return out


def _sampling(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    fields = {
        "negative_prompt": "negative_prompt",
        "width": "width",
        "height": "height",
        "steps": "steps",
        "guidance_scale": "guidance_scale",
        "seed": "seed",
        "strength": "strength",
        "num_frames": "frames",
        "fps": "fps",
        "scale": "scale",
    }
    out: dict[str, Any] = {}
    for param in names or tuple(fields):
        value = getattr(args, fields[param], None)
        if value is not None:
            out[param] = value
    extra = parse_pairs(getattr(args, "extra", None) or ())
    if extra:
        out["extra"] = extra
    loras = [_lora(text) for text in getattr(args, "lora", None) or ()]
    if loras:
        out["lora_adapters"] = loras
    return out


def _lora(text: str) -> dict[str, Any]:
    source, sep, tail = text.rpartition(":")
    if sep and source and "/" not in tail and "\\" not in tail:
        try:
            return {"source": source, "scale": float(tail)}
        except ValueError:
            pass
    return {"source": text}


def build_manager(settings: Any, *, use_store: bool, registry_check: bool) -> Any:
    """A manager over the configured backend; with a registry model id, its limits are checked first."""
    from .. import config

    model_id = registry = None
    if registry_check and isinstance(settings.model, str) and settings.model.strip():
        from ..model_capabilities import VisionModelCapabilitiesRegistry

        candidate = VisionModelCapabilitiesRegistry()
        if settings.model in candidate:
            model_id, registry = candidate.resolve(settings.model), candidate
    return config.create_manager(settings, use_store=use_store, model_id=model_id, registry=registry)


def _to_item(result: Any, store: Any) -> OutputItem:
    from ..artifacts import is_artifact_ref

    if is_artifact_ref(result):
        aid = str(result["$artifact"])
        return OutputItem(
            data=store.load_bytes(aid),
            mime_type=str(result.get("content_type") or "application/octet-stream"),
            metadata=dict(result.get("metadata") or {}),
            artifact_id=aid,
            ref=result,
        )
    return OutputItem(data=bytes(result.data), mime_type=result.mime_type, metadata=dict(result.metadata))


def execute(
    manager: Any,
    method: str,
    positional: tuple[Any, ...],
    params: dict[str, Any],
    *,
    count: Optional[int],
    progress: ProgressRenderer,
    label: str,
) -> list[Any]:
    """Call ``manager.<method>`` (or ``<method>_batch`` with ``count``) with progress and Ctrl-C.

    The first Ctrl-C sets the ``cancel`` token, so the engine stops at its next step and
    :class:`GenerationCancelledError` propagates; the manager is closed in every case.
    """
    cancel = threading.Event()
    try:
        with cancel_on_sigint(cancel, progress.note_later):
            if count is not None:
                result = getattr(manager, f"{method}_batch")(
                    *positional, count=count, on_progress=progress, cancel=cancel, **params
                )
            else:
                result = getattr(manager, method)(*positional, on_progress=progress, cancel=cancel, **params)
            if cancel.is_set():  # the engine finished before it looked at the token
                raise GenerationCancelledError(f"{label} cancelled.")
    finally:
        manager.close()
    return result if isinstance(result, list) else [result]


def report(
    args: argparse.Namespace, items: list[OutputItem], elapsed: float, *, store: Any = None, **fields: Any
) -> None:
    """Print the result: paths on stdout (or the JSON document with ``--json``), a summary on stderr."""
    if args.json:
        first = items[0].metadata if items else {}
        print_json(
            {
                "ok": True,
                "command": args.command,
                "task": first.get("task"),
                "backend": first.get("backend"),
                "model": first.get("model"),
                "count": len(items),
                "seeds": [item.metadata.get("seed") for item in items],
                "elapsed_s": round(elapsed, 4),
                **fields,
                "outputs": [item_record(item) for item in items],
            }
        )
    else:
        for item in items:
            line = item.path or ""
            if item.artifact_id:
                line += f"\tartifact:{item.artifact_id}"
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if not args.quiet:
        noun = _NOUNS.get(args.command, "image")
        seeds = [str(item.metadata.get("seed")) for item in items if item.metadata.get("seed") is not None]
        summary = f"{args.command}: {len(items)} {noun}{'s' if len(items) != 1 else ''} in {elapsed:.2f}s"
        if seeds:
            summary += f", seed{'s' if len(seeds) != 1 else ''} {', '.join(seeds)}"
        if store is not None:
            summary += f", stored in {store.base_dir}"
        sys.stderr.write(summary + "\n")


def save(output: Optional[str], items: list[OutputItem], command: str, store: Any) -> None:
    """Write the outputs to ``output``; stored outputs without ``-o`` point at their store file."""
    if output is not None or store is None:
        for text in write_outputs(output, items, command):
            sys.stderr.write(f"abstractvision: warning: {text}\n")
    else:
        for item in items:
            item.path = str(store.get_content_path(item.artifact_id))


def run_task(
    args: argparse.Namespace,
    method: str,
    positional: tuple[Any, ...],
    params: dict[str, Any],
    *,
    batchable: bool = True,
) -> int:
    """Run one generation command end to end: settings, manager, progress, outputs, report."""
    check_output(args.output)
    params = {**params, **file_options(args, method), **preview_options(args)}
    settings = settings_from_args(args)
    count: Optional[int] = getattr(args, "count", None) if batchable else None
    started = time.perf_counter()
    downloads = bool(settings.allow_download)
    with (
        ProgressRenderer(
            sys.stderr,
            label=args.command,
            enabled=not args.quiet and wants_tty(sys.stderr),
            tick_s=0 if downloads else 0.1,  # leave the line to download bars between events
        ) as progress,
        quiet_libraries(enabled=not args.debug, download_bars=downloads),
    ):
        manager = build_manager(
            settings, use_store=bool(args.store), registry_check=not args.skip_registry_check
        )
        results = execute(
            manager, method, positional, params, count=count, progress=progress, label=args.command
        )
    elapsed = time.perf_counter() - started
    items = [_to_item(r, manager.store) for r in results]
    save(args.output, items, args.command, manager.store)
    report(args, items, elapsed, store=manager.store)
    return 0


# -- commands -------------------------------------------------------------------------


def generate(args: argparse.Namespace) -> int:
    return run_task(args, "generate_image", (args.prompt,), _sampling(args))


def edit(args: argparse.Namespace) -> int:
    params = _sampling(args)
    params["image"] = image_input(args.image, name="image", store_dir=args.store_dir)
    if args.mask is not None:
        if args.mask == "-" and args.image == "-":
            raise InvalidRequestError("--image and --mask cannot both read stdin.", param="mask")
        params["mask"] = image_input(args.mask, name="mask", store_dir=args.store_dir)
    return run_task(args, "edit_image", (args.prompt,), params)


def upscale(args: argparse.Namespace) -> int:
    params = _sampling(args, "negative_prompt", "steps", "guidance_scale", "seed", "scale")
    if args.prompt is not None:
        params["prompt"] = args.prompt
    image = image_input(args.image, name="image", store_dir=args.store_dir)
    return run_task(args, "upscale_image", (image,), params, batchable=False)


def video(args: argparse.Namespace) -> int:
    return run_task(args, "generate_video", (args.prompt,), _sampling(args))


def i2v(args: argparse.Namespace) -> int:
    image = image_input(args.image, name="image", store_dir=args.store_dir)
    return run_task(args, "image_to_video", (image, args.prompt), _sampling(args))


def angles(args: argparse.Namespace) -> int:
    params = _sampling(args)
    if args.image is not None:
        params["reference_image"] = image_input(args.image, name="reference_image", store_dir=args.store_dir)
    if args.angles is not None:
        names = [a.strip() for a in args.angles.split(",") if a.strip()]
        if not names:
            raise InvalidRequestError(
                "--angles needs at least one angle, e.g. front,side,back.", param="angles"
            )
        params["angles"] = names
    return run_task(args, "generate_angles", (args.prompt,), params, batchable=False)
