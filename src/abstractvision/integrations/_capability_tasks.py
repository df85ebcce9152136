"""The task calls of :class:`~abstractvision.integrations.capability.AbstractVisionCapability`.

AbstractCore's ``VisionCapability`` task methods (``t2i`` ... ``i2v_batch``, ``upscale_image``)
plus ``multi_view_image``: each one names its task and manager method and hands its
arguments to the capability's ``_call`` (backend binding, inputs, store, gating).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

ArtifactRef = dict[str, Any]
ImageArg = Union[bytes, ArtifactRef, str]
Output = Union[bytes, ArtifactRef]


class TaskMethods:
    """The VisionCapability task methods, written once over :meth:`_call`."""

    def _call(
        self,
        task: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        artifact_store: Any,
        run_id: Optional[str],
        tags: Optional[dict[str, str]],
        metadata: Optional[dict[str, Any]],
        images: Optional[dict[str, Any]] = None,
    ) -> Any:
        raise NotImplementedError  # AbstractVisionCapability._call

    # -- tasks (AbstractCore VisionCapability) -----------------------------------------

    def t2i(
        self,
        prompt: str,
        *,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Output:
        """Text to image: PNG (or the backend's format) bytes, or an artifact ref."""
        return self._call(
            "text_to_image", "generate_image", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
        )  # fmt: skip

    def t2i_batch(
        self,
        prompt: str,
        *,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        count: int = 1,
        seeds: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> list[Output]:
        """``count`` images (one engine call where the backend batches natively)."""
        kwargs.update(count=count if seeds is None else len(seeds), seeds=seeds)
        return self._call(
            "text_to_image", "generate_image_batch", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
        )  # fmt: skip

    def i2i(
        self,
        prompt: str,
        image: ImageArg,
        *,
        mask: Optional[ImageArg] = None,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Output:
        """Image to image; inpainting when ``mask`` is given (white = repaint)."""
        return self._call(
            "image_to_image", "edit_image", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"image": image, "mask": mask},
        )  # fmt: skip

    def i2i_batch(
        self,
        prompt: str,
        image: ImageArg,
        *,
        mask: Optional[ImageArg] = None,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        count: int = 1,
        seeds: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> list[Output]:
        kwargs.update(count=count if seeds is None else len(seeds), seeds=seeds)
        return self._call(
            "image_to_image", "edit_image_batch", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"image": image, "mask": mask},
        )  # fmt: skip

    def upscale_image(
        self,
        image: ImageArg,
        *,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Output:
        """A larger version of ``image`` (``scale=`` where the engine takes it)."""
        return self._call(
            "image_upscale", "upscale_image", (), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"image": image},
        )  # fmt: skip

    def t2v(
        self,
        prompt: str,
        *,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Output:
        """Text to video (usually MP4 bytes)."""
        return self._call(
            "text_to_video", "generate_video", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
        )  # fmt: skip

    def t2v_batch(
        self,
        prompt: str,
        *,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        count: int = 1,
        seeds: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> list[Output]:
        kwargs.update(count=count if seeds is None else len(seeds), seeds=seeds)
        return self._call(
            "text_to_video", "generate_video_batch", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
        )  # fmt: skip

    def i2v(
        self,
        image: ImageArg,
        *,
        prompt: Optional[str] = None,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Output:
        """Image to video: animate ``image``, optionally guided by ``prompt``."""
        kwargs["prompt"] = prompt
        return self._call(
            "image_to_video", "image_to_video", (), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"image": image},
        )  # fmt: skip

    def i2v_batch(
        self,
        image: ImageArg,
        *,
        prompt: Optional[str] = None,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        count: int = 1,
        seeds: Optional[Sequence[int]] = None,
        **kwargs: Any,
    ) -> list[Output]:
        kwargs.update(prompt=prompt, count=count if seeds is None else len(seeds), seeds=seeds)
        return self._call(
            "image_to_video", "image_to_video_batch", (), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"image": image},
        )  # fmt: skip

    def multi_view_image(
        self,
        prompt: str,
        *,
        reference_image: Optional[ImageArg] = None,
        artifact_store: Any = None,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> list[Output]:
        """One image per angle (``angles=``), each tagged with its angle."""
        return self._call(
            "multi_view_image", "generate_angles", (prompt,), kwargs,
            artifact_store=artifact_store, run_id=run_id, tags=tags, metadata=metadata,
            images={"reference_image": reference_image},
        )  # fmt: skip

    # -- catalog ------------------------------------------------------------------------
