"""Live previews from a remote server: OpenAI's streamed image events (``stream: true``).

When the request has ``on_preview`` and the profile streams (``Profile.stream_previews``: the
OpenAI API, and this project's own server with ``profile="openai"``), the image request asks for
``stream: true`` with ``partial_images`` (1-3, from the request's ``partial_images``, else 3).
:class:`ImageStream` reads the server-sent events as the body arrives (the transports hand it
each chunk): every ``*.partial_image`` becomes a :class:`~abstractvision.PreviewEvent`
(``decoder="remote"``) at once, the ``*.completed`` event becomes the usual images document,
an ``error`` event a provider error. A server that answers plain JSON instead is read as usual.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any, Optional

from ...errors import ProviderError, ProviderResponseError
from ...types import PreviewEvent

__all__ = ["ImageStream", "partial_images_for"]

#: the most partial images the OpenAI API streams
MAX_REMOTE_PARTIALS = 3


def partial_images_for(request: Any, profile: Any) -> Optional[int]:
    """How many partial images to ask for, or ``None`` not to stream."""
    on_preview = getattr(request, "on_preview", None)
    if on_preview is None or not profile.stream_previews or profile.routes != "openai" or request.n != 1:
        return None
    count = getattr(on_preview, "count", None)
    if count is None:
        return MAX_REMOTE_PARTIALS
    return min(int(count), MAX_REMOTE_PARTIALS) or None


class ImageStream:
    """Parses a streamed image response chunk by chunk (see the module docstring)."""

    def __init__(self, on_preview: Any, task: str) -> None:
        self.on_preview = on_preview
        self.task = task
        self.buffer = b""
        self.completed: Optional[dict[str, Any]] = None
        self.error: Optional[Any] = None
        self.partials = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            self._event(block.decode("utf-8", "replace"))

    def _event(self, block: str) -> None:
        name, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if not data or data.startswith("[DONE]"):
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        kind = str(doc.get("type") or name) if isinstance(doc, dict) else name
        if not isinstance(doc, dict):
            return
        if name == "error" or kind == "error" or doc.get("error"):
            self.error = doc.get("error") or doc
        elif kind.endswith(".partial_image"):
            self._partial(doc)
        elif kind.endswith(".completed"):
            self.completed = doc

    def _partial(self, doc: dict[str, Any]) -> None:
        from ..._relays import wants_preview

        if not wants_preview(self.on_preview, None, None):
            return
        try:
            data = base64.b64decode(str(doc.get("b64_json") or ""), validate=True)
        except (binascii.Error, ValueError):
            return
        width = height = 0
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except Exception:
            return  # not an image: nothing to show
        fmt = str(doc.get("output_format") or "png")
        self.partials += 1
        self.on_preview(
            PreviewEvent(
                task=self.task,
                image=data,
                mime_type=f"image/{fmt}",
                width=width,
                height=height,
                step=int(doc.get("partial_image_index", self.partials - 1)) + 1,
                decoder="remote",
            )
        )

    def document(self, what: str) -> dict[str, Any]:
        """The images document of the finished stream (as a non-streamed response would be)."""
        self.feed(b"\n\n")  # a last event without its blank line
        if self.error is not None:
            message = self.error.get("message") if isinstance(self.error, dict) else str(self.error)
            raise ProviderError(f"{what}: the server reported an error in its stream: {message}")
        if self.completed is None:
            raise ProviderResponseError(f"{what}: the image stream ended without a completed event.")
        done = self.completed
        out: dict[str, Any] = {"data": [{"b64_json": done.get("b64_json")}]}
        for key in ("output_format", "size", "quality", "background", "usage"):
            if done.get(key) is not None:
                out[key] = done[key]
        return out
