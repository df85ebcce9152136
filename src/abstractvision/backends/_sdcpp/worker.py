"""The stable-diffusion.cpp engine, and the worker process that hosts it.

:class:`Engine` wraps ``stable_diffusion_cpp.StableDiffusion``: it loads the model once,
checks that the native context really exists (a failed load returns a NULL pointer that the
binding does not report), runs generations and upscales, and reports progress and engine log
lines through an ``emit`` callable. It reports failures as :class:`EngineError` with a
``kind`` (``"load"``, ``"invalid"``, ``"runtime"``).

Run as ``python -m abstractvision.backends._sdcpp.worker``, this module is the worker
process: it moves its stdin/stdout to a private message channel (length-prefixed pickles,
see :func:`write_message`), points the native library's stdout at stderr, loads the model
named by the first message and then serves one request at a time. A native crash only
kills this process; the parent turns it into a typed error and starts a new worker.

Test hook (worker process only): the environment variable ``ABSTRACTVISION_SDCPP_FAULT``
injects a fault, as ``ACTION@WHERE`` with ACTION one of ``abort`` (SIGABRT), ``segv``
(a real NULL read), ``exit`` (exit code 70) or ``hang`` (sleep forever) and WHERE either
``load`` or ``step=N`` (the N-th sampling step). It exists so tests can exercise the
parent's crash, hang and restart handling; it is ignored when the engine runs in-process.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, Optional

from .loras import applied_stats

FAULT_ENV = "ABSTRACTVISION_SDCPP_FAULT"

Emit = Callable[[dict[str, Any]], None]

_HEADER = struct.Struct("<Q")
#: the ctypes callbacks the native library currently points at; module-level so they
#: outlive any one Engine (a collected callback would leave the library a dangling pointer)
_INSTALLED_CALLBACKS: list[Any] = []
_LOG_LEVELS = {0: "debug", 1: "info", 2: "warning", 3: "error"}


# -- message framing (shared with the parent) ---------------------------------------------


def write_message(fh: BinaryIO, message: dict[str, Any]) -> None:
    """Write one length-prefixed pickled message and flush."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(_HEADER.pack(len(data)) + data)
    fh.flush()


def read_message(fh: BinaryIO) -> Optional[dict[str, Any]]:
    """Read one message; ``None`` at end of stream (the other side is gone)."""
    head = _read_exact(fh, _HEADER.size)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    body = _read_exact(fh, size)
    if body is None:
        return None
    message = pickle.loads(body)
    return message if isinstance(message, dict) else None


def _read_exact(fh: BinaryIO, size: int) -> Optional[bytes]:
    chunks = []
    remaining = size
    while remaining:
        chunk = fh.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# -- the engine ---------------------------------------------------------------------------


class EngineError(Exception):
    """A failure the engine detected itself; ``kind`` is ``load``, ``invalid`` or ``runtime``."""

    def __init__(self, kind: str, message: str, log: Optional[list[str]] = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.log = list(log or [])


def _parse_fault(spec: Optional[str]) -> tuple[str, str]:
    if not spec or "@" not in spec:
        return "", ""
    action, where = spec.strip().split("@", 1)
    return action.strip(), where.strip()


def _trigger(action: str) -> None:
    sys.stderr.write(f"[abstractvision sdcpp worker] injected fault: {action}\n")
    sys.stderr.flush()
    if action == "abort":
        os.abort()
    elif action == "segv":
        import ctypes

        ctypes.string_at(0)
    elif action == "exit":
        os._exit(70)
    elif action == "hang":
        while True:
            time.sleep(3600)


class Engine:
    """One loaded stable-diffusion.cpp model.

    Args:
        spec: ``{"init": {StableDiffusion keyword arguments}, "verbose": bool}``.
        emit: receives progress and log messages (dicts with ``type``).
        fault: the test hook value (see the module docstring); ``None`` in-process.
    """

    def __init__(self, spec: dict[str, Any], emit: Emit, *, fault: Optional[str] = None) -> None:
        self.spec = spec
        self.emit = emit
        self.verbose = bool(spec.get("verbose"))
        self.fault = _parse_fault(fault)
        self.sd: Any = None
        self.log_tail: deque[str] = deque(maxlen=20)
        self._phase = "loading"
        self._last_loading = 0.0
        self._image = 0
        self._images = 1
        self._last_step = -1
        #: the steps of the current request that want a preview (empty: none)
        self._preview_steps: frozenset[int] = frozenset()
        self._preview_cb: Any = None
        self._preview_total: Optional[int] = None
        self._preview_image = 0
        self._preview_last = 0
        self._step_seen = 0
        #: LoRA path -> (tensors applied, tensors in the file), as the engine logged them
        self.lora_stats: dict[str, tuple[int, int]] = {}

    # -- native callbacks -------------------------------------------------------------

    def _on_log(self, level: int, text: bytes, _data: Any) -> None:
        line = text.decode("utf-8", "replace").rstrip() if text else ""
        if not line:
            return
        name = _LOG_LEVELS.get(level, "info")
        if level >= 2:
            self.log_tail.append(f"{name}: {line}")
        lora = applied_stats(line)
        if lora is not None:
            self.lora_stats[lora[0]] = (lora[1], lora[2])
        if level >= 1 or self.verbose:
            self.emit({"type": "log", "level": name, "text": line})

    def _on_progress(self, step: int, steps: int, seconds: float) -> None:
        if self._phase == "loading":
            now = time.monotonic()
            if step < steps and now - self._last_loading < 0.2:
                return
            self._last_loading = now
            self.emit({"type": "progress", "phase": "loading", "step": int(step), "steps": int(steps)})
            return
        if step <= 0:
            return
        if step <= self._last_step:
            self._image += 1
        self._last_step = step
        self._step_seen += 1
        self.emit(
            {
                "type": "progress",
                "phase": self._phase,
                "step": int(step),
                "steps": int(steps),
                "image": min(self._image, self._images - 1),
                "images": self._images,
                "s_per_it": float(seconds),
            }
        )
        action, where = self.fault
        if action and where == f"step={self._step_seen}":
            _trigger(action)

    def _on_preview(self, step: int, count: int, frames: Any) -> None:
        """The engine's preview of a step (``proj``: its latent-to-RGB projection, ``tae``: TAESD)."""
        if step <= self._preview_last:  # the next image of a batch started
            self._preview_image += 1
        self._preview_last = step
        if step not in self._preview_steps or self.sd is None or count < 1:
            return
        from ..._relays import encode_preview

        images = self.sd._sd_image_t_p_to_images(frames, count, 1)
        data, width, height = encode_preview(images[len(images) // 2])
        image = min(self._preview_image, self._images - 1)
        self.emit(
            {
                "type": "preview",
                "step": int(step),
                "total": self._preview_total,
                "image": image,
                "jpeg": data,
                "width": width,
                "height": height,
            }
        )

    def _install_callbacks(self, sd_cpp: Any) -> None:
        log_cb = sd_cpp.sd_log_callback(self._on_log)
        progress_cb = sd_cpp.sd_progress_callback(
            lambda step, steps, t, _d: self._on_progress(step, steps, t)
        )
        preview_cb = sd_cpp.sd_preview_callback(
            lambda step, count, frames, _noisy, _d: self._on_preview(step, count, frames)
        )
        sd_cpp.sd_set_log_callback(log_cb, None)
        sd_cpp.sd_set_progress_callback(progress_cb, None)
        self._preview_cb = preview_cb
        _INSTALLED_CALLBACKS[:] = [log_cb, progress_cb, preview_cb]

    def _set_previews(self, preview: Optional[dict[str, Any]]) -> None:
        """Switch the engine's previews on for ``preview["steps"]`` with ``preview["method"]``, or off."""
        import stable_diffusion_cpp as sd_cpp
        from stable_diffusion_cpp.stable_diffusion import PREVIEW_MAP

        self._preview_steps = frozenset(preview["steps"]) if preview else frozenset()
        self._preview_total = preview.get("total") if preview else None
        mode = PREVIEW_MAP[preview["method"]] if preview and self._preview_steps else PREVIEW_MAP["none"]
        sd_cpp.sd_set_preview_callback(self._preview_cb, int(mode), 1, True, False, None)

    # -- load -------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Load the model; return ``{"load_s", "engine_version", "system_info", ...}``."""
        import stable_diffusion_cpp as sd_cpp

        self._install_callbacks(sd_cpp)
        self.emit({"type": "started", "pid": os.getpid()})  # the binding imports: the rest is loading
        action, where = self.fault
        if action and where == "load":
            _trigger(action)
        init = dict(self.spec["init"])
        started = time.perf_counter()
        self._phase = "loading"
        try:
            sd = sd_cpp.StableDiffusion(**init)
        except TypeError as exc:
            raise EngineError("load", f"invalid engine option: {exc}") from exc
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError("load", f"{exc}", list(self.log_tail)) from exc
        try:  # the binding prints its own chatter (system info) when verbose; we log instead
            from stable_diffusion_cpp import _logger

            _logger.set_verbose(False)
        except Exception:
            pass
        wants_model = bool(init.get("model_path") or init.get("diffusion_model_path"))
        if wants_model and not sd._model.model:
            sd._model.model = None  # a NULL context: never hand it to free_sd_ctx
            raise EngineError("load", "stable-diffusion.cpp could not load the model", list(self.log_tail))
        if init.get("upscaler_path") and not sd._upscaler.upscaler:
            sd._upscaler.upscaler = None
            raise EngineError("load", "stable-diffusion.cpp could not load the upscaler", list(self.log_tail))
        self.sd = sd
        self._phase = "idle"
        info: dict[str, Any] = {
            "load_s": round(time.perf_counter() - started, 6),
            "engine_version": getattr(sd_cpp, "__version__", None),
            "pid": os.getpid(),
        }
        try:
            info["system_info"] = sd_cpp.sd_get_system_info().decode("utf-8", "replace").strip()
            info["sd_version"] = sd_cpp.sd_version().decode("utf-8", "replace")
        except Exception:  # older bindings lack these helpers
            pass
        if wants_model:
            info.update(self._defaults(sd_cpp))
        if init.get("upscaler_path"):
            info["upscale_factor"] = int(sd_cpp.get_upscale_factor(sd.upscaler))
        return info

    def _defaults(self, sd_cpp: Any) -> dict[str, Any]:
        from stable_diffusion_cpp.stable_diffusion import SAMPLE_METHOD_MAP, SCHEDULER_MAP

        method = sd_cpp.sd_get_default_sample_method(self.sd.model)
        scheduler = sd_cpp.sd_get_default_scheduler(self.sd.model, method)
        names = {
            int(v): k for k, v in SAMPLE_METHOD_MAP.items() if v is not None and k != "sample_method_count"
        }
        sched = {int(v): k for k, v in SCHEDULER_MAP.items() if v is not None and k != "scheduler_count"}
        return {
            "default_sample_method": names.get(int(method)),
            "default_scheduler": sched.get(int(scheduler)),
        }

    # -- requests -----------------------------------------------------------------------

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one request: ``{"op": "generate"|"upscale", ...}``."""
        if self.sd is None:
            raise EngineError("runtime", "the engine is not loaded")
        op = request.get("op")
        if op == "generate":
            return self._generate(request)
        if op == "upscale":
            return self._upscale(request)
        raise EngineError("invalid", f"unknown operation {op!r}")

    def _generate(self, request: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        params = dict(request["params"])
        seeds: list[int] = list(request["seeds"])
        self.lora_stats = {}
        for key in ("init_image", "mask_image"):
            if request.get(key):
                params[key] = Image.open(io.BytesIO(request[key])).convert(
                    "L" if key == "mask_image" else "RGB"
                )
        if request.get("ref_images"):
            params["ref_images"] = [Image.open(io.BytesIO(b)).convert("RGB") for b in request["ref_images"]]
        images: list[tuple[int, Any]] = []
        inference = 0.0
        self._set_previews(request.get("preview"))
        for start, count in _consecutive_runs(seeds):
            # progress counts images over the whole request, across native batch calls
            self._phase, self._image, self._images, self._last_step = "step", len(images), len(seeds), -1
            self._preview_image, self._preview_last = len(images), 0
            began = time.perf_counter()
            try:
                # no progress_callback here: the binding would install a temporary ctypes
                # callback that dangles after the call; ours is installed once and kept alive
                out = self.sd.generate_image(seed=start, batch_count=count, **params)
            except ValueError as exc:
                if "NULL pointer" in str(exc):
                    raise EngineError(
                        "runtime", "stable-diffusion.cpp returned no image", list(self.log_tail)
                    ) from exc
                raise EngineError("invalid", str(exc)) from exc
            except TypeError as exc:
                raise EngineError("invalid", f"unsupported parameter: {exc}") from exc
            finally:
                self._phase = "idle"
            inference += time.perf_counter() - began
            if len(out) != count:
                raise EngineError("runtime", f"stable-diffusion.cpp returned {len(out)} images for {count}")
            images.extend((start + i, img) for i, img in enumerate(out))
        self.emit({"type": "progress", "phase": "encoding"})
        began = time.perf_counter()
        encoded = [
            {"seed": seed, "png": _png(img), "width": img.width, "height": img.height} for seed, img in images
        ]
        return {
            "images": encoded,
            "inference_s": round(inference, 6),
            "encode_s": round(time.perf_counter() - began, 6),
            "loras": dict(self.lora_stats),
        }

    def _upscale(self, request: dict[str, Any]) -> dict[str, Any]:
        import stable_diffusion_cpp as sd_cpp
        from PIL import Image

        if not self.sd._upscaler.upscaler:
            raise EngineError("invalid", "no upscaler is loaded")
        factor = int(sd_cpp.get_upscale_factor(self.sd.upscaler))
        passes = _upscale_passes(request.get("scale"), factor)
        image = Image.open(io.BytesIO(request["image"])).convert("RGB")
        self._phase = "upscaling"
        began = time.perf_counter()
        try:
            for _ in range(passes):
                image = self.sd.upscale(image, upscale_factor=factor)[0].convert("RGB")
        except ValueError as exc:
            raise EngineError("runtime", f"upscaling failed: {exc}", list(self.log_tail)) from exc
        finally:
            self._phase = "idle"
        inference = time.perf_counter() - began
        began = time.perf_counter()
        png = _png(image)
        return {
            "images": [{"seed": None, "png": png, "width": image.width, "height": image.height}],
            "inference_s": round(inference, 6),
            "encode_s": round(time.perf_counter() - began, 6),
            "upscale_factor": factor**passes,
            "passes": passes,
        }


def _upscale_passes(scale: Any, factor: int) -> int:
    if scale is None:
        return 1
    for passes in range(1, 4):
        if abs(float(scale) - factor**passes) < 1e-6:
            return passes
    allowed = ", ".join(str(factor**p) for p in range(1, 4))
    raise EngineError(
        "invalid",
        f"scale={scale} is not available: this upscaler multiplies by {factor} per pass ({allowed})",
    )


def _consecutive_runs(seeds: list[int]) -> list[tuple[int, int]]:
    """Group seeds into runs ``seed, seed+1, ...`` that one native batch call reproduces."""
    runs: list[tuple[int, int]] = []
    for seed in seeds:
        if runs and runs[-1][0] + runs[-1][1] == seed:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((seed, 1))
    return runs


def _png(image: Any) -> bytes:
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# -- worker process -------------------------------------------------------------------------


def _claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Move the message channel off fds 0/1 so native prints cannot corrupt it."""
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # printf from the native library goes to stderr, which the parent keeps
    sys.stdout = sys.stderr
    return channel_in, channel_out


def main() -> None:
    """Worker entry point: load the model from the first message, then serve requests."""
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop us
    channel_in, channel_out = _claim_stdio()
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            write_message(channel_out, message)

    hello = read_message(channel_in)
    if hello is None or hello.get("op") != "load":
        os._exit(2)
    engine = Engine(hello["spec"], send, fault=os.environ.get(FAULT_ENV))
    try:
        info = engine.load()
    except EngineError as exc:
        send({"type": "error", "kind": exc.kind, "message": str(exc), "log": exc.log})
        os._exit(3)  # skip destructors: a half-built native context may crash on free
    except Exception as exc:
        send(
            {
                "type": "error",
                "kind": "load",
                "message": f"{type(exc).__name__}: {exc}",
                "log": list(engine.log_tail),
            }
        )
        os._exit(3)
    send({"type": "ready", **info})
    while True:
        request = read_message(channel_in)
        if request is None or request.get("op") == "exit":
            break
        try:
            result = engine.run(request)
            send({"type": "result", **result})
        except EngineError as exc:
            send({"type": "error", "kind": exc.kind, "message": str(exc), "log": exc.log})
        except Exception as exc:
            send(
                {
                    "type": "error",
                    "kind": "runtime",
                    "message": f"{type(exc).__name__}: {exc}",
                    "log": list(engine.log_tail),
                    "traceback": traceback.format_exc(),
                }
            )
    channel_out.flush()
    os._exit(0)  # the OS frees the model faster and more safely than the destructors


if __name__ == "__main__":
    main()
