"""stable-diffusion.cpp backend: local GGUF/safetensors models through ``stable-diffusion-cpp-python``.

The model is given as one file (``model``) or as components (``diffusion_model`` plus
``vae``/``taesd`` and text encoders ``clip_l``, ``clip_g``, ``t5xxl``, ``llm``). It is loaded
once and reused. Tasks: ``text_to_image``, ``image_to_image`` (``strength``, inpainting with
``mask``, Kontext-style ``reference_images``) and ``image_upscale`` when an ESRGAN
``upscaler`` is configured.

The native library can take the whole process down on bad input, so by default
(``isolate=True``) it runs in a worker process (see :mod:`._sdcpp.process`): a crash, a failed
load or a hang becomes a typed error here, and the next call starts a fresh worker. Files
are checked (exists, readable, GGUF/safetensors/checkpoint header) before the engine sees
them (see :mod:`._sdcpp.files`).

Example::

    backend = StableDiffusionCppVisionBackend(
        StableDiffusionCppBackendConfig(
            diffusion_model="flux1-schnell-q4_0.gguf", vae="ae.safetensors",
            clip_l="clip_l.safetensors", t5xxl="t5xxl_fp16.safetensors",
        )
    )
    asset = VisionManager(backend=backend).generate_image("a red fox", steps=4, guidance_scale=1.0)
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

from ..errors import (
    CapabilityNotSupportedError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ImageUpscaleRequest,
    ProviderModelInfo,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from ._sdcpp.files import ModelFileInfo, check_config, check_model_file, check_multiple
from ._sdcpp.loras import check_applied, lora_tags
from ._sdcpp.process import InProcessEngine, WorkerProcess, logger, preview_event, preview_job, progress_event
from .base_backend import VisionBackend, honour_all

__all__ = ["StableDiffusionCppBackendConfig", "StableDiffusionCppVisionBackend"]

ENGINE = "stable-diffusion.cpp"
PathLike = Union[str, "os.PathLike[str]"]

#: config field -> StableDiffusion() argument, for every model file
_FILE_ARGS = {
    "model": "model_path",
    "diffusion_model": "diffusion_model_path",
    "vae": "vae_path",
    "taesd": "taesd_path",
    "clip_l": "clip_l_path",
    "clip_g": "clip_g_path",
    "t5xxl": "t5xxl_path",
    "llm": "llm_path",
    "upscaler": "upscaler_path",
}
#: ``extra`` keys passed to ``StableDiffusion.generate_image`` unchanged
_EXTRA_KEYS = frozenset(
    {
        "sample_method",
        "scheduler",
        "clip_skip",
        "guidance",
        "image_cfg_scale",
        "eta",
        "flow_shift",
        "sigmas",
        "timestep_shift",
        "slg_scale",
        "skip_layers",
        "skip_layer_start",
        "skip_layer_end",
        "vae_tiling",
        "vae_tile_size",
        "vae_tile_overlap",
        "vae_relative_tile_size",
        "cache_mode",
        "auto_resize_ref_image",
        "increase_ref_index",
    }
)


@dataclass
class StableDiffusionCppBackendConfig:
    """Configuration of :class:`StableDiffusionCppVisionBackend`.

    Model files (``.gguf``, ``.safetensors``, ``.ckpt``): either ``model`` (one file with
    everything) or ``diffusion_model`` with a ``vae`` or ``taesd`` and at least one text
    encoder (``clip_l``, ``clip_g``, ``t5xxl``, ``llm``), as the model family needs
    (Flux: ``clip_l`` + ``t5xxl``; SD3: ``clip_l`` + ``clip_g`` + ``t5xxl``; Qwen-Image:
    ``llm``). ``upscaler`` (an ESRGAN model) enables ``image_upscale``; alone it makes an
    upscale-only backend.

    Engine: ``n_threads`` (``None``: the binding's default, half the CPU count),
    ``weight_type`` (convert weights on load: ``"f16"``, ``"q8_0"``...),
    ``offload_to_cpu``, ``keep_clip_on_cpu``, ``keep_vae_on_cpu``, ``flash_attn``,
    ``enable_mmap``, ``vae_tiling`` (decode in tiles to save memory), ``rng``
    (``"cuda"``, the default, gives the same images on CPU and GPU), ``lora_model_dir``,
    ``vae_decode_only`` (``None``: keep the VAE encoder so ``image_to_image`` works;
    ``True`` saves memory but drops that task), ``engine_options`` (more keyword
    arguments for ``stable_diffusion_cpp.StableDiffusion``).

    Defaults per request: ``width``/``height`` (512), ``steps`` (20), ``guidance_scale``
    (``None``: the engine's cfg 7.0; use 1.0 for distilled models such as Flux schnell),
    ``sample_method``/``scheduler`` (``None``: the engine picks for the model).

    Worker: ``isolate`` (run the engine in a worker process; ``False`` runs it in this
    process without crash protection), ``timeout_s`` (deadline per call, loading included,
    raising :class:`~abstractvision.errors.GenerationTimeoutError`), ``hang_timeout_s`` (no
    progress or engine output for this long counts as a hang:
    :class:`~abstractvision.errors.EngineCrashedError`; raise it for very slow steps),
    ``check_components`` (refuse component sets that crash the engine, such as a
    ``diffusion_model`` without a text encoder).

    ``model_id`` labels the model in metadata (default: the model file's name);
    ``verbose`` logs the engine's info lines at INFO instead of DEBUG.

    Live previews (``on_preview``) come from the engine's own preview callback:
    ``preview_method`` ``"auto"`` (``"tae"`` with a ``taesd``, else ``"proj"``: sd.cpp's
    latent-to-RGB projection), ``"proj"``, ``"tae"`` or ``"vae"`` (the full VAE, slow).
    """

    model: Optional[PathLike] = None
    diffusion_model: Optional[PathLike] = None
    vae: Optional[PathLike] = None
    taesd: Optional[PathLike] = None
    clip_l: Optional[PathLike] = None
    clip_g: Optional[PathLike] = None
    t5xxl: Optional[PathLike] = None
    llm: Optional[PathLike] = None
    upscaler: Optional[PathLike] = None
    upscale_tile_size: int = 128
    lora_model_dir: Optional[PathLike] = None
    n_threads: Optional[int] = None
    weight_type: Optional[str] = None
    offload_to_cpu: bool = False
    keep_clip_on_cpu: bool = False
    keep_vae_on_cpu: bool = False
    flash_attn: bool = False
    enable_mmap: bool = False
    vae_tiling: bool = False
    vae_decode_only: Optional[bool] = None
    rng: str = "cuda"
    sample_method: Optional[str] = None
    scheduler: Optional[str] = None
    width: int = 512
    height: int = 512
    steps: int = 20
    guidance_scale: Optional[float] = None
    isolate: bool = True
    timeout_s: Optional[float] = None
    hang_timeout_s: Optional[float] = 600.0
    check_components: bool = True
    model_id: Optional[str] = None
    verbose: bool = False
    engine_options: dict[str, Any] = field(default_factory=dict)
    preview_method: str = "auto"


_NO_VIDEO = (
    "Video through stable-diffusion.cpp (its Wan path) is not wired in this backend: sd.cpp fixes Wan to "
    "the full 1.3B/14B sizes with the 5.7B-parameter UMT5-XXL encoder, so it cannot be tested here. "
    "Run Wan with HuggingFaceDiffusersVisionBackend (for example Wan-AI/Wan2.1-T2V-1.3B-Diffusers)."
)


class StableDiffusionCppVisionBackend(VisionBackend):
    """Local image generation with stable-diffusion.cpp (GGUF or safetensors weights).

    Args:
        config: a :class:`StableDiffusionCppBackendConfig`; or pass its fields as keyword
            arguments.

    Raises:
        OptionalDependencyMissingError: ``stable-diffusion-cpp-python`` is not installed.
        InvalidRequestError / ModelLoadError: the configuration cannot work.
    """

    name = "sdcpp"

    def __init__(self, config: Optional[StableDiffusionCppBackendConfig] = None, **kwargs: Any) -> None:
        if config is None:
            known = {f.name for f in fields(StableDiffusionCppBackendConfig)}
            unknown = sorted(set(kwargs) - known)
            if unknown:
                raise InvalidRequestError(
                    f"Unknown StableDiffusionCppBackendConfig field(s): {', '.join(unknown)}."
                )
            config = StableDiffusionCppBackendConfig(**kwargs)
        elif kwargs:
            raise InvalidRequestError("Pass either config=... or keyword fields, not both.")
        if importlib.util.find_spec("stable_diffusion_cpp") is None:
            raise OptionalDependencyMissingError(
                "stable-diffusion-cpp-python", "sdcpp", purpose="the stable-diffusion.cpp backend"
            )
        check_config(config)
        self.config = config
        self._lock = threading.RLock()
        self._engine: Optional[Union[WorkerProcess, InProcessEngine]] = None
        self._files: dict[str, ModelFileInfo] = {}
        self.restarts = 0

    def __repr__(self) -> str:
        return f"StableDiffusionCppVisionBackend(model={self.model_label!r}, isolate={self.config.isolate})"

    # -- introspection ------------------------------------------------------------------

    @property
    def model_label(self) -> str:
        cfg = self.config
        if cfg.model_id:
            return cfg.model_id
        main = cfg.model or cfg.diffusion_model or cfg.upscaler
        return os.path.splitext(os.path.basename(os.fspath(main)))[0] if main else "unknown"

    def supported_tasks(self) -> list[str]:
        tasks = []
        if self.config.model or self.config.diffusion_model:
            tasks.append("text_to_image")
            if not self.config.vae_decode_only:
                tasks.append("image_to_image")
        if self.config.upscaler:
            tasks.append("image_upscale")
        return tasks

    def get_capabilities(self) -> VisionBackendCapabilities:
        tasks = self.supported_tasks()
        honoured = honour_all([t for t in tasks if t != "image_upscale"])
        if "image_upscale" in tasks:
            honoured["image_upscale"] = ("scale",)  # the ESRGAN upscaler takes the image and a factor only
        return VisionBackendCapabilities(
            supported_tasks=tuple(tasks),
            supports_mask="image_to_image" in tasks,
            supports_native_batch=True,
            supports_progress=True,
            supports_cancel=True,
            honoured_parameters=honoured,
            ignored_reasons={
                name: f"sd.cpp's ESRGAN upscaler takes no {name} (only the image and the scale)"
                for name in ("prompt", "negative_prompt", "steps", "guidance_scale", "seed")
            },
            raw={
                "engine": ENGINE,
                "isolated": self.config.isolate,
                "hints": {"text_to_video": _NO_VIDEO, "image_to_video": _NO_VIDEO},
            },
        )

    def describe(self) -> dict[str, Any]:
        files = {
            role: os.fspath(getattr(self.config, role)) for role in _FILE_ARGS if getattr(self.config, role)
        }
        return {"backend": self.name, "model": self.model_label, "engine": ENGINE, "files": files}

    def list_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        tasks = tuple(self.supported_tasks())
        if task is not None and task not in tasks:
            return []
        return [
            ProviderModelInfo(
                id=self.model_label, object="model", owned_by="local", capabilities=tasks, raw=self.describe()
            )
        ]

    # -- lifecycle ----------------------------------------------------------------------

    def preload(self) -> None:
        """Check the files and load the model now (in the worker) instead of on first use."""
        with self._lock:
            self._ensure_engine(None, None, None)

    def unload(self) -> None:
        """Stop the worker (or free the in-process model); the next call loads again."""
        with self._lock:
            engine, self._engine = self._engine, None
            if engine is not None:
                engine.stop()

    def close(self) -> None:
        self.unload()

    @property
    def worker_pid(self) -> Optional[int]:
        """Process id of the running worker (this process when not isolated); ``None`` when none runs."""
        engine = self._engine
        return engine.pid if engine is not None and engine.alive else None

    def _spec(self) -> dict[str, Any]:
        cfg = self.config
        init: dict[str, Any] = {arg: "" for arg in _FILE_ARGS.values()}
        for role, info in self._files.items():
            init[_FILE_ARGS[role]] = info.path
        init.update(
            vae_decode_only=bool(cfg.vae_decode_only),
            n_threads=cfg.n_threads if cfg.n_threads else -1,
            offload_params_to_cpu=cfg.offload_to_cpu,
            keep_clip_on_cpu=cfg.keep_clip_on_cpu,
            keep_vae_on_cpu=cfg.keep_vae_on_cpu,
            flash_attn=cfg.flash_attn,
            enable_mmap=cfg.enable_mmap,
            rng_type=cfg.rng,
            upscale_tile_size=cfg.upscale_tile_size,
            # isolated: never redirect the worker's stderr, so a native crash message reaches us
            verbose=cfg.isolate,
        )
        if cfg.weight_type:
            init["wtype"] = cfg.weight_type
        if cfg.lora_model_dir:
            init["lora_model_dir"] = os.fspath(cfg.lora_model_dir)
        init.update(cfg.engine_options)
        return {"init": init, "verbose": cfg.verbose}

    def _check_files(self) -> None:
        self._files = {
            role: check_model_file(getattr(self.config, role), role=role)
            for role in _FILE_ARGS
            if getattr(self.config, role)
        }

    def _ensure_engine(
        self, request: Any, task: Optional[str], deadline: Optional[float]
    ) -> tuple[Any, float]:
        """Return a loaded engine and the seconds spent loading it in this call."""
        engine = self._engine
        if engine is not None and engine.alive:
            return engine, 0.0
        if engine is not None:
            self._engine = None
            self.restarts += 1
        self._check_files()
        relay = self._relay(request, task)
        relay({"type": "progress", "phase": "loading", "message": f"loading {self.model_label}"})
        started = time.perf_counter()
        spec = self._spec()
        engine = WorkerProcess(spec) if self.config.isolate else InProcessEngine(spec)
        try:
            engine.start(
                on_message=relay,
                cancel=getattr(request, "cancel", None),
                deadline=deadline,
                hang_timeout_s=self.config.hang_timeout_s,
            )
        except BaseException:
            engine.kill()
            raise
        self._engine = engine
        return engine, time.perf_counter() - started

    # -- progress -----------------------------------------------------------------------

    def _relay(self, request: Any, task: Optional[str]) -> Any:
        callback = getattr(request, "on_progress", None)
        on_preview = getattr(request, "on_preview", None)
        verbose = self.config.verbose

        def relay(message: dict[str, Any]) -> None:
            kind = message.get("type")
            if kind == "preview":
                if on_preview is not None and task is not None:
                    on_preview(preview_event(task, message, self.config))
                return
            if kind == "log":
                level = message.get("level")
                text = message.get("text")
                if level == "error":
                    logger.error("sd.cpp: %s", text)
                elif level == "warning":
                    logger.warning("sd.cpp: %s", text)
                else:
                    logger.log(20 if verbose else 10, "sd.cpp: %s", text)
                return
            if kind != "progress" or callback is None or task is None:
                return
            callback(progress_event(task, message))

        return relay

    # -- tasks --------------------------------------------------------------------------

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return self._generate("text_to_image", request, batch=False)[0]

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return self._generate("text_to_image", request, batch=True)

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        return self._generate("image_to_image", request, batch=False)[0]

    def edit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return self._generate("image_to_image", request, batch=True)

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        raise self._no_video("text_to_video")

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        raise self._no_video("image_to_video")

    def _no_video(self, task: str) -> CapabilityNotSupportedError:
        return CapabilityNotSupportedError(
            f"StableDiffusionCppVisionBackend does not run {task}. {_NO_VIDEO}",
            task=task,
            supported=self.supported_tasks(),
        )

    def upscale_image(self, request: ImageUpscaleRequest) -> GeneratedAsset:
        if not self.config.upscaler:
            raise self._unsupported("image_upscale")
        job = {"op": "upscale", "image": request.image, "scale": request.scale}
        effective = {"scale": request.scale} if request.scale is not None else {}
        return self._execute("image_upscale", request, job, effective)[0]

    def _require(self, task: str) -> None:
        if task not in self.supported_tasks():
            reason = (
                " (vae_decode_only=True drops the VAE encoder it needs)" if task == "image_to_image" else ""
            )
            raise CapabilityNotSupportedError(
                f"StableDiffusionCppVisionBackend cannot run '{task}' with this configuration{reason}.",
                task=task,
                supported=self.supported_tasks(),
            )

    def _seeds(self, request: Any, batch: bool) -> list[int]:
        n = request.n if batch else 1
        if batch and request.seeds:
            seeds = [int(s) for s in request.seeds]
            if len(seeds) != n:
                raise InvalidRequestError(f"{len(seeds)} seeds given for a batch of {n}.", param="seeds")
        else:
            base = request.seed if request.seed is not None else secrets.randbelow(2**31 - n)
            seeds = [int(base) + i for i in range(n)]
        if any(seed < 0 for seed in seeds):  # sd.cpp would silently pick a random seed
            raise InvalidRequestError("seeds must be >= 0.", param="seed")
        return seeds

    def _generate(self, task: str, request: Any, *, batch: bool) -> list[GeneratedAsset]:
        self._require(task)
        cfg = self.config
        seeds = self._seeds(request, batch)
        tags, loras = lora_tags(request.lora_adapters, _opt_path(cfg.lora_model_dir))
        params: dict[str, Any] = {
            "prompt": request.prompt + tags,
            "negative_prompt": request.negative_prompt or "",
            "sample_steps": request.steps or cfg.steps,
            "vae_tiling": cfg.vae_tiling,
        }
        width, height = request.width, request.height
        job: dict[str, Any] = {"op": "generate", "seeds": seeds}
        resized = False
        if task == "image_to_image":
            job["init_image"] = request.image
            job["mask_image"] = request.mask
            job["ref_images"] = list(request.reference_images)
            params["strength"] = 0.75 if request.strength is None else request.strength
            if width is None or height is None:
                img_w, img_h = _image_size(request.image)
                width = width or max(8, img_w - img_w % 8)
                height = height or max(8, img_h - img_h % 8)
                resized = (width, height) != (img_w, img_h)
        width, height = width or cfg.width, height or cfg.height
        check_multiple(width, "width")
        check_multiple(height, "height")
        params.update(width=width, height=height)
        guidance = request.guidance_scale if request.guidance_scale is not None else cfg.guidance_scale
        if guidance is not None:
            params["cfg_scale"] = guidance
        for key, value in (("sample_method", cfg.sample_method), ("scheduler", cfg.scheduler)):
            if value:
                params[key] = value
        extra = dict(request.extra or {})
        ignored = sorted(k for k in extra if k not in _EXTRA_KEYS)
        params.update({k: v for k, v in extra.items() if k in _EXTRA_KEYS})
        job["params"] = params
        job["preview"] = preview_job(cfg, request.on_preview, params["sample_steps"])
        effective = {k: v for k, v in params.items() if k not in ("prompt", "negative_prompt")}
        effective["steps"] = effective.pop("sample_steps")
        if "cfg_scale" in effective:
            effective["guidance_scale"] = effective.pop("cfg_scale")
        if resized:
            effective["input_resized_to"] = [width, height]
        if ignored:
            logger.info("sdcpp backend ignores extra keys it does not know: %s", ", ".join(ignored))
        reported = {f"extra.{k}": "not a stable-diffusion.cpp generation parameter" for k in ignored}
        return self._execute(task, request, job, effective, loras=loras, ignored=reported)

    def _execute(
        self,
        task: str,
        request: Any,
        job: dict[str, Any],
        effective: dict[str, Any],
        *,
        loras: Optional[list[dict[str, Any]]] = None,
        ignored: Optional[dict[str, str]] = None,
    ) -> list[GeneratedAsset]:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout_s if cfg.timeout_s else None
        with self._lock:
            engine, load_s = self._ensure_engine(request, task, deadline)
            result = engine.call(
                job,
                on_message=self._relay(request, task),
                cancel=request.cancel,
                deadline=deadline,
                hang_timeout_s=cfg.hang_timeout_s,
            )
            info = dict(engine.info)
            pid = engine.pid
        if loras:
            check_applied(loras, result.get("loras") or {})
            effective["lora_adapters"] = loras
        if task == "image_upscale":
            effective["upscale_factor"] = result.get("upscale_factor")
        else:
            effective.setdefault("sample_method", info.get("default_sample_method"))
            effective.setdefault("scheduler", info.get("default_scheduler"))
        count = len(result["images"])
        assets = []
        for image in result["images"]:
            meta: dict[str, Any] = {
                "seed": image["seed"],
                "engine": ENGINE,
                "engine_version": info.get("engine_version"),
                "model": self.model_label,
                "model_files": {role: f.to_dict() for role, f in self._files.items()},
                "parameters": {**effective, "width": image["width"], "height": image["height"]},
                "timings": {
                    "load_s": round(load_s, 6),
                    "inference_s": round(result["inference_s"] / count, 6),
                    "encode_s": round(result["encode_s"] / count, 6),
                },
                "worker": {"pid": pid, "isolated": cfg.isolate, "restarts": self.restarts},
            }
            if ignored:
                meta["ignored_parameters"] = dict(ignored)
            requested = (effective.get("width"), effective.get("height"))
            if task != "image_upscale" and requested != (image["width"], image["height"]):
                meta["size_adjusted"] = {
                    "requested": {"width": requested[0], "height": requested[1]},
                    "returned": {"width": image["width"], "height": image["height"]},
                }
            assets.append(
                GeneratedAsset(media_type="image", data=image["png"], mime_type="image/png", metadata=meta)
            )
        return assets


def _opt_path(value: Optional[PathLike]) -> Optional[str]:
    return os.fspath(value) if value else None


def _image_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return int(img.width), int(img.height)
