"""Concurrency: N requests really in flight at once, through AsyncVisionManager and threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai_fake_server import png_bytes

from abstractvision import AsyncVisionManager, VisionManager

N = 8


def test_async_manager_keeps_n_requests_in_flight(make_backend, server):
    # The server holds every request at a barrier until N have arrived: if the manager
    # serialised them (or ran them in a too-small pool) the barrier would break.
    server.barrier = threading.Barrier(N, timeout=5)
    avm = AsyncVisionManager(backend=make_backend())

    async def scenario():
        try:
            return await asyncio.gather(*(avm.generate_image(f"image {i}") for i in range(N)))
        finally:
            await avm.close()

    assets = asyncio.run(scenario())
    assert len(assets) == N and all(a.mime_type == "image/png" for a in assets)
    assert server.max_inflight == N


def test_async_mixed_operations_concurrently(make_backend, server):
    server.barrier = None
    avm = AsyncVisionManager(backend=make_backend())

    async def scenario():
        try:
            return await asyncio.gather(
                avm.generate_image_batch("a", count=3),
                avm.edit_image("b", png_bytes(), mask=png_bytes()),
                avm.generate_video("c"),
                avm.list_provider_models(task="text_to_image"),
            )
        finally:
            await avm.close()

    batch, edit, video, models = asyncio.run(scenario())
    assert len(batch) == 3 and edit.media_type == "image" and video.mime_type == "video/mp4" and models


def test_sync_backend_is_safe_from_threads(make_backend, server):
    server.barrier = threading.Barrier(N, timeout=5)
    vm = VisionManager(backend=make_backend())
    with ThreadPoolExecutor(N) as pool:
        assets = list(pool.map(lambda i: vm.generate_image(f"image {i}"), range(N)))
    assert len(assets) == N and server.max_inflight == N


def test_task_cancellation_cancels_the_remote_job(make_backend, server):
    server.video_plan = [("queued", 0)] + [("in_progress", 10)] * 10_000
    avm = AsyncVisionManager(backend=make_backend())

    async def scenario():
        task = asyncio.ensure_future(avm.generate_video("x"))
        while len(server.calls("GET", "/videos/video_1")) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await avm.close()

    asyncio.run(scenario())
    assert len(server.calls("DELETE", "/videos/video_1")) == 1


def test_one_backend_across_event_loops(make_backend, server):
    backend = make_backend()
    avm = AsyncVisionManager(backend=backend)
    for _ in range(2):  # each asyncio.run has its own loop; the backend follows
        assert asyncio.run(avm.generate_image("x")).mime_type == "image/png"
