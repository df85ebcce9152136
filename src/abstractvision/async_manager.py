"""AsyncVisionManager: the async twin of :class:`~abstractvision.VisionManager`.

Same methods, same validation (the shared :class:`~abstractvision._core.ManagerCore`).
Backends with native async methods (``agenerate_image`` ...) are awaited directly (the
HTTP backend); local engines run in a worker thread. Cancelling the awaiting task sets the
request's cancel token, so a local engine stops at its next step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from ._core import CallPlan, ManagerCore, Output
from ._lazy import lazy_module
from .errors import AbstractVisionError, BackendError, GenerationCancelledError
from .types import CancelToken, GeneratedAsset, PreviewCallback, ProgressCallback, ProviderModelInfo
from .vision_manager import ImageInput, check_task, locals_of

if TYPE_CHECKING:  # pragma: no cover
    from . import _angles
else:  # imported on first use
    _angles = lazy_module("abstractvision._angles", globals())

__all__ = ["AsyncVisionManager"]


class _AnyCancel:
    """Set when either the caller's token or the manager's own event is set."""

    def __init__(self, user: Optional[CancelToken]) -> None:
        self.user = user
        self.event = threading.Event()

    def is_set(self) -> bool:
        return self.event.is_set() or (self.user is not None and self.user.is_set())

    def set(self) -> None:
        self.event.set()


class AsyncVisionManager(ManagerCore):
    """Async version of :class:`~abstractvision.VisionManager` (same arguments, same results)."""

    def __repr__(self) -> str:
        return (
            f"AsyncVisionManager(backend={self.backend!r}, store={self.store!r}, model_id={self.model_id!r})"
        )

    async def _plan(self, task: str, params: dict[str, Any], **kw: Any) -> CallPlan:
        needs_io = any(
            not isinstance(params.get(k), (bytes, bytearray, type(None)))
            for k in ("image", "mask", "reference_image", "reference_images")
        )
        if needs_io:  # reading paths / store refs must not block the event loop
            return await asyncio.to_thread(self.plan, task, params, **kw)
        return self.plan(task, params, **kw)

    async def _call(self, name: str, request: Any, token: _AnyCancel) -> Any:
        backend = self.require_backend()
        if request.cancel is not None and request.cancel.is_set():
            raise GenerationCancelledError("Generation cancelled.")
        native = getattr(backend, "a" + name, None)
        try:
            if native is not None and inspect.iscoroutinefunction(native):
                return await native(request)
            method = self.backend_method(backend, name)
            return await asyncio.to_thread(method, request)
        except asyncio.CancelledError:
            token.set()  # a local engine stops at its next step
            raise
        except AbstractVisionError:
            raise
        except Exception as exc:
            raise BackendError(
                f"{type(backend).__name__}.{name} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _run(self, plan: CallPlan) -> list[GeneratedAsset]:
        token = _AnyCancel(plan.request.cancel)
        plan.request = dataclasses.replace(plan.request, cancel=token)
        plan.relay.emit("started")
        if plan.strategy == "orchestrated":
            steps = _angles.orchestrate(plan.request, plan.views)
            try:
                name, request = next(steps)
                while True:
                    result = self.check_asset(await self._call(name, request, token), name)
                    name, request = steps.send(result)
            except StopIteration as done:
                return list(done.value)
        assets: list[GeneratedAsset] = []
        for request in self.batch_requests(plan):
            result = await self._call(plan.method, request, token)
            assets.extend(self.check_result(plan, result, getattr(request, "n", None)))
        return assets

    async def _store_all(self, plan: CallPlan, finals: list[GeneratedAsset]) -> list[Output]:
        if self.store is None:
            return list(finals)
        return await asyncio.to_thread(lambda: [self.store_output(plan, a) for a in finals])

    async def _execute(self, plan: CallPlan) -> list[Output]:
        assets = await self._run(plan)
        finals = [self.finalize(plan, a, index=i, total=len(assets)) for i, a in enumerate(assets)]
        outputs = await self._store_all(plan, finals)
        plan.relay.emit("completed", progress=1.0)
        return outputs

    async def _one(self, task: str, params: dict[str, Any]) -> Output:
        return (await self._execute(await self._plan(task, params)))[0]

    async def _many(
        self, task: str, params: dict[str, Any], count: Optional[int], n: Optional[int], seeds: Any
    ) -> list[Output]:
        count_name = "n" if count is None and n is not None else "count"
        plan = await self._plan(
            task,
            params,
            batch=True,
            count=count if count is not None else n,
            seeds=seeds,
            count_name=count_name,
        )
        return await self._execute(plan)

    # -- tasks (signatures mirror VisionManager; a test checks parity) ----------------

    async def generate_image(
        self,
        prompt: str,
        *,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> Output:
        return await self._one("text_to_image", {**locals_of(locals()), **kwargs})

    async def generate_image_batch(
        self,
        prompt: str,
        *,
        count: Optional[int] = None,
        n: Optional[int] = None,
        seeds: Optional[Sequence[int]] = None,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> list[Output]:
        return await self._many("text_to_image", {**locals_of(locals()), **kwargs}, count, n, seeds)

    async def edit_image(
        self,
        prompt: str,
        image: ImageInput,
        *,
        mask: Optional[ImageInput] = None,
        reference_images: Optional[Sequence[ImageInput]] = None,
        strength: Optional[float] = None,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> Output:
        return await self._one("image_to_image", {**locals_of(locals()), **kwargs})

    async def edit_image_batch(
        self,
        prompt: str,
        image: ImageInput,
        *,
        count: Optional[int] = None,
        n: Optional[int] = None,
        seeds: Optional[Sequence[int]] = None,
        mask: Optional[ImageInput] = None,
        reference_images: Optional[Sequence[ImageInput]] = None,
        strength: Optional[float] = None,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> list[Output]:
        return await self._many("image_to_image", {**locals_of(locals()), **kwargs}, count, n, seeds)

    async def upscale_image(
        self,
        image: ImageInput,
        *,
        prompt: Optional[str] = None,
        negative_prompt: Optional[str] = None,
        scale: Optional[float] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> Output:
        return await self._one("image_upscale", {**locals_of(locals()), **kwargs})

    async def generate_video(
        self,
        prompt: str,
        *,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        num_frames: Optional[int] = None,
        fps: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> Output:
        return await self._one("text_to_video", {**locals_of(locals()), **kwargs})

    async def generate_video_batch(
        self,
        prompt: str,
        *,
        count: Optional[int] = None,
        n: Optional[int] = None,
        seeds: Optional[Sequence[int]] = None,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        num_frames: Optional[int] = None,
        fps: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> list[Output]:
        return await self._many("text_to_video", {**locals_of(locals()), **kwargs}, count, n, seeds)

    async def image_to_video(
        self,
        image: ImageInput,
        prompt: Optional[str] = None,
        *,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        num_frames: Optional[int] = None,
        fps: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> Output:
        return await self._one("image_to_video", {**locals_of(locals()), **kwargs})

    async def image_to_video_batch(
        self,
        image: ImageInput,
        prompt: Optional[str] = None,
        *,
        count: Optional[int] = None,
        n: Optional[int] = None,
        seeds: Optional[Sequence[int]] = None,
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        num_frames: Optional[int] = None,
        fps: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        seed: Optional[int] = None,
        lora_adapters: Any = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> list[Output]:
        return await self._many("image_to_video", {**locals_of(locals()), **kwargs}, count, n, seeds)

    async def generate_angles(
        self,
        prompt: str,
        *,
        reference_image: Optional[ImageInput] = None,
        angles: Sequence[Union[str, float, dict[str, float]]] = ("front", "three_quarter", "side", "back"),
        negative_prompt: Optional[str] = None,
        width: Optional[int] = None,
        height: Optional[int] = None,
        steps: Optional[int] = None,
        guidance_scale: Optional[float] = None,
        strength: Optional[float] = None,
        seed: Optional[int] = None,
        strategy: Optional[str] = None,
        contact_sheet: bool = False,
        output_format: Optional[str] = None,
        output_compression: Optional[int] = None,
        embed_metadata: Optional[str] = None,
        on_size_mismatch: Optional[str] = None,
        extra: Optional[dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        on_preview: Optional[PreviewCallback] = None,
        preview_every: Optional[int] = None,
        partial_images: Optional[int] = None,
        cancel: Optional[CancelToken] = None,
        **kwargs: Any,
    ) -> list[Output]:
        params = {**locals_of(locals()), **kwargs}
        params.pop("contact_sheet")
        plan = await self._plan("multi_view_image", params)
        views, sheet = self.multi_view_outputs(plan, await self._run(plan), contact_sheet)
        result = _angles.AngleSet(await self._store_all(plan, views))
        result.strategy = plan.strategy or ""
        if sheet is not None:
            result.contact_sheet = (await self._store_all(plan, [sheet]))[0]
        plan.relay.emit("completed", progress=1.0)
        return result

    # -- catalog and lifecycle --------------------------------------------------------

    async def list_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        check_task(task)
        backend = self.require_backend()
        native = getattr(backend, "alist_provider_models", None)
        if native is not None and inspect.iscoroutinefunction(native):
            return list(await native(task=task))
        return list(await asyncio.to_thread(backend.list_provider_models, task=task))

    async def _lifecycle(self, name: str) -> None:
        backend = self.require_backend()
        native = getattr(backend, "a" + name, None)
        if native is not None and inspect.iscoroutinefunction(native):
            await native()
        elif callable(getattr(backend, name, None)):
            await asyncio.to_thread(getattr(backend, name))

    async def preload(self) -> None:
        await self._lifecycle("preload")

    async def unload(self) -> None:
        await self._lifecycle("unload")

    async def close(self) -> None:
        if self.backend is not None:
            await self._lifecycle("close")

    async def __aenter__(self) -> AsyncVisionManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
