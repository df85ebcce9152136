"""AsyncVisionManager mirrors VisionManager: same signatures, same results."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from abstractvision import (
    AsyncVisionManager,
    GenerationCancelledError,
    InvalidRequestError,
    VisionManager,
    is_artifact_ref,
)
from abstractvision._core import ManagerCore
from abstractvision.types import GeneratedAsset
from fakes import FakeBackend, png_bytes

# the task/catalog/lifecycle surface: what VisionManager adds on top of the shared core
PUBLIC = sorted(name for name in set(dir(VisionManager)) - set(dir(ManagerCore)) if not name.startswith("_"))


def test_every_public_method_has_an_async_twin_with_the_same_signature():
    assert {
        "generate_image",
        "edit_image",
        "upscale_image",
        "generate_video",
        "image_to_video",
        "generate_angles",
        "generate_image_batch",
        "edit_image_batch",
        "generate_video_batch",
        "image_to_video_batch",
        "list_provider_models",
        "preload",
        "unload",
        "close",
    } <= set(PUBLIC)
    for name in PUBLIC:
        sync_sig = inspect.signature(getattr(VisionManager, name))
        twin = getattr(AsyncVisionManager, name)
        assert inspect.iscoroutinefunction(twin), name
        assert inspect.signature(twin).parameters == sync_sig.parameters, name


def test_async_results_match_sync_results():
    sync = VisionManager(backend=FakeBackend())
    amgr = AsyncVisionManager(backend=FakeBackend())

    async def main():
        return (
            await amgr.generate_image("x", seed=3, width=8, height=8),
            await amgr.edit_image("x", png_bytes(), seed=1),
            await amgr.generate_image_batch("x", count=3, seed=5),
            await amgr.generate_angles("x", angles=["front", "back"]),
            await amgr.list_provider_models(),
        )

    image, edit, batch, angles, catalog = asyncio.run(main())
    assert image.to_pil().tobytes() == sync.generate_image("x", seed=3, width=8, height=8).to_pil().tobytes()
    assert edit.to_pil().tobytes() == sync.edit_image("x", png_bytes(), seed=1).to_pil().tobytes()
    assert [a.seed for a in batch] == [5, 6, 7]
    assert [a.metadata["angle"] for a in angles] == ["front", "back"]
    assert catalog == []


def test_async_with_store_and_validation(store):
    amgr = AsyncVisionManager(backend=FakeBackend(), store=store)

    async def main():
        ref = await amgr.generate_image("x")
        with pytest.raises(InvalidRequestError):
            await amgr.generate_image("")
        return ref

    assert is_artifact_ref(asyncio.run(main()))


def test_concurrent_async_calls():
    amgr = AsyncVisionManager(backend=FakeBackend(steps_delay_s=0.01))

    async def main():
        return await asyncio.gather(*(amgr.generate_image("x", seed=i, steps=3) for i in range(8)))

    results = asyncio.run(main())
    assert [r.seed for r in results] == list(range(8))
    assert all(isinstance(r, GeneratedAsset) for r in results)


def test_cancelling_the_task_stops_the_engine_thread():
    backend = FakeBackend(steps_delay_s=0.02)
    amgr = AsyncVisionManager(backend=backend)
    seen: list[int] = []

    async def main():
        task = asyncio.ensure_future(
            amgr.generate_image("x", steps=500, on_progress=lambda e: seen.append(e.step or 0))
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        token = backend.calls[0][1].cancel
        assert token.is_set()

    asyncio.run(main())
    before = len(seen)
    threading.Event().wait(0.1)
    assert len(seen) - before <= 1, "the worker thread should stop at its next step"
    assert max(seen) < 500


def test_user_cancel_token_in_async():
    token = threading.Event()
    token.set()
    amgr = AsyncVisionManager(backend=FakeBackend())
    with pytest.raises(GenerationCancelledError):
        asyncio.run(amgr.generate_image("x", cancel=token))
