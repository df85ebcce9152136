"""Live previews from a remote OpenAI-compatible server: with ``on_preview`` the HTTP backend asks
for ``stream: true`` + ``partial_images`` where its profile streams (``openai``), and turns the
server-sent partial images into PreviewEvents while the response arrives. The remote here is this
project's own server (a real uvicorn on loopback) over the fake engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")

from abstractvision import AsyncVisionManager, VisionManager
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
from fakes import FakeBackend


@pytest.fixture
def remote() -> Iterator[tuple[str, FakeBackend]]:
    from abstractvision.server import create_app, serve_in_thread

    engine = FakeBackend(steps_delay_s=0.01)
    with serve_in_thread(create_app({"pics": engine})) as server:
        yield server.url + "/v1", engine


def _backend(url: str, profile: str) -> OpenAICompatibleVisionBackend:
    return OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url=url, model_id="pics", profile=profile)
    )


def test_partial_images_arrive_as_previews_then_the_image(remote: Any) -> None:
    url, engine = remote
    backend = _backend(url, "openai")
    seen: list[Any] = []
    asset = VisionManager(backend=backend).generate_image(
        "a cat", width=16, height=16, on_preview=seen.append, partial_images=2
    )
    assert [(e.step, e.decoder, e.mime_type) for e in seen] == [
        (1, "remote", "image/png"),
        (2, "remote", "image/png"),
    ]
    assert seen[0].to_pil().size == (16, 16)
    assert asset.mime_type == "image/png" and asset.to_pil().size == (16, 16)
    made = engine.previews_made
    VisionManager(backend=backend).generate_image("a cat", width=16, height=16)  # no listener: no stream
    assert engine.previews_made == made
    backend.close()


def test_the_async_manager_streams_too(remote: Any) -> None:
    url, _ = remote
    backend = _backend(url, "openai")
    seen: list[Any] = []

    async def run() -> Any:
        return await AsyncVisionManager(backend=backend).edit_image(
            "blue", _png(), on_preview=seen.append, partial_images=1
        )

    asset = asyncio.run(run())
    assert [e.decoder for e in seen] == ["remote"] and asset.to_pil().size == (16, 16)
    backend.close()


def test_profiles_that_do_not_stream_send_no_stream_field(remote: Any) -> None:
    url, engine = remote
    backend = _backend(url, "generic")
    seen: list[Any] = []
    asset = VisionManager(backend=backend).generate_image("a cat", steps=3, on_preview=seen.append)
    assert seen == [] and engine.previews_made == 0 and asset.to_pil().size == (16, 16)
    backend.close()


def _png() -> bytes:
    from fakes import png_bytes

    return png_bytes(16, 16)
