"""The engine-free layer shared by :class:`VisionManager` and :class:`AsyncVisionManager`.

It turns a task call into a validated request (``plan``), gates it against the capability
registry and the backend's declared capabilities, and turns a backend result into the
public output (``finalize``: honest provenance metadata, the requested file format and the
chosen embedded metadata). The two managers only differ in how they *run* the backend and
the store (directly vs. awaited / in a thread).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional, Union

from ._lazy import lazy_module
from ._relays import PreviewRelay, ProgressRelay, check_preview_options
from .artifacts import _json_safe
from .backends.base_backend import TASK_METHODS
from .errors import (
    AbstractVisionError,
    ArtifactStoreError,
    BackendError,
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
    from collections.abc import Callable
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


def _describe_input(data: bytes, info: _media.ImageInfo) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "width": info.width,
        "height": info.height,
        "mime_type": info.mime_type,
    }


def _basenames(value: Any) -> Any:
    """``value`` with every absolute path string replaced by its basename (dicts and lists too)."""
    if isinstance(value, str) and (value.startswith("/") or value[1:3] in (":\\", ":/")):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or value
    if isinstance(value, dict):
        return {k: _basenames(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_basenames(v) for v in value]
    return value


class ManagerCore:
    """State and logic shared by the sync and async managers (no engine I/O here)."""

    def __init__(
        self,
        backend: Any = None,
        store: Any = None,
        model_id: Optional[str] = None,
        registry: Optional[VisionModelCapabilitiesRegistry] = None,
        model_label: Optional[str] = None,
        *,
        embed_metadata: str = "none",  # _validation.DEFAULT_EMBED_METADATA (a test keeps them equal)
        on_size_mismatch: str = "allow",
    ) -> None:
        self.embed_metadata = _validation.check_embed_metadata(embed_metadata)
        self.on_size_mismatch = _validation.check_on_size_mismatch(on_size_mismatch)
        if model_id is not None and (not isinstance(model_id, str) or not model_id.strip()):
            raise InvalidRequestError("model_id must be a non-empty string or None.", param="model_id")
        if model_label is not None and (not isinstance(model_label, str) or not model_label.strip()):
            raise InvalidRequestError("model_label must be a non-empty string or None.", param="model_label")
        if backend is not None and (
            isinstance(backend, type)
            or not any(callable(getattr(backend, m, None)) for m in TASK_METHODS.values())
        ):
            what = (
                f"the class {backend.__name__}; pass an instance"
                if isinstance(backend, type)
                else type(backend).__name__
            )
            raise InvalidRequestError(
                f"backend must be a VisionBackend instance (with task methods such as generate_image), got {what}. "
                "abstractvision.config.create_backend() builds one from a name.",
                param="backend",
            )
        if store is not None and (
            isinstance(store, type) or not callable(getattr(store, "store_bytes", None))
        ):
            raise InvalidRequestError(
                "store must be a MediaStore (with store_bytes/load_bytes), for example LocalAssetStore().",
                param="store",
            )
        if registry is not None and not callable(getattr(registry, "require_support", None)):
            raise InvalidRequestError(
                f"registry must be a VisionModelCapabilitiesRegistry, got {type(registry).__name__}.",
                param="registry",
            )
        self.backend = backend
        self.store = store
        self.model_id = model_id
        self.registry = registry
        self.model_label = model_label
        if model_id is not None:
            if self.registry is None:
                from .model_capabilities import VisionModelCapabilitiesRegistry

                self.registry = VisionModelCapabilitiesRegistry()
            self.registry.resolve(model_id)  # unknown ids fail at construction, not at first call

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
        prompt/image included). Order of checks: backend configured, registry support for
        the task, parameter names and types, registry constraints, backend capabilities,
        then image inputs.
        """
        started = time.perf_counter()
        backend = self.require_backend()
        registry_strategy = None
        if self.model_id is not None and self.registry is not None:
            if task == "multi_view_image":
                registry_strategy = self.registry.multi_view_strategy(self.model_id)
            else:
                self.registry.require_support(self.model_id, task)
        _validation.check_param_names(task, params)
        output = _validation.output_options(
            params, embed_metadata=self.embed_metadata, on_size_mismatch=self.on_size_mismatch
        )
        requested_strategy = params.pop("strategy", None)
        preview_callback, preview_every, partial_images = check_preview_options(
            params.pop("on_preview", None),
            params.pop("preview_every", None),
            params.pop("partial_images", None),
        )
        views: tuple[_angles.AngleView, ...] = ()
        if task == "multi_view_image":
            views = _angles.parse_angles(params.get("angles", _angles.DEFAULT_ANGLES))
            params["angles"] = tuple(v.label for v in views)
        params = {k: v for k, v in params.items() if v is not None or k in ("prompt",)}
        if task in _PROMPT_REQUIRED:
            params["prompt"] = _validation.check_prompt(params.get("prompt"))
        else:
            params["prompt"] = _validation.check_prompt(params.get("prompt"), required=False)
            if params["prompt"] is None:
                del params["prompt"]
        _validation.check_common(params)
        planned: tuple[int, ...] = ()
        n = 1
        seed_origin = "requested" if params.get("seed") is not None else None
        if batch:
            planned = _validation.plan_seeds(
                count, seed=params.get("seed"), seeds=seeds, count_name=count_name
            )
            n = len(planned)
            seed_origin = "requested" if seeds is not None or params.get("seed") is not None else "generated"
        self._gate_registry(task, {k: v for k, v in params.items() if k not in ("on_progress", "cancel")}, n)
        caps = self._gate_backend(backend, task, params)
        strategy = None
        if task == "multi_view_image":
            strategy = _angles.choose_strategy(
                requested_strategy,
                backend_tasks=caps.supported_tasks if caps is not None else None,
                registry_strategy=registry_strategy,
                has_reference=params.get("reference_image") is not None,
            )
            reg = self.registry
            if (
                strategy == "native"
                and self.model_id
                and reg is not None
                and reg.supports(self.model_id, task)
            ):
                native = _angles.native_views(reg.task_spec(self.model_id, task))
                _angles.check_native_angles(views, native, reg.resolve(self.model_id))
            if strategy == "orchestrated" and params.get("seed") is None:
                # one shared, recorded seed keeps the views consistent and reproducible
                params["seed"] = _validation.plan_seeds(1)[0]
                seed_origin = "generated"

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

        relay = ProgressRelay(task, params.get("on_progress"), started)
        req_fields = dict(params)
        req_fields["on_progress"] = relay
        if preview_callback is not None:
            req_fields["on_preview"] = PreviewRelay(
                task, preview_callback, started, every=preview_every, count=partial_images
            )
        if batch:
            req_fields["n"] = n
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
        method = _BATCH_METHODS[task] if batch else TASK_METHODS[task]
        chunk = caps.max_batch if caps is not None and caps.max_batch else None
        plan = CallPlan(
            task=task,
            request=request,
            method=method,
            batch=batch,
            parameters=parameters,
            relay=relay,
            started=started,
            seeds=planned,
            chunk=chunk,
            tags={
                "kind": "generated_media",
                "modality": _MODALITY.get(task, "image"),
                "task": task,
                **(tags or {}),
            },
            strategy=strategy,
            views=views,
            output=output,
            seed_origin=seed_origin,
            declared=_provenance.declared_for(
                caps, _provenance.declared_tasks(task, strategy, params), self._backend_name(backend)
            ),
        )
        plan.check_cancelled()
        return plan

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

    def check_asset(self, item: Any, method: str) -> GeneratedAsset:
        name = type(self.backend).__name__
        if not isinstance(item, GeneratedAsset):
            raise BackendError(
                f"{name}.{method} returned {type(item).__name__}; backends must return GeneratedAsset."
            )
        if not isinstance(item.data, (bytes, bytearray)) or not item.data:
            raise BackendError(f"{name}.{method} returned an empty asset.")
        return item

    def check_result(
        self, plan: CallPlan, result: Any, expected: Optional[int] = None
    ) -> list[GeneratedAsset]:
        expected_many = plan.batch or plan.task == "multi_view_image"
        if not expected_many and isinstance(result, (list, tuple)):
            raise BackendError(
                f"{type(self.backend).__name__}.{plan.method} returned a list; expected one GeneratedAsset."
            )
        items = list(result) if expected_many and isinstance(result, (list, tuple)) else [result]
        assets = [self.check_asset(item, plan.method) for item in items]
        if plan.batch and expected is not None and len(assets) != expected:
            raise BackendError(
                f"{type(self.backend).__name__}.{plan.method} returned {len(assets)} assets for a batch of {expected}."
            )
        return assets

    def multi_view_outputs(
        self, plan: CallPlan, assets: list[GeneratedAsset], contact_sheet: bool
    ) -> tuple[list[GeneratedAsset], Optional[GeneratedAsset]]:
        """Finalize the views (and build the contact sheet when asked)."""
        if len(assets) != len(plan.views):
            raise BackendError(
                f"{type(self.backend).__name__} returned {len(assets)} views for {len(plan.views)} angles."
            )
        finals = [self.finalize(plan, a, index=i, total=len(assets)) for i, a in enumerate(assets)]
        sheet = None
        if contact_sheet:
            sheet = self.finalize(
                plan, _angles.contact_sheet(assets, [v.label for v in plan.views]), index=len(assets)
            )
        return finals, sheet

    def backend_method(self, backend: Any, name: str) -> Callable[[Any], Any]:
        method = getattr(backend, name, None)
        if callable(method):
            return method
        if name.endswith("_batch"):
            single = self.backend_method(backend, name[: -len("_batch")])
            from .backends.base_backend import VisionBackend

            return lambda request: VisionBackend._loop_batch(single, request)
        raise CapabilityNotSupportedError(
            f"The configured backend ({type(backend).__name__}) has no '{name}' method.",
            supported=[t for t, m in TASK_METHODS.items() if callable(getattr(backend, m, None))],
        )

    def finalize(
        self, plan: CallPlan, asset: GeneratedAsset, *, index: int = 0, total: int = 1
    ) -> GeneratedAsset:
        """Turn one backend result into the public asset.

        Records what was applied, ignored and adjusted (:mod:`abstractvision._provenance`),
        enforces ``on_size_mismatch``, encodes images as ``output_format`` and makes the file
        carry what ``embed_metadata`` says (:mod:`abstractvision._embed`). Volatile facts
        (``created_at``, ``timings``) go into the returned metadata only, never into the file.
        """
        from . import _embed

        meta = dict(asset.metadata)
        describe = getattr(self.backend, "describe", None)
        identity = describe() if callable(describe) else {"backend": type(self.backend).__name__}
        if self.model_label is not None:  # public provenance: file names, not this machine's paths
            identity = _basenames(identity)
            meta = {k: v if k == "parameters" else _basenames(v) for k, v in meta.items()}
        for key, value in identity.items():
            meta.setdefault(key, value)
        if self.model_id is not None:
            meta.setdefault("model", self.model_id)
        if self.model_label is not None:  # a server's public name, never a local path
            meta["model"] = self.model_label
        meta.setdefault("task", plan.task)
        sheet = bool(meta.get("contact_sheet"))
        if plan.task == "multi_view_image":
            if index < len(plan.views) and not sheet:
                for key, value in plan.views[index].to_dict().items():
                    meta.setdefault(key, value)
            meta.setdefault("strategy", plan.strategy)
        params = dict(plan.parameters)
        if plan.batch:
            params.pop("seed", None)
            planned = plan.seeds[index] if index < len(plan.seeds) else None
            meta["batch"] = {"index": index, "count": total, "seeds": list(plan.seeds)}
        else:
            planned = getattr(plan.request, "seed", None)
        data = bytes(asset.data)
        mime = asset.mime_type or _media.sniff_mime(data) or "application/octet-stream"
        sized = not sheet and ("width" in params or "height" in params)
        _provenance.reconcile(
            meta,
            task=plan.task,
            caller_ignored=plan.output.ignored_parameters,
            requested=params,
            declared=plan.declared,
            planned_seed=planned,
            seed_origin=plan.seed_origin,
            returned_size=_embed.media_size(data, mime) if sized else None,
            check_size=sized,
        )
        # the caller's values (extra...) may hold anything: keep the recorded copy JSON-safe
        meta["parameters"] = _json_safe(meta["parameters"])
        adjusted = meta.get("size_adjusted")
        if adjusted is not None and plan.output.on_size_mismatch == "error":
            raise _provenance.size_mismatch(self._backend_name(self.backend), plan.task, adjusted)
        timings = dict(meta.get("timings") or {})
        timings["total_s"] = round(time.perf_counter() - plan.started, 6)
        meta["timings"] = timings
        if "created_at" not in meta:
            from datetime import datetime, timezone

            meta["created_at"] = datetime.now(timezone.utc).isoformat()
        out = plan.output
        if out.output_format is not None and asset.media_type == "image":
            data, mime, facts = _embed.encode_image(data, mime, out.output_format, out.output_compression)
            meta["encoding"] = facts
        data, omitted = _embed.apply_policy(data, mime, out.embed_metadata, meta)
        meta["embedded_metadata"] = (
            {"policy": out.embed_metadata, "omitted": omitted} if omitted else {"policy": out.embed_metadata}
        )
        return GeneratedAsset(media_type=asset.media_type, data=data, mime_type=mime, metadata=meta)

    def store_output(self, plan: CallPlan, asset: GeneratedAsset) -> Output:
        """The public output for one finalized asset: itself, or its ref from the store."""
        if self.store is None:
            return asset
        try:
            ref = self.store.store_bytes(asset.data, **self.store_kwargs(plan, asset))
        except AbstractVisionError:
            raise
        except Exception as exc:  # a custom MediaStore's own failure
            raise ArtifactStoreError(
                f"The store failed to keep the result: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(ref, dict):
            raise ArtifactStoreError(
                f"store_bytes() returned {type(ref).__name__}; a MediaStore returns a ref dict."
            )
        return ref

    def store_kwargs(self, plan: CallPlan, asset: GeneratedAsset) -> dict[str, Any]:
        tags = dict(plan.tags)
        if asset.metadata.get("contact_sheet"):
            tags["angle"] = "contact_sheet"
        elif "angle" in asset.metadata:
            tags["angle"] = str(asset.metadata["angle"])
        return {"content_type": asset.mime_type, "metadata": asset.metadata, "tags": tags}
