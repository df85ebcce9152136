"""Request body schemas (JSON Schema 2020-12, as used by OpenAPI 3.1).

Each builder takes the :class:`~abstractvision.server.options.ServerOptions` (limits such as
``max_n`` appear in the schema) and ``docs``: with ``docs=True`` image inputs are described
in full (``oneOf`` data URL / artifact ref); with ``docs=False`` they are left open because
:mod:`abstractvision.server.params` checks them itself (the bundled validator has no ``oneOf``).
"""

from __future__ import annotations

from typing import Any

from ..._validation import MAX_DIMENSION, MAX_FPS, MAX_FRAMES, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS
from ...types import TASKS
from ..options import ServerOptions

__all__ = [
    "ARTIFACT_ID_PATTERN",
    "JOB_ID_PATTERN",
    "SIZE_PATTERN",
    "VIDEO_ID_PATTERN",
    "image_edit_schema",
    "image_generation_schema",
    "job_schema",
    "job_task_schema",
    "validation_schemas",
    "video_create_schema",
]

ARTIFACT_ID_PATTERN = "^[0-9a-f]{64}$"
JOB_ID_PATTERN = "^job_[0-9a-f]{24}$"
VIDEO_ID_PATTERN = JOB_ID_PATTERN
SIZE_PATTERN = "^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$"
SECONDS_PATTERN = "^([1-9]|[1-5][0-9]|60)$"
DATA_URL_PATTERN = "^data:image/[A-Za-z0-9.+-]+;base64,"
# a non-blank prompt without NUL characters (what the manager accepts)
_PROMPT_PATTERN = "^[^\\u0000]*\\S[^\\u0000]*$"
_NO_NUL = "^[^\\u0000]*$"

_BATCH_TASKS = ("text_to_image", "image_to_image", "text_to_video", "image_to_video")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    return out


def prompt_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_PROMPT_CHARS,
        "pattern": _PROMPT_PATTERN,
        "description": "What to generate (not blank, no NUL characters).",
    }


def _int(lo: int, hi: int, text: str) -> dict[str, Any]:
    return _nullable({"type": "integer", "minimum": lo, "maximum": hi, "description": text})


def diffusion_properties() -> dict[str, Any]:
    """The diffusion parameters every generating task shares."""
    return {
        "negative_prompt": _nullable(
            {
                "type": "string",
                "maxLength": MAX_PROMPT_CHARS,
                "pattern": _NO_NUL,
                "description": "What to avoid.",
            }
        ),
        "seed": _int(0, MAX_SEED, "Random seed; output i of a request uses seed + i."),
        "steps": _int(1, MAX_STEPS, "Denoising steps."),
        "guidance_scale": _nullable(
            {
                "type": "number",
                "minimum": 0,
                "maximum": 1000,
                "description": "Classifier-free guidance scale.",
            }
        ),
        "width": _int(1, MAX_DIMENSION, "Output width in pixels (overrides `size`)."),
        "height": _int(1, MAX_DIMENSION, "Output height in pixels (overrides `size`)."),
    }


def _model() -> dict[str, Any]:
    return _nullable(
        {
            "type": "string",
            "maxLength": 512,
            "description": "A served model id (GET /v1/models); default: the first.",
        }
    )


def _n(opts: ServerOptions) -> dict[str, Any]:
    return _int(1, opts.max_n, "Number of outputs.")


def _extra(opts: ServerOptions) -> dict[str, Any]:
    return {
        "extra": {
            "type": "object",
            "description": "Backend-specific options; only the keys the operator allowed.",
            "propertyNames": {"enum": list(opts.allowed_extra_keys)},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }
    }


def image_input_schema(docs: bool) -> dict[str, Any]:
    if not docs:
        return {}
    return {"$ref": "#/components/schemas/ImageInput"}


def image_input_component() -> dict[str, Any]:
    return {
        "description": "An image: a base64 data URL, or an artifact of this server.",
        "oneOf": [
            {"type": "string", "pattern": DATA_URL_PATTERN, "maxLength": 2**31},
            {
                "type": "object",
                "required": ["$artifact"],
                "properties": {"$artifact": {"type": "string", "pattern": ARTIFACT_ID_PATTERN}},
            },
        ],
    }


def _openai_image_fields(opts: ServerOptions) -> dict[str, Any]:
    return {
        "model": _model(),
        "n": _n(opts),
        "size": _nullable(
            {"type": "string", "pattern": SIZE_PATTERN, "description": "WIDTHxHEIGHT or auto."}
        ),
        "response_format": {
            "type": ["string", "null"],
            "enum": ["url", "b64_json", None],
            "description": "b64_json (default) or url (served from /v1/artifacts).",
        },
        "user": {"type": "string", "maxLength": 512, "description": "Accepted for compatibility; unused."},
        **diffusion_properties(),
    }


def image_generation_schema(opts: ServerOptions) -> dict[str, Any]:
    """``POST /v1/images/generations`` (JSON)."""
    props = {"prompt": prompt_schema(), **_openai_image_fields(opts)}
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    return {"type": "object", "required": ["prompt"], "properties": props, "additionalProperties": False}


def image_edit_schema(opts: ServerOptions, *, docs: bool) -> dict[str, Any]:
    """``POST /v1/images/edits`` (multipart). Without ``docs`` the file parts are left out."""
    props: dict[str, Any] = {
        "prompt": prompt_schema(),
        **_openai_image_fields(opts),
        "strength": _nullable(
            {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "How much to change."}
        ),
    }
    if opts.allowed_extra_keys and not docs:
        props.update(_extra(opts))
    schema: dict[str, Any] = {"type": "object", "required": ["prompt"], "properties": props}
    if docs:
        binary = {"type": "string", "format": "binary"}
        props["image"] = {**binary, "description": "The image to edit (PNG, JPEG, WebP)."}
        props["image[]"] = {
            "type": "array",
            "items": binary,
            "maxItems": 16,
            "description": "Several images: the first is edited, the others are references.",
        }
        props["mask"] = {
            **binary,
            "description": "Inpainting mask, same size as the image (white = repaint).",
        }
        schema["anyOf"] = [{"required": ["image"]}, {"required": ["image[]"]}]
    schema["additionalProperties"] = False
    return schema


def video_create_schema(opts: ServerOptions, *, docs: bool, multipart: bool = False) -> dict[str, Any]:
    """``POST /v1/videos`` (JSON or multipart)."""
    props: dict[str, Any] = {
        "prompt": prompt_schema(),
        "model": _model(),
        "seconds": {
            "type": ["string", "integer", "null"],
            "pattern": SECONDS_PATTERN,
            "minimum": 1,
            "maximum": 60,
            "description": "Clip length in seconds (num_frames = seconds x fps); num_frames wins when given.",
        },
        "size": _nullable({"type": "string", "pattern": SIZE_PATTERN, "description": "WIDTHxHEIGHT."}),
        **diffusion_properties(),
        "num_frames": _int(1, MAX_FRAMES, "Frames to generate."),
        "fps": _int(1, MAX_FPS, "Frames per second of the encoded video."),
    }
    if opts.allowed_extra_keys and not (docs and multipart):
        props.update(_extra(opts))
    if docs:
        if multipart:
            props["input_reference"] = {
                "type": "string",
                "format": "binary",
                "description": "First frame (image-to-video).",
            }
        else:
            props["input_reference"] = {
                "type": "object",
                "description": "First frame (image-to-video): a data URL or an artifact id of this server.",
                "properties": {
                    "image_url": {"type": "string", "pattern": DATA_URL_PATTERN},
                    "file_id": {"type": "string", "pattern": ARTIFACT_ID_PATTERN},
                },
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            }
    elif not multipart:
        props["input_reference"] = {}
    return {"type": "object", "required": ["prompt"], "properties": props, "additionalProperties": False}


def job_task_schema(task: str, opts: ServerOptions, *, docs: bool) -> dict[str, Any]:
    """``POST /v1/jobs`` body for one task."""
    common = diffusion_properties()
    image = image_input_schema(docs)
    props: dict[str, Any] = {"task": {"type": "string", "const": task}, "model": _model()}
    required = ["task"]
    if task == "image_upscale":
        props.update(
            {
                "image": image,
                "prompt": _nullable({**prompt_schema(), "pattern": _NO_NUL, "minLength": 0}),
                "negative_prompt": common["negative_prompt"],
                "scale": _nullable({"type": "number", "minimum": 1, "maximum": 16, "description": "Factor."}),
                "steps": common["steps"],
                "guidance_scale": common["guidance_scale"],
                "seed": common["seed"],
            }
        )
        required.append("image")
    else:
        if task == "image_to_video":
            props["prompt"] = _nullable({**prompt_schema(), "pattern": _NO_NUL, "minLength": 0})
        else:
            props["prompt"] = prompt_schema()
            required.append("prompt")
        props.update(common)
        if task in ("image_to_image", "image_to_video"):
            props["image"] = image
            required.append("image")
        if task == "image_to_image":
            props["mask"] = image
            props["reference_images"] = {"type": "array", "items": image, "maxItems": 16}
        if task in ("image_to_image", "multi_view_image"):
            props["strength"] = _nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1})
        if task in ("text_to_video", "image_to_video"):
            props["num_frames"] = _int(1, MAX_FRAMES, "Frames to generate.")
            props["fps"] = _int(1, MAX_FPS, "Frames per second.")
        if task == "multi_view_image":
            props["reference_image"] = image
            props["angles"] = {
                "type": "array",
                "minItems": 1,
                "maxItems": 16,
                "items": {"type": ["string", "number"], "pattern": "\\S", "maxLength": 64},
                "description": "Angle names or degrees; one output per angle.",
            }
        if task in _BATCH_TASKS:
            props["n"] = _n(opts)
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    return {
        "type": "object",
        "title": f"Job_{task}",
        "required": required,
        "properties": props,
        "additionalProperties": False,
    }


def job_schema(opts: ServerOptions) -> dict[str, Any]:
    """The published ``POST /v1/jobs`` body: one schema per task, told apart by ``task``."""
    return {
        "oneOf": [{"$ref": f"#/components/schemas/Job_{t}"} for t in TASKS],
        "discriminator": {
            "propertyName": "task",
            "mapping": {t: f"#/components/schemas/Job_{t}" for t in TASKS},
        },
    }


def validation_schemas(opts: ServerOptions) -> dict[str, dict[str, Any]]:
    """The schemas request bodies are validated with, by name."""
    out = {
        "image_generation": image_generation_schema(opts),
        "image_edit": image_edit_schema(opts, docs=False),
        "video_json": video_create_schema(opts, docs=False),
        "video_multipart": video_create_schema(opts, docs=False, multipart=True),
    }
    out.update({f"job_{task}": job_task_schema(task, opts, docs=False) for task in TASKS})
    return out
