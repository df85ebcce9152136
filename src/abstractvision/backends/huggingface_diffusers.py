"""Local generation with Hugging Face Diffusers (install ``abstractvision[diffusers]``).

::

    backend = HuggingFaceDiffusersVisionBackend(
        config=HuggingFaceDiffusersBackendConfig(model_id="runwayml/stable-diffusion-v1-5", device="auto")
    )
    VisionManager(backend=backend).generate_image("a lighthouse", width=512, height=512, steps=10)

``model_id`` is a local pipeline folder or a Hugging Face id. Downloads are off by default
(``allow_download=False``): weights must already be on disk, and a missing model fails with
a :class:`~abstractvision.errors.ModelLoadError` that says how to pre-download it.

Tasks follow the loaded pipeline family (see :mod:`._diffusers.families`): image models
(Stable Diffusion, SDXL, Flux, ...) do ``text_to_image`` and ``image_to_image`` (inpainting
with a mask), switching variants with ``from_pipe`` on the same weights; edit-only, fill-only
and Kontext-style families expose exactly what they can run; video pipelines (Wan, LTX-Video,
CogVideoX, Mochi, SVD, ...) do ``text_to_video`` / ``image_to_video`` and return H.264 MP4;
an upscaler pipeline (the SD x4 upscaler, as ``model_id`` or ``upscaler_model_id``) does
``image_upscale``. Sizes follow the model's own rule; an output of another size carries
``size_adjusted`` in its metadata and a parameter the pipeline has no use for is listed in
``ignored_parameters``.
torch and diffusers are imported on first use, never at module import.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import (
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
)
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    ProgressEvent,
    ProviderModelInfo,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from ._diffusers.tasks import run_images, run_upscale, run_video
from .base_backend import VisionBackend, honour_all

__all__ = ["HuggingFaceDiffusersBackendConfig", "HuggingFaceDiffusersVisionBackend"]


@dataclass
class HuggingFaceDiffusersBackendConfig:
    """Configuration of :class:`HuggingFaceDiffusersVisionBackend`.

    Attributes:
        model_id: local Diffusers pipeline folder or Hugging Face model id.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"cuda:N"``, ``"mps"`` or ``"cpu"``.
        torch_dtype: ``"float16"``, ``"bfloat16"``, ``"float32"``, or None for the device default
            (bfloat16/float16 on GPUs, float32 on CPU).
        allow_download: let diffusers download missing weights (off: local files only).
        cache_dir, revision, variant: passed to ``from_pretrained`` (``variant="fp16"`` picks
            half-precision weight files).
        offload: ``"none"``, ``"model"`` (whole components move to the GPU when used),
            ``"sequential"`` (layer by layer: least memory, slowest) or ``"auto"`` (decided from
            free GPU memory at load). Change it later with :meth:`~HuggingFaceDiffusersVisionBackend.set_offload`.
        vae_slicing, vae_tiling: decode batches / large images in pieces to save memory.
        attention: None (library default), ``"sdpa"``, ``"slicing"``, ``"xformers"`` or a diffusers
            attention backend name (``"flash"``, ``"sage"``...).
        compile: ``torch.compile`` the denoiser in place (``compile_mode``, ``compile_backend``).
        max_loaded_models: size of the LRU of loaded models (the main model, the upscaler, or
            models chosen per call with ``extra={"model_id": ...}``).
        max_lora_adapters: LoRA adapters kept loaded per model (least recently used ones are deleted).
        upscaler_model_id: pipeline used for ``image_upscale`` when ``model_id`` is not an upscaler.
        video_fps: frames per second of MP4 outputs when the request gives none (None: the
            family's native rate, 16 for Wan).
        video_crf: x264 quality (lower is better; 18 is visually near-lossless).
        max_batch: most images per pipeline call (larger batches are split by the manager).
        preview_decoder: how live previews (``on_preview``) are made: ``"auto"`` (a tiny
            autoencoder when ``preview_vae`` is set or the family's is in the local Hugging
            Face cache, else ``"latent_rgb"``), ``"tiny_autoencoder"``, ``"latent_rgb"`` (a
            linear latent-to-RGB map fitted once from the model's VAE) or ``"vae"`` (the full
            VAE at every preview: exact, slow). See docs/previews.md.
        preview_vae: a TAESD-style ``AutoencoderTiny`` (folder or hub id) for previews.
    """

    model_id: str
    device: str = "auto"
    torch_dtype: Optional[str] = None
    allow_download: bool = False
    cache_dir: Optional[str] = None
    revision: Optional[str] = None
    variant: Optional[str] = None
    offload: str = "none"
    vae_slicing: bool = False
    vae_tiling: bool = False
    attention: Optional[str] = None
    compile: bool = False
    compile_mode: Optional[str] = None
    compile_backend: str = "inductor"
    max_loaded_models: int = 1
    max_lora_adapters: int = 8
    upscaler_model_id: Optional[str] = None
    video_fps: Optional[int] = None
    video_crf: int = 18
    max_batch: Optional[int] = None
    preview_decoder: str = "auto"
    preview_vae: Optional[str] = None

    def __post_init__(self) -> None:
        from ._diffusers.previews import PREVIEW_DECODERS
        from ._diffusers.runtime import check_offload

        if self.preview_decoder not in PREVIEW_DECODERS:
            raise InvalidRequestError(
                f"preview_decoder must be one of {', '.join(PREVIEW_DECODERS)}, got {self.preview_decoder!r}.",
                param="preview_decoder",
            )

        if not isinstance(self.model_id, str) or not self.model_id.strip():
            raise InvalidRequestError(
                "model_id must be a local pipeline folder or a Hugging Face model id.", param="model_id"
            )
        check_offload(self.offload)
        for name in ("max_loaded_models", "max_lora_adapters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequestError(f"{name} must be an integer >= 1, got {value!r}.", param=name)
        for name in ("video_fps", "max_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidRequestError(
                    f"{name} must be a positive integer or None, got {value!r}.", param=name
                )


class HuggingFaceDiffusersVisionBackend(VisionBackend):
    """Runs Diffusers pipelines in this process (see the module docstring).

    Pass a :class:`HuggingFaceDiffusersBackendConfig` or its fields as keyword arguments.
    Thread-safe: calls on one backend are serialised (a pipeline is not re-entrant).
    """

    name = "diffusers"

    def __init__(self, config: Optional[HuggingFaceDiffusersBackendConfig] = None, **kwargs: Any) -> None:
        from ._diffusers.models import ModelCache

        if config is None:
            config = HuggingFaceDiffusersBackendConfig(**kwargs)
        elif kwargs:
            raise TypeError("Pass either config=... or keyword fields, not both.")
        self.config = config
        self._lock = threading.RLock()
        self._cache = ModelCache(config.max_loaded_models)
        self._offload = config.offload
        self._device: Optional[str] = None
        self._dtype: Any = None
        self._caps: Optional[VisionBackendCapabilities] = None
        #: number of times weights were loaded from disk (``from_pipe`` switches do not count)
        self.load_count = 0

    def __repr__(self) -> str:
        return f"HuggingFaceDiffusersVisionBackend(model_id={self.config.model_id!r}, device={self.config.device!r})"

    # -- settings and models ------------------------------------------------------------

    def _settings(self) -> Any:
        from ._diffusers.models import LoadSettings
        from ._diffusers.runtime import resolve_device, resolve_dtype

        if self._device is None:
            device = resolve_device(self.config.device)
            self._dtype = resolve_dtype(self.config.torch_dtype, device)
            self._device = device
        c = self.config
        return LoadSettings(
            self._device, self._dtype, self._offload, c.allow_download, c.cache_dir, c.revision, c.variant
        )

    def _model(self, model_id: str, task: str, on_progress: Any = None) -> tuple[Any, float]:
        """The loaded model for ``model_id`` (loading it when needed) and the seconds spent loading."""
        from ._diffusers.models import OOM_ADVICE, is_oom, load_pipeline, new_entry, release
        from ._diffusers.runtime import apply_offload, apply_runtime_options, dtype_name

        settings = self._settings()
        key = (model_id, settings.device, dtype_name(settings.dtype), settings.revision, settings.variant)
        entry = self._cache.get(key)
        if entry is not None:
            return entry, 0.0
        if on_progress is not None:
            on_progress(
                ProgressEvent(
                    task=task, phase="loading", message=f"loading {model_id}", raw={"model": model_id}
                )
            )
        self._cache.make_room()  # free the evicted model before loading the next one
        started = time.perf_counter()
        pipe = load_pipeline(model_id, settings)
        c = self.config
        entry = None
        try:
            offload = apply_offload(pipe, settings.device, self._offload)
            entry = new_entry(key, model_id, pipe, settings, offload, 0.0)
            entry.runtime_options = apply_runtime_options(
                pipe,
                attention=c.attention,
                vae_slicing=c.vae_slicing,
                vae_tiling=c.vae_tiling,
                compile=c.compile,
                compile_mode=c.compile_mode,
                compile_backend=c.compile_backend,
            )
        except Exception as exc:
            if entry is not None:
                release(entry)
            del pipe
            if is_oom(exc):
                raise OutOfMemoryError(
                    f"Out of memory placing {model_id!r} on {settings.device}; {OOM_ADVICE}."
                ) from exc
            raise
        entry.load_s = time.perf_counter() - started
        self._cache.add(entry)
        self.load_count += 1
        self._caps = None
        if on_progress is not None:
            on_progress(
                ProgressEvent(
                    task=task,
                    phase="loading",
                    progress=1.0,
                    message=f"loaded {model_id} in {entry.load_s:.2f}s",
                    raw={
                        "model": model_id,
                        "load_s": round(entry.load_s, 6),
                        "pipeline": type(entry.pipe).__name__,
                    },
                )
            )
        return entry, entry.load_s

    @staticmethod
    def _check_cancel(request: Any, task: str) -> None:
        if request.cancel is not None and request.cancel.is_set():
            raise GenerationCancelledError(f"{task} cancelled.")

    @staticmethod
    def _require_task(entry: Any, task: str) -> None:
        tasks = entry.family.tasks
        if tasks is not None and task not in tasks:
            raise CapabilityNotSupportedError(
                f"{type(entry.pipe).__name__} ({entry.model_id}) cannot run {task}.",
                task=task,
                supported=list(tasks),
            )

    def _metadata(
        self, entry: Any, pipe: Any, task: str, seed: int, timings: dict[str, float], **fields: Any
    ) -> dict[str, Any]:
        from ._diffusers.runtime import dtype_name

        meta: dict[str, Any] = {
            "backend": self.name,
            "model": entry.model_id,
            "task": task,
            "seed": seed,
            "device": entry.device,
            "dtype": dtype_name(entry.dtype),
            "offload": entry.offload,
            "pipeline": type(pipe).__name__,
            "scheduler": type(pipe.scheduler).__name__ if getattr(pipe, "scheduler", None) else None,
            "timings": {k: round(v, 6) for k, v in timings.items()},
        }
        meta.update(fields)
        return meta

    # -- images -------------------------------------------------------------------------

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return run_images(self, "text_to_image", request, (request.seed,))[0]

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return run_images(self, "text_to_image", request, request.seeds or (request.seed,) * request.n)

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        return run_images(self, "image_to_image", request, (request.seed,))[0]

    def edit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return run_images(self, "image_to_image", request, request.seeds or (request.seed,) * request.n)

    def _model_id(self, extra: dict[str, Any]) -> str:
        chosen = extra.get("model_id", self.config.model_id)
        if not isinstance(chosen, str) or not chosen.strip():
            raise InvalidRequestError("extra['model_id'] must be a non-empty string.", param="model_id")
        return chosen

    # -- upscaling ----------------------------------------------------------------------

    def upscale_image(self, request: ImageUpscaleRequest) -> GeneratedAsset:
        return run_upscale(self, request, self._upscaler_id(request.extra))

    def _upscaler_id(self, extra: dict[str, Any]) -> str:
        if extra.get("upscaler_model_id"):
            return str(extra["upscaler_model_id"])
        family = self._configured_family()
        if family.kind == "upscaler":
            return self.config.model_id
        if self.config.upscaler_model_id:
            return self.config.upscaler_model_id
        raise CapabilityNotSupportedError(
            f"{self.config.model_id} is not an upscaler pipeline. Set upscaler_model_id (for example "
            "'stabilityai/stable-diffusion-x4-upscaler') in HuggingFaceDiffusersBackendConfig.",
            task="image_upscale",
            supported=list(family.tasks or ()),
        )

    # -- video --------------------------------------------------------------------------

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        return run_video(self, "text_to_video", request)

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        return run_video(self, "image_to_video", request)

    # -- introspection ------------------------------------------------------------------

    def _configured_family(self) -> Any:
        from ._diffusers.models import folder_family

        for entry in self._cache:
            if entry.model_id == self.config.model_id:
                return entry.family
        c = self.config
        return folder_family(c.model_id, cache_dir=c.cache_dir, revision=c.revision)

    def get_capabilities(self) -> Optional[VisionBackendCapabilities]:
        """Tasks of the configured pipeline family (read from ``model_index.json``; nothing is loaded)."""
        if self._caps is None:
            family = self._configured_family()
            tasks = None if family.tasks is None else list(family.tasks)
            if tasks is not None and self.config.upscaler_model_id and "image_upscale" not in tasks:
                tasks.append("image_upscale")
            self._caps = VisionBackendCapabilities(
                supported_tasks=tuple(tasks) if tasks is not None else None,
                supports_mask=family.supports_mask,
                supports_native_batch=True,
                supports_progress=True,
                supports_cancel=True,
                max_batch=self.config.max_batch,
                # every first-class parameter reaches the pipeline, or is refused (PipelineCall.set)
                honoured_parameters=honour_all(tasks) if tasks is not None else None,
                raw={
                    "pipeline": family.pipeline_class,
                    "family": family.kind,
                    "family_source": family.source,
                    "mask_required": family.mask_required,
                    "upscaler": self.config.upscaler_model_id,
                    "hints": {
                        "image_upscale": "Set upscaler_model_id (for example "
                        "'stabilityai/stable-diffusion-x4-upscaler') or use an upscaler pipeline as model_id.",
                    },
                    **({"video": video} if (video := self._video_declaration(family)) else {}),
                },
            )
        return self._caps

    def _video_declaration(self, family: Any) -> Optional[dict[str, Any]]:
        """Frame rule, size multiple and default fps of a video model, from its configs on disk
        (the managers refuse what it cannot run before anything loads; see abstractvision._frames)."""
        from ._diffusers.families import video_rule
        from ._diffusers.models import read_config
        from ._diffusers.tasks import default_fps

        if family.kind != "video" or not family.pipeline_class:
            return None
        c = self.config
        configs = [
            read_config(c.model_id, f"{part}/config.json", cache_dir=c.cache_dir, revision=c.revision) or {}
            for part in ("vae", "transformer")
        ]
        rule = video_rule(family.pipeline_class, *configs) or {}
        return {
            **rule,
            "fps": c.video_fps or default_fps(family.pipeline_class),
            "source": "the model's VAE config (vae/config.json)",
        }

    def describe(self) -> dict[str, Any]:
        from ._diffusers.runtime import dtype_name

        return {
            "backend": self.name,
            "model": self.config.model_id,
            "device": self._device or self.config.device,
            "dtype": dtype_name(self._dtype)
            if self._dtype is not None
            else (self.config.torch_dtype or "auto"),
        }

    def list_provider_models(self, *, task: Optional[str] = None) -> Sequence[ProviderModelInfo]:
        """The configured model, the upscaler and any other loaded model (local inventory)."""
        from ._diffusers.models import folder_family

        c = self.config
        loaded = {entry.model_id: entry for entry in self._cache}
        ids = [c.model_id, *([c.upscaler_model_id] if c.upscaler_model_id else []), *loaded]
        out = []
        for model_id in dict.fromkeys(ids):
            entry = loaded.get(model_id)
            family = (
                entry.family if entry else folder_family(model_id, cache_dir=c.cache_dir, revision=c.revision)
            )
            class_name = type(entry.pipe).__name__ if entry else family.pipeline_class
            tasks = tuple(family.tasks or ())
            if task is not None and task not in tasks:
                continue
            raw = {
                "pipeline": class_name,
                "family": family.kind,
                "loaded": entry is not None,
                "available_locally": class_name is not None,
            }
            if os.path.isdir(os.path.expanduser(model_id)):
                raw["path"] = os.path.abspath(os.path.expanduser(model_id))
            out.append(
                ProviderModelInfo(id=model_id, object="model", owned_by="local", capabilities=tasks, raw=raw)
            )
        return out

    def loaded_models(self) -> list[dict[str, Any]]:
        """What is loaded now (most recently used last)."""
        with self._lock:
            return [entry.info() for entry in self._cache]

    # -- lifecycle and runtime switches -------------------------------------------------

    def preload(self) -> None:
        """Load the configured model now (and place it on the device)."""
        with self._lock:
            self._model(self.config.model_id, "preload")

    def unload(self) -> None:
        """Release every loaded model: hooks removed, references dropped, memory returned."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        self.unload()

    def set_offload(self, mode: str) -> None:
        """Switch offload (``none``/``model``/``sequential``/``auto``) for loaded and future models."""
        from ._diffusers.runtime import apply_offload, check_offload

        check_offload(mode)
        with self._lock:
            for entry in self._cache:
                for pipe in entry.derived.values():
                    pipe._all_hooks = []
                entry.offload = apply_offload(entry.pipe, entry.device, mode, current=entry.offload)
                entry.hook_owner = entry.pipe if entry.offload == "model" else None
            self._offload = mode

    def remove_lora_adapters(self, names: Optional[Sequence[str]] = None) -> list[str]:
        """Delete LoRA adapters (all by default) from loaded models, keeping the base weights."""
        from ._diffusers.models import remove_loras

        with self._lock:
            removed: list[str] = []
            for entry in self._cache:
                removed += remove_loras(entry, names)
            return removed
