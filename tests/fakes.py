"""A fake backend implemented through the real VisionBackend contract (no engine).

It renders real PNG bytes with Pillow (a colour derived from prompt + seed), reports one
progress event per step, honours cancellation between steps and counts its calls.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from typing import Any

from abstractvision._relays import encode_preview, wants_preview
from abstractvision.backends import VisionBackend
from abstractvision.errors import GenerationCancelledError
from abstractvision.types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    MultiAngleRequest,
    PreviewEvent,
    ProgressEvent,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)


def png_bytes(width: int = 16, height: int = 16, color: Any = (200, 30, 30), mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def _preview_image(step: int, total: int) -> Any:
    """A grey that brightens with the steps (what a preview of step ``step`` looks like here)."""
    from PIL import Image

    level = int(255 * step / max(1, total))
    return Image.new("RGB", (16, 16), (level, level, level))


def _color(prompt: str, seed: int | None) -> tuple[int, int, int]:
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    return digest[0], digest[1], digest[2]


class FakeBackend(VisionBackend):
    name = "fake"

    def __init__(
        self, *, steps_delay_s: float = 0.0, max_batch: int | None = None, supports_mask: bool = True
    ) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.steps_delay_s = steps_delay_s
        self.max_batch = max_batch
        self.supports_mask = supports_mask
        self.started = threading.Event()
        self.closed = False
        self.previews_made = 0  # previews are made only when the request asks (zero cost otherwise)

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake", "model": "fake-model"}

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=tuple(self.supported_tasks()),
            supports_mask=self.supports_mask,
            supports_native_batch=True,
            max_batch=self.max_batch,
            max_width=4096,
            max_height=4096,
        )

    def _steps(self, task: str, request: Any) -> None:
        self.started.set()
        total = request.steps or 2
        for i in range(1, total + 1):
            if request.cancel is not None and request.cancel.is_set():
                raise GenerationCancelledError(f"{task} cancelled at step {i}")
            if self.steps_delay_s:
                time.sleep(self.steps_delay_s)
            if request.on_progress is not None:
                request.on_progress(
                    ProgressEvent(task=task, phase="step", step=i, total_steps=total, progress=i / total)
                )
            if wants_preview(getattr(request, "on_preview", None), i, total):
                self.previews_made += 1
                data, width, height = encode_preview(_preview_image(i, total))
                request.on_preview(
                    PreviewEvent(task=task, image=data, width=width, height=height, step=i, total_steps=total)
                )

    def _image(
        self, task: str, request: Any, seed: int | None, w: int | None = None, h: int | None = None
    ) -> GeneratedAsset:
        width = w or request.width or 16
        height = h or request.height or 16
        data = png_bytes(width, height, _color(getattr(request, "prompt", "") or "", seed))
        return GeneratedAsset("image", data, "image/png", {"seed": seed, "timings": {"inference_s": 0.0}})

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        self.calls.append(("generate_image", request))
        self._steps("text_to_image", request)
        return self._image("text_to_image", request, request.seed)

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        self.calls.append(("generate_image_batch", request))
        self._steps("text_to_image", request)
        return [self._image("text_to_image", request, s) for s in (request.seeds or ())]

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        self.calls.append(("edit_image", request))
        self._steps("image_to_image", request)
        from PIL import Image

        src = Image.open(io.BytesIO(request.image))
        return self._image("image_to_image", request, request.seed, *src.size)

    def upscale_image(self, request: ImageUpscaleRequest) -> GeneratedAsset:
        self.calls.append(("upscale_image", request))
        from PIL import Image

        src = Image.open(io.BytesIO(request.image))
        factor = int(request.scale or 2)
        return self._image("image_upscale", request, request.seed, src.size[0] * factor, src.size[1] * factor)

    def _video(self, task: str, request: Any) -> GeneratedAsset:
        from PIL import Image

        self._steps(task, request)
        frames = [
            Image.new("RGB", (request.width or 8, request.height or 8), (i * 20 % 255, 0, 0))
            for i in range(request.num_frames or 3)
        ]
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
        return GeneratedAsset(
            "video", buf.getvalue(), "image/gif", {"seed": request.seed, "num_frames": len(frames)}
        )

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        self.calls.append(("generate_video", request))
        return self._video("text_to_video", request)

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        self.calls.append(("image_to_video", request))
        return self._video("image_to_video", request)

    def generate_angles(self, request: MultiAngleRequest) -> list[GeneratedAsset]:
        self.calls.append(("generate_angles", request))
        return [
            GeneratedAsset(
                "image",
                png_bytes(8, 8, _color(angle, request.seed)),
                "image/png",
                {"angle": angle, "seed": request.seed},
            )
            for angle in request.angles
        ]

    def close(self) -> None:
        self.closed = True


class TextOnlyBackend(VisionBackend):
    """Implements one task only: shows the 'one method' contract."""

    name = "text-only"

    def __init__(self) -> None:
        self.calls = 0

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        self.calls += 1
        return GeneratedAsset("image", png_bytes(8, 8), "image/png", {"seed": request.seed})


class VideoRuleBackend(FakeBackend):
    """Declares a video rule as the Diffusers backend does for a Wan folder (its VAE config)."""

    VIDEO = {"num_frames": {"multiple_of": 4, "offset": 1}, "size_multiple": 16, "fps": 16, "source": "vae"}

    def get_capabilities(self) -> VisionBackendCapabilities:
        caps = super().get_capabilities()
        return VisionBackendCapabilities(
            supported_tasks=caps.supported_tasks,
            supports_native_batch=True,
            max_width=4096,
            max_height=4096,
            raw={"video": self.VIDEO},
        )
