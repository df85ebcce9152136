"""Live previews on the server: size-limited event payloads and OpenAI's image streaming events.

A job asks for previews with ``preview_every`` or ``partial_images`` (the job API) or
``stream: true`` + ``partial_images`` (the OpenAI image routes); without them the engine makes
none. Each :class:`~abstractvision.PreviewEvent` becomes a ``preview`` event in the job's event
log (``/v1/jobs/{id}/events``), as inline base64 JPEG no larger than :data:`MAX_SIDE` pixels
and :data:`MAX_BYTES` bytes, and only the latest :data:`KEPT_PREVIEWS` are kept in the log (a
client that reconnects gets the newest previews, not a backlog). Previews never reach the artifact store or
a job's results.

For ``stream: true`` the image routes answer with server-sent events the official SDKs parse:
``image_generation.partial_image`` / ``image_edit.partial_image`` (one per preview, numbered
by ``partial_image_index``) and then ``image_generation.completed`` / ``image_edit.completed``
with the final image (or an ``error`` event).
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any, Optional

from ..types import PreviewEvent

__all__ = [
    "KEPT_PREVIEWS",
    "MAX_BYTES",
    "MAX_SIDE",
    "completed_event",
    "partial_event",
    "preview_payload",
    "sse",
]

#: longest side of a preview in a job event (pixels)
MAX_SIDE = 384
#: largest preview image in a job event (bytes, before base64)
MAX_BYTES = 96 * 1024
#: previews a job's event log keeps (older ones are dropped: a slow reader gets the newest)
KEPT_PREVIEWS = 4


def preview_payload(event: PreviewEvent) -> dict[str, Any]:
    """The ``preview`` event data: the preview as a size-limited inline JPEG, plus where it stands."""
    from PIL import Image

    with Image.open(io.BytesIO(event.image)) as opened:
        image = opened.convert("RGB")
    side, quality = MAX_SIDE, 80
    while True:
        shown = image.copy()
        shown.thumbnail((side, side))
        buf = io.BytesIO()
        shown.save(buf, format="JPEG", quality=quality)
        data = buf.getvalue()
        if len(data) <= MAX_BYTES or side <= 32:
            break
        side, quality = side * 3 // 4, max(40, quality - 10)
    return {
        "step": event.step,
        "total_steps": event.total_steps,
        "index": event.index,
        "decoder": event.decoder,
        "frame": event.frame,
        "width": shown.width,
        "height": shown.height,
        "elapsed_s": event.elapsed_s,
        "mime_type": "image/jpeg",
        "b64_json": base64.b64encode(data).decode("ascii"),
    }


def _encoded(b64_jpeg: str, output_format: str) -> tuple[str, str]:
    """A preview (base64 JPEG) in the response's ``output_format``, with its ``WxH``."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64_jpeg)))
    image.load()
    size = f"{image.width}x{image.height}"
    if output_format == "jpeg":
        return b64_jpeg, size
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format={"png": "PNG", "webp": "WEBP"}.get(output_format, "PNG"))
    return base64.b64encode(buf.getvalue()).decode("ascii"), size


def _common(summary: dict[str, Any], output_format: str) -> dict[str, Any]:
    quality = summary.get("quality")
    return {
        "created_at": int(time.time()),
        "output_format": output_format,
        "quality": quality if quality in ("low", "medium", "high") else "auto",
        "background": summary.get("background") or "opaque",
    }


def partial_event(kind: str, payload: dict[str, Any], index: int, summary: dict[str, Any]) -> dict[str, Any]:
    """``{kind}.partial_image`` (``kind``: ``image_generation`` or ``image_edit``)."""
    output_format = summary.get("output_format") or "png"
    b64, size = _encoded(payload["b64_json"], output_format)
    return {
        "type": f"{kind}.partial_image",
        "b64_json": b64,
        "partial_image_index": index,
        "size": size,
        **_common(summary, output_format),
    }


def completed_event(kind: str, data: bytes, mime_type: str, summary: dict[str, Any]) -> dict[str, Any]:
    """``{kind}.completed`` with the final image. Token counts are 0: nothing is billed in tokens."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        size = f"{image.width}x{image.height}"
    output_format = mime_type.split("/", 1)[1] if mime_type.startswith("image/") else "png"
    return {
        "type": f"{kind}.completed",
        "b64_json": base64.b64encode(data).decode("ascii"),
        "size": size,
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
            "output_tokens": 0,
            "total_tokens": 0,
        },
        **_common(summary, output_format),
    }


def sse(name: str, data: Any, event_id: Optional[int] = None) -> str:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"
