"""Planning a task call: validation, gating and the request (the first half of :mod:`._core`).

:class:`Planner` turns a task call into a :class:`CallPlan`: registry support, parameter names
and values, seeds, registry constraints, the backend's declared capabilities, the multi-view
strategy, image inputs, then the request dataclass with its progress and preview relays.
:class:`~abstractvision._core.ManagerCore` adds running results through the output policy.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional, Union

from ._lazy import lazy_module
from ._relays import PreviewRelay, ProgressRelay, check_preview_options
from .backends.base_backend import TASK_METHODS
from .errors import (
    BackendNotConfiguredError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
)
from .types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    MultiAngleRequest,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)

if TYPE_CHECKING:  # pragma: no cover
    import dataclasses
    import hashlib
    from dataclasses import dataclass, field

    from . import _angles, _frames, _media, _provenance, _validation
    from .model_capabilities import VisionModelCapabilitiesRegistry
else:
    # imported on first use: `from abstractvision import VisionManager` stays cheap
    from ._dataclass import dataclass, field

    dataclasses = lazy_module("dataclasses", globals())
    hashlib = lazy_module("hashlib", globals())
    _angles = lazy_module("abstractvision._angles", globals())
    _frames = lazy_module("abstractvision._frames", globals())
    _media = lazy_module("abstractvision._media", globals())
    _provenance = lazy_module("abstractvision._provenance", globals())
    _validation = lazy_module("abstractvision._validation", globals())

Output = Union[GeneratedAsset, dict[str, Any]]

_REQUEST_TYPES: dict[str, type] = {
    "text_to_image": ImageGenerationRequest,
    "image_to_image": ImageEditRequest,
    "image_upscale": ImageUpscaleRequest,
    "multi_view_image": MultiAngleRequest,
    "text_to_video": VideoGenerationRequest,
    "image_to_video": ImageToVideoRequest,
}
_IMAGE_INPUTS = ("image", "mask", "reference_image")
_BATCH_METHODS = {
    "text_to_image": "generate_image_batch",
    "image_to_image": "edit_image_batch",
    "text_to_video": "generate_video_batch",
    "image_to_video": "image_to_video_batch",
}
_PROMPT_REQUIRED = {"text_to_image", "image_to_image", "text_to_video", "multi_view_image"}
_MODALITY = {"text_to_video": "video", "image_to_video": "video"}


@dataclass
class CallPlan:
    """A validated task call, ready to hand to the backend."""

    task: str
    request: Any
    method: str
    batch: bool
    parameters: dict[str, Any]
    relay: ProgressRelay
    started: float
    seeds: tuple[int, ...] = ()
    chunk: Optional[int] = None
    tags: dict[str, str] = field(default_factory=dict)
    strategy: Optional[str] = None
    views: tuple[_angles.AngleView, ...] = ()
    output: _validation.OutputOptions = field(default_factory=lambda: _validation.OutputOptions())
    seed_origin: Optional[str] = None
    declared: _provenance.Declared = field(default_factory=lambda: _provenance.Declared(None, {}, "custom"))

    def check_cancelled(self) -> None:
        cancel = self.request.cancel
        if cancel is not None and cancel.is_set():
            raise GenerationCancelledError(f"{self.task} cancelled before it started.")


@dataclass(frozen=True)
class _CallOptions:
    """The options :meth:`ManagerCore.plan` takes out of a call before building the request."""

    output: _validation.OutputOptions
    strategy: Optional[str]
    preview: tuple[Any, Any, Any]  # (callback, every, partial_images), checked
    views: tuple[_angles.AngleView, ...]


def _describe_input(data: bytes, info: _media.ImageInfo) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "width": info.width,
        "height": info.height,
        "mime_type": info.mime_type,
    }


class Planner:
    """The planning half of :class:`~abstractvision._core.ManagerCore` (no engine I/O)."""

    backend: Any
    store: Any
    model_id: Optional[str]
    registry: Optional[VisionModelCapabilitiesRegistry]
    embed_metadata: str
    on_size_mismatch: str

    # -- gating -----------------------------------------------------------------------

    def require_backend(self) -> Any:
        if self.backend is None:
            raise BackendNotConfiguredError(
                "No vision backend configured. Pass one to VisionManager(backend=...), for example "
                "OpenAICompatibleVisionBackend or HuggingFaceDiffusersVisionBackend from abstractvision.backends."
            )
        return self.backend

    def _gate_registry(self, task: str, params: dict[str, Any], count: int) -> None:
        if self.model_id is None or self.registry is None:
            return
        if task == "multi_view_image" and not self.registry.supports(self.model_id, task):
            task = (
                "text_to_image"
                if self.registry.supports(self.model_id, "text_to_image")
                else "image_to_image"
            )
            params = {k: v for k, v in params.items() if k not in ("angles", "reference_image", "strength")}
        self.registry.require_support(self.model_id, task)
        checked = {
            k: v for k, v in params.items() if not isinstance(v, (bytes, bytearray)) and k not in ("extra",)
        }
        if count > 1:
            checked["n"] = count
        self.registry.validate_params(self.model_id, task, checked)

    def backend_capabilities(self, backend: Any) -> Optional[VisionBackendCapabilities]:
        getter = getattr(backend, "get_capabilities", None)
        return getter() if callable(getter) else None

    def _gate_backend(
        self, backend: Any, task: str, params: dict[str, Any]
    ) -> Optional[VisionBackendCapabilities]:
        caps = self.backend_capabilities(backend)
        if caps is None:
            return None
        name = type(backend).__name__
        if (
            task != "multi_view_image"
            and caps.supported_tasks is not None
            and task not in caps.supported_tasks
        ):
            hints = caps.raw.get("hints") if isinstance(caps.raw, dict) else None
            hint = f" {hints[task]}" if isinstance(hints, dict) and isinstance(hints.get(task), str) else ""
            raise CapabilityNotSupportedError(
                f"The configured backend ({name}) does not support task '{task}'.{hint}",
                task=task,
                supported=list(caps.supported_tasks),
            )
        if params.get("mask") is not None and caps.supports_mask is False:
            raise CapabilityNotSupportedError(
                f"The configured backend ({name}) does not support masked edits (inpainting); drop 'mask'.",
                task=task,
            )
        for key, limit in (
            ("width", caps.max_width),
            ("height", caps.max_height),
            ("num_frames", caps.max_frames),
            ("fps", caps.max_fps),
        ):
            value = params.get(key)
            if limit is not None and value is not None and value > limit:
                raise InvalidRequestError(
                    f"'{key}'={value} exceeds the backend's maximum of {limit}.", param=key
                )
        _frames.check_video_params(caps, task, params)  # 4k+1 frames...: refused now, not after loading
        return caps

    # -- planning ---------------------------------------------------------------------

    def plan(
        self,
        task: str,
        params: dict[str, Any],
        *,
        batch: bool = False,
        count: Any = None,
        seeds: Any = None,
        tags: Optional[dict[str, str]] = None,
        count_name: str = "count",
    ) -> CallPlan:
        """Validate and gate a call; coerce image inputs; build the request dataclass.

        ``params`` holds the first-class parameters as given by the caller (positional
        prompt/image included). The steps, in order: backend configured and registry support
        for the task (:meth:`_check_task`), parameter names, output and preview options
        (:meth:`_take_options`), prompt and common values (:meth:`_check_values`), seeds
        (:meth:`_plan_seeds`), registry constraints and backend capabilities, the multi-view
        strategy (:meth:`_plan_multi_view`), image inputs (:meth:`_coerce_images`), then the
        request and its plan (:meth:`_build_plan`).
        """
        started = time.perf_counter()
        backend = self.require_backend()
        registry_strategy = self._check_task(task)
        _validation.check_param_names(task, params)
        options = self._take_options(task, params)
        params = self._check_values(task, params)
        planned, n, seed_origin = self._plan_seeds(params, batch, count, seeds, count_name)
        self._gate_registry(task, {k: v for k, v in params.items() if k not in ("on_progress", "cancel")}, n)
        caps = self._gate_backend(backend, task, params)
        strategy = None
        if task == "multi_view_image":
            strategy, generated_seed = self._plan_multi_view(params, options, caps, registry_strategy)
            if generated_seed:
                seed_origin = "generated"
        described = self._coerce_images(task, params)
        plan = self._build_plan(
            task,
            params,
            options,
            described=described,
            batch=batch,
            planned=planned,
            started=started,
            caps=caps,
            tags=tags,
            strategy=strategy,
            seed_origin=seed_origin,
            backend=backend,
        )
        plan.check_cancelled()
        return plan

    # the steps of plan(), in the order it runs them

    def _check_task(self, task: str) -> Optional[str]:
        """Registry support for ``task``; for multi-view, the registry's strategy (or None)."""
        if self.model_id is None or self.registry is None:
            return None
        if task == "multi_view_image":
            return self.registry.multi_view_strategy(self.model_id)
        self.registry.require_support(self.model_id, task)
        return None

    def _take_options(self, task: str, params: dict[str, Any]) -> _CallOptions:
        """Pop the options that are not request fields (output, strategy, previews, angles)."""
        output = _validation.output_options(
            params, embed_metadata=self.embed_metadata, on_size_mismatch=self.on_size_mismatch
        )
        requested_strategy = params.pop("strategy", None)
        preview = check_preview_options(
            params.pop("on_preview", None),
            params.pop("preview_every", None),
            params.pop("partial_images", None),
        )
        views: tuple[_angles.AngleView, ...] = ()
        if task == "multi_view_image":
            views = _angles.parse_angles(params.get("angles", _angles.DEFAULT_ANGLES))
            params["angles"] = tuple(v.label for v in views)
        return _CallOptions(output, requested_strategy, preview, views)

    @staticmethod
    def _check_values(task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Drop unset values; check the prompt (required or optional by task) and common values."""
        params = {k: v for k, v in params.items() if v is not None or k in ("prompt",)}
        if task in _PROMPT_REQUIRED:
            params["prompt"] = _validation.check_prompt(params.get("prompt"))
        else:
            params["prompt"] = _validation.check_prompt(params.get("prompt"), required=False)
            if params["prompt"] is None:
                del params["prompt"]
        _validation.check_common(params)
        return params

    @staticmethod
    def _plan_seeds(
        params: dict[str, Any], batch: bool, count: Any, seeds: Any, count_name: str
    ) -> tuple[tuple[int, ...], int, Optional[str]]:
        """The planned seeds of a batch, its size, and where the seeds come from."""
        if not batch:
            return (), 1, "requested" if params.get("seed") is not None else None
        planned = _validation.plan_seeds(count, seed=params.get("seed"), seeds=seeds, count_name=count_name)
        origin = "requested" if seeds is not None or params.get("seed") is not None else "generated"
        return planned, len(planned), origin

    def _plan_multi_view(
        self,
        params: dict[str, Any],
        options: _CallOptions,
        caps: Optional[VisionBackendCapabilities],
        registry_strategy: Optional[str],
    ) -> tuple[str, bool]:
        """Choose native or orchestrated views; returns the strategy and whether a seed was made."""
        task = "multi_view_image"
        strategy = _angles.choose_strategy(
            options.strategy,
            backend_tasks=caps.supported_tasks if caps is not None else None,
            registry_strategy=registry_strategy,
            has_reference=params.get("reference_image") is not None,
        )
        reg = self.registry
        if strategy == "native" and self.model_id and reg is not None and reg.supports(self.model_id, task):
            native = _angles.native_views(reg.task_spec(self.model_id, task))
            _angles.check_native_angles(options.views, native, reg.resolve(self.model_id))
        if strategy == "orchestrated" and params.get("seed") is None:
            # one shared, recorded seed keeps the views consistent and reproducible
            params["seed"] = _validation.plan_seeds(1)[0]
            return strategy, True
        return strategy, False

    def _coerce_images(self, task: str, params: dict[str, Any]) -> dict[str, Any]:
        """Required image present; image inputs read (refs, paths, bytes) and checked in place.

        Returns their descriptions (hash, size, type) for the provenance metadata.
        """
        needs_image = "reference_image" if task == "multi_view_image" else "image"
        if task in ("image_to_image", "image_upscale", "image_to_video") and needs_image not in params:
            raise InvalidRequestError(f"'{needs_image}' is required for {task}.", param=needs_image)
        described: dict[str, Any] = {}
        infos: dict[str, _media.ImageInfo] = {}
        for name in _IMAGE_INPUTS:
            if name in params:
                data = _media.coerce_image_input(params[name], name=name, store=self.store)
                infos[name] = _media.inspect_image(data, name=name)
                params[name] = data
                described[name] = _describe_input(data, infos[name])
        if "image" in infos and "mask" in infos:
            img, msk = infos["image"], infos["mask"]
            if (img.width, img.height) != (msk.width, msk.height):
                raise InvalidRequestError(
                    f"mask is {msk.width}x{msk.height} but image is {img.width}x{img.height}; "
                    "the mask must have the same size as the image.",
                    param="mask",
                )
        if "reference_images" in params:
            refs = params["reference_images"]
            if isinstance(refs, (bytes, bytearray, str, dict)) or not hasattr(refs, "__iter__"):
                refs = [refs]
            coerced = []
            for i, ref in enumerate(refs):
                data = _media.coerce_image_input(ref, name=f"reference_images[{i}]", store=self.store)
                _media.inspect_image(data, name=f"reference_images[{i}]")
                coerced.append(data)
            params["reference_images"] = tuple(coerced)
            described["reference_images"] = [
                {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for d in coerced
            ]
        return described

    def _build_plan(
        self,
        task: str,
        params: dict[str, Any],
        options: _CallOptions,
        *,
        described: dict[str, Any],
        batch: bool,
        planned: tuple[int, ...],
        started: float,
        caps: Optional[VisionBackendCapabilities],
        tags: Optional[dict[str, str]],
        strategy: Optional[str],
        seed_origin: Optional[str],
        backend: Any,
    ) -> CallPlan:
        """The request dataclass (with progress/preview relays) and the recorded parameters."""
        relay = ProgressRelay(task, params.get("on_progress"), started)
        req_fields = dict(params)
        req_fields["on_progress"] = relay
        preview_callback, preview_every, partial_images = options.preview
        if preview_callback is not None:
            req_fields["on_preview"] = PreviewRelay(
                task, preview_callback, started, every=preview_every, count=partial_images
            )
        if batch:
            req_fields["n"] = len(planned)
            req_fields["seeds"] = planned
            req_fields.pop("seed", None)
        request = _REQUEST_TYPES[task](**req_fields)
        parameters = {
            k: v
            for k, v in params.items()
            if k not in ("on_progress", "cancel", *_IMAGE_INPUTS, "reference_images") and v not in ((), {})
        }
        if "lora_adapters" in parameters:
            parameters["lora_adapters"] = [dataclasses.asdict(a) for a in parameters["lora_adapters"]]
        parameters.update({f"{k}_input": v for k, v in described.items()})
        return CallPlan(
            task=task,
            request=request,
            method=_BATCH_METHODS[task] if batch else TASK_METHODS[task],
            batch=batch,
            parameters=parameters,
            relay=relay,
            started=started,
            seeds=planned,
            chunk=caps.max_batch if caps is not None and caps.max_batch else None,
            tags={
                "kind": "generated_media",
                "modality": _MODALITY.get(task, "image"),
                "task": task,
                **(tags or {}),
            },
            strategy=strategy,
            views=options.views,
            output=options.output,
            seed_origin=seed_origin,
            declared=_provenance.declared_for(
                caps, _provenance.declared_tasks(task, strategy, params), self._backend_name(backend)
            ),
        )

    @staticmethod
    def _backend_name(backend: Any) -> str:
        name = getattr(backend, "name", None)
        return name if isinstance(name, str) and name else type(backend).__name__

    def batch_requests(self, plan: CallPlan) -> list[Any]:
        """Split a batch request into chunks no larger than the backend's ``max_batch``."""
        if not plan.batch or not plan.chunk or len(plan.seeds) <= plan.chunk:
            return [plan.request]
        out = []
        preview = plan.request.on_preview
        for i in range(0, len(plan.seeds), plan.chunk):
            part = plan.seeds[i : i + plan.chunk]
            shifted = preview.shifted(i) if isinstance(preview, PreviewRelay) else preview
            out.append(dataclasses.replace(plan.request, n=len(part), seeds=part, on_preview=shifted))
        return out

    # -- finishing --------------------------------------------------------------------
