"""Helpers shared by the server tests (payloads, SSE parsing, a gated fake backend)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from abstractvision.types import ImageGenerationRequest
from fakes import FakeBackend, png_bytes

TINY_KEY = "tiny-server-key"
WAN = {"steps": 2, "width": 16, "height": 16, "extra": {"max_sequence_length": 16}}


class GatedBackend(FakeBackend):
    """Blocks ``generate_image`` while ``gate`` is clear (to hold a worker busy on purpose)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.gate.set()

    def generate_image(self, request: ImageGenerationRequest) -> Any:
        self.started.set()
        while not self.gate.wait(0.01):
            if request.cancel is not None and request.cancel.is_set():
                from abstractvision.errors import GenerationCancelledError

                raise GenerationCancelledError("cancelled while gated")
        return super().generate_image(request)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png(width: int = 16, height: int = 16, color: Any = (10, 120, 200), mode: str = "RGB") -> bytes:
    return png_bytes(width, height, color, mode)


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.size


def sse_events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    """Parse a (finished) server-sent event stream into (event name, JSON data) pairs."""
    import json

    out = []
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "":
            if data:
                out.append((name, json.loads(data)))
            name, data = "message", ""
    return out


@contextmanager
def diffusers_server(tiny_models: dict[str, str], **options: Any) -> Iterator[Any]:
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
    from abstractvision.server import create_app, serve_in_thread

    backends = {
        name: HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id=path, device="cpu")
        )
        for name, path in tiny_models.items()
    }
    options.setdefault("allowed_extra_keys", ("max_sequence_length",))
    app = create_app(backends, **options)
    try:
        with serve_in_thread(app) as server:
            yield server
    finally:
        for backend in backends.values():
            backend.close()
