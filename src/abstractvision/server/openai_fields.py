"""OpenAI request fields that are not first-class parameters: honoured, mapped, or recorded as ignored.

OpenAI clients send fields a diffusion engine has no knob for. Each is decided per served
model, once the request's model is known (:func:`apply_openai_fields`, called by both the
in-process and the distributed server before the request is validated, so both answer alike):

================== ======================================================================
field              on a local engine (Diffusers, stable-diffusion.cpp)
================== ======================================================================
``quality``        mapped to ``steps`` from the model's registry presets
                   (:mod:`abstractvision._quality`); ``auto`` keeps the engine default;
                   without presets, or with ``steps`` given, recorded as ignored
``background``     ``opaque``/``auto`` accepted (the engines make opaque images);
                   ``transparent`` is a 400
``style``,         accepted and recorded in ``metadata["ignored_parameters"]``
``user``,
``safety_identifier``,
``moderation``,
``input_fidelity``
``seconds``        videos: mapped to ``num_frames`` + ``fps`` the model accepts
                   (:mod:`abstractvision._frames`), at the request's ``fps``, else the served
                   model's ``request_defaults`` fps, else the model's; a clip it cannot make is a 400
================== ======================================================================

A served model whose backend talks to an OpenAI-compatible server declares the OpenAI fields
its profile sends (``VisionBackendCapabilities.raw["openai_fields"]``): those are passed on
as they are (in ``extra``), and the backend reports what its remote ignores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._frames import frame_rule
from .._quality import QUALITY_ALIASES, quality_steps
from ..errors import InvalidRequestError
from .errors import APIError, error_from_exception

__all__ = ["DEFAULT_VIDEO_FPS", "IGNORED_LOCALLY", "IMAGE_FIELDS", "apply_openai_fields", "native_fields"]

#: frames per second of a ``seconds`` request when neither the backend nor the registry knows one
DEFAULT_VIDEO_FPS = 8
#: OpenAI image fields the routes take besides our parameters (``output_format`` and
#: ``output_compression`` are the manager's own options)
IMAGE_FIELDS = ("quality", "background", "style", "user", "safety_identifier", "moderation", "input_fidelity")
#: why a local engine cannot use a field (the ``ignored_parameters`` value)
IGNORED_LOCALLY = {
    "style": "'style' (DALL-E 3's vivid/natural) has no equivalent in a diffusion engine; describe the style "
    "in the prompt",
    "user": "'user' identifies end users to OpenAI's abuse monitoring; this server does not use it",
    "safety_identifier": "'safety_identifier' identifies end users to OpenAI's abuse monitoring; this server "
    "does not use it",
    "moderation": "this server runs no content moderation, so 'moderation' changes nothing",
    "input_fidelity": "'input_fidelity' is a GPT Image setting; a diffusion edit follows 'strength'",
}


def native_fields(engine: Any) -> frozenset[str]:
    """OpenAI fields the engine's backend sends to its remote itself (its profile's)."""
    raw = getattr(engine.caps, "raw", None) if engine.caps is not None else None
    fields = raw.get("openai_fields") if isinstance(raw, Mapping) else None
    return frozenset(str(f) for f in fields) if isinstance(fields, (list, tuple)) else frozenset()


def apply_openai_fields(engine: Any, spec: Any) -> None:
    """Turn ``spec.openai`` (the OpenAI fields of the request) into parameters of ``spec``.

    Raises :class:`~abstractvision.server.errors.APIError` (400) for what the model cannot do.
    """
    fields = {k: v for k, v in spec.openai.items() if v is not None}
    if not fields:
        return
    try:
        _apply(engine, spec, fields)
    except APIError:
        raise
    except InvalidRequestError as exc:
        raise error_from_exception(exc) from None


def _apply(engine: Any, spec: Any, fields: dict[str, Any]) -> None:
    params = spec.params
    native = native_fields(engine)
    forwarded = {k: v for k, v in fields.items() if k in native}
    ignored: dict[str, str] = {}
    for name, value in fields.items():
        if name in forwarded:
            continue
        if name == "quality":
            _quality(engine, spec, value, ignored)
        elif name == "background":
            if value == "transparent":
                raise APIError(
                    400,
                    f"Model {engine.name!r} ({engine.kind}) makes opaque images: background='transparent' "
                    "is not available here. Use background='opaque' or 'auto' (or remove the background "
                    "from the result yourself).",
                    param="background",
                    code="unsupported_background",
                )
            spec.summary["background"] = "opaque"
        elif name == "seconds":
            _seconds(engine, spec, value, ignored)
        elif name in IGNORED_LOCALLY:
            ignored[name] = IGNORED_LOCALLY[name]
    if forwarded:
        params["extra"] = {**dict(params.get("extra") or {}), **forwarded}
        spec.summary.update(forwarded)
    if ignored:
        params["ignored_parameters"] = {**dict(params.get("ignored_parameters") or {}), **ignored}


def _quality(engine: Any, spec: Any, value: str, ignored: dict[str, str]) -> None:
    level = QUALITY_ALIASES.get(value, value)
    if level == "auto":
        return
    if spec.params.get("steps") is not None:
        ignored["quality"] = f"'steps'={spec.params['steps']} was given; it decides the quality"
        return
    manager = engine.manager
    presets = quality_steps(manager.registry, manager.model_id, spec.task)
    if presets is None:
        ignored["quality"] = (
            f"model {engine.name!r} has no step presets for quality (no capability-registry entry with "
            "default steps); pass 'steps', or serve the model with a registry id"
        )
        return
    spec.params["steps"] = presets[level]
    spec.summary.update({"quality": level, "steps": presets[level]})


def _seconds(engine: Any, spec: Any, value: Any, ignored: dict[str, str]) -> None:
    seconds = float(value)
    params = spec.params
    if params.get("num_frames") is not None:
        ignored["seconds"] = f"'num_frames'={params['num_frames']} was given; it decides the length"
        return
    manager = engine.manager
    rule = frame_rule(manager.registry, manager.model_id, spec.task, engine.caps)
    operator_fps = (getattr(engine, "request_defaults", None) or {}).get("fps")
    fps = params.get("fps") or operator_fps or (rule.fps if rule is not None else None) or DEFAULT_VIDEO_FPS
    frames = rule.frames_for(seconds, fps) if rule is not None else max(1, round(seconds * fps))
    params["num_frames"], params["fps"] = frames, fps
    spec.summary.update({"num_frames": frames, "fps": fps})
