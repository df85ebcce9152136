"""What the managers hand backends for reporting: progress, and live previews.

:class:`ProgressRelay` forwards :class:`~abstractvision.ProgressEvent` s to the caller's
``on_progress``. :class:`PreviewRelay` forwards :class:`~abstractvision.PreviewEvent` s to the
caller's ``on_preview`` and decides *when* a preview is worth making (``preview_every`` steps,
or ``partial_images`` evenly spread over the steps): a backend asks :func:`wants_preview`
before it decodes anything, so a call without ``on_preview`` costs nothing, and one with it
costs only the previews it asked for.

Backends only need the request field ``on_preview`` (a callable) and :func:`wants_preview`;
:func:`encode_preview` turns a PIL image into the event's bytes. Standard library only (Pillow
is imported by :func:`encode_preview`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from ._lazy import lazy_module
from .errors import AbstractVisionError, BackendError, InvalidRequestError
from .types import PreviewEvent, ProgressEvent

if TYPE_CHECKING:  # pragma: no cover
    import dataclasses
else:
    dataclasses = lazy_module("dataclasses", globals())

__all__ = ["PreviewRelay", "ProgressRelay", "encode_preview", "wants_preview"]


def _wrap_callback_error(name: str, event: str, exc: Exception) -> BackendError:
    # the same BackendError whether it fails here or inside an engine's step loop, where the
    # managers already wrapped it
    return BackendError(
        f"{name} raised {type(exc).__name__}: {exc} (it is called with one {event}; "
        "use cancel= or raise GenerationCancelledError to stop a generation)."
    )


class ProgressRelay:
    """Forwards engine progress to the caller's ``on_progress``, stamping elapsed time."""

    def __init__(
        self, task: str, callback: Optional[Callable[[ProgressEvent], None]], started: float
    ) -> None:
        self.task = task
        self.callback = callback
        self.started = started

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is None:
            return
        if event.elapsed_s is None:
            event = dataclasses.replace(event, elapsed_s=round(time.perf_counter() - self.started, 6))
        try:
            self.callback(event)
        except AbstractVisionError:  # GenerationCancelledError raised on purpose, for example
            raise
        except Exception as exc:
            raise _wrap_callback_error("on_progress", "ProgressEvent", exc) from exc

    def emit(self, phase: str, **fields: Any) -> None:
        if self.callback is not None:
            self(ProgressEvent(task=self.task, phase=phase, **fields))


def check_preview_options(
    callback: Any, every: Any, count: Any
) -> tuple[Optional[Callable[[PreviewEvent], None]], Optional[int], Optional[int]]:
    """Validate ``on_preview``, ``preview_every`` and ``partial_images`` (one schedule at most)."""
    from ._validation import check_ranged

    if callback is not None and not callable(callback):
        raise InvalidRequestError(
            "'on_preview' must be a callable taking a PreviewEvent.", param="on_preview"
        )
    every = check_ranged(every, "preview_every")
    count = check_ranged(count, "partial_images")
    if every is not None and count is not None:
        raise InvalidRequestError(
            "Give 'preview_every' (a preview every N steps) or 'partial_images' (N previews spread over "
            "the steps), not both.",
            param="partial_images",
        )
    if callback is None and (every is not None or count):
        name = "preview_every" if every is not None else "partial_images"
        raise InvalidRequestError(
            f"'{name}' needs 'on_preview' (the callable that receives the previews).", param=name
        )
    return callback, every, count


class PreviewRelay:
    """The request's ``on_preview``: schedules previews and forwards them to the caller.

    ``every``: one preview every N steps (default 1: every step). ``count``: that many previews
    per output, at evenly spread steps (OpenAI's ``partial_images``; 0 means none).
    ``index_offset`` shifts the output index of a batch split into several engine calls.
    """

    def __init__(
        self,
        task: str,
        callback: Callable[[PreviewEvent], None],
        started: float,
        *,
        every: Optional[int] = None,
        count: Optional[int] = None,
        index_offset: int = 0,
    ) -> None:
        self.task = task
        self.callback = callback
        self.started = started
        self.every = every
        self.count = count
        self.index_offset = index_offset
        self._sent: dict[int, int] = {}

    def shifted(self, offset: int) -> PreviewRelay:
        """The same relay for a later chunk of a batch (its outputs start at ``offset``)."""
        out = PreviewRelay(
            self.task, self.callback, self.started, every=self.every, count=self.count, index_offset=offset
        )
        out._sent = self._sent
        return out

    def wants(self, step: Optional[int], total: Optional[int]) -> bool:
        """Should the backend make a preview after ``step`` (1-based) of ``total``?"""
        if self.count is not None:
            if self.count == 0:
                return False
            if step is None or not total:
                return sum(self._sent.values()) < self.count
            return step in _spread(total, self.count)
        if step is None:
            return True
        return step % (self.every or 1) == 0

    def __call__(self, event: PreviewEvent) -> None:
        changes: dict[str, Any] = {}
        if event.elapsed_s is None:
            changes["elapsed_s"] = round(time.perf_counter() - self.started, 6)
        if self.index_offset:
            changes["index"] = event.index + self.index_offset
        if changes:
            event = dataclasses.replace(event, **changes)
        self._sent[event.index] = self._sent.get(event.index, 0) + 1
        try:
            self.callback(event)
        except AbstractVisionError:
            raise
        except Exception as exc:
            raise _wrap_callback_error("on_preview", "PreviewEvent", exc) from exc


def _spread(total: int, count: int) -> set[int]:
    """``count`` steps of ``1..total`` evenly spread, the last one at ``total`` at the latest."""
    return {min(total, max(1, math.ceil(total * j / (count + 1)))) for j in range(1, count + 1)}


def wants_preview(callback: Any, step: Optional[int], total: Optional[int]) -> bool:
    """Whether a backend should make a preview now (``False`` without ``on_preview``)."""
    if callback is None:
        return False
    wants = getattr(callback, "wants", None)
    return bool(wants(step, total)) if callable(wants) else True


def encode_preview(image: Any, *, quality: int = 80) -> tuple[bytes, int, int]:
    """A PIL image as preview bytes (JPEG) with its size."""
    import io

    rgb = image.convert("RGB") if image.mode != "RGB" else image
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), rgb.width, rgb.height
