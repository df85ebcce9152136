"""The library's preview API: ``on_preview`` with ``preview_every`` / ``partial_images`` on both
managers, validated at the edge, transient (never stored or returned), free when not asked for."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from abstractvision import (
    AsyncVisionManager,
    InvalidRequestError,
    LocalAssetStore,
    PreviewEvent,
    VisionManager,
)
from abstractvision._relays import PreviewRelay
from abstractvision.errors import BackendError, GenerationCancelledError
from fakes import FakeBackend


def test_every_step_by_default_or_every_n_steps() -> None:
    backend = FakeBackend()
    seen: list[PreviewEvent] = []
    asset = VisionManager(backend=backend).generate_image("x", steps=5, on_preview=seen.append)
    assert [e.step for e in seen] == [1, 2, 3, 4, 5] and all(e.total_steps == 5 for e in seen)
    assert seen[0].to_pil().size == (16, 16) and seen[0].mime_type == "image/jpeg"
    assert all(e.elapsed_s is not None and e.task == "text_to_image" for e in seen)
    assert "preview" not in str(asset.metadata)  # previews are not part of the result
    seen.clear()
    VisionManager(backend=backend).generate_image("x", steps=9, on_preview=seen.append, preview_every=4)
    assert [e.step for e in seen] == [4, 8]


@pytest.mark.parametrize(
    ("steps", "count", "expected"),
    [(4, 2, [2, 3]), (10, 3, [3, 5, 8]), (2, 3, [1, 2]), (30, 1, [15]), (5, 0, [])],
)
def test_partial_images_are_spread_over_the_steps(steps: int, count: int, expected: list[int]) -> None:
    seen: list[PreviewEvent] = []
    VisionManager(backend=FakeBackend()).generate_image(
        "x", steps=steps, on_preview=seen.append, partial_images=count
    )
    assert [e.step for e in seen] == expected


def test_no_listener_no_previews_made() -> None:
    backend = FakeBackend()
    VisionManager(backend=backend).generate_image("x", steps=6)
    assert backend.previews_made == 0 and backend.calls[-1][1].on_preview is None


def test_batches_number_their_outputs_across_engine_calls() -> None:
    seen: list[PreviewEvent] = []
    VisionManager(backend=FakeBackend(max_batch=2)).generate_image_batch(
        "x", count=3, steps=2, on_preview=seen.append, partial_images=1
    )
    # the manager split the batch in two engine calls (2 + 1 outputs); indexes continue
    assert sorted({e.index for e in seen}) == [0, 2]  # the fake previews output 0 of each call


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_preview": print, "preview_every": 2, "partial_images": 1}, "not both"),
        ({"preview_every": 2}, "needs 'on_preview'"),
        ({"on_preview": "not callable"}, "must be a callable"),
        ({"on_preview": print, "preview_every": 0}, "between 1 and"),
        ({"on_preview": print, "partial_images": 99}, "between 0 and 16"),
    ],
)
def test_bad_preview_options_are_refused_before_the_engine_runs(kwargs: dict[str, Any], message: str) -> None:
    backend = FakeBackend()
    with pytest.raises(InvalidRequestError, match=message):
        VisionManager(backend=backend).generate_image("x", **kwargs)
    assert not backend.calls


def test_previews_never_reach_the_store_or_the_results(tmp_path: Any) -> None:
    store = LocalAssetStore(tmp_path / "store")
    seen: list[PreviewEvent] = []
    ref = VisionManager(backend=FakeBackend(), store=store).generate_image(
        "x", steps=4, on_preview=seen.append
    )
    assert len(seen) == 4
    assert [item["artifact_id"] for item in store.list()] == [ref["$artifact"]]
    assert store.load_bytes(ref["$artifact"]).startswith(b"\x89PNG")  # the result, not a JPEG preview
    assert not any("preview" in key for key in ref["metadata"]) and "on_preview" not in str(ref["metadata"])


def test_a_cancel_from_the_preview_callback_stops_at_the_next_step() -> None:
    cancel = threading.Event()
    backend = FakeBackend()
    steps: list[int] = []

    def on_preview(event: PreviewEvent) -> None:
        steps.append(event.step or 0)
        if event.step == 3:
            cancel.set()

    with pytest.raises(GenerationCancelledError, match="at step 4"):
        VisionManager(backend=backend).generate_image("x", steps=50, on_preview=on_preview, cancel=cancel)
    assert steps == [1, 2, 3]


def test_a_failing_preview_callback_is_a_backend_error_naming_it() -> None:
    def broken(event: PreviewEvent) -> None:
        raise KeyError("oops")

    with pytest.raises(BackendError, match="on_preview raised KeyError"):
        VisionManager(backend=FakeBackend()).generate_image("x", on_preview=broken)


def test_async_manager_takes_the_same_preview_options() -> None:
    seen: list[PreviewEvent] = []

    async def run() -> Any:
        return await AsyncVisionManager(backend=FakeBackend()).generate_video(
            "x", steps=6, on_preview=seen.append, partial_images=2
        )

    asyncio.run(run())
    assert [e.step for e in seen] == [2, 4] and seen[0].task == "text_to_video"


def test_relay_without_a_known_total_sends_at_most_count() -> None:
    seen: list[PreviewEvent] = []
    relay = PreviewRelay("text_to_image", seen.append, 0.0, count=2)
    for _ in range(5):
        if relay.wants(None, None):
            relay(PreviewEvent(task="text_to_image", image=b""))
    assert len(seen) == 2
