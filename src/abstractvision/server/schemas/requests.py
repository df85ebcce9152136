"""Request body schemas (JSON Schema 2020-12, as used by OpenAPI 3.1).

Each builder takes the :class:`~abstractvision.server.options.ServerOptions` (limits such as
``max_n`` appear in the schema) and ``docs``: with ``docs=True`` image inputs are described
in full (``oneOf`` data URL / artifact ref); with ``docs=False`` they are left open because
:mod:`abstractvision.server.params` checks them itself (the bundled validator has no ``oneOf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._validation import MAX_DIMENSION, MAX_FPS, MAX_FRAMES, MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS
from ...types import TASKS
from ..options import ServerOptions

__all__ = [
    "ARTIFACT_ID_PATTERN",
    "JOB_ID_PATTERN",
    "VIDEO_ID_PATTERN",
    "Limits",
    "image_edit_schema",
    "image_generation_schema",
    "int_range_pattern",
    "job_schema",
    "job_task_schema",
    "size_pattern",
    "validation_schemas",
    "video_create_schema",
]

ARTIFACT_ID_PATTERN = "^[0-9a-f]{64}$"
JOB_ID_PATTERN = "^job_[0-9a-f]{24}$"
VIDEO_ID_PATTERN = JOB_ID_PATTERN
SECONDS_PATTERN = "^([1-9]|[1-5][0-9]|60)$"
# a non-empty, well-formed base64 payload (the bytes must still decode as an image)
DATA_URL_PATTERN = (
    "^data:image/[A-Za-z0-9.+-]+;base64,"
    "(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
)
# a non-blank prompt without NUL characters (what the manager accepts)
_PROMPT_PATTERN = "^[^\\u0000]*\\S[^\\u0000]*$"
_NO_NUL = "^[^\\u0000]*$"

_BATCH_TASKS = ("text_to_image", "image_to_image", "text_to_video", "image_to_video")
_IMAGE_TASKS = ("text_to_image", "image_to_image", "image_upscale", "multi_view_image")


@dataclass(frozen=True)
class Limits:
    """Output limits of the served backends (their declared maxima, else the library's)."""

    max_width: int = MAX_DIMENSION
    max_height: int = MAX_DIMENSION
    max_frames: int = MAX_FRAMES
    max_fps: int = MAX_FPS


_DEFAULT_LIMITS = Limits()


def int_range_pattern(hi: int) -> str:
    """A regex for the decimal integers 1..hi (no leading zeros), for ``size`` strings."""
    text = str(hi)
    parts = [f"[1-9][0-9]{{0,{len(text) - 2}}}"] if len(text) > 1 else []
    for i, digit in enumerate(text):
        d = int(digit)
        low = 1 if i == 0 else 0
        if d > low:
            rest = len(text) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            parts.append(f"{text[:i]}[{low}-{d - 1}]{tail}")
    parts.append(text)
    return "(?:" + "|".join(parts) + ")"


def size_pattern(limits: Limits) -> str:
    """``WIDTHxHEIGHT`` within the limits, or ``auto``."""
    return f"^(auto|{int_range_pattern(limits.max_width)}x{int_range_pattern(limits.max_height)})$"


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


def diffusion_properties(limits: Limits = _DEFAULT_LIMITS) -> dict[str, Any]:
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
        "width": _int(1, limits.max_width, "Output width in pixels (overrides `size`)."),
        "height": _int(1, limits.max_height, "Output height in pixels (overrides `size`)."),
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
                "additionalProperties": False,
            },
        ],
    }


def output_file_properties() -> dict[str, Any]:
    """``output_format`` and ``output_compression`` (OpenAI's names) for every image task."""
    return {
        "output_format": {
            "type": ["string", "null"],
            "enum": ["png", "jpeg", "webp", None],
            "description": "File format of the images (default: what the engine produced, PNG for local engines).",
        },
        "output_compression": _int(
            0, 100, "JPEG/WebP quality, 100 = best (default 100); only with output_format jpeg or webp."
        ),
    }


def _choice(values: tuple[str, ...], text: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "enum": [*values, None], "description": text}


def _identifier(text: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": 512, "description": text}


def openai_image_options() -> dict[str, Any]:
    """OpenAI Images API fields a diffusion engine has no parameter for (see docs/server.md)."""
    return {
        "quality": _choice(
            ("low", "medium", "high", "auto", "standard", "hd"),
            "Mapped to `steps` from the model's registry presets (standard = medium, hd = high; auto = "
            "the engine default). Without presets, or with `steps` given, recorded in "
            "metadata.ignored_parameters.",
        ),
        "background": _choice(
            ("transparent", "opaque", "auto"),
            "opaque/auto: accepted (local engines make opaque images); transparent: 400 unless the "
            "model's backend passes it to a remote that can.",
        ),
        "style": _choice(("vivid", "natural"), "Accepted; recorded in metadata.ignored_parameters."),
        "moderation": _choice(("low", "auto"), "Accepted; recorded in metadata.ignored_parameters."),
        "user": _identifier("Accepted; recorded in metadata.ignored_parameters."),
        "safety_identifier": _identifier("Accepted; recorded in metadata.ignored_parameters."),
        "stream": {
            "type": ["boolean", "null"],
            "description": "true: answer with server-sent events (`partial_images` previews, then the image; "
            "needs n = 1). See docs/previews.md.",
        },
        "partial_images": _int(0, 3, "With stream: how many previews to send before the image (default 0)."),
    }


def preview_properties() -> dict[str, Any]:
    """Live previews of a job (``preview`` events on /v1/jobs/{id}/events); none unless asked."""
    return {
        "preview_every": _int(1, 10_000, "Send a preview every N steps (docs/previews.md)."),
        "partial_images": _int(0, 16, "Send N previews, spread over the steps (docs/previews.md)."),
    }


def _openai_image_fields(opts: ServerOptions, limits: Limits) -> dict[str, Any]:
    return {
        "model": _model(),
        "n": _n(opts),
        "size": _nullable(
            {"type": "string", "pattern": size_pattern(limits), "description": "WIDTHxHEIGHT or auto."}
        ),
        "response_format": {
            "type": ["string", "null"],
            "enum": ["url", "b64_json", None],
            "description": "b64_json (default) or url (served from /v1/artifacts).",
        },
        **openai_image_options(),
        **output_file_properties(),
        **diffusion_properties(limits),
    }


def image_generation_schema(opts: ServerOptions, limits: Limits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """``POST /v1/images/generations`` (JSON)."""
    props = {"prompt": prompt_schema(), **_openai_image_fields(opts, limits)}
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    return {"type": "object", "required": ["prompt"], "properties": props, "additionalProperties": False}


def image_edit_schema(opts: ServerOptions, *, docs: bool, limits: Limits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """``POST /v1/images/edits`` (multipart). Without ``docs`` the file parts are left out."""
    props: dict[str, Any] = {
        "prompt": prompt_schema(),
        **_openai_image_fields(opts, limits),
        "strength": _nullable(
            {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "How much to change."}
        ),
        "input_fidelity": _choice(("high", "low"), "Accepted; recorded in metadata.ignored_parameters."),
    }
    if opts.allowed_extra_keys and not docs:
        props.update(_extra(opts))
    schema: dict[str, Any] = {"type": "object", "required": ["prompt"], "properties": props}
    if docs:
        binary = {"type": "string", "format": "binary", "minLength": 1}
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


def video_create_schema(
    opts: ServerOptions, *, docs: bool, multipart: bool = False, limits: Limits = _DEFAULT_LIMITS
) -> dict[str, Any]:
    """``POST /v1/videos`` (JSON or multipart)."""
    props: dict[str, Any] = {
        "prompt": prompt_schema(),
        "model": _model(),
        "seconds": {
            "type": ["string", "integer", "null"],
            "pattern": SECONDS_PATTERN,
            "minimum": 1,
            "maximum": 60,
            "description": "Clip length in seconds: mapped to the frame count nearest seconds x fps that the "
            "model accepts (4k+1 for Wan, 8k+1 for LTX...), at the model's fps unless `fps` is given; a clip "
            "the model cannot make is a 400. num_frames wins when given.",
        },
        "size": _nullable(
            {"type": "string", "pattern": size_pattern(limits), "description": "WIDTHxHEIGHT."}
        ),
        **diffusion_properties(limits),
        "num_frames": _int(1, limits.max_frames, "Frames to generate."),
        "fps": _int(1, limits.max_fps, "Frames per second of the encoded video."),
    }
    if opts.allowed_extra_keys and not (docs and multipart):
        props.update(_extra(opts))
    if multipart:
        if docs:
            props["input_reference"] = {
                "type": "string",
                "format": "binary",
                "minLength": 1,
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
    return {"type": "object", "required": ["prompt"], "properties": props, "additionalProperties": False}


def job_task_schema(
    task: str, opts: ServerOptions, *, docs: bool, limits: Limits = _DEFAULT_LIMITS
) -> dict[str, Any]:
    """``POST /v1/jobs`` body for one task."""
    common = diffusion_properties(limits)
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
            props["num_frames"] = _int(1, limits.max_frames, "Frames to generate.")
            props["fps"] = _int(1, limits.max_fps, "Frames per second.")
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
    if task in _IMAGE_TASKS:
        props.update(output_file_properties())
    props.update(preview_properties())
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


def validation_schemas(opts: ServerOptions, limits: Limits = _DEFAULT_LIMITS) -> dict[str, dict[str, Any]]:
    """The schemas request bodies are validated with, by name."""
    out = {
        "image_generation": image_generation_schema(opts, limits),
        "image_edit": image_edit_schema(opts, docs=False, limits=limits),
        "video_json": video_create_schema(opts, docs=False, limits=limits),
        "video_multipart": video_create_schema(opts, docs=False, multipart=True, limits=limits),
    }
    out.update({f"job_{task}": job_task_schema(task, opts, docs=False, limits=limits) for task in TASKS})
    return out
