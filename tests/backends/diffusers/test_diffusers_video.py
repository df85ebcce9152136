"""Video pipelines (Wan text-to-video and image-to-video) and in-process MP4 encoding."""

from __future__ import annotations

import io
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers

WAN = {"steps": 2, "width": 16, "height": 16, "extra": {"max_sequence_length": 16}}


def _decode(data: bytes) -> tuple[str, list[Any], float]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return stream.codec_context.name, frames, float(stream.average_rate)


def test_wan_text_to_video_mp4(make_manager: Any, tiny_wan: str) -> None:
    vm = make_manager(tiny_wan)
    caps = vm.backend.get_capabilities()
    assert caps.supported_tasks == ("text_to_video",)
    events: list[Any] = []
    video = vm.generate_video("a cat walking", num_frames=9, seed=0, on_progress=events.append, **WAN)
    assert video.mime_type == "video/mp4" and video.media_type == "video"
    codec, frames, fps = _decode(video.data)
    assert (codec, len(frames), frames[0].shape, fps) == ("h264", 9, (16, 16, 3), 16.0)
    meta = video.metadata
    assert meta["pipeline"] == "WanPipeline" and meta["seed"] == 0
    assert meta["parameters"]["num_frames"] == 9 and meta["parameters"]["fps"] == 16
    assert meta["video"]["codec"] == "h264"
    assert "encoding" in [e.phase for e in events]
    assert [e.step for e in events if e.phase == "step"] == [1, 2]
    again = vm.generate_video("a cat walking", num_frames=9, seed=0, **WAN)
    assert again.data == video.data  # same seed, same MP4


def test_wan_rules_and_capabilities(make_manager: Any, tiny_wan: str) -> None:
    from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError

    vm = make_manager(tiny_wan, video_fps=8)
    with pytest.raises(InvalidRequestError, match="4k\\+1"):
        vm.generate_video("a cat", num_frames=10, **WAN)
    with pytest.raises(CapabilityNotSupportedError):
        vm.generate_image("a cat", steps=1)
    video = vm.generate_video("a cat", num_frames=5, seed=1, fps=12, **WAN)
    assert _decode(video.data)[2] == 12.0 and len(_decode(video.data)[1]) == 5
    assert vm.generate_video("a cat", num_frames=5, seed=1, **WAN).metadata["parameters"]["fps"] == 8


def test_wan_image_to_video(make_manager: Any, tiny_wan_i2v: str) -> None:
    from PIL import Image

    vm = make_manager(tiny_wan_i2v)
    assert vm.backend.get_capabilities().supported_tasks == ("image_to_video",)
    video = vm.image_to_video(Image.new("RGB", (16, 16), "red"), "a cat", num_frames=5, seed=0, **WAN)
    assert video.metadata["pipeline"] == "WanImageToVideoPipeline"
    assert len(_decode(video.data)[1]) == 5
    # without width/height the video takes the input image's size (fitted to the 16 px grid)
    sized = vm.image_to_video(Image.new("RGB", (40, 20), "red"), "a cat", num_frames=5, seed=0, steps=1)
    assert (sized.metadata["parameters"]["width"], sized.metadata["parameters"]["height"]) == (32, 16)


def test_encode_mp4_pads_odd_sizes_and_accepts_pil_frames() -> None:
    import numpy as np
    from PIL import Image

    from abstractvision.backends._video_encode import encode_mp4

    rng = np.random.default_rng(0)
    video = encode_mp4(rng.random((3, 15, 17, 3), dtype=np.float32), fps=10)
    assert (video.width, video.height, video.num_frames) == (18, 16, 3)
    codec, frames, fps = _decode(video.data)
    assert (codec, len(frames), frames[0].shape[:2], fps) == ("h264", 3, (16, 18), 10.0)
    assert video.data[4:8] == b"ftyp" and b"moov" in video.data[:2048]  # faststart
    pil = [Image.new("RGB", (8, 8), c) for c in ("red", "green")]
    assert encode_mp4(pil, fps=2).num_frames == 2


def test_video_batch_reports_one_seed_per_video(make_manager: Any, tiny_wan: str) -> None:
    videos = make_manager(tiny_wan).generate_video_batch("a cat", count=2, seed=5, num_frames=5, **WAN)
    assert [v.seed for v in videos] == [5, 6]
    assert videos[0].data != videos[1].data
    assert all(len(_decode(v.data)[1]) == 5 for v in videos)
