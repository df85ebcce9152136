"""Turn HTTP request bodies into validated manager calls.

Bodies are checked against the schemas ``/openapi.json`` publishes (see
:mod:`abstractvision.server.validation`), then mapped to a :class:`CallSpec`: the task, the served model asked for, and the manager's
first-class keyword arguments. Image inputs always become ``bytes`` here (uploads, base64
data URLs, or artifacts of this server's store): no string from a request is ever handed
to the manager, where it could be read as a file path.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from starlette.datastructures import UploadFile
from starlette.requests import Request

from .._media import mask_from_openai
from .errors import APIError, bad_request
from .options import ServerOptions
from .schemas import requests as schemas

__all__ = ["CallSpec", "coerce_form", "file_parts", "openai_mask", "parse_size", "read_form", "read_json"]

_DATA_URL_RE = re.compile(schemas.DATA_URL_PATTERN)
_MAX_FORM_FIELDS = 64
_MAX_FORM_FILES = 20


@dataclass
class CallSpec:
    """A validated request: which task, which model, and the manager keyword arguments.

    ``openai`` holds the OpenAI fields whose meaning depends on the model (``quality``,
    ``seconds``...): :func:`~abstractvision.server.openai_fields.apply_openai_fields` turns
    them into ``params`` once the model is known.
    """

    task: str
    params: dict[str, Any]
    model: Optional[str] = None
    n: int = 1
    response_format: str = "b64_json"
    summary: dict[str, Any] = field(default_factory=dict)
    openai: dict[str, Any] = field(default_factory=dict)


# -- bodies ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object (400 when it is not one, 415 for another content type)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise APIError(
            415,
            f"Expected a JSON body (Content-Type: application/json), got {ctype!r}.",
            code="unsupported_media_type",
        )
    raw = await request.body()
    if not raw.strip():
        raise bad_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise bad_request(f"The request body is not valid JSON: {detail}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(
            f"The request body must be a JSON object, got {type(body).__name__}.", code="invalid_json"
        )
    return body


async def read_form(
    request: Request, *, file_fields: tuple[str, ...], multi_files: tuple[str, ...] = ()
) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """Text fields and uploaded files of a ``multipart/form-data`` (or urlencoded) body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise APIError(
            415,
            f"Expected a multipart/form-data body, got {ctype or 'no Content-Type'!r}.",
            code="unsupported_media_type",
        )
    from starlette.formparsers import MultiPartException

    try:
        form = await request.form(max_files=_MAX_FORM_FILES, max_fields=_MAX_FORM_FIELDS)
    except MultiPartException as exc:
        raise bad_request(f"Malformed multipart body: {exc.message}", code="invalid_multipart") from None
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise bad_request(f"Malformed form body: {exc}", code="invalid_multipart") from None
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key not in file_fields:
                    raise bad_request(
                        f"Unexpected file part {key!r}; file parts here: {', '.join(file_fields)}.", param=key
                    )
                files.setdefault(key, []).append(await value.read())
                if len(files[key]) > 1 and key not in multi_files:
                    raise bad_request(f"{key!r} was given more than once.", param=key)
            else:
                if key in file_fields:
                    raise bad_request(f"{key!r} must be an uploaded file, not a text field.", param=key)
                if key in fields:
                    raise bad_request(f"{key!r} was given more than once.", param=key)
                fields[key] = value
    finally:
        await form.close()
    return fields, files


def coerce_form(fields: dict[str, str], schema: dict[str, Any]) -> dict[str, Any]:
    """Form values are text: turn them into the types the schema declares."""
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, text in fields.items():
        nested = _BRACKET_RE.match(key)
        if nested and props.get(nested.group(1), {}).get("type") == "object":
            # what the OpenAI SDK sends for an object in a multipart body: extra[name]=value
            out.setdefault(nested.group(1), {})[nested.group(2)] = _scalar(text)
            continue
        kinds = props.get(key, {}).get("type", "string")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if "null" in kinds and text in ("", "null"):  # a form field cannot be JSON null
            out[key] = None
        elif "string" in kinds or key not in props:
            out[key] = text

        elif "integer" in kinds:
            out[key] = _to_number(key, text, int)
        elif "number" in kinds:
            out[key] = _to_number(key, text, float)
        elif "boolean" in kinds:
            if text.lower() not in ("true", "false"):
                raise bad_request(f"'{key}' must be true or false, got {text!r}.", param=key)
            out[key] = text.lower() == "true"
        elif "object" in kinds:
            try:
                out[key] = json.loads(text, parse_constant=_reject_constant)
            except ValueError:
                raise bad_request(f"'{key}' must be a JSON object.", param=key) from None
        else:
            out[key] = text
    return out


_BRACKET_RE = re.compile(r"^(\w+)\[(\w+)\]$")


def file_parts(
    fields: dict[str, Any], files: dict[str, list[bytes]], schema: dict[str, Any]
) -> dict[str, Any]:
    """``fields`` plus each uploaded file part as the schema's ``format: binary`` string.

    A part stands in as ``"<file>"`` (or ``""`` when it is empty), so the published schema's
    file rules (required parts, ``minLength``, ``maxItems``) are checked like any other field.
    """
    out = dict(fields)
    props = schema.get("properties", {})
    for key, parts in files.items():
        stand_ins = ["<file>" if data else "" for data in parts]
        out[key] = stand_ins if props.get(key, {}).get("type") == "array" else stand_ins[0]
    return out


def _scalar(text: str) -> Any:
    """A form value inside an object: JSON scalars keep their type (``16`` -> 16)."""
    if text in ("true", "false", "null"):
        return json.loads(text)
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float)) and math.isfinite(value) else text


def _to_number(key: str, text: str, cast: type) -> Any:
    try:
        value = cast(text.strip())
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise bad_request(f"'{key}' must be {kind}, got {text!r}.", param=key) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"'{key}' must be a finite number, got {text!r}.", param=key)
    return value


# -- values ---------------------------------------------------------------------------


def parse_size(
    size: Optional[str], width: Optional[int], height: Optional[int], opts: ServerOptions
) -> tuple[Optional[int], Optional[int]]:
    """``size="WxH"`` -> (width, height); explicit width/height win; 400 above the pixel limit.

    The schema already bounds each side (``size`` by its pattern, width/height by maximum).
    """
    if size and size != "auto":
        w_text, _, h_text = size.partition("x")
        width = width if width is not None else int(w_text)
        height = height if height is not None else int(h_text)
    if width is not None and height is not None and width * height > opts.max_output_pixels:
        raise bad_request(
            f"{width}x{height} = {width * height} pixels is above this server's limit of "
            f"{opts.max_output_pixels} output pixels.",
            param="size",
        )
    return width, height


def check_image_bytes(data: bytes, name: str, opts: ServerOptions) -> bytes:
    """Cheap checks before the manager decodes an input: not empty, pixel count within limits."""
    if not data:
        raise bad_request(f"'{name}' is empty (0 bytes).", param=name)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise bad_request(
            f"'{name}' is not a readable image (PNG, JPEG, WebP...): {type(exc).__name__}.", param=name
        ) from None
    except Image.DecompressionBombError:
        width, height = 2**31, 2**31
    if width * height > opts.max_image_pixels:
        raise APIError(
            413,
            f"'{name}' is {width}x{height}; this server accepts images up to {opts.max_image_pixels} pixels.",
            param=name,
            code="image_too_large",
        )
    return data


def openai_mask(data: bytes) -> bytes:
    """An OpenAI edit mask (transparent = edit) as the library's mask (white = repaint)."""
    return mask_from_openai(data)


def decode_image_input(value: Any, name: str, opts: ServerOptions, artifacts: Any) -> bytes:
    """A JSON image input (data URL or ``{"$artifact": id}``) -> checked bytes."""
    if isinstance(value, str):
        if not _DATA_URL_RE.match(value):
            raise bad_request(
                f"'{name}' must be a base64 data URL (data:image/png;base64,...) or {{\"$artifact\": id}}; "
                "file paths and remote URLs are not accepted.",
                param=name,
            )
        try:
            data = base64.b64decode(value.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"'{name}' is not valid base64.", param=name) from None
        return check_image_bytes(data, name, opts)
    if isinstance(value, dict):
        if set(value) != {"$artifact"} or not isinstance(value["$artifact"], str):
            raise bad_request(f'\'{name}\' must be {{"$artifact": "<64 hex id>"}}.', param=name)
        data, _ = artifacts.load(value["$artifact"], param=name)
        return check_image_bytes(data, name, opts)
    raise bad_request(
        f"'{name}' must be a data URL string or an artifact ref object, got {type(value).__name__}.",
        param=name,
    )
