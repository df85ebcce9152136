"""Loaded Diffusers models: locating weights, loading once, deriving task pipelines, LoRA, LRU.

One set of weights per model: a model is loaded once with ``DiffusionPipeline.from_pretrained``
and every task variant (text-to-image, image-to-image, inpainting, a video sibling) is
derived from it with ``from_pipe``, which shares the components instead of loading them
again. Loaded models live in a small LRU (:class:`ModelCache`); evicting one releases its
memory. LoRA adapters are loaded into a model's denoiser on first use, activated per
request with their scales, disabled when a request has none, and can be deleted without
reloading the base model.

Native loading failures are mapped here (:func:`load_pipeline`), with messages that say how
to fix them: pre-download with ``hf download`` or opt in with ``allow_download=True``; a
download that failed names its cause (DNS, refused connection, gated model...:
:mod:`.hub_errors`); upgrade diffusers for a missing pipeline class, enable offload on
out-of-memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from ...errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    ModelLoadError,
    OptionalDependencyMissingError,
)
from ...types import LoRAAdapterSpec
from .families import SELF, Family, classify_pipeline
from .hub_errors import describe_download_failure, download_advice
from .runtime import free_memory, import_diffusers, import_torch, quiet_loading_bars

__all__ = [
    "LoadSettings",
    "LoadedModel",
    "ModelCache",
    "apply_loras",
    "derive_pipeline",
    "load_pipeline",
    "locate_model",
]

_INDEX = "model_index.json"
OOM_ADVICE = "enable offload (offload='model' or 'sequential'), a smaller torch_dtype, or free other models with unload()"


@dataclass(frozen=True)
class LoadSettings:
    """How to load: the parts of the backend config that select and place the weights."""

    device: str
    dtype: Any
    offload: str
    allow_download: bool = False
    cache_dir: Optional[str] = None
    revision: Optional[str] = None
    variant: Optional[str] = None


def _looks_like_path(model_id: str) -> bool:
    return (
        model_id.startswith(("/", "./", "../", "~", "\\"))
        or (len(model_id) > 1 and model_id[1] == ":")
        or model_id.count("/") > 1
    )


def locate_model(model_id: str, settings: LoadSettings) -> str:
    """Return what to pass to ``from_pretrained``: a local directory or a (cached) hub id.

    Raises :class:`ModelLoadError` before touching diffusers when the weights cannot be
    found locally and downloads are disabled.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidRequestError(
            "model_id must be a non-empty string (a local directory or a hub id).", param="model_id"
        )
    path = os.path.expanduser(model_id)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, _INDEX)):
            raise ModelLoadError(
                f"{path!r} is a directory but has no {_INDEX}; expected a Diffusers pipeline folder "
                "(written by save_pretrained or downloaded with huggingface-cli download)."
            )
        return path
    if os.path.exists(path):
        raise ModelLoadError(
            f"{path!r} is a file; the Diffusers backend loads pipeline folders (with {_INDEX}). "
            "Convert a single-file checkpoint with diffusers' from_single_file(...).save_pretrained(dir)."
        )
    if _looks_like_path(model_id):
        raise ModelLoadError(f"Model directory {path!r} does not exist.")
    if settings.allow_download:
        return model_id
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(
            model_id, _INDEX, cache_dir=settings.cache_dir, revision=settings.revision
        )
    except HFValidationError as exc:
        raise ModelLoadError(
            f"{model_id!r} is neither an existing directory nor a valid Hugging Face model id."
        ) from exc
    if not isinstance(cached, str):
        raise ModelLoadError(
            f"Model {model_id!r} is not available locally and downloads are disabled (allow_download=False). "
            + download_advice(model_id)
        )
    return model_id


def _config_file(
    model_id: str, name: str, *, cache_dir: Optional[str] = None, revision: Optional[str] = None
) -> Optional[str]:
    """Path of ``name`` (``model_index.json``, ``unet/config.json``) of a local or cached model."""
    path = os.path.expanduser(model_id)
    if os.path.isdir(path):
        found = os.path.join(path, name)
        return found if os.path.isfile(found) else None
    if _looks_like_path(model_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, name, cache_dir=cache_dir, revision=revision)
    except Exception:  # an invalid id or no huggingface_hub: unknown
        return None
    return cached if isinstance(cached, str) and os.path.isfile(cached) else None


def _read_json(path: Optional[str]) -> Optional[dict[str, Any]]:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_config(
    model_id: str, name: str = _INDEX, *, cache_dir: Optional[str] = None, revision: Optional[str] = None
) -> Optional[dict[str, Any]]:
    """A JSON config of the model (``model_index.json``, ``vae/config.json``...) when it is on disk."""
    return _read_json(_config_file(model_id, name, cache_dir=cache_dir, revision=revision))


def read_pipeline_class(
    model_id: str, *, cache_dir: Optional[str] = None, revision: Optional[str] = None
) -> Optional[str]:
    """The ``_class_name`` in the model's ``model_index.json`` when it is on disk (no download)."""
    index = read_config(model_id, cache_dir=cache_dir, revision=revision)
    name = (index or {}).get("_class_name")
    return name if isinstance(name, str) else None


def folder_family(
    model_id: str, *, cache_dir: Optional[str] = None, revision: Optional[str] = None
) -> Family:
    """The family of a model on disk, from ``model_index.json`` and its denoiser's config."""
    index = read_config(model_id, cache_dir=cache_dir, revision=revision) or {}
    configs = {}
    for component in ("unet", "transformer"):
        found = _read_json(
            _config_file(model_id, f"{component}/config.json", cache_dir=cache_dir, revision=revision)
        )
        if found is not None:
            configs[component] = found
    name = index.get("_class_name")
    return classify_pipeline(name if isinstance(name, str) else None, index=index, configs=configs)


def pipe_family(pipe: Any) -> Family:
    """The family of a loaded pipeline, from its class, its config and its components' configs."""
    configs = {}
    for component in ("unet", "transformer"):
        module = getattr(pipe, component, None)
        config = getattr(module, "config", None)
        if config is not None:
            configs[component] = dict(config)
    return classify_pipeline(
        type(pipe).__name__, index=dict(getattr(pipe, "config", {}) or {}), configs=configs
    )


def dtype_argument() -> str:
    """``dtype`` on diffusers versions that renamed it, ``torch_dtype`` before."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def is_oom(exc: BaseException) -> bool:
    torch = import_torch()
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# transformers/diffusers name a missing optional library as "X requires the <Name> library"
_REQUIRES_LIBRARY = re.compile(r"requires the ([\w.-]+) librar(?:y|ies)", re.IGNORECASE)
_PIP_NAMES = {
    "pytorch": "torch",
    "pil": "Pillow",
    "pillow": "Pillow",
    "vision": "Pillow",
    "scikit-learn": "scikit-learn",
}
#: import names of transformers' backend names, where they differ
_MODULE_NAMES = {"vision": "PIL", "pytorch": "torch", "scikit-learn": "sklearn"}


def missing_package(exc: BaseException) -> Optional[str]:
    """The pip package whose absence caused ``exc`` (or one of its causes), if it says so."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ModuleNotFoundError) and current.name:
            top = current.name.split(".", 1)[0]
            if top not in ("diffusers", "transformers"):  # their own modules: a version problem
                return _PIP_NAMES.get(top.lower(), top)
        found = _REQUIRES_LIBRARY.search(str(current))
        if found:
            name = found.group(1).strip(".").lower()
            return _PIP_NAMES.get(name, name)
        current = current.__cause__ or current.__context__
    return None


def _check_component_packages(model_id: str, index: Optional[dict[str, Any]]) -> None:
    """Refuse, naming the package, a component whose class is a placeholder for a missing one.

    transformers replaces a class whose optional backend is absent (the Qwen2-VL image
    processor of Qwen-Image-Edit needs torchvision) by a placeholder that diffusers cannot
    load, and reports it as a confusing "no loading methods" error.
    """
    import importlib

    for component, spec in (index or {}).items():
        if component.startswith("_") or not (isinstance(spec, list) and len(spec) == 2):
            continue
        library, class_name = spec
        if not (isinstance(library, str) and isinstance(class_name, str)) or library not in (
            "transformers",
            "diffusers",
        ):
            continue
        try:
            cls = getattr(importlib.import_module(library), class_name)
        except (ImportError, AttributeError):
            continue  # from_pretrained reports an unknown class itself
        backends = getattr(cls, "_backends", None)
        if not backends:
            continue
        import importlib.util

        missing = [
            _PIP_NAMES.get(b, b)
            for b in backends
            if importlib.util.find_spec(_MODULE_NAMES.get(b, b)) is None
        ]
        if missing:
            raise ModelLoadError(
                f"{model_id!r}: component '{component}' ({class_name}) needs the "
                + " and ".join(f"'{m}'" for m in missing)
                + f" package, which is not installed. Install it (pip install {' '.join(missing)}) and load again."
            )


def load_pipeline(model_id: str, settings: LoadSettings) -> Any:
    """``DiffusionPipeline.from_pretrained`` on the CPU, with native failures mapped."""
    diffusers = import_diffusers()
    from ...errors import OutOfMemoryError

    source = locate_model(model_id, settings)
    class_name = read_pipeline_class(model_id, cache_dir=settings.cache_dir, revision=settings.revision)
    if class_name is not None and not hasattr(diffusers, class_name):
        raise ModelLoadError(
            f"{model_id!r} needs the pipeline class {class_name}, which diffusers {diffusers.__version__} "
            "does not provide. Upgrade diffusers (pip install -U diffusers)."
        )
    _check_component_packages(
        model_id, read_config(model_id, cache_dir=settings.cache_dir, revision=settings.revision)
    )
    kwargs: dict[str, Any] = {
        dtype_argument(): settings.dtype,
        "local_files_only": not settings.allow_download,
    }
    for key in ("cache_dir", "revision", "variant"):
        if getattr(settings, key) is not None:
            kwargs[key] = getattr(settings, key)
    try:
        with quiet_loading_bars():
            pipe = diffusers.DiffusionPipeline.from_pretrained(source, **kwargs)
    except (AttributeError, ImportError) as exc:
        missing = missing_package(exc)
        if missing is not None:
            raise ModelLoadError(
                f"Could not build the pipeline for {model_id!r}: one of its components needs the "
                f"'{missing}' package, which is not installed. Install it (pip install {missing}) and load again."
            ) from exc
        raise ModelLoadError(
            f"Could not build the pipeline for {model_id!r}: {exc}. The pipeline class or one of its components "
            f"is unavailable in diffusers {diffusers.__version__}/transformers; upgrade them."
        ) from exc
    except OSError as exc:
        if os.path.isdir(source):
            raise ModelLoadError(
                f"Weights for {model_id!r} could not be loaded: {exc} "
                "Check that the folder is complete (every component's weights and configs)."
            ) from exc
        if settings.allow_download:  # the download itself failed: say why and what to do
            raise ModelLoadError(describe_download_failure(model_id, exc)) from exc
        raise ModelLoadError(
            f"Weights for {model_id!r} could not be loaded: {exc} {download_advice(model_id)}"
        ) from exc
    except Exception as exc:
        if is_oom(exc):
            raise OutOfMemoryError(f"Out of memory while loading {model_id!r}; {OOM_ADVICE}.") from exc
        missing = missing_package(exc)
        if missing is not None:
            raise ModelLoadError(
                f"Loading {model_id!r} failed: it needs the '{missing}' package, which is not installed. "
                f"Install it (pip install {missing}) and load again."
            ) from exc
        raise ModelLoadError(f"Loading {model_id!r} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(pipe, "set_progress_bar_config", None)):
        raise ModelLoadError(
            f"{model_id!r} did not load as a Diffusers pipeline (got {type(pipe).__name__})."
        )
    pipe.set_progress_bar_config(disable=True)  # progress goes to on_progress instead
    return pipe


@dataclass
class LoadedModel:
    """One loaded set of weights and the task pipelines derived from it."""

    key: tuple[Any, ...]
    model_id: str
    pipe: Any
    family: Family
    device: str
    dtype: Any
    offload: str
    load_s: float
    runtime_options: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    adapters: OrderedDict[str, tuple[str, Optional[str]]] = field(default_factory=OrderedDict)
    active_adapters: tuple[tuple[str, float], ...] = ()
    hook_owner: Any = None

    def info(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "pipeline": type(self.pipe).__name__ if self.pipe is not None else None,
            "family": self.family.kind,
            "tasks": list(self.family.tasks or ()),
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "offload": self.offload,
            "derived": sorted(self.derived),
            "lora_adapters": list(self.adapters),
            "load_s": round(self.load_s, 6),
        }


class ModelCache:
    """An LRU of :class:`LoadedModel`; evicting releases memory."""

    def __init__(self, max_size: int) -> None:
        if not isinstance(max_size, int) or max_size < 1:
            raise InvalidRequestError("max_loaded_models must be an integer >= 1.", param="max_loaded_models")
        self.max_size = max_size
        self._entries: OrderedDict[tuple[Any, ...], LoadedModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Any:
        return iter(list(self._entries.values()))

    def get(self, key: tuple[Any, ...]) -> Optional[LoadedModel]:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def make_room(self) -> list[str]:
        """Evict least recently used models until one more fits; returns the evicted ids."""
        evicted = []
        while len(self._entries) >= self.max_size:
            _, entry = self._entries.popitem(last=False)
            evicted.append(entry.model_id)
            release(entry)
        return evicted

    def add(self, entry: LoadedModel) -> None:
        self.make_room()
        self._entries[entry.key] = entry

    def clear(self) -> list[str]:
        ids = []
        while self._entries:
            _, entry = self._entries.popitem(last=False)
            ids.append(entry.model_id)
            release(entry)
        return ids


def release(entry: LoadedModel) -> None:
    """Drop every reference the backend holds to ``entry``'s weights and free the memory."""
    pipe = entry.pipe
    if pipe is not None and entry.offload in ("model", "sequential"):
        try:
            pipe.remove_all_hooks()
        except Exception:  # best effort: the references are dropped below anyway
            pass
    compiled = bool(entry.runtime_options.get("compile"))
    entry.derived.clear()
    entry.adapters.clear()
    entry.hook_owner = None
    entry.pipe = None
    del pipe
    free_memory(entry.device, compiled=compiled)


# -- task pipelines -----------------------------------------------------------------------

_VARIANT_TASK = {
    "text2img": "text_to_image",
    "img2img": "image_to_image",
    "inpaint": "image_to_image",
    "text_to_video": "text_to_video",
    "image_to_video": "image_to_video",
}


def derive_pipeline(entry: LoadedModel, variant: str) -> Any:
    """The pipeline for ``variant`` (``text2img``, ``img2img``, ``inpaint``, ``text_to_video``,
    ``image_to_video``), derived once with ``from_pipe`` and cached on ``entry``.

    The class behind each variant comes from the model's :class:`Family` (the AutoPipeline
    tables or the backend's own table); a variant the family lacks is refused.
    """
    pipe = entry.derived.get(variant)
    if pipe is not None:
        return pipe
    base = entry.pipe
    base_name = type(base).__name__
    target = entry.family.variants.get(variant)
    if target is None:
        what = "inpainting (mask)" if variant == "inpaint" else _VARIANT_TASK.get(variant, variant)
        hint = f" ({entry.family.note})" if entry.family.note else ""
        raise CapabilityNotSupportedError(
            f"{base_name} ({entry.model_id}){hint} cannot run {what}.",
            task=_VARIANT_TASK.get(variant, variant),
            supported=list(entry.family.tasks or ()),
        )
    if target in (SELF, base_name):
        pipe = base
    else:
        diffusers = import_diffusers()
        cls = getattr(diffusers, target)
        if target.startswith("AutoPipeline"):
            pipe = cls.from_pipe(base)
        else:
            pipe = cls.from_pipe(base, **{dtype_argument(): entry.dtype})
        pipe.set_progress_bar_config(disable=True)
    entry.derived[variant] = pipe
    return pipe


def prepare_for_call(entry: LoadedModel, pipe: Any) -> None:
    """Model offload hooks belong to one pipeline object: move them to ``pipe`` when it changes."""
    if entry.offload == "model" and entry.hook_owner is not pipe:
        if entry.hook_owner is not None:
            entry.hook_owner._all_hooks = []
        pipe.enable_model_cpu_offload(device=entry.device)
        entry.hook_owner = pipe


# -- LoRA ---------------------------------------------------------------------------------


def adapter_name(spec: LoRAAdapterSpec) -> str:
    if spec.adapter_name:
        return spec.adapter_name
    digest = hashlib.sha256(f"{spec.source}\x00{spec.weight_name or ''}".encode()).hexdigest()[:12]
    return f"lora_{digest}"


def _load_lora(pipe: Any, spec: LoRAAdapterSpec, name: str, settings: LoadSettings) -> None:
    try:
        import peft  # noqa: F401
    except ImportError as exc:
        raise OptionalDependencyMissingError("peft", "diffusers", purpose="LoRA adapters") from exc
    if not callable(getattr(pipe, "load_lora_weights", None)):
        raise CapabilityNotSupportedError(f"{type(pipe).__name__} does not support LoRA adapters.")
    source, weight_name = os.path.expanduser(spec.source), spec.weight_name
    if os.path.isfile(source):
        source, weight_name = os.path.dirname(source) or ".", os.path.basename(source)
    elif not os.path.isdir(source) and _looks_like_path(spec.source):
        raise ModelLoadError(f"LoRA source {spec.source!r} does not exist.")
    kwargs: dict[str, Any] = {"adapter_name": name, "local_files_only": not settings.allow_download}
    if weight_name:
        kwargs["weight_name"] = weight_name
    if settings.cache_dir:
        kwargs["cache_dir"] = settings.cache_dir
    try:
        pipe.load_lora_weights(source, **kwargs)
    except OSError as exc:
        if not os.path.isdir(source) and settings.allow_download:
            raise ModelLoadError(f"LoRA: {describe_download_failure(spec.source, exc)}") from exc
        advice = "" if os.path.isdir(source) else " " + download_advice(spec.source)
        raise ModelLoadError(f"LoRA {spec.source!r} could not be loaded: {exc}{advice}") from exc
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"LoRA {spec.source!r} does not fit {type(pipe).__name__}: {exc}") from exc


def apply_loras(
    entry: LoadedModel,
    pipe: Any,
    specs: Sequence[LoRAAdapterSpec],
    settings: LoadSettings,
    *,
    max_adapters: int,
) -> list[dict[str, Any]]:
    """Make exactly ``specs`` active on ``pipe`` (loading new adapters once); returns what is active."""
    if not specs:
        if entry.active_adapters:
            pipe.disable_lora()
            entry.active_adapters = ()
        return []
    names = [adapter_name(s) for s in specs]
    if len(set(names)) != len(names):
        raise InvalidRequestError("The same LoRA adapter is listed twice.", param="lora_adapters")
    for spec, name in zip(specs, names, strict=True):
        key = (spec.source, spec.weight_name)
        known = entry.adapters.get(name)
        if known is not None and known != key:
            raise InvalidRequestError(
                f"adapter_name {name!r} is already used by LoRA {known[0]!r}; choose another name.",
                param="lora_adapters",
            )
        if known is None:
            _load_lora(pipe, spec, name, settings)
            entry.adapters[name] = key
        entry.adapters.move_to_end(name)
    # keep at most max_adapters loaded: delete the least recently used inactive ones
    stale = [n for n in entry.adapters if n not in names][: max(0, len(entry.adapters) - max_adapters)]
    if stale:
        pipe.delete_adapters(stale)
        for n in stale:
            entry.adapters.pop(n, None)
    wanted = tuple((n, float(s.scale)) for n, s in zip(names, specs, strict=True))
    if wanted != entry.active_adapters:
        pipe.enable_lora()
        pipe.set_adapters([n for n, _ in wanted], adapter_weights=[w for _, w in wanted])
        entry.active_adapters = wanted
    return [
        {"adapter_name": n, "source": s.source, "scale": float(s.scale)}
        for n, s in zip(names, specs, strict=True)
    ]


def remove_loras(entry: LoadedModel, names: Optional[Sequence[str]] = None) -> list[str]:
    """Delete adapters (all when ``names`` is None) from the model; the base weights stay loaded."""
    targets = list(entry.adapters) if names is None else [n for n in names if n in entry.adapters]
    if targets and entry.pipe is not None:
        entry.pipe.delete_adapters(targets)
        for n in targets:
            entry.adapters.pop(n, None)
        entry.active_adapters = tuple(a for a in entry.active_adapters if a[0] not in targets)
    return targets


def new_entry(
    key: tuple[Any, ...], model_id: str, pipe: Any, settings: LoadSettings, offload: str, load_s: float
) -> LoadedModel:
    return LoadedModel(
        key=key,
        model_id=model_id,
        pipe=pipe,
        family=pipe_family(pipe),
        device=settings.device,
        dtype=settings.dtype,
        offload=offload,
        load_s=load_s,
        hook_owner=pipe if offload == "model" else None,
    )
