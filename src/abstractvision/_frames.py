"""Frame rules of video models: which frame counts, frame rates and sizes a model accepts.

Video VAEs compress time: a Wan or CogVideoX model makes ``4k+1`` frames, LTX-Video ``8k+1``,
Mochi ``6k+1``. Two sources say so, before anything is loaded:

- the capability registry (``num_frames`` with ``multiple_of`` + ``offset``, ``min``/``max``,
  the ``fps`` default, the ``width`` multiple) when the model has an entry;
- the backend's declaration, ``VisionBackendCapabilities.raw["video"]`` (the Diffusers backend
  reads it from the model's VAE and transformer configs)::

      {"num_frames": {"multiple_of": 4, "offset": 1}, "fps": 16, "size_multiple": 16}

:func:`frame_rule` merges both (the registry's frame rule and frame rate, from the model card,
win; the backend's fill what the registry does not say); :func:`check_video_params` refuses a request the
declared rule cannot run (the managers call it while planning, so a server answers 400 at
submission instead of queueing a job that fails later), and :meth:`FrameRule.frames_for`
turns a duration into a frame count the model accepts. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from .errors import InvalidRequestError

__all__ = ["FrameRule", "check_video_params", "declared_video", "frame_rule"]

_VIDEO_TASKS = ("text_to_video", "image_to_video")


@dataclass(frozen=True)
class FrameRule:
    """Frame counts ``offset + k * multiple_of`` within ``[min, max]``; the default ``fps``."""

    multiple_of: int = 1
    offset: int = 0
    min: int = 1
    max: Optional[int] = None
    fps: Optional[int] = None
    size_multiple: Optional[int] = None
    source: str = ""

    def describe(self) -> str:
        if self.multiple_of <= 1:
            return "any frame count"
        return f"{self.multiple_of}k+{self.offset}" if self.offset else f"a multiple of {self.multiple_of}"

    def accepts(self, frames: int) -> bool:
        if frames < self.min or (self.max is not None and frames > self.max):
            return False
        return self.multiple_of <= 1 or (frames - self.offset) % self.multiple_of == 0

    def valid_near(self, target: int) -> list[int]:
        """The valid counts just below and above ``target`` (within the bounds)."""
        step = max(1, self.multiple_of)
        below = target - ((target - self.offset) % step)
        out = [n for n in (below, below + step) if self.accepts(n)]
        if not out and self.max is not None:  # past the end: the largest valid count
            top = self.max - ((self.max - self.offset) % step)
            out = [top] if self.accepts(top) else []
        return out

    def frames_for(self, seconds: float, fps: int) -> int:
        """The valid frame count nearest ``seconds * fps`` (a tie goes to the longer clip).

        Raises :class:`InvalidRequestError` when the model cannot make a clip that long.
        """
        target = max(1, round(seconds * fps))
        step = max(1, self.multiple_of)
        below = target - ((target - self.offset) % step)
        candidates = [n for n in (below, below + step) if self.accepts(n)]
        if not candidates:
            most = self.max if self.max is not None else target
            raise InvalidRequestError(
                f"{seconds:g} s at {fps} fps is {target} frames, but this model makes at most {most} frames "
                f"({most / fps:.2g} s at {fps} fps; frame counts: {self.describe()}, from {self.source}). "
                f"Ask for fewer seconds.",
                param="seconds",
            )
        return min(candidates, key=lambda n: (abs(n - target), -n))

    def check(self, frames: int) -> None:
        """Raise :class:`InvalidRequestError` (naming valid counts) when ``frames`` does not fit."""
        if self.accepts(frames):
            return
        near = self.valid_near(frames)
        hint = f" (for example {' or '.join(map(str, near))})" if near else ""
        bounds = f", from {self.min} to {self.max}" if self.max is not None else ""
        raise InvalidRequestError(
            f"num_frames={frames} does not fit this model: it needs num_frames = {self.describe()}{hint}"
            f"{bounds}; from {self.source}.",
            param="num_frames",
        )


def declared_video(caps: Any) -> Mapping[str, Any]:
    """The backend's ``raw["video"]`` declaration (empty when it declares none)."""
    raw = getattr(caps, "raw", None) if caps is not None else None
    video = raw.get("video") if isinstance(raw, Mapping) else None
    return video if isinstance(video, Mapping) else {}


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def frame_rule(registry: Any, model_id: Optional[str], task: str, caps: Any) -> Optional[FrameRule]:
    """The frame rule of ``task`` on a model (registry entry and/or backend declaration); ``None``
    when neither says anything."""
    declared = declared_video(caps)
    found = declared.get("num_frames")
    frames: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    spec = None
    if registry is not None and model_id is not None and registry.supports(model_id, task):
        spec = registry.task_spec(model_id, task)
    reg_frames = spec.params.get("num_frames") if spec is not None else None
    reg_fps = spec.params.get("fps") if spec is not None else None
    reg_width = spec.params.get("width") if spec is not None else None
    if not declared and reg_frames is None and reg_fps is None:
        return None
    multiple, offset, source = 1, 0, ""
    if reg_frames is not None and reg_frames.multiple_of:
        multiple, offset = int(reg_frames.multiple_of), int(reg_frames.offset or 0)
        source = f"the registry entry {registry.resolve(model_id)!r}"
    elif _int(frames.get("multiple_of")):
        multiple, offset = int(frames["multiple_of"]), _int(frames.get("offset")) or 0
        source = str(declared.get("source") or "the backend's declaration")
    maxima = [
        m
        for m in (
            _int(reg_frames.max) if reg_frames is not None and reg_frames.max is not None else None,
            _int(frames.get("max")),
            _int(getattr(caps, "max_frames", None)),
        )
        if m is not None
    ]
    minimum = _int(reg_frames.min) if reg_frames is not None and reg_frames.min is not None else None
    fps = _int(reg_fps.default) if reg_fps is not None and reg_fps.has_default else None
    if fps is None:
        fps = _int(declared.get("fps"))
    size = _int(declared.get("size_multiple"))
    if size is None and reg_width is not None and reg_width.multiple_of:
        size = int(reg_width.multiple_of)
    return FrameRule(
        multiple_of=multiple,
        offset=offset,
        min=max(1, minimum or 1),
        max=min(maxima) if maxima else None,
        fps=fps,
        size_multiple=size,
        source=source or "the model's declaration",
    )


def check_video_params(caps: Any, task: str, params: Mapping[str, Any]) -> None:
    """Refuse ``num_frames`` / ``width`` / ``height`` the backend's declared video rule cannot run.

    Only the backend's declaration is checked here: registry constraints are checked by
    :meth:`~abstractvision.VisionModelCapabilitiesRegistry.validate_params`.
    """
    if task not in _VIDEO_TASKS:
        return
    rule = frame_rule(None, None, task, caps) if declared_video(caps) else None
    if rule is None:
        return
    frames = params.get("num_frames")
    if isinstance(frames, int) and not isinstance(frames, bool):
        rule.check(frames)
    multiple = rule.size_multiple
    for name in ("width", "height"):
        value = params.get(name)
        if multiple and isinstance(value, int) and value % multiple:
            lower = max(multiple, value // multiple * multiple)
            raise InvalidRequestError(
                f"{name}={value} must be a multiple of {multiple} for this model "
                f"(for example {lower} or {lower + multiple}); from {rule.source}.",
                param=name,
            )
