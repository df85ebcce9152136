"""VisionManager: one method per task, on any backend.

The manager is thin: it validates and gates the call (capability registry first, then the
backend's declared capabilities), normalises image inputs (bytes, path, PIL image, data
URL or artifact ref), hands a typed request to the backend, adds provenance metadata and,
when a store is configured, returns an artifact ref instead of bytes.

Example::

    vm = VisionManager(backend=backend, store=LocalAssetStore())
    ref = vm.generate_image("a lighthouse at dusk", width=768, height=768, steps=20)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from ._core import CallPlan, ManagerCore, Output
from ._lazy import lazy_module
from .errors import AbstractVisionError, BackendError, GenerationCancelledError
from .types import CancelToken, GeneratedAsset, PreviewCallback, ProgressCallback, ProviderModelInfo

if TYPE_CHECKING:  # pragma: no cover
    from . import _angles, _validation
else:  # imported on first use
    _angles = lazy_module("abstractvision._angles", globals())
    _validation = lazy_module("abstractvision._validation", globals())


def check_task(task: Any) -> Optional[str]:
    return _validation.check_task(task)


__all__ = ["VisionManager"]

ImageInput = Any  # bytes | str | os.PathLike | PIL.Image.Image | artifact ref dict | data URL


def call_backend(core: ManagerCore, name: str, request: Any) -> Any:
    """Call one backend method, mapping unexpected exceptions to :class:`BackendError`."""
    backend = core.require_backend()
    method = core.backend_method(backend, name)
    if request.cancel is not None and request.cancel.is_set():
        raise GenerationCancelledError("Generation cancelled.")
    try:
        return method(request)
    except AbstractVisionError:
        raise
    except Exception as exc:
        raise BackendError(f"{type(backend).__name__}.{name} failed: {type(exc).__name__}: {exc}") from exc


def run_backend(core: ManagerCore, plan: CallPlan) -> list[GeneratedAsset]:
    """Call the backend for ``plan`` (synchronously) and validate what it returned."""
    if plan.strategy == "orchestrated":
        steps = _angles.orchestrate(plan.request, plan.views)
        try:
            name, request = next(steps)
            while True:
                name, request = steps.send(core.check_asset(call_backend(core, name, request), name))
        except StopIteration as done:
            return list(done.value)
    assets: list[GeneratedAsset] = []
    for request in core.batch_requests(plan):
        result = call_backend(core, plan.method, request)
        assets.extend(core.check_result(plan, result, getattr(request, "n", None)))
    return assets


class VisionManager(ManagerCore):
    """Generate and edit images and videos through a configured backend.

    Args:
        backend: a :class:`~abstractvision.backends.VisionBackend` (required to run anything).
        store: a :class:`~abstractvision.artifacts.MediaStore`; when set, task methods return
            artifact ref dicts instead of :class:`GeneratedAsset`.
        model_id: enables registry gating: tasks and parameters the model does not support
            fail before the backend runs.
        registry: the :class:`VisionModelCapabilitiesRegistry` to gate with (created on
            demand when ``model_id`` is set).
        model_label: the model name recorded in provenance instead of the backend's own;
            provenance then carries file names, not this machine's paths (a server records
            its public model name this way).
        embed_metadata: what generated files carry: ``"none"`` (default: no text at all),
            ``"parameters"`` (the A1111-style ``parameters`` text) or ``"full"`` (that plus the
            JSON provenance). The returned metadata is complete in every case.
        on_size_mismatch: ``"allow"`` (default: another size than requested is accepted and
            recorded in ``metadata["size_adjusted"]``) or ``"error"``
            (:class:`~abstractvision.errors.SizeMismatchError`, nothing is stored).

    Every task method also takes ``embed_metadata`` and ``on_size_mismatch`` (overriding the
    manager's for one call); image tasks take ``output_format`` (``"png"``, ``"jpeg"``,
    ``"webp"``; default: what the backend returned) and ``output_compression`` (JPEG/WebP
    quality 0-100, default 100). See docs/reproducibility.md. A surface built on the manager
    (the server) passes ``ignored_parameters={name: why}`` for what it accepted without
    applying (OpenAI's ``style``...): it lands in ``metadata["ignored_parameters"]``.

    Every task method accepts ``on_progress`` (a callable receiving
    :class:`~abstractvision.ProgressEvent`) and ``cancel`` (an object with ``is_set()``,
    such as :class:`threading.Event`); a cancelled call raises
    :class:`~abstractvision.errors.GenerationCancelledError`. ``on_preview`` (a callable
    receiving :class:`~abstractvision.PreviewEvent`) gets live previews while the engine works,
    every step or every ``preview_every`` steps, or ``partial_images`` of them spread over the
    steps; without it nothing is decoded. Previews are never stored or returned. See
    docs/previews.md.
    """

    def __repr__(self) -> str:
        return f"VisionManager(backend={self.backend!r}, store={self.store!r}, model_id={self.model_id!r})"

    # -- plumbing ---------------------------------------------------------------------

    def _output(self, plan: CallPlan, asset: GeneratedAsset) -> Output:
        return self.store_output(plan, asset)

    def _execute(self, plan: CallPlan) -> list[Output]:
        plan.relay.emit("started")
        assets = run_backend(self, plan)
        total = len(assets)
        outputs = [
            self._output(plan, self.finalize(plan, a, index=i, total=total)) for i, a in enumerate(assets)
        ]
        plan.relay.emit("completed", progress=1.0)
        return outputs

    def _one(self, task: str, params: dict[str, Any]) -> Output:
        return self._execute(self.plan(task, params))[0]

    def _many(
        self, task: str, params: dict[str, Any], count: Optional[int], n: Optional[int], seeds: Any
    ) -> list[Output]:
        count_name = "n" if count is None and n is not None else "count"
        plan = self.plan(
            task,
            params,
            batch=True,
            count=count if count is not None else n,
            seeds=seeds,
            count_name=count_name,
        )
        return self._execute(plan)

    # -- tasks ------------------------------------------------------------------------

    def generate_image(
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
        """``text_to_image``: one image (a :class:`GeneratedAsset`, or a ref with a store)."""
        return self._one("text_to_image", {**locals_of(locals()), **kwargs})

    def generate_image_batch(
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
        """``count`` images in one engine call where the backend batches natively.

        Seeds: ``seeds`` as given, else ``seed, seed+1, ...``, else random; each output's
        metadata has its own ``seed``.
        """
        return self._many("text_to_image", {**locals_of(locals()), **kwargs}, count, n, seeds)

    def edit_image(
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
        """``image_to_image``; inpainting when ``mask`` is given (white = repaint)."""
        return self._one("image_to_image", {**locals_of(locals()), **kwargs})

    def edit_image_batch(
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
        """``count`` edits of the same input with planned seeds."""
        return self._many("image_to_image", {**locals_of(locals()), **kwargs}, count, n, seeds)

    def upscale_image(
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
        """``image_upscale``: a larger version of ``image``."""
        return self._one("image_upscale", {**locals_of(locals()), **kwargs})

    def generate_video(
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
        """``text_to_video`` (backend-dependent); the asset is usually an MP4."""
        return self._one("text_to_video", {**locals_of(locals()), **kwargs})

    def generate_video_batch(
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
        return self._many("text_to_video", {**locals_of(locals()), **kwargs}, count, n, seeds)

    def image_to_video(
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
        """``image_to_video`` (backend-dependent): animate ``image``."""
        return self._one("image_to_video", {**locals_of(locals()), **kwargs})

    def image_to_video_batch(
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
        return self._many("image_to_video", {**locals_of(locals()), **kwargs}, count, n, seeds)

    def generate_angles(
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
        """``multi_view_image``: one output per angle, tagged with ``angle``, ``azimuth``, ``elevation``.

        ``strategy`` is ``"native"`` (the backend's multi-view pipeline), ``"orchestrated"``
        (reference view + image-to-image per angle with one shared seed) or ``None`` to let the
        registry and the backend decide. ``contact_sheet=True`` also builds a grid image,
        available as ``result.contact_sheet``. See docs/multi-view.md.
        """
        params = {**locals_of(locals()), **kwargs}
        params.pop("contact_sheet")
        plan = self.plan("multi_view_image", params)
        plan.relay.emit("started")
        views, sheet = self.multi_view_outputs(plan, run_backend(self, plan), contact_sheet)
        result = _angles.AngleSet(self._output(plan, v) for v in views)
        result.strategy = plan.strategy or ""
        if sheet is not None:
            result.contact_sheet = self._output(plan, sheet)
        plan.relay.emit("completed", progress=1.0)
        return result

    # -- catalog and lifecycle --------------------------------------------------------

    def list_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        """Models the backend's provider advertises (never changes the configured model)."""
        check_task(task)
        return list(self.require_backend().list_provider_models(task=task))

    def preload(self) -> None:
        """Load the backend's model now instead of on the first call."""
        self.require_backend().preload()

    def unload(self) -> None:
        """Release the backend's model weights."""
        self.require_backend().unload()

    def close(self) -> None:
        if self.backend is not None and callable(getattr(self.backend, "close", None)):
            self.backend.close()

    def __enter__(self) -> VisionManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SKIP = {"self", "kwargs", "count", "n", "seeds", "__class__"}


def locals_of(scope: dict[str, Any]) -> dict[str, Any]:
    """The call's parameters from ``locals()`` (minus self/kwargs and batch controls)."""
    return {k: v for k, v in scope.items() if k not in _SKIP}
