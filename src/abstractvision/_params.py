"""The parameter table: every first-class parameter of every task, defined once.

One row per parameter: its ``type``, bounds (``min``/``max``, ``min_exclusive``,
``max_length``, ``min_items``/``max_items``, ``choices``), ``default`` (``None``: the
model's or engine's own), a one-line ``doc`` and the ``tasks`` that take it. Everything
else is derived from these rows when it is built, never copied:

- the manager's checks (:mod:`abstractvision._validation`: ``TASK_PARAMS``, the ranges);
- the server's request schemas (:mod:`abstractvision.server.schemas.requests`), which are
  exactly what ``/openapi.json`` publishes and what the server validates with;
- the CLI flags' types, bounds and help (:mod:`abstractvision.cli.flags`);
- the agent tool schemas (:mod:`abstractvision.integrations.tools`).

Registry constraints (per model: ``min``/``max``/``enum``/``multiple_of``) apply on top.
The module is plain literals (no imports at run time), so the CLI's ``--help`` can read it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: `abstractvision --help` reads this module
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    Row = dict[str, Any]

T2I, I2I, UPSCALE, MULTI_VIEW, T2V, I2V = (
    "text_to_image",
    "image_to_image",
    "image_upscale",
    "multi_view_image",
    "text_to_video",
    "image_to_video",
)
ALL_TASKS = (T2I, I2I, UPSCALE, MULTI_VIEW, T2V, I2V)
IMAGE_TASKS = (T2I, I2I, UPSCALE, MULTI_VIEW)
VIDEO_TASKS = (T2V, I2V)
#: tasks whose output size the caller may choose
SIZED_TASKS = (T2I, I2I, MULTI_VIEW, T2V, I2V)
#: tasks with a *_batch method (``count`` outputs from one call)
BATCH_TASKS = (T2I, I2I, T2V, I2V)
#: tasks where ``prompt`` is required (elsewhere it is optional guidance)
PROMPT_REQUIRED = (T2I, I2I, MULTI_VIEW, T2V)

#: name -> row. The order is the order parameters are listed in (TASK_PARAMS, schemas, tools).
PARAMS: dict[str, Row] = {
    # -- inputs ---------------------------------------------------------------------
    "prompt": {"type": "text", "max_length": 100_000, "doc": "What to generate.", "tasks": ALL_TASKS},
    "image": {"type": "image", "doc": "The input image.", "tasks": (I2I, UPSCALE, I2V)},
    "mask": {
        "type": "image",
        "doc": "Inpainting mask, same size as the image (white = repaint).",
        "tasks": (I2I,),
    },
    "reference_images": {
        "type": "images",
        "max_items": 16,
        "doc": "More input images the model may use as references.",
        "tasks": (I2I,),
    },
    "reference_image": {"type": "image", "doc": "Optional reference image.", "tasks": (MULTI_VIEW,)},
    "angles": {
        "type": "angles",
        "min_items": 1,
        "max_items": 36,
        "default": ("front", "three_quarter", "side", "back"),
        "doc": "Views to render: angle names (front, three_quarter, side, back...) or degrees.",
        "tasks": (MULTI_VIEW,),
    },
    # -- generation -----------------------------------------------------------------
    "negative_prompt": {"type": "text", "max_length": 100_000, "doc": "What to avoid.", "tasks": ALL_TASKS},
    "width": {"type": "int", "min": 1, "max": 16384, "doc": "Output width in pixels.", "tasks": SIZED_TASKS},
    "height": {
        "type": "int",
        "min": 1,
        "max": 16384,
        "doc": "Output height in pixels.",
        "tasks": SIZED_TASKS,
    },
    "steps": {"type": "int", "min": 1, "max": 10_000, "doc": "Denoising steps.", "tasks": ALL_TASKS},
    "guidance_scale": {
        "type": "number",
        "min": 0.0,
        "max": 1000.0,
        "doc": "Classifier-free guidance scale (prompt adherence).",
        "tasks": ALL_TASKS,
    },
    "strength": {
        "type": "number",
        "min": 0.0,
        "min_exclusive": True,
        "max": 1.0,
        "doc": "How much to change the input image.",
        "tasks": (I2I, MULTI_VIEW),
    },
    "scale": {"type": "number", "min": 1.0, "max": 16.0, "doc": "Upscale factor.", "tasks": (UPSCALE,)},
    "seed": {
        "type": "int",
        "min": 0,
        "max": 9_223_372_036_854_775_807,  # 2**63 - 1: what every engine's generator takes
        "doc": "Random seed (output i of a batch uses seed + i).",
        "tasks": ALL_TASKS,
    },
    "num_frames": {
        "type": "int",
        "min": 1,
        "max": 10_000,
        "doc": "Number of video frames.",
        "tasks": VIDEO_TASKS,
    },
    "fps": {
        "type": "int",
        "min": 1,
        "max": 240,
        "doc": "Frames per second of the video.",
        "tasks": VIDEO_TASKS,
    },
    "lora_adapters": {
        "type": "loras",
        "scale_min": -10.0,
        "scale_max": 10.0,
        "doc": "LoRA adapters: sources (path or hub id) with an optional scale.",
        "tasks": BATCH_TASKS,
    },
    "strategy": {
        "type": "choice",
        "choices": ("native", "orchestrated"),
        "doc": "Multi-view strategy: the model's own views, or one generation per angle.",
        "tasks": (MULTI_VIEW,),
    },
    # -- batches (the *_batch methods only) -------------------------------------------
    "count": {
        "type": "int",
        "min": 1,
        "max": 64,
        "default": 1,
        "doc": "Number of outputs (one batch).",
        "tasks": BATCH_TASKS,
        "batch": True,
    },
    # -- run time (the manager's and the caller's, never an engine parameter) --------------
    "extra": {"type": "mapping", "doc": "Backend-specific options.", "tasks": ALL_TASKS, "runtime": True},
    "on_progress": {
        "type": "callable",
        "doc": "Called with ProgressEvents.",
        "tasks": ALL_TASKS,
        "runtime": True,
    },
    "cancel": {
        "type": "cancel",
        "doc": "A token whose is_set() stops the call.",
        "tasks": ALL_TASKS,
        "runtime": True,
    },
    "on_preview": {
        "type": "callable",
        "doc": "Called with PreviewEvents.",
        "tasks": ALL_TASKS,
        "runtime": True,
    },
    "preview_every": {
        "type": "int",
        "min": 1,
        "max": 10_000,
        "doc": "A preview every N steps.",
        "tasks": ALL_TASKS,
        "runtime": True,
    },
    "partial_images": {
        "type": "int",
        "min": 0,
        "max": 16,
        "doc": "N previews spread over the steps.",
        "tasks": ALL_TASKS,
        "runtime": True,
    },
    # -- output (how results are written and checked: the manager's job) -----------------
    "output_format": {
        "type": "choice",
        "choices": ("png", "jpeg", "webp"),
        "doc": "File format of the images (default: what the engine produced).",
        "tasks": IMAGE_TASKS,
        "output": True,
    },
    "output_compression": {
        "type": "int",
        "min": 0,
        "max": 100,
        "doc": "JPEG/WebP quality, 100 = best (default 100); only with output_format jpeg or webp.",
        "tasks": IMAGE_TASKS,
        "output": True,
    },
    "embed_metadata": {
        "type": "choice",
        "choices": ("none", "parameters", "full"),
        "default": "none",
        "doc": "What result files carry: none, parameters (A1111-style text) or full (plus the provenance).",
        "tasks": ALL_TASKS,
        "output": True,
    },
    "on_size_mismatch": {
        "type": "choice",
        "choices": ("allow", "error"),
        "default": "allow",
        "doc": "What to do when the engine returns another size than asked.",
        "tasks": ALL_TASKS,
        "output": True,
    },
    "ignored_parameters": {
        "type": "mapping",
        "doc": "Parameters the caller's surface accepted without applying: name -> why.",
        "tasks": ALL_TASKS,
        "output": True,
    },
}

#: the JSON Schema type of each row type that has one
_JSON_TYPES = {"int": "integer", "number": "number", "text": "string", "choice": "string"}


def row(name: str) -> Row:
    """The table row of ``name`` (``KeyError`` for a name the table does not have)."""
    return PARAMS[name]


def task_params(task: str) -> tuple[str, ...]:
    """The parameters ``task``'s single-output method takes, in table order."""
    return tuple(n for n, r in PARAMS.items() if task in r["tasks"] and not r.get("batch"))


def json_schema(name: str, *, description: str = "", nullable: bool = False) -> dict[str, Any]:
    """The JSON Schema of a numeric, text or choice row, read from the table now.

    ``description`` replaces the row's ``doc`` where a surface words it its own way;
    ``nullable`` adds ``null`` (JSON clients send it for "not given").
    """
    r = PARAMS[name]
    kind = _JSON_TYPES[r["type"]]
    out: dict[str, Any] = {"type": [kind, "null"] if nullable else kind}
    if "choices" in r:
        out["enum"] = [*r["choices"], None] if nullable else list(r["choices"])
    if "min" in r:
        out["exclusiveMinimum" if r.get("min_exclusive") else "minimum"] = r["min"]
    if "max" in r:
        out["maximum"] = r["max"]
    if "max_length" in r:
        out["maxLength"] = r["max_length"]
    out["description"] = description or r["doc"]
    return out


def range_text(name: str) -> str:
    """``1-16384``, ``(0, 1]``: the row's bounds as help text shows them."""
    r = PARAMS[name]
    lo, hi = (str(r["min"]), str(r["max"])) if r["type"] == "int" else (f"{r['min']:g}", f"{r['max']:g}")
    return f"{lo} < X <= {hi}" if r.get("min_exclusive") else f"{lo}-{hi}"
