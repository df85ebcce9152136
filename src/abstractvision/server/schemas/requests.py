"""Request body schemas (JSON Schema 2020-12, as used by OpenAPI 3.1), built from the parameter table.

Each builder takes the :class:`~abstractvision.server.options.ServerOptions` (limits such as
``max_n`` appear in the schema) and the served models' :class:`Limits`. The bounds, types and
descriptions of the generation parameters come from :mod:`abstractvision._params` when a
schema is built; what is specific to HTTP (``model``, ``n``, ``size``, OpenAI's fields, image
inputs as data URLs or artifact refs) is written here. There is one schema per body: the one
``/openapi.json`` publishes is the one :mod:`abstractvision.server.validation` enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import _params
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


def _table_max(name: str) -> Any:
    return field(default_factory=lambda: _params.PARAMS[name]["max"])


@dataclass(frozen=True)
class Limits:
    """Output limits of the served backends (their declared maxima, else the table's)."""

    max_width: int = _table_max("width")
    max_height: int = _table_max("height")
    max_frames: int = _table_max("num_frames")
    max_fps: int = _table_max("fps")

    def maximum(self, name: str) -> Any:
        """The largest value of the table row ``name`` these models take."""
        limit = {"width": self.max_width, "height": self.max_height, "num_frames": self.max_frames}
        return {**limit, "fps": self.max_fps}.get(name, _params.PARAMS[name].get("max"))


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


def prompt_schema(*, required: bool = True) -> dict[str, Any]:
    """``prompt``: not blank and without NUL characters where required, else optional text."""
    if not required:
        return _nullable({**_params.json_schema("prompt"), "pattern": _NO_NUL})
    return {
        **_params.json_schema("prompt", description="What to generate (not blank, no NUL characters)."),
        "minLength": 1,
        "pattern": _PROMPT_PATTERN,
    }


def param_schema(name: str, limits: Limits | None = None, description: str = "") -> dict[str, Any]:
    """The nullable schema of a numeric, text or choice row of the table (maxima capped by ``limits``)."""
    schema = _params.json_schema(name, description=description, nullable=True)
    if limits is not None and "maximum" in schema:
        schema["maximum"] = limits.maximum(name)
    if _params.PARAMS[name]["type"] == "text":
        schema["pattern"] = _NO_NUL
    return schema


#: what every generating task shares (the server words width/height its own way)
_DIFFUSION = ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height")
_SERVER_DOCS = {
    "width": "Output width in pixels (overrides `size`).",
    "height": "Output height in pixels (overrides `size`).",
    "seed": "Random seed; output i of a request uses seed + i.",
}


def diffusion_properties(limits: Limits | None = None) -> dict[str, Any]:
    """The diffusion parameters every generating task shares."""
    limits = limits or Limits()
    return {name: param_schema(name, limits, _SERVER_DOCS.get(name, "")) for name in _DIFFUSION}


def _model() -> dict[str, Any]:
    return _nullable(
        {
            "type": "string",
            "maxLength": 512,
            "description": "A served model id (GET /v1/models); default: the first.",
        }
    )


def _n(opts: ServerOptions) -> dict[str, Any]:
    return {**param_schema("count", description="Number of outputs."), "maximum": opts.max_n}


def _extra(opts: ServerOptions) -> dict[str, Any]:
    return {
        "extra": {
            "type": "object",
            "description": "Backend-specific options; only the keys the operator allowed.",
            "propertyNames": {"enum": list(opts.allowed_extra_keys)},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }
    }


def image_input_schema() -> dict[str, Any]:
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
        "output_format": param_schema(
            "output_format",
            description="File format of the images (default: what the engine produced, PNG for local engines).",
        ),
        "output_compression": param_schema("output_compression"),
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
        "partial_images": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 3,  # OpenAI's own limit, not the table's
            "description": "With stream: how many previews to send before the image (default 0).",
        },
    }


def preview_properties() -> dict[str, Any]:
    """Live previews of a job (``preview`` events on /v1/jobs/{id}/events); none unless asked."""
    return {
        "preview_every": param_schema(
            "preview_every", description="Send a preview every N steps (docs/previews.md)."
        ),
        "partial_images": param_schema(
            "partial_images", description="Send N previews, spread over the steps (docs/previews.md)."
        ),
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


def image_generation_schema(opts: ServerOptions, limits: Limits | None = None) -> dict[str, Any]:
    """``POST /v1/images/generations`` (JSON)."""
    props = {"prompt": prompt_schema(), **_openai_image_fields(opts, limits or Limits())}
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    return {"type": "object", "required": ["prompt"], "properties": props, "additionalProperties": False}


def _binary(description: str) -> dict[str, Any]:
    """A file part of a multipart body (validated as a string: the part, empty or not)."""
    return {"type": "string", "format": "binary", "minLength": 1, "description": description}


def image_edit_schema(opts: ServerOptions, limits: Limits | None = None) -> dict[str, Any]:
    """``POST /v1/images/edits`` (multipart; file parts as ``format: binary`` strings)."""
    props: dict[str, Any] = {
        "prompt": prompt_schema(),
        **_openai_image_fields(opts, limits or Limits()),
        "strength": param_schema("strength"),
        "input_fidelity": _choice(("high", "low"), "Accepted; recorded in metadata.ignored_parameters."),
        "image": _binary("The image to edit (PNG, JPEG, WebP)."),
        "image[]": {
            "type": "array",
            "items": _binary("An image."),
            "maxItems": _params.PARAMS["reference_images"]["max_items"],
            "description": "Several images: the first is edited, the others are references.",
        },
        "mask": _binary("Inpainting mask, same size as the image (white = repaint)."),
    }
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    return {
        "type": "object",
        "required": ["prompt"],
        "properties": props,
        "anyOf": [{"required": ["image"]}, {"required": ["image[]"]}],
        "additionalProperties": False,
    }


def video_create_schema(
    opts: ServerOptions, *, multipart: bool = False, limits: Limits | None = None
) -> dict[str, Any]:
    """``POST /v1/videos`` (JSON, or multipart with an ``input_reference`` file part)."""
    limits = limits or Limits()
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
        "num_frames": param_schema("num_frames", limits, "Frames to generate."),
        "fps": param_schema("fps", limits, "Frames per second of the encoded video."),
    }
    if opts.allowed_extra_keys:
        props.update(_extra(opts))
    if multipart:
        props["input_reference"] = _binary("First frame (image-to-video).")
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


#: rows of the table a job body does not take: LoRA files and the output policies are the
#: operator's, callables and the cancel token are Python-only, ``count`` is ``n`` here
_NOT_SERVED = frozenset(
    {
        "lora_adapters",
        "strategy",
        "embed_metadata",
        "on_size_mismatch",
        "ignored_parameters",
        "count",
        "extra",
    }
)


def _job_property(name: str, task: str, limits: Limits) -> dict[str, Any]:
    row = _params.PARAMS[name]
    kind = row["type"]
    if name == "prompt":
        return prompt_schema(required=task in _params.PROMPT_REQUIRED)
    if kind == "image":
        return image_input_schema()
    if kind == "images":
        return {
            "type": "array",
            "items": image_input_schema(),
            "maxItems": row["max_items"],
            "description": row["doc"],
        }
    if kind == "angles":
        return {
            "type": "array",
            "minItems": row["min_items"],
            "maxItems": row["max_items"],
            "items": {"type": ["string", "number"], "pattern": "\\S", "maxLength": 64},
            "description": "Angle names or degrees; one output per angle.",
        }
    if name in _DIFFUSION:
        return diffusion_properties(limits)[name]
    if name in ("preview_every", "partial_images"):
        return preview_properties()[name]
    if name in ("output_format", "output_compression"):
        return output_file_properties()[name]
    return param_schema(name, limits)


def job_task_schema(task: str, opts: ServerOptions, limits: Limits | None = None) -> dict[str, Any]:
    """``POST /v1/jobs`` body for one task: the table's rows for ``task`` that HTTP can carry."""
    limits = limits or Limits()
    props: dict[str, Any] = {"task": {"type": "string", "const": task}, "model": _model()}
    required = ["task"]
    for name in _params.task_params(task):
        row = _params.PARAMS[name]
        if name in _NOT_SERVED or row["type"] in ("callable", "cancel"):
            continue
        props[name] = _job_property(name, task, limits)
        if (name == "prompt" and task in _params.PROMPT_REQUIRED) or name == "image":
            required.append(name)
    if task in _params.BATCH_TASKS:
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
