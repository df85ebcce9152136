"""Media helpers: MIME sniffing, image input coercion/validation, PNG text chunks.

Sniffing and PNG chunk editing work on raw bytes (stdlib only). Pillow is imported only
when an input image has to be decoded for validation.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Optional

from .errors import ArtifactError, InvalidRequestError

#: Largest input image accepted (pixels). Guards against decompression bombs.
MAX_INPUT_PIXELS = 8192 * 8192
#: Largest input image accepted (bytes).
MAX_INPUT_BYTES = 64 * 1024 * 1024

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def sniff_mime(data: bytes) -> Optional[str]:
    """Return the MIME type of ``data`` from its magic bytes, or ``None``."""
    head = bytes(data[:16])
    if head.startswith(_PNG_SIG):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM":
        return "image/bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    return None


def media_type_for_mime(mime: str) -> str:
    return "video" if mime.startswith("video/") else "image"


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    mime_type: str
    mode: str


def _looks_like_pil(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "size") and hasattr(value, "mode")


def _decode_data_url(value: str, name: str) -> bytes:
    header, _, payload = value.partition(",")
    if ";base64" not in header:
        raise InvalidRequestError(f"{name}: only base64 data URLs are accepted.", param=name)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"{name}: the data URL is not valid base64.", param=name) from exc


def coerce_image_input(value: Any, *, name: str, store: Any = None) -> bytes:
    """Turn ``value`` (bytes, path, PIL image, data URL or artifact ref) into raw bytes.

    Raises :class:`InvalidRequestError` with a message naming ``name`` when the value is of
    the wrong type, the file does not exist, or an artifact ref cannot be resolved.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, dict):
        from .artifacts import is_artifact_ref

        if not is_artifact_ref(value):
            raise InvalidRequestError(
                f"{name}: a dict input must be an artifact ref like {{'$artifact': '<id>'}}.", param=name
            )
        if store is None:
            raise InvalidRequestError(
                f"{name}: got an artifact ref but no store is configured to resolve it; "
                "pass store=... to the manager or give the bytes.",
                param=name,
            )
        try:
            data = store.load_bytes(str(value["$artifact"]))
        except (ArtifactError, InvalidRequestError) as exc:  # InvalidRequestError: an id the store rejects
            raise InvalidRequestError(f"{name}: {exc}", param=name) from exc
        except Exception as exc:  # a custom MediaStore's own failure (KeyError, OSError...)
            raise InvalidRequestError(
                f"{name}: the store could not load artifact {value['$artifact']!r} "
                f"({type(exc).__name__}: {exc}).",
                param=name,
            ) from exc
    elif isinstance(value, str) and value.startswith("data:"):
        data = _decode_data_url(value, name)
    elif isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not path:
            raise InvalidRequestError(f"{name}: empty path.", param=name)
        if not os.path.isfile(path):
            raise InvalidRequestError(f"{name}: no such file: {path!r}.", param=name)
        if os.path.getsize(path) > MAX_INPUT_BYTES:
            raise InvalidRequestError(
                f"{name}: file is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB.", param=name
            )
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise InvalidRequestError(f"{name}: cannot read {path!r}: {exc.strerror}.", param=name) from exc
    elif _looks_like_pil(value):
        buf = io.BytesIO()
        try:
            value.save(buf, format="PNG")
        except Exception as exc:
            raise InvalidRequestError(
                f"{name}: could not encode the PIL image as PNG: {exc}", param=name
            ) from exc
        data = buf.getvalue()
    else:
        raise InvalidRequestError(
            f"{name}: expected bytes, a file path, a PIL image, a data URL or an artifact ref, "
            f"got {type(value).__name__}.",
            param=name,
        )
    if not data:
        raise InvalidRequestError(f"{name}: the image is empty (0 bytes).", param=name)
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidRequestError(
            f"{name}: image is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB.", param=name
        )
    return data


def inspect_image(data: bytes, *, name: str) -> ImageInfo:
    """Check that ``data`` is a complete, decodable image of sane size; return its info."""
    mime = sniff_mime(data)
    if mime is None or not mime.startswith("image/"):
        what = "a video" if mime else "not a recognised image format (PNG, JPEG, WebP, GIF, BMP, TIFF)"
        raise InvalidRequestError(f"{name}: the bytes are {what}.", param=name)
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InvalidRequestError(f"{name}: image has no pixels.", param=name)
            if width * height > MAX_INPUT_PIXELS:
                raise InvalidRequestError(
                    f"{name}: image is {width}x{height}, above the {MAX_INPUT_PIXELS} pixel limit.",
                    param=name,
                )
            mode = img.mode
            img.load()
    except InvalidRequestError:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidRequestError(
            f"{name}: image is too large to decode safely ({exc}).", param=name
        ) from exc
    except Exception as exc:  # PIL raises OSError/SyntaxError/ValueError/struct.error on bad files
        raise InvalidRequestError(
            f"{name}: the image could not be decoded ({type(exc).__name__}: {exc}).", param=name
        ) from exc
    return ImageInfo(width=width, height=height, mime_type=mime, mode=mode)


# --- masks -------------------------------------------------------------------------------
# The library (like Diffusers and sd.cpp) repaints where a mask is white; the OpenAI edits
# protocol edits where the mask is transparent (alpha 0). These two convert between them;
# mask_to_openai's output is white *and* transparent there, so both readings agree.


def _has_transparency(img: Any) -> bool:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return bool(img.convert("RGBA").getchannel("A").getextrema()[0] < 128)
    return False


def mask_to_openai(data: bytes) -> bytes:
    """A mask for the edits protocol, readable by both conventions (RGBA PNG).

    The area to repaint is white *and* transparent, the rest black and opaque: the OpenAI
    convention (transparent = edit) and servers that read the mask as greyscale
    (white = repaint, e.g. stable-diffusion.cpp's sd-server) see the same area. The input is
    a white = repaint mask, or an OpenAI mask (one with transparent pixels).
    """
    from PIL import Image, ImageChops

    with Image.open(io.BytesIO(data)) as img:
        if _has_transparency(img):
            edit = img.convert("RGBA").getchannel("A").point(lambda a: 255 if a < 128 else 0)
        else:
            edit = img.convert("L").point(lambda v: 255 if v >= 128 else 0)
    out = Image.merge("RGBA", (edit, edit, edit, ImageChops.invert(edit)))
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def mask_from_openai(data: bytes) -> bytes:
    """An OpenAI mask (transparent = edit) as a white = repaint mask (L PNG).

    A mask without transparent pixels is taken to be in the library's convention already and
    returned unchanged.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if not _has_transparency(img):
            return data
        alpha = img.convert("RGBA").getchannel("A")
    buf = io.BytesIO()
    alpha.point(lambda a: 255 if a < 128 else 0).save(buf, format="PNG")
    return buf.getvalue()


# --- PNG text chunks -------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def embed_png_text(data: bytes, text: dict[str, str]) -> bytes:
    """Return ``data`` (a PNG) with ``text`` added as iTXt chunks before the first IDAT.

    Works on bytes (no decode/re-encode); non-PNG data is returned unchanged.
    """
    if not data.startswith(_PNG_SIG) or not text:
        return data
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            break
        pos += 12 + length
    else:
        return data
    chunks = b"".join(
        _chunk(
            b"iTXt",
            key.encode("latin-1", "replace")[:79]
            + b"\x00\x00\x00\x00\x00"
            + value.encode("utf-8", "replace"),
        )
        for key, value in text.items()
    )
    return data[:pos] + chunks + data[pos:]


def read_png_text(data: bytes) -> dict[str, str]:
    """Read tEXt/iTXt chunks of a PNG into a dict (uncompressed chunks only)."""
    out: dict[str, str] = {}
    if not data.startswith(_PNG_SIG):
        return out
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = payload.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = payload.partition(b"\x00")
            if rest[:1] == b"\x00":  # not compressed
                rest = rest[2:]
                _lang, _, rest = rest.partition(b"\x00")
                _tkey, _, value = rest.partition(b"\x00")
                out[key.decode("latin-1")] = value.decode("utf-8", "replace")
        elif kind == b"IEND":
            break
        pos += 12 + length
    return out


def provenance_png_text(metadata: dict[str, Any]) -> dict[str, str]:
    """The PNG text chunks written for a generated image."""
    from ._refs import _json_safe

    params = metadata.get("parameters") or {}
    out = {"Software": "abstractvision", "abstractvision": json.dumps(_json_safe(metadata), sort_keys=True)}
    prompt = params.get("prompt") if isinstance(params, dict) else None
    if isinstance(prompt, str):
        out["prompt"] = prompt
    return out
