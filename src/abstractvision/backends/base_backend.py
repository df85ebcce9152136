"""The backend contract: one method per task, each taking that task's request dataclass.

A backend for one task is one method: every task method raises
:class:`~abstractvision.errors.CapabilityNotSupportedError` unless a subclass overrides it,
and :meth:`VisionBackend.get_capabilities` derives the supported tasks from the methods a
subclass overrides. Batching (``request.n`` / ``request.seeds``), progress
(``request.on_progress``) and cancellation (``request.cancel``) travel on the request.

Optional native-async twins (``agenerate_image`` ...) are used by
:class:`~abstractvision.AsyncVisionManager` when a backend defines them; otherwise the
synchronous method runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from .._lazy import lazy_module
from ..errors import CapabilityNotSupportedError, GenerationCancelledError
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    MultiAngleRequest,
    ProviderModelInfo,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)

if TYPE_CHECKING:  # pragma: no cover
    import dataclasses
else:
    dataclasses = lazy_module("dataclasses", globals())

__all__ = ["TASK_METHODS", "VisionBackend", "honour_all"]

#: task name -> backend method name
TASK_METHODS: dict[str, str] = {
    "text_to_image": "generate_image",
    "image_to_image": "edit_image",
    "image_upscale": "upscale_image",
    "multi_view_image": "generate_angles",
    "text_to_video": "generate_video",
    "image_to_video": "image_to_video",
}


def honour_all(tasks: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``VisionBackendCapabilities.honoured_parameters`` for a backend that passes every
    generation parameter of ``tasks`` on to its engine, or refuses it with an error."""
    from .._validation import GENERATION_PARAMS

    return {task: GENERATION_PARAMS[task] for task in tasks if task in GENERATION_PARAMS}


_R = TypeVar("_R", ImageGenerationRequest, ImageEditRequest, VideoGenerationRequest, ImageToVideoRequest)


class VisionBackend:
    """Base class of every execution engine.

    Subclasses override the task methods they support. Each returns a
    :class:`~abstractvision.GeneratedAsset` whose ``metadata`` should include at least the
    ``seed`` actually used (when the engine has one) and any timings it measured.
    """

    #: short engine name used in provenance metadata ("openai", "diffusers", "sdcpp"...)
    name: str = "custom"

    # -- tasks ------------------------------------------------------------------------

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        """``text_to_image``: one image for ``request`` (``request.n`` is 1 here)."""
        raise self._unsupported("text_to_image")

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        """``image_to_image``; inpainting when ``request.mask`` is set."""
        raise self._unsupported("image_to_image")

    def upscale_image(self, request: ImageUpscaleRequest) -> GeneratedAsset:
        """``image_upscale``."""
        raise self._unsupported("image_upscale")

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        """``text_to_video``."""
        raise self._unsupported("text_to_video")

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        """``image_to_video``."""
        raise self._unsupported("image_to_video")

    def generate_angles(self, request: MultiAngleRequest) -> list[GeneratedAsset]:
        """``multi_view_image``: one asset per requested angle, in order."""
        raise self._unsupported("multi_view_image")

    # -- batches: override for native batching (one engine call for request.n outputs) --

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        """``request.n`` images with ``request.seeds``; default: one call per seed."""
        return self._loop_batch(self.generate_image, request)

    def edit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return self._loop_batch(self.edit_image, request)

    def generate_video_batch(self, request: VideoGenerationRequest) -> list[GeneratedAsset]:
        return self._loop_batch(self.generate_video, request)

    def image_to_video_batch(self, request: ImageToVideoRequest) -> list[GeneratedAsset]:
        return self._loop_batch(self.image_to_video, request)

    @staticmethod
    def _loop_batch(method: Any, request: _R) -> list[GeneratedAsset]:
        seeds: Sequence[Optional[int]] = request.seeds or ()
        if not seeds:
            # called directly (not through a manager): plan distinct seeds, never n copies of one
            from .._validation import plan_seeds

            seeds = plan_seeds(request.n, seed=request.seed)
        out = []
        for seed in seeds:
            if request.cancel is not None and request.cancel.is_set():
                raise GenerationCancelledError("Generation cancelled.")
            out.append(method(dataclasses.replace(request, seed=seed, n=1, seeds=None)))
        return out

    # -- introspection ----------------------------------------------------------------

    def supported_tasks(self) -> list[str]:
        """Tasks whose method this backend's class overrides."""
        cls = type(self)
        return [
            task
            for task, meth in TASK_METHODS.items()
            if getattr(cls, meth) is not getattr(VisionBackend, meth)
        ]

    def get_capabilities(self) -> Optional[VisionBackendCapabilities]:
        """What this configured backend will run. Default: the overridden task methods.

        Declare ``honoured_parameters`` (see :func:`honour_all`) so the manager can report a
        parameter your engine does not take as ignored instead of applied.
        """
        return VisionBackendCapabilities(supported_tasks=tuple(self.supported_tasks()))

    def describe(self) -> dict[str, Any]:
        """Provenance for results: at least ``{"backend": name}``; backends add ``model``."""
        return {"backend": self.name}

    def list_provider_models(self, *, task: Optional[str] = None) -> Sequence[ProviderModelInfo]:
        """Models the provider/engine advertises. Never changes the configured model."""
        return ()

    # -- lifecycle --------------------------------------------------------------------

    def preload(self) -> None:
        """Load weights / open connections ahead of the first call (no-op by default)."""

    def unload(self) -> None:
        """Release model weights and caches (no-op by default)."""

    def close(self) -> None:
        """Release every resource; the default calls :meth:`unload`."""
        self.unload()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------

    def _unsupported(self, task: str) -> CapabilityNotSupportedError:
        return CapabilityNotSupportedError(
            f"{type(self).__name__} does not support task '{task}'.",
            task=task,
            supported=self.supported_tasks(),
        )
