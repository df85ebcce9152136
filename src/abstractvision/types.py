"""Typed values that cross the public API: task requests, results, progress and catalogs.

Requests are frozen dataclasses, one per task, with the same argument names on every
backend (``negative_prompt, width, height, steps, guidance_scale, seed, strength,
num_frames, fps, n``). ``extra`` carries backend-specific keys. Batching (``n``,
``seeds``), progress (``on_progress``) and cancellation (``cancel``) are request fields,
so a backend sees everything it needs in one object; so do live previews (``on_preview``,
see docs/previews.md).

This module imports nothing heavy: Pillow is imported only by the ``to_pil`` methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Collection, Mapping, Sequence
    from dataclasses import dataclass, field

    from PIL.Image import Image as PILImage
else:  # the same dataclasses, ~10x cheaper to define (see _dataclass.py)
    from ._dataclass import dataclass, field

__all__ = [
    "TASKS",
    "CancelToken",
    "GeneratedAsset",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageToVideoRequest",
    "ImageUpscaleRequest",
    "LoRAAdapterSpec",
    "MultiAngleRequest",
    "PreviewCallback",
    "PreviewEvent",
    "ProgressCallback",
    "ProgressEvent",
    "ProviderModelInfo",
    "VideoGenerationRequest",
    "VisionBackendCapabilities",
    "VisionRequest",
]

#: Every task name, as used by the manager, backends and the capability registry.
TASKS: tuple[str, ...] = (
    "text_to_image",
    "image_to_image",
    "image_upscale",
    "multi_view_image",
    "text_to_video",
    "image_to_video",
)


@runtime_checkable
class CancelToken(Protocol):
    """Anything with ``is_set() -> bool`` (for example :class:`threading.Event`)."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report, sent to ``on_progress`` callbacks.

    Attributes:
        task: task name (``"text_to_image"``...).
        phase: ``"started"`` and ``"completed"`` (from the manager); ``"loading"``, ``"step"``,
            ``"encoding"`` (local engines); ``"submitting"``, ``"queued"``, ``"in_progress"``,
            ``"downloading"`` (remote jobs); ``"view"`` (one per angle of ``generate_angles``).
            Backends may add their own phases.
        step: current step (1-based) when the engine reports steps.
        total_steps: number of steps when known.
        progress: fraction in ``[0, 1]`` when known.
        message: short human-readable text.
        elapsed_s: seconds since the manager started the call.
        raw: engine-specific details (JSON-safe).
    """

    task: str
    phase: str
    step: Optional[int] = None
    total_steps: Optional[int] = None
    progress: Optional[float] = None
    message: Optional[str] = None
    elapsed_s: Optional[float] = None
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class PreviewEvent:
    """A live preview of an output while it is being generated, sent to ``on_preview`` callbacks.

    Previews are transient: they are never stored, never part of a result or its metadata.

    Attributes:
        task: task name.
        image: the preview, encoded (JPEG unless ``mime_type`` says otherwise).
        mime_type: for example ``"image/jpeg"``.
        width, height: the preview's size in pixels (often smaller than the output).
        step: the denoising step it shows (1-based) when known.
        total_steps: number of steps when known.
        index: which output of a batch (0-based).
        decoder: how it was made: ``"tiny_autoencoder"`` (TAESD-style), ``"latent_rgb"`` (a
            linear latent-to-RGB approximation), ``"vae"`` (the full VAE, when asked),
            ``"engine"`` (the engine's own preview, stable-diffusion.cpp) or ``"remote"`` (a
            server's partial image).
        frame: for a video, which frame is shown (the middle one).
        elapsed_s: seconds since the manager started the call.
    """

    task: str
    image: bytes = field(repr=False)
    mime_type: str = "image/jpeg"
    width: int = 0
    height: int = 0
    step: Optional[int] = None
    total_steps: Optional[int] = None
    index: int = 0
    decoder: str = ""
    frame: Optional[int] = None
    elapsed_s: Optional[float] = None

    def to_pil(self) -> PILImage:
        """Decode the preview into a ``PIL.Image.Image``."""
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(self.image))
        img.load()
        return img


PreviewCallback = Callable[[PreviewEvent], None]


@dataclass(frozen=True)
class LoRAAdapterSpec:
    """One LoRA adapter to apply for a request.

    ``source`` is a local path (or a hub id when downloads are allowed); ``scale`` its weight.
    """

    source: str
    scale: float = 1.0
    weight_name: Optional[str] = None
    adapter_name: Optional[str] = None


@dataclass(frozen=True)
class ImageGenerationRequest:
    """``text_to_image``. ``n`` images with ``seeds`` (one per image) when batching."""

    prompt: str
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    n: int = 1
    seeds: Optional[tuple[int, ...]] = None
    lora_adapters: tuple[LoRAAdapterSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ImageEditRequest:
    """``image_to_image``; inpainting when ``mask`` is given (white = repaint)."""

    prompt: str
    image: bytes = field(repr=False)
    mask: Optional[bytes] = field(default=None, repr=False)
    reference_images: tuple[bytes, ...] = field(default=(), repr=False)
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    strength: Optional[float] = None
    seed: Optional[int] = None
    n: int = 1
    seeds: Optional[tuple[int, ...]] = None
    lora_adapters: tuple[LoRAAdapterSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ImageUpscaleRequest:
    """``image_upscale``. ``scale`` is the factor (for example 2 or 4) when the engine allows it."""

    image: bytes = field(repr=False)
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None
    scale: Optional[float] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class MultiAngleRequest:
    """``multi_view_image``: one view per entry of ``angles``."""

    prompt: str
    reference_image: Optional[bytes] = field(default=None, repr=False)
    angles: tuple[str, ...] = ("front", "three_quarter", "side", "back")
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    strength: Optional[float] = None
    seed: Optional[int] = None
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class VideoGenerationRequest:
    """``text_to_video``."""

    prompt: str
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    num_frames: Optional[int] = None
    fps: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    n: int = 1
    seeds: Optional[tuple[int, ...]] = None
    lora_adapters: tuple[LoRAAdapterSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ImageToVideoRequest:
    """``image_to_video``: animate ``image``, optionally guided by ``prompt``."""

    image: bytes = field(repr=False)
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    num_frames: Optional[int] = None
    fps: Optional[int] = None
    steps: Optional[int] = None
    guidance_scale: Optional[float] = None
    seed: Optional[int] = None
    n: int = 1
    seeds: Optional[tuple[int, ...]] = None
    lora_adapters: tuple[LoRAAdapterSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    on_progress: Optional[ProgressCallback] = field(default=None, repr=False, compare=False)
    cancel: Optional[CancelToken] = field(default=None, repr=False, compare=False)
    on_preview: Optional[PreviewCallback] = field(default=None, repr=False, compare=False)


VisionRequest = Union[
    ImageGenerationRequest,
    ImageEditRequest,
    ImageUpscaleRequest,
    MultiAngleRequest,
    VideoGenerationRequest,
    ImageToVideoRequest,
]


@dataclass(frozen=True)
class GeneratedAsset:
    """Generated media: bytes plus MIME type and provenance metadata.

    Attributes:
        media_type: ``"image"`` or ``"video"``.
        data: the encoded bytes (PNG, JPEG, WebP, MP4...).
        mime_type: for example ``"image/png"``.
        metadata: provenance (backend, model, task, the parameters applied, ``seed`` and
            ``seed_source``, ``ignored_parameters``, ``size_adjusted`` when the engine returned
            another size, timings). See docs/reproducibility.md.
    """

    media_type: str
    data: bytes = field(repr=False)
    mime_type: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> Optional[int]:
        """The seed that produced this asset, when the backend reported one."""
        value = self.metadata.get("seed")
        return value if isinstance(value, int) else None

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def save(self, path: Union[str, os.PathLike[str]]) -> str:
        """Write the bytes to ``path`` atomically and return the path written.

        When ``path`` is an existing directory, a file named after the content hash and
        MIME type is created inside it. The file gets the mode any tool's output gets,
        ``0o666 & ~umask`` (``0o644`` under the usual umask 022). The bytes are written as
        they are: what the file carries was chosen when it was generated (``embed_metadata``).
        """
        from ._fileio import atomic_write_bytes, extension_for_mime

        target = os.fspath(path)
        if os.path.isdir(target):
            import hashlib

            name = hashlib.sha256(self.data).hexdigest()[:16] + extension_for_mime(self.mime_type)
            target = os.path.join(target, name)
        atomic_write_bytes(target, self.data)
        return target

    def to_pil(self) -> PILImage:
        """Decode an image asset into a ``PIL.Image.Image``."""
        if self.media_type != "image":
            from .errors import InvalidRequestError

            raise InvalidRequestError(f"to_pil() needs an image asset, this one is {self.media_type!r}.")
        import io

        from PIL import Image

        try:
            img = Image.open(io.BytesIO(self.data))
            img.load()
        except Exception as exc:  # Pillow raises several types for undecodable bytes
            from .errors import InvalidRequestError

            raise InvalidRequestError(
                f"to_pil(): the asset's bytes are not a decodable image ({exc})."
            ) from exc
        return img


@dataclass(frozen=True)
class ProviderModelInfo:
    """A model entry from a provider catalog (``GET /models`` or a local inventory).

    Catalog listing is explicit: it never changes the model a backend is configured with.
    """

    id: str
    object: Optional[str] = None
    created: Optional[int] = None
    owned_by: Optional[str] = None
    capabilities: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        from dataclasses import asdict

        out = asdict(self)
        out["capabilities"] = list(self.capabilities)
        return out


@dataclass(frozen=True)
class VisionBackendCapabilities:
    """What a configured backend will run (complements the model registry).

    ``None`` means "not declared"; the manager then lets the backend decide.
    ``raw["hints"]`` may map a task name to advice shown when that task is refused.

    ``honoured_parameters`` declares, per task, the first-class request parameters the
    backend passes on to its engine (or refuses with an error). When a caller sets one that
    is not listed for the task, the manager reports it in
    ``metadata["ignored_parameters"]`` (with the reason from ``ignored_reasons`` when one is
    given) and never claims it as applied; an ignored ``seed`` makes ``seed_source``
    ``"unknown"``. A task missing from the mapping (or ``None``, the default) declares
    nothing, and only what the backend reports per call is recorded. See
    docs/reproducibility.md.
    """

    supported_tasks: Optional[Sequence[str]] = None
    supports_mask: Optional[bool] = None
    supports_native_batch: Optional[bool] = None
    supports_progress: Optional[bool] = None
    supports_cancel: Optional[bool] = None
    max_width: Optional[int] = None
    max_height: Optional[int] = None
    max_frames: Optional[int] = None
    max_fps: Optional[int] = None
    max_batch: Optional[int] = None
    honoured_parameters: Optional[Mapping[str, Collection[str]]] = None
    ignored_reasons: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
