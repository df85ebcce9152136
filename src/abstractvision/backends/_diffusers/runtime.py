"""Where and how a Diffusers pipeline runs: device, dtype, offload, attention, compile, release.

Everything here is explicit and reversible. ``device="auto"`` picks CUDA, then MPS, then
CPU; the dtype follows the device (bfloat16 on CUDA GPUs that support it, else float16;
float16 on MPS; float32 on CPU) unless overridden. Offload modes (``none``, ``model``,
``sequential``, ``auto``) can be switched on a loaded pipeline and back again. Releasing a
pipeline removes its hooks, drops the references, collects garbage and returns freed
memory to the device and the OS, so ``unload()`` is visible in RSS and in VRAM.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import re
import sys
import threading
from typing import Any, Optional

from ...errors import InvalidRequestError, OptionalDependencyMissingError
from .families import Family, classify_pipeline, native_video_task

__all__ = [
    "OFFLOAD_MODES",
    "Family",
    "apply_offload",
    "apply_runtime_options",
    "check_offload",
    "classify_pipeline",
    "dtype_name",
    "free_memory",
    "import_diffusers",
    "import_torch",
    "native_video_task",
    "quiet_loading_bars",
    "resolve_device",
    "resolve_dtype",
    "silence_torchvision_fallback",
]

OFFLOAD_MODES = ("none", "model", "sequential", "auto")

_BARS_LOCK = threading.Lock()
_BARS_DEPTH = 0
_BARS_RESTORE: list[Any] = []


@contextlib.contextmanager
def quiet_loading_bars() -> Any:
    """No tqdm bars from diffusers or transformers while a model loads (inside library calls
    progress goes to ``on_progress``; the CLI draws its own). Their global switches are
    restored afterwards, so an application's own diffusers calls keep their bars. Hub
    download bars (``huggingface_hub``) are left alone: a download can take minutes."""
    global _BARS_DEPTH
    with _BARS_LOCK:
        if _BARS_DEPTH == 0:
            _BARS_RESTORE.clear()
            for name in ("diffusers.utils.logging", "transformers.utils.logging"):
                module = sys.modules.get(name)
                if module is None:
                    try:
                        module = __import__(name, fromlist=["_"])
                    except ImportError:
                        continue
                if module.is_progress_bar_enabled():
                    module.disable_progress_bar()
                    _BARS_RESTORE.append(module)
        _BARS_DEPTH += 1
    try:
        yield
    finally:
        with _BARS_LOCK:
            _BARS_DEPTH -= 1
            if _BARS_DEPTH == 0:
                for module in _BARS_RESTORE:
                    module.enable_progress_bar()
                _BARS_RESTORE.clear()


_DTYPE_ALIASES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
# Headroom kept free on the GPU for activations and the VAE decode when offload="auto" decides.
_AUTO_HEADROOM_BYTES = 2 * 1024**3
_AUTO_WEIGHT_FACTOR = 1.2


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise OptionalDependencyMissingError("torch", "diffusers", purpose="the Diffusers backend") from exc
    return torch


# transformers' notice when an image processor class falls back to its PIL twin because
# torchvision is absent, logged once per class on first use ("`CLIPImageProcessor` requires
# torchvision (not installed); falling back to `CLIPImageProcessorPil` ..."). Diffusers
# pipelines touch these classes on import and load whether or not the model uses one, and the
# PIL twin is what transformers used before it made torchvision the default, so the notice
# says nothing about the model being run: it is dropped at this boundary, and only it.
_TORCHVISION_FALLBACK = re.compile(
    r"^`\w+` requires torchvision \(not installed\); falling back to `\w+Pil` for backward compatibility"
)
_TRANSFORMERS_IMPORT_LOGGER = "transformers.utils.import_utils"


class TorchvisionFallbackFilter(logging.Filter):
    """Drops exactly transformers' "requires torchvision ... falling back to ...Pil" notices."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format is not ours to judge
            return True
        return not _TORCHVISION_FALLBACK.match(message)


def silence_torchvision_fallback() -> None:
    """Attach :class:`TorchvisionFallbackFilter` to the transformers logger that emits the notice.

    Idempotent; touches one named logger (no ``warnings`` filter, no root logger, no level),
    so every other transformers message, warning or error still reaches the user.
    """
    logger = logging.getLogger(_TRANSFORMERS_IMPORT_LOGGER)
    if not any(isinstance(f, TorchvisionFallbackFilter) for f in logger.filters):
        logger.addFilter(TorchvisionFallbackFilter())


def import_diffusers() -> Any:
    import_torch()
    silence_torchvision_fallback()
    try:
        import diffusers
    except ImportError as exc:
        raise OptionalDependencyMissingError(
            "diffusers", "diffusers", purpose="the Diffusers backend"
        ) from exc
    return diffusers


# -- device and dtype -------------------------------------------------------------------


def resolve_device(spec: Optional[str]) -> str:
    """``"auto"`` -> ``"cuda"`` > ``"mps"`` > ``"cpu"``; explicit devices must exist (no silent fallback)."""
    torch = import_torch()
    wanted = (spec or "auto").strip().lower()
    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if wanted == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    kind = wanted.split(":", 1)[0]
    if kind == "cuda" and not cuda:
        raise InvalidRequestError(
            f"device={spec!r} but CUDA is not available to this torch build; use device='auto' or 'cpu'.",
            param="device",
        )
    if kind == "mps" and not mps:
        raise InvalidRequestError(
            f"device={spec!r} but MPS is not available here; use device='auto' or 'cpu'.", param="device"
        )
    if kind not in ("cuda", "mps", "cpu", "xpu"):
        raise InvalidRequestError(
            f"Unknown device {spec!r}; use 'auto', 'cuda', 'cuda:N', 'mps' or 'cpu'.", param="device"
        )
    return wanted


def resolve_dtype(spec: Any, device: str) -> Any:
    """The torch dtype for ``spec`` (name, alias or ``torch.dtype``) or the device default."""
    torch = import_torch()
    if spec is None or spec == "auto":
        kind = device.split(":", 1)[0]
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if kind == "mps":
            return torch.float16
        return torch.float32
    if isinstance(spec, torch.dtype):
        return spec
    name = _DTYPE_ALIASES.get(str(spec).strip().lower().replace("torch.", ""))
    if name is None:
        raise InvalidRequestError(
            f"Unknown torch_dtype {spec!r}; use 'float16', 'bfloat16', 'float32' or None for the device default.",
            param="torch_dtype",
        )
    return getattr(torch, name)


def dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


# -- pipeline families: see families.py ---------------------------------------------


# -- offload ------------------------------------------------------------------------------


def _module_bytes(module: Any) -> int:
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        total += tensor.numel() * tensor.element_size()
    return total


def component_bytes(pipe: Any) -> dict[str, int]:
    """Bytes of parameters and buffers of each ``torch.nn.Module`` component."""
    torch = import_torch()
    return {name: _module_bytes(c) for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def choose_offload(pipe: Any, device: str) -> str:
    """``offload="auto"``: none when the weights fit with headroom, else model, else sequential."""
    torch = import_torch()
    if not device.startswith("cuda"):
        return "none"
    sizes = component_bytes(pipe)
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    if sum(sizes.values()) * _AUTO_WEIGHT_FACTOR + _AUTO_HEADROOM_BYTES < free:
        return "none"
    if max(sizes.values(), default=0) * _AUTO_WEIGHT_FACTOR + _AUTO_HEADROOM_BYTES < free:
        return "model"
    return "sequential"


def check_offload(mode: Any) -> str:
    if mode not in OFFLOAD_MODES:
        raise InvalidRequestError(
            f"offload={mode!r}; use one of {', '.join(OFFLOAD_MODES)}.", param="offload"
        )
    return str(mode)


def apply_offload(pipe: Any, device: str, mode: str, *, current: str = "none") -> str:
    """Place ``pipe`` for ``mode`` (switching from ``current``); return the effective mode."""
    check_offload(mode)
    if mode == "auto":
        mode = choose_offload(pipe, device)
    if mode != "none" and device.split(":", 1)[0] not in ("cuda", "xpu"):
        raise InvalidRequestError(
            f"offload={mode!r} moves weights between CPU and a GPU, but the device is {device!r}; "
            "use offload='none' (or 'auto') here.",
            param="offload",
        )
    if current in ("model", "sequential"):
        pipe.remove_all_hooks()  # restores offloaded weights onto the CPU
    if mode == "none":
        pipe.to(device)
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return mode


# -- attention, VAE, compile --------------------------------------------------------------


def denoiser(pipe: Any) -> Any:
    """The iterated network of a pipeline (``transformer`` or ``unet``)."""
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def apply_runtime_options(
    pipe: Any,
    *,
    attention: Optional[str],
    vae_slicing: bool,
    vae_tiling: bool,
    compile: bool,
    compile_mode: Optional[str],
    compile_backend: str,
) -> dict[str, Any]:
    """Apply memory/speed options to a freshly loaded pipeline; returns what was applied."""
    applied: dict[str, Any] = {}
    vae = getattr(pipe, "vae", None)
    for wanted, method, key in (
        (vae_slicing, "enable_slicing", "vae_slicing"),
        (vae_tiling, "enable_tiling", "vae_tiling"),
    ):
        if not wanted:
            continue
        fn = getattr(vae, method, None)
        if not callable(fn):
            raise InvalidRequestError(f"{key}=True, but this pipeline's VAE has no {method}().", param=key)
        fn()
        applied[key] = True
    net = denoiser(pipe)
    if attention not in (None, "", "default"):
        name = str(attention).lower()
        if name == "slicing":
            if not callable(getattr(pipe, "enable_attention_slicing", None)):
                raise InvalidRequestError(
                    f"{type(pipe).__name__} has no attention slicing.", param="attention"
                )
            pipe.enable_attention_slicing()
        elif name == "xformers":
            pipe.enable_xformers_memory_efficient_attention()
        else:
            backend = "native" if name == "sdpa" else name
            if net is None or not callable(getattr(net, "set_attention_backend", None)):
                raise InvalidRequestError(
                    f"attention={attention!r} is not supported by {type(pipe).__name__}.", param="attention"
                )
            try:
                net.set_attention_backend(backend)
            except (ValueError, RuntimeError, ImportError) as exc:
                raise InvalidRequestError(
                    f"attention={attention!r} cannot be used: {exc}", param="attention"
                ) from exc
        applied["attention"] = name
    if compile:
        if net is None:
            raise InvalidRequestError(
                f"compile=True, but {type(pipe).__name__} has no unet/transformer.", param="compile"
            )
        kwargs: dict[str, Any] = {"backend": compile_backend}
        if compile_mode:
            kwargs["mode"] = compile_mode
        net.compile(**kwargs)  # in place: the module type, LoRA and from_pipe keep working
        applied["compile"] = {"backend": compile_backend, "mode": compile_mode}
    return applied


# -- releasing memory -----------------------------------------------------------------------


def free_memory(device: Optional[str], *, compiled: bool = False) -> None:
    """Collect garbage and hand freed memory back to the device allocator and to the OS."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        if compiled:
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
        kind = (device or "").split(":", 1)[0]
        if kind == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
        elif kind == "mps":
            with contextlib.suppress(Exception):
                torch.mps.empty_cache()
    if sys.platform.startswith("linux"):
        # glibc keeps freed heap pages mapped; malloc_trim returns them so RSS really drops.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
