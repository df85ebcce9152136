"""Video jobs over real HTTP: lifecycle, failure, cancellation, deadline, image-to-video."""

from __future__ import annotations

import threading
import time

import pytest
from openai_fake_server import MP4_BYTES, Reply, png_bytes

from abstractvision.errors import (
    GenerationCancelledError,
    GenerationTimeoutError,
    InvalidRequestError,
    ProviderError,
)


def test_job_lifecycle_queued_in_progress_completed(vm, server):
    events = []
    asset = vm.generate_video(
        "a boat",
        width=64,
        height=32,
        num_frames=9,
        fps=8,
        seed=3,
        on_progress=lambda e: events.append((e.phase, e.progress)),
    )
    assert asset.media_type == "video" and asset.mime_type == "video/mp4" and asset.data == MP4_BYTES
    assert events == [
        ("started", None),
        ("submitting", None),
        ("queued", 0.0),
        ("in_progress", 0.5),
        ("downloading", 1.0),
        ("completed", 1.0),
    ]
    fields, files = server.calls("POST", "/videos")[0].form()
    assert files == []
    assert fields == {
        "prompt": ["a boat"],
        "size": ["64x32"],
        "num_frames": ["9"],
        "fps": ["8"],
        "width": ["64"],
        "height": ["32"],
        "seed": ["3"],
    }
    assert [r.path for r in server.requests] == [
        "/videos",
        "/videos/video_1",
        "/videos/video_1",
        "/videos/video_1/content",
    ]
    meta = asset.metadata
    assert meta["provider"]["video_id"] == "video_1" and meta["seed"] == 3
    assert meta["timings"]["inference_s"] > 0 and "download_s" in meta["timings"]


def test_openai_video_model_fields(runner, make_backend, server):
    vm = runner.manager(make_backend(video_model_id="sora-2", send_diffusion_params=False))
    vm.generate_video("a boat", width=1280, height=720, extra={"seconds": 8})
    fields, _ = server.calls("POST", "/videos")[0].form()
    assert fields == {"prompt": ["a boat"], "model": ["sora-2"], "size": ["1280x720"], "seconds": ["8"]}
    with pytest.raises(InvalidRequestError, match="valid sizes: 720x1280, 1280x720"):
        vm.generate_video("a boat", width=640, height=480)
    with pytest.raises(InvalidRequestError, match="seconds"):
        vm.generate_video("a boat", extra={"seconds": 5})
    with pytest.raises(InvalidRequestError, match="num_frames"):
        vm.generate_video("a boat", num_frames=9)


def test_image_to_video_sends_input_reference(vm, server):
    image = png_bytes(16, 16)
    asset = vm.image_to_video(image, "make it move")
    assert asset.mime_type == "video/mp4"
    fields, files = server.calls("POST", "/videos")[0].form()
    assert fields["prompt"] == ["make it move"]
    assert [(f.name, f.filename, f.content_type, f.data) for f in files] == [
        ("input_reference", "reference.png", "image/png", image)
    ]


def test_failed_job_raises_provider_error_with_the_reason(vm, server):
    server.video_plan = [("queued", 0), ("failed", 10)]
    with pytest.raises(
        ProviderError, match="video job video_1 failed: moderation_blocked: The prompt was blocked"
    ) as info:
        vm.generate_video("x")
    assert info.value.body["status"] == "failed"
    assert server.calls("DELETE", "/videos/video_1") == []  # a finished job is not cancelled


def test_job_cancelled_by_the_provider(vm, server):
    server.video_plan = [("queued", 0), ("cancelled", 0)]
    with pytest.raises(GenerationCancelledError, match="cancelled on the provider"):
        vm.generate_video("x")


def test_cancel_token_stops_polling_and_cancels_the_job(vm, server):
    server.video_plan = [("queued", 0)] + [("in_progress", 10)] * 10_000
    cancel = threading.Event()

    def on_progress(event):
        if event.phase == "in_progress" and event.progress is not None:
            cancel.set()

    with pytest.raises(GenerationCancelledError):
        vm.generate_video("x", cancel=cancel, on_progress=on_progress)
    assert len(server.calls("DELETE", "/videos/video_1")) == 1
    assert server.calls("GET", "/videos/video_1/content") == []


def test_deadline_exceeded_raises_and_cancels_the_job(runner, make_backend, server):
    server.video_plan = [("queued", 0)] + [("in_progress", 10)] * 10_000
    vm = runner.manager(make_backend(deadline_s=0.3))
    started = time.monotonic()
    with pytest.raises(GenerationTimeoutError, match=r"0\.3 s deadline"):
        vm.generate_video("x")
    assert time.monotonic() - started < 2.0
    assert len(server.calls("DELETE", "/videos/video_1")) == 1
    assert len(server.calls("GET", "/videos/video_1")) > 3


def test_poll_interval_hint_is_honoured(runner, make_backend, server):
    server.video_plan = [("queued", 0), ("in_progress", 50), ("in_progress", 75), ("completed", 100)]
    server.poll_headers = {"Retry-After": "0.15"}
    vm = runner.manager(make_backend(poll_interval_s=5.0))  # the hint wins over the configured interval
    started = time.monotonic()
    vm.generate_video("x")
    elapsed = time.monotonic() - started
    assert 0.15 * 3 - 0.01 <= elapsed < 2.0  # three waits of 0.15 s, none of 5 s
    gets = server.calls("GET", "/videos/video_1")
    assert len(gets) == 3


def test_sync_video_mode(runner, make_backend, server):
    vm = runner.manager(make_backend(video_mode="sync"))
    asset = vm.image_to_video(png_bytes(), "move", num_frames=5)
    assert asset.mime_type == "video/mp4" and asset.data == MP4_BYTES
    body = server.calls("POST", "/videos/generations")[0].json()
    assert (
        body["prompt"] == "move"
        and body["num_frames"] == 5
        and body["image"].startswith("data:image/png;base64,")
    )
    assert server.calls("POST", "/videos") == []


def test_sync_video_mode_with_a_binary_answer(runner, make_backend, server):
    server.script("POST", "/videos/generations", Reply(body=MP4_BYTES, headers={"Content-Type": "video/mp4"}))
    vm = runner.manager(make_backend(video_mode="sync"))
    assert vm.generate_video("x").data == MP4_BYTES


def test_content_that_is_not_a_video_is_refused(vm, server):
    from abstractvision.errors import ProviderResponseError

    server.video_plan = [("completed", 100)]
    server.script(
        "GET",
        "/videos/video_1/content",
        Reply(body=b"<html>oops</html>", headers={"Content-Type": "text/html"}),
    )
    with pytest.raises(ProviderResponseError, match="expected video bytes"):
        vm.generate_video("x")
