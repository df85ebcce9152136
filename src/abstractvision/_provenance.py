"""Honest provenance: what a result says was applied, ignored and adjusted, and what a file may carry.

One home for every backend: the managers' finalize step calls :func:`reconcile` on each
result. It merges what the backend *declared* (``VisionBackendCapabilities.honoured_parameters``)
with what it *reported* for this call (``ignored_parameters``, ``seed``, ``seed_source``,
``size_adjusted`` in the asset's metadata) and with what actually came back (the size of
the returned image or video), so that:

- ``metadata["parameters"]`` holds the parameters applied (a parameter known to be ignored
  is not in it; ``width``/``height`` are the size that came back);
- ``metadata["ignored_parameters"]`` maps every parameter known to be ignored to why
  (absent when none is);
- ``metadata["seed"]`` is a seed only when the backend knows the engine used it, and
  ``metadata["seed_source"]`` says where it came from (``requested``, ``generated``,
  ``engine``, ``unknown``);
- ``metadata["size_adjusted"]`` records ``{"requested": ..., "returned": ...}`` when the
  engine returned another size than the caller asked for.

It also builds what may go *inside* a file (:func:`infotext`, :func:`file_provenance`):
deterministic facts only, never times, durations, process ids, request ids, host paths or URLs.
Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ._validation import GENERATION_PARAMS
from .errors import SizeMismatchError

__all__ = [
    "NOT_EMBEDDED",
    "SEED_SOURCES",
    "Declared",
    "file_provenance",
    "infotext",
    "public_model_name",
    "reconcile",
]

SEED_SOURCES = ("requested", "generated", "engine", "unknown")
_SEED_SOURCE_ALIASES = {"provider": "engine"}

#: Metadata keys that never go inside a file: they change from run to run (time, durations,
#: process, request and job ids) or name places on the host (file paths, URLs). They stay in
#: the returned metadata and in the store's sidecar.
NOT_EMBEDDED = frozenset(
    {
        "created_at",
        "timings",
        "worker",
        "request_id",
        "job_id",
        "run_id",
        "host",
        "hostname",
        "pid",
        "files",
        "model_files",
        "base_url",
        "embedded_metadata",
    }
)
#: Keys whose value may be a local path: only the file or folder name is embedded.
_PATH_KEYS = ("model", "video_model", "upscaler")


@dataclass(frozen=True)
class Declared:
    """What a backend declared it honours for one task (``None``: nothing declared)."""

    honoured: Optional[frozenset[str]]
    reasons: Mapping[str, str]
    backend: str


def declared_for(caps: Any, tasks: tuple[str, ...], backend: str) -> Declared:
    """The declaration for a call running ``tasks`` (several for an orchestrated multi-view)."""
    table = getattr(caps, "honoured_parameters", None) if caps is not None else None
    reasons = dict(getattr(caps, "ignored_reasons", None) or {}) if caps is not None else {}
    if not isinstance(table, Mapping) or any(t not in table for t in tasks):
        return Declared(None, reasons, backend)
    honoured: Optional[frozenset[str]] = None
    for task in tasks:
        names = frozenset(str(n) for n in table[task])
        honoured = names if honoured is None else honoured & names
    return Declared(honoured, reasons, backend)


def public_model_name(value: Any) -> Any:
    """A local path as its file or folder name (a hub id such as ``org/model`` stays as given)."""
    if not isinstance(value, str) or not value:
        return value
    if os.path.isabs(value) or value.startswith(("~", "./", "../", ".\\", "..\\")) or "\\" in value:
        return os.path.basename(os.path.normpath(os.path.expanduser(value))) or value
    return value


def _normal_ignored(value: Any, backend: str) -> dict[str, str]:
    """A backend's ``ignored_parameters`` report as ``{name: why}`` (a bare list is accepted)."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return {str(k): f"reported as ignored by the {backend} backend" for k in value}
    return {}


def _size_of(value: Any) -> Optional[dict[str, Any]]:
    if isinstance(value, Mapping) and ("width" in value or "height" in value):
        return {"width": value.get("width"), "height": value.get("height")}
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return {"width": value[0], "height": value[1]}
    return None


def reconcile(
    meta: dict[str, Any],
    *,
    task: str,
    requested: dict[str, Any],
    declared: Declared,
    planned_seed: Optional[int],
    seed_origin: Optional[str],
    returned_size: Optional[tuple[int, int]],
    check_size: bool = True,
    caller_ignored: Optional[Mapping[str, str]] = None,
) -> None:
    """Rewrite ``meta`` (a copy of the backend's metadata) in place; see the module docstring.

    Args:
        meta: the asset's metadata as the backend returned it (identity keys added).
        task: the task the caller asked for.
        requested: the caller's parameters as planned (JSON-safe, inputs described).
        declared: what the backend declared it honours for this call.
        planned_seed: the seed handed to the backend for this output (``None``: none).
        seed_origin: ``"requested"`` when the caller chose it (``seed``/``seeds``),
            ``"generated"`` when the manager drew it, ``None`` when there was none.
        returned_size: ``(width, height)`` of what came back, when known.
        check_size: compare ``returned_size`` with the requested width/height.
        caller_ignored: what the caller's surface accepted without applying (a server's OpenAI
            fields), recorded with the rest; the backend's report wins for the same name.
    """
    raw = meta.get("parameters")
    reported: dict[str, Any] = raw if isinstance(raw, dict) else {}
    # a batch's planned seed counts as given (the batch records it in metadata["batch"])
    given = {**requested, "seed": planned_seed} if planned_seed is not None else requested
    ignored = dict(caller_ignored or {})
    ignored.update(_ignored_by_declaration(task, given, declared))
    ignored.update(_normal_ignored(meta.get("ignored_parameters"), declared.backend))

    applied = {**requested, **reported}
    for name in ignored:
        if name in requested and name not in reported:
            applied.pop(name, None)

    seed, source = _seed(meta, ignored, declared, task, planned_seed, seed_origin)
    if seed is None:
        applied.pop("seed", None)
    elif "seed" in applied or "seed" in requested:
        applied["seed"] = seed

    by_backend = meta.get("size_adjusted")  # a backend that knows it changed the size says so
    size_adjusted: Optional[dict[str, Any]] = None
    if isinstance(by_backend, Mapping) and _size_of(by_backend.get("requested")) is not None:
        size_adjusted = dict(by_backend)
    if size_adjusted is None and check_size and returned_size is not None:
        want_w, want_h = requested.get("width"), requested.get("height")
        got_w, got_h = returned_size
        if (want_w is not None and want_w != got_w) or (want_h is not None and want_h != got_h):
            size_adjusted = {
                "requested": {"width": want_w, "height": want_h},
                "returned": {"width": got_w, "height": got_h},
            }
    if size_adjusted is not None:
        if _size_of(size_adjusted.get("returned")) is None and returned_size is not None:
            size_adjusted["returned"] = {"width": returned_size[0], "height": returned_size[1]}
        returned = _size_of(size_adjusted.get("returned"))
        if returned is not None:
            applied.update({k: v for k, v in returned.items() if v is not None})
    elif returned_size is not None and ("width" in applied or "height" in applied):
        applied["width"], applied["height"] = returned_size

    meta["parameters"] = applied
    if ignored:
        meta["ignored_parameters"] = dict(sorted(ignored.items()))
    else:
        meta.pop("ignored_parameters", None)  # absent: nothing is known to be ignored
    meta["seed"] = seed
    meta["seed_source"] = source
    if size_adjusted is not None:
        meta["size_adjusted"] = size_adjusted
    else:
        meta.pop("size_adjusted", None)


def _ignored_by_declaration(task: str, requested: dict[str, Any], declared: Declared) -> dict[str, str]:
    if declared.honoured is None:
        return {}
    out = {}
    for name in GENERATION_PARAMS.get(task, ()):
        # image inputs are recorded as "<name>_input" descriptions, never as bytes
        given = (
            requested.get(f"{name}_input") if name in ("mask", "reference_images") else requested.get(name)
        )
        if name in declared.honoured or given in (None, (), [], {}):
            continue
        out[name] = declared.reasons.get(name) or (
            f"the {declared.backend} backend does not pass '{name}' on to its engine for {task}"
        )
    return out


def _seed(
    meta: dict[str, Any],
    ignored: dict[str, str],
    declared: Declared,
    task: str,
    planned: Optional[int],
    origin: Optional[str],
) -> tuple[Optional[int], str]:
    reported = meta.get("seed")
    reported = reported if isinstance(reported, int) and not isinstance(reported, bool) else None
    source = meta.get("seed_source")
    source = _SEED_SOURCE_ALIASES.get(source, source) if isinstance(source, str) else None
    if source not in SEED_SOURCES:
        source = None
    if source == "engine" and reported is not None:
        return reported, "engine"  # the engine said which seed it used
    if "seed" in ignored:
        return None, "unknown"
    if source is not None:
        return (reported if source != "unknown" else None), source
    if "seed" in meta and reported is None:
        return None, "unknown"  # the backend said it knows no seed
    if reported is not None:
        if reported == planned and origin in ("requested", "generated"):
            return reported, origin
        return reported, "generated"  # the backend chose it (no seed was asked for)
    if planned is not None and declared.honoured is not None and "seed" in declared.honoured:
        return planned, origin or "requested"
    return None, "unknown"


def declared_tasks(task: str, strategy: Optional[str], params: dict[str, Any]) -> tuple[str, ...]:
    """The backend tasks a call runs (an orchestrated multi-view runs image-to-image, and text-to-image first)."""
    if task == "multi_view_image" and strategy == "orchestrated":
        if params.get("reference_image") is not None:
            return ("image_to_image",)
        return ("text_to_image", "image_to_image")
    return (task,)


def size_mismatch(backend: str, task: str, adjusted: dict[str, Any]) -> SizeMismatchError:
    want = adjusted.get("requested") or {}
    got = adjusted.get("returned") or {}

    def shown(size: dict[str, Any]) -> str:
        return f"{size.get('width') or '?'}x{size.get('height') or '?'}"

    return SizeMismatchError(
        f"The {backend} backend returned {shown(got)} for a {shown(want)} {task} request. Ask for a size "
        "the model produces, or pass on_size_mismatch='allow' to accept it (the change is then reported "
        "in metadata['size_adjusted']).",
        requested=dict(want),
        returned=dict(got),
    )


# -- what goes inside a file ------------------------------------------------------------


def _a1111_quote(text: str) -> str:
    """A1111's infotext quoting: values with ``,`` ``:`` or a newline are JSON strings."""
    if "," not in text and ":" not in text and "\n" not in text and '"' not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def infotext(meta: dict[str, Any]) -> str:
    """The A1111-style ``parameters`` text (what A1111, Forge, ComfyUI readers and image hosts show).

    Layout::

        <prompt>
        Negative prompt: <negative prompt>          (only when there is one)
        Steps: N, Sampler: S, CFG scale: X, Seed: N, Size: WxH, Model: NAME

    Fields are written only when known: ``Seed`` only when a seed is known to have been
    used, ``Sampler`` when the backend reports one, ``Denoising strength`` for edits.
    """
    raw = meta.get("parameters")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    prompt = params.get("prompt")
    lines: list[str] = [prompt if isinstance(prompt, str) else ""]
    negative = params.get("negative_prompt")
    if isinstance(negative, str) and negative:
        lines.append(f"Negative prompt: {negative}")
    fields: list[tuple[str, Any]] = []
    if params.get("steps") is not None:
        fields.append(("Steps", params["steps"]))
    sampler = params.get("sampler") or params.get("sample_method") or meta.get("scheduler")
    if sampler:
        fields.append(("Sampler", sampler))
    if params.get("sample_method") and params.get("scheduler"):
        fields.append(("Schedule type", params["scheduler"]))
    if params.get("guidance_scale") is not None:
        fields.append(("CFG scale", params["guidance_scale"]))
    if meta.get("seed") is not None:
        fields.append(("Seed", meta["seed"]))
    if params.get("width") and params.get("height"):
        fields.append(("Size", f"{params['width']}x{params['height']}"))
    model = public_model_name(meta.get("model"))
    if model:
        fields.append(("Model", model))
    if params.get("strength") is not None:
        fields.append(("Denoising strength", params["strength"]))
    if params.get("num_frames") is not None:
        fields.append(("Frames", params["num_frames"]))
    if params.get("fps") is not None:
        fields.append(("FPS", params["fps"]))
    lines.append(", ".join(f"{key}: {_a1111_quote(_number(value))}" for key, value in fields))
    return "\n".join(lines)


def _strip_paths(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in _PATH_KEYS or key == "source":
                out[key] = public_model_name(item)
            else:
                out[key] = _strip_paths(item)
        return out
    if isinstance(value, list):
        return [_strip_paths(v) for v in value]
    return value


def file_provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON provenance written by ``embed_metadata="full"``: the metadata minus :data:`NOT_EMBEDDED`.

    Local paths in model names and LoRA sources are reduced to their file or folder name.
    """
    from ._refs import _json_safe
    from ._version import __version__

    kept = {k: v for k, v in meta.items() if k not in NOT_EMBEDDED}
    out: dict[str, Any] = _strip_paths(_json_safe(kept))
    out["software"] = f"abstractvision {__version__}"
    return out


def provenance_json(meta: dict[str, Any]) -> str:
    """:func:`file_provenance` as compact, key-sorted JSON (the same bytes for the same facts)."""
    return json.dumps(file_provenance(meta), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
