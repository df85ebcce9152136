"""Responses of the OpenAI-compatible routes, parsed (no I/O): image lists, media bytes, video jobs."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Optional

from ..._media import sniff_mime
from ...types import GeneratedAsset
from .protocol import Reply, response_error


@dataclass(frozen=True)
class MediaItem:
    """One entry of a ``data`` list: base64 bytes or a URL to download."""

    b64: Optional[str] = None
    url: Optional[str] = None
    revised_prompt: Optional[str] = None
    seed: Optional[int] = None


def media_items(doc: Any, reply: Reply, *, n: int, what: str) -> list[MediaItem]:
    """The first ``n`` entries of ``data`` (fewer when the server answered fewer: the flow
    asks for the rest); an empty answer is an error."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list) or not data:
        raise response_error(f"{what}: the response has no 'data' list.", reply)
    out = []
    for i, entry in enumerate(data[:n]):
        if not isinstance(entry, dict):
            raise response_error(f"{what}: data[{i}] is not an object.", reply)
        b64, url = entry.get("b64_json"), entry.get("url")
        if not (isinstance(b64, str) and b64) and not (isinstance(url, str) and url):
            raise response_error(f"{what}: data[{i}] has neither 'b64_json' nor 'url'.", reply)
        seed = entry.get("seed")
        revised = entry.get("revised_prompt")
        out.append(
            MediaItem(
                b64=b64 if isinstance(b64, str) and b64 else None,
                url=url if isinstance(url, str) and url else None,
                revised_prompt=revised if isinstance(revised, str) else None,
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            )
        )
    return out


def decode_b64(value: str, *, what: str, reply: Optional[Reply], max_bytes: int) -> bytes:
    """Decode base64 (a ``data:`` URL prefix and whitespace are accepted)."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    value = "".join(value.split())
    if len(value) * 3 // 4 > max_bytes:
        raise response_error(
            f"{what}: the base64 payload is larger than max_download_bytes ({max_bytes}).", reply
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise response_error(f"{what}: 'b64_json' is not valid base64.", reply) from exc


#: Types :func:`sniff_mime` recognises: bytes declared as one of them must match.
_SNIFFED = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "video/mp4",
        "video/quicktime",
        "video/webm",
    }
)


def media_asset(
    data: bytes,
    *,
    media_type: str,
    declared_mime: Optional[str],
    metadata: dict[str, Any],
    what: str,
    reply: Optional[Reply],
) -> GeneratedAsset:
    """A :class:`GeneratedAsset` whose MIME type is sniffed from the bytes."""
    if not data:
        raise response_error(f"{what}: the provider returned an empty {media_type}.", reply)
    mime = sniff_mime(data)
    declared = (declared_mime or "").split(";")[0].strip().lower()
    if mime is None and declared.startswith(("image/", "video/")) and declared not in _SNIFFED:
        mime = declared  # a format we cannot recognise (AVIF...): trust the provider
    ok = mime is not None and (
        mime.startswith("image/")
        if media_type == "image"
        else (mime.startswith("video/") or mime == "image/gif")
    )
    if not ok or mime is None:
        raise response_error(
            f"{what}: expected {media_type} bytes, got {mime or 'an unrecognised format'} "
            f"(first bytes {data[:8]!r}).",
            reply,
        )
    return GeneratedAsset(media_type=media_type, data=data, mime_type=mime, metadata=metadata)


_JOB_STATUS = {
    "queued": "queued",
    "pending": "queued",
    "submitted": "queued",
    "in_progress": "in_progress",
    "processing": "in_progress",
    "running": "in_progress",
    "started": "in_progress",
    "completed": "completed",
    "succeeded": "completed",
    "success": "completed",
    "failed": "failed",
    "error": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}


@dataclass(frozen=True)
class Job:
    """A video job as reported by ``POST /videos`` / ``GET /videos/{id}``."""

    id: str
    status: str  # queued | in_progress | completed | failed | cancelled
    progress: Optional[float]
    raw: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def error_text(self) -> str:
        err = self.raw.get("error")
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            return ": ".join(str(x) for x in (code, message) if x) or json.dumps(err)
        return str(err) if err else "no reason given"


def parse_job(doc: Any, reply: Reply, *, what: str) -> Job:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not doc["id"]:
        raise response_error(f"{what}: the response is not a video job (no 'id').", reply, doc)
    raw_status = str(doc.get("status", "")).lower()
    if not raw_status:
        raise response_error(f"{what}: the video job has no 'status'.", reply, doc)
    progress = doc.get("progress")
    fraction = None
    if isinstance(progress, (int, float)) and not isinstance(progress, bool):
        fraction = min(1.0, max(0.0, float(progress) / 100.0))  # the OpenAI protocol reports 0-100
    return Job(doc["id"], _JOB_STATUS.get(raw_status, "in_progress"), fraction, doc)
