"""The engine-free layer shared by :class:`VisionManager` and :class:`AsyncVisionManager`.

It turns a task call into a validated request (``plan``, in :mod:`._planning`: gated against
the capability registry and the backend's declared capabilities), and turns a backend result into the
public output (``finalize``: honest provenance metadata, the requested file format and the
chosen embedded metadata). The two managers only differ in how they *run* the backend and
the store (directly vs. awaited / in a thread).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from ._lazy import lazy_module
from ._planning import _REQUEST_TYPES, CallPlan, Output, Planner
from ._refs import _json_safe
from .backends.base_backend import TASK_METHODS
from .errors import (
    AbstractVisionError,
    ArtifactStoreError,
    BackendError,
    CapabilityNotSupportedError,
    InvalidRequestError,
)
from .types import GeneratedAsset

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from . import _angles, _media, _provenance, _validation
    from .model_capabilities import VisionModelCapabilitiesRegistry
else:  # imported on first use: `from abstractvision import VisionManager` stays cheap
    _angles = lazy_module("abstractvision._angles", globals())
    _media = lazy_module("abstractvision._media", globals())
    _provenance = lazy_module("abstractvision._provenance", globals())
    _validation = lazy_module("abstractvision._validation", globals())

__all__ = ["_REQUEST_TYPES", "CallPlan", "ManagerCore", "Output"]


def _basenames(value: Any) -> Any:
    """``value`` with every absolute path string replaced by its basename (dicts and lists too)."""
    if isinstance(value, str) and (value.startswith("/") or value[1:3] in (":\\", ":/")):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or value
    if isinstance(value, dict):
        return {k: _basenames(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_basenames(v) for v in value]
    return value


class ManagerCore(Planner):
    """State and logic shared by the sync and async managers (no engine I/O here).

    Planning (validation, gating, the request) is inherited from :class:`Planner`; this class
    adds the constructor's checks and turning backend results into the public output.
    """

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
