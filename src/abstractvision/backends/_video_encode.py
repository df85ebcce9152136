"""Encode video frames to MP4 (H.264) in-process with PyAV: no external ``ffmpeg`` binary.

Frames come from a pipeline as a ``(frames, height, width, 3)`` array (floats in ``[0, 1]``
or ``uint8``) or as a list of PIL images. H.264 with ``yuv420p`` (the pixel format every
player decodes) needs even dimensions, so an odd width or height is padded by one
replicated edge pixel, and :func:`encode_mp4` reports the size it actually wrote.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, InvalidRequestError, OptionalDependencyMissingError

__all__ = ["EncodedVideo", "encode_mp4", "frames_to_uint8"]


@dataclass(frozen=True)
class EncodedVideo:
    """An encoded MP4 and what was written."""

    data: bytes = field(repr=False)
    num_frames: int
    width: int
    height: int
    fps: int
    codec: str = "h264"
    pix_fmt: str = "yuv420p"

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def frames_to_uint8(frames: Any) -> Any:
    """Turn pipeline frames (an array or a list of PIL images) into ``uint8`` ``(F, H, W, 3)``."""
    import numpy as np

    if isinstance(frames, (list, tuple)):
        if not frames:
            raise BackendError("The pipeline returned no video frames.")
        if hasattr(frames[0], "convert"):  # PIL images
            return np.stack([np.asarray(f.convert("RGB"), dtype=np.uint8) for f in frames])
        frames = np.stack([np.asarray(f) for f in frames])
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
        raise BackendError(
            f"Unexpected video frame array shape {arr.shape}; expected (frames, height, width, 3)."
        )
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(arr)


def encode_mp4(frames: Any, *, fps: int, crf: int = 18, preset: str = "medium") -> EncodedVideo:
    """Encode ``frames`` to an MP4 (H.264, yuv420p, ``+faststart``) held in memory.

    Args:
        frames: ``(F, H, W, 3)`` array (float ``[0, 1]`` or ``uint8``) or a list of PIL images.
        fps: frames per second written in the container.
        crf: x264 constant rate factor (0 = lossless ... 51; 18 is visually near-lossless).
        preset: x264 speed/size trade-off (``ultrafast`` ... ``veryslow``).
    """
    try:
        import av
    except ImportError as exc:
        raise OptionalDependencyMissingError("av", "diffusers", purpose="MP4 encoding") from exc
    import numpy as np

    if not isinstance(fps, int) or fps < 1:
        raise InvalidRequestError(f"fps must be a positive integer, got {fps!r}.", param="fps")
    arr = frames_to_uint8(frames)
    _, height, width, _ = arr.shape
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        height, width = height + pad_h, width + pad_w
    # ``+faststart`` (moov atom first, so players start before the download ends) rewrites
    # the file in a second pass, which needs a real file rather than a BytesIO.
    fd, path = tempfile.mkstemp(prefix="abstractvision-", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            for frame in arr:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with open(path, "rb") as fh:
            data = fh.read()
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise BackendError(f"MP4 encoding failed ({type(exc).__name__}: {exc}).") from exc
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)
    return EncodedVideo(
        data=data, num_frames=int(arr.shape[0]), width=int(width), height=int(height), fps=fps
    )
