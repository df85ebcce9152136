"""One Diffusers pipeline call: arguments, seeds, progress, cancellation, errors, encoding.

Arguments are checked against the pipeline's ``__call__`` signature: a first-class
parameter or ``extra`` key the pipeline does not accept is an
:class:`~abstractvision.errors.InvalidRequestError` naming it, never silently dropped.
Seeds become a list of CPU ``torch.Generator`` objects, one per output, so every image of
a batch has a known seed and the same seed gives the same noise on every device.
Progress and cancellation go through ``callback_on_step_end``: cancelling sets the
pipeline's interrupt flag, so the denoising loop stops within one step.
"""

from __future__ import annotations

import inspect
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ...errors import (
    AbstractVisionError,
    BackendError,
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
)
from ...types import ProgressEvent
from .models import OOM_ADVICE, is_oom
from .runtime import import_torch

__all__ = ["CallOutcome", "PipelineCall", "decode_image", "new_seed", "png_bytes", "run_pipeline"]

#: Arguments the backend sets itself; ``extra`` may not override them.
MANAGED = frozenset(
    {
        "generator",
        "callback_on_step_end",
        "callback_on_step_end_tensor_inputs",
        "callback",
        "callback_steps",
        "output_type",
        "return_dict",
        "num_images_per_prompt",
        "num_videos_per_prompt",
    }
)
#: ``extra`` keys read by the backend, not passed to the pipeline.
BACKEND_EXTRA = frozenset({"model_id"})


_PARAMETERS: dict[Any, dict[str, Any]] = {}


def call_parameters(cls: Any) -> dict[str, Any]:
    """Named parameters of ``cls.__call__`` with their defaults (``**kwargs`` excluded); cached per class."""
    found = _PARAMETERS.get(cls)
    if found is None:
        params = inspect.signature(cls.__call__).parameters
        found = {
            name: (p.default if p.default is not inspect.Parameter.empty else None)
            for name, p in params.items()
            if name != "self"
            and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
        _PARAMETERS[cls] = found
    return found


def new_seed() -> int:
    return random.SystemRandom().randrange(0, 2**32)


def decode_image(data: bytes, mode: str = "RGB") -> Any:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert(mode)


def png_bytes(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class PipelineCall:
    """The arguments of one call, built and checked against one pipeline class."""

    pipe: Any
    task: str
    kwargs: dict[str, Any]
    seeds: tuple[int, ...]

    @classmethod
    def build(cls, pipe: Any, task: str, seeds: Sequence[int], extra: dict[str, Any]) -> PipelineCall:
        call = cls(pipe=pipe, task=task, kwargs={}, seeds=tuple(seeds))
        for key, value in extra.items():
            if key in BACKEND_EXTRA:
                continue
            if key in MANAGED:
                raise InvalidRequestError(
                    f"extra[{key!r}] is set by the backend (use seed/seeds, n/count and on_progress instead).",
                    param=key,
                )
            call.set(key, value, public=f"extra[{key!r}]")
        return call

    @property
    def accepted(self) -> dict[str, Any]:
        return call_parameters(type(self.pipe))

    def accepts(self, name: str) -> bool:
        return name in self.accepted

    def set(self, name: str, value: Any, *, public: Optional[str] = None) -> None:
        """Pass ``name=value`` (skipped when ``value`` is None); unsupported names raise."""
        if value is None:
            return
        if name not in self.accepted:
            shown = public or name
            raise InvalidRequestError(
                f"{shown} is not supported by {type(self.pipe).__name__} for {self.task}. "
                f"Accepted pipeline arguments: {', '.join(sorted(k for k in self.accepted if k not in MANAGED))}.",
                param=public or name,
            )
        self.kwargs[name] = value

    def effective(self, name: str) -> Any:
        """The value the pipeline will use: the one passed, else the signature default."""
        return self.kwargs.get(name, self.accepted.get(name))


@dataclass
class CallOutcome:
    output: Any
    inference_s: float
    steps_run: int


class _Cancelled(Exception):
    """Raised from a legacy ``callback`` (pipelines without an interrupt flag) to stop the loop."""


def _total_steps(pipe: Any, fallback: Optional[int]) -> Optional[int]:
    total = getattr(pipe, "_num_timesteps", None)
    if isinstance(total, int) and total > 0:
        return total
    timesteps = getattr(getattr(pipe, "scheduler", None), "timesteps", None)
    try:
        return len(timesteps) if timesteps is not None else fallback
    except TypeError:
        return fallback


def run_pipeline(
    call: PipelineCall,
    *,
    output_type: str,
    on_progress: Optional[Callable[[ProgressEvent], None]],
    cancel: Any,
    per_output: int = 1,
    output_count_arg: str = "num_images_per_prompt",
    previewer: Optional[Callable[[int, Optional[int], Any], None]] = None,
) -> CallOutcome:
    """Run the pipeline once with CPU generators, progress and cancellation; map native errors.

    ``previewer(step, total, latents)`` sees the latents after each step (live previews,
    :mod:`.previews`); it is only passed when the request asked for previews.
    """
    torch = import_torch()
    pipe, task = call.pipe, call.task
    kwargs = dict(call.kwargs)
    kwargs["generator"] = [torch.Generator(device="cpu").manual_seed(s) for s in call.seeds]
    kwargs["output_type"] = output_type
    if len(call.seeds) > 1 or per_output > 1:
        if not call.accepts(output_count_arg):
            raise InvalidRequestError(
                f"{type(pipe).__name__} cannot produce several outputs per call.", param="n"
            )
        kwargs[output_count_arg] = len(call.seeds)
    fallback = call.effective("num_inference_steps")
    state = {"steps": 0, "cancelled": False}

    def report(step: int, total: Optional[int]) -> None:
        state["steps"] = step
        if on_progress is not None:
            on_progress(
                ProgressEvent(
                    task=task,
                    phase="step",
                    step=step,
                    total_steps=total,
                    progress=(step / total) if total else None,
                )
            )

    if call.accepts("callback_on_step_end"):

        def on_step_end(p: Any, i: int, _t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            total = _total_steps(p, fallback)
            report(i + 1, total)
            if cancel is not None and cancel.is_set():
                p._interrupt = True
                state["cancelled"] = True
            elif previewer is not None:
                previewer(i + 1, total, callback_kwargs.get("latents"))
            return callback_kwargs

        kwargs["callback_on_step_end"] = on_step_end
        if previewer is not None and "latents" in getattr(pipe, "_callback_tensor_inputs", ()):
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
    elif call.accepts("callback"):

        def legacy(i: int, _t: Any, latents: Any) -> None:
            total = _total_steps(pipe, fallback)
            report(i + 1, total)
            if cancel is not None and cancel.is_set():
                state["cancelled"] = True
                raise _Cancelled
            if previewer is not None:
                previewer(i + 1, total, latents)

        kwargs["callback"] = legacy
        kwargs["callback_steps"] = 1
    started = time.perf_counter()
    try:
        output = pipe(**kwargs)
    except _Cancelled as exc:
        raise GenerationCancelledError(f"{task} cancelled after step {state['steps']}.") from exc
    except AbstractVisionError:  # raised on purpose, e.g. by an on_progress callback
        raise
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
            raise InvalidRequestError(f"{type(pipe).__name__} rejected the arguments: {exc}") from exc
        raise BackendError(f"{type(pipe).__name__} failed: TypeError: {exc}") from exc
    except ValueError as exc:  # the pipelines' check_inputs: sizes, strength, frame counts...
        raise InvalidRequestError(f"{type(pipe).__name__} rejected the request: {exc}") from exc
    except Exception as exc:
        if is_oom(exc):
            _empty_device_cache(torch)
            raise OutOfMemoryError(
                f"The device ran out of memory during {task}; {OOM_ADVICE}, or a smaller size."
            ) from exc
        raise BackendError(
            f"{type(pipe).__name__} failed during {task}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        kwargs.clear()  # drop generator/callback references promptly
    if state["cancelled"]:
        raise GenerationCancelledError(f"{task} cancelled after step {state['steps']}.")
    return CallOutcome(
        output=output,
        inference_s=time.perf_counter() - started,
        steps_run=int(state["steps"]),
    )


def _empty_device_cache(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and callable(getattr(mps, "empty_cache", None)):
        try:
            mps.empty_cache()
        except RuntimeError:
            pass
