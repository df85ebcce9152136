"""Request bodies and response parsing for the OpenAI-compatible backend (no I/O).

What is sent is decided by the server profile (:mod:`.profiles`): which of our
first-class parameters the remote takes and under which names, whether they travel as
body fields or inside sd-server's ``<sd_cpp_extra_args>`` prompt block, which ``extra``
keys it reads. Against the OpenAI API (profile ``openai``) only OpenAI fields go out:
``width``/``height`` become ``size="WxH"``, checked against the model's sizes in the
capability registry, and diffusion parameters given explicitly (``negative_prompt``,
``steps``, ``seed``...) are refused loudly instead of being dropped. Anything a profile
cannot send is listed in :attr:`Prepared.ignored` with the reason.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..._fileio import extension_for_mime
from ..._media import mask_from_openai, mask_to_openai, sniff_mime
from ...errors import InvalidRequestError
from ...model_capabilities import ParamSpec, VisionModelCapabilitiesRegistry
from ...types import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    VideoGenerationRequest,
)
from .profiles import GENERIC, OPENAI_IMAGE_FIELDS, Profile
from .protocol import encode_multipart
from .stream import partial_images_for

__all__ = ["OPENAI_IMAGE_FIELDS"]  # re-exported: the list of OpenAI image fields lives with the profiles

OPENAI_VIDEO_FIELDS = ("user",)
#: ``extra`` keys the backend itself consumes.
CONSUMED_EXTRA = ("model", "size", "seconds", "deadline_s")
_UNSUPPORTED_EXTRA = ("stream", "partial_images")
EXTRA_ARGS_TAG = "sd_cpp_extra_args"

VideoRequest = Union[VideoGenerationRequest, ImageToVideoRequest]


@dataclass(frozen=True)
class ModelRules:
    """What the capability registry says about an OpenAI API model for one task."""

    model: Optional[str] = None
    known: bool = False
    family: str = ""
    task_supported: Optional[bool] = None
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()

    @property
    def sizes(self) -> Optional[tuple[str, ...]]:
        spec = self.params.get("size")
        return tuple(str(s) for s in spec.enum) if spec is not None and spec.enum else None

    @property
    def max_n(self) -> Optional[int]:
        spec = self.params.get("n")
        return int(spec.max) if spec is not None and spec.max is not None else None

    @property
    def multi_image(self) -> bool:
        """Several input images per edit (``image[]``)."""
        return not self.known or self.family == "gpt-image"

    @property
    def b64_only(self) -> bool:
        """gpt-image models always answer base64 and reject ``response_format``."""
        return self.family == "gpt-image"


def model_rules(
    registry: Optional[VisionModelCapabilitiesRegistry], model: Optional[str], task: str
) -> ModelRules:
    if not model or registry is None or model not in registry:
        return ModelRules(model=model)
    spec = registry.get(model)
    tspec = spec.tasks.get(task)
    if spec.provider != "openai" and "openai" not in spec.backends:
        return ModelRules(model=model, task_supported=tspec is not None)
    return ModelRules(
        model=model,
        known=True,
        family=spec.family,
        task_supported=tspec is not None,
        params=dict(tspec.params) if tspec is not None else {},
        inputs=tspec.inputs if tspec is not None else (),
    )


@dataclass(frozen=True)
class Target:
    """Who we are talking to for one call: the model's rules and the server profile."""

    rules: ModelRules
    profile: Profile = GENERIC
    response_format: Optional[str] = None

    @property
    def model(self) -> Optional[str]:
        return self.rules.model

    @property
    def diffusion(self) -> bool:
        """The remote takes diffusion parameters (``seed``, ``steps``...) in some form."""
        return bool(self.profile.params)

    def batch_limit(self, max_batch: int) -> int:
        """Most images one request may ask for: the config, the profile and the model."""
        return min(x for x in (max_batch, self.profile.max_n, self.rules.max_n) if x is not None)


@dataclass
class Prepared:
    """An encoded request body plus what the results should report.

    ``seeds`` are the seeds sent (``None`` where none was); ``sent`` the first-class
    parameters sent, by our names (checked against what the engine reports back);
    ``ignored`` maps each parameter that was not sent to the reason.
    """

    content: bytes
    content_type: str
    n: int
    seeds: tuple[Optional[int], ...]
    ignored: dict[str, str] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)
    sent: dict[str, Any] = field(default_factory=dict)
    stream: bool = False  # asked for streamed partial images (live previews)


# -- building -----------------------------------------------------------------------------


def resolve_size(request: Any, extra_size: Any, target: Target) -> Optional[str]:
    """``size`` from ``extra['size']`` or ``width``/``height``, checked against the model."""
    width, height = request.width, request.height
    size = None if extra_size is None else str(extra_size)
    if width is not None and height is not None:
        derived = f"{width}x{height}"
        if size is not None and size != derived:
            raise InvalidRequestError(
                f"extra size={size!r} contradicts width x height = {derived}.", param="size"
            )
        size = derived
    elif (width is not None or height is not None) and not target.diffusion:
        raise InvalidRequestError(
            "Give both width and height: the OpenAI API takes one size='WxH'.",
            param="height" if height is None else "width",
        )
    sizes = target.rules.sizes
    if size is not None and sizes is not None and size not in sizes:
        raise InvalidRequestError(
            f"size {size} is not valid for model {target.model}; valid sizes: {', '.join(sizes)}.",
            param="size",
        )
    return size


def parse_size(size: Optional[str]) -> Optional[tuple[int, int]]:
    """``"640x480"`` -> ``(640, 480)``; raises for anything else."""
    if size is None:
        return None
    w, sep, h = size.lower().partition("x")
    if not sep or not w.strip().isdigit() or not h.strip().isdigit():
        raise InvalidRequestError(f"size must be 'WIDTHxHEIGHT', got {size!r}.", param="size")
    return int(w), int(h)


def check_common(request: Any, target: Target, n: int) -> None:
    if getattr(request, "lora_adapters", ()):
        raise InvalidRequestError(
            "lora_adapters are not supported by the OpenAI-compatible backend; pass server-specific keys in extra.",
            param="lora_adapters",
        )
    for key in _UNSUPPORTED_EXTRA:
        if request.extra.get(key):
            raise InvalidRequestError(
                f"extra {key!r} (streaming) is not supported by this backend.", param=key
            )
    max_n = target.rules.max_n
    if max_n is not None and n > max_n:
        raise InvalidRequestError(
            f"model {target.model} returns at most n={max_n} per request, got {n}.", param="n"
        )


def _reject_diffusion(request: Any, names: tuple[str, ...], target: Target) -> None:
    given = [name for name in names if getattr(request, name, None) is not None]
    if given:
        who = f"model {target.model}" if target.model else "this provider"
        raise InvalidRequestError(
            f"{', '.join(given)}: not supported by the OpenAI API ({who}). Remove "
            f"{'it' if len(given) == 1 else 'them'}, or set profile='generic' (or another profile that fits "
            "the server) for a server that accepts diffusion parameters.",
            param=given[0],
        )


def split_extra(
    extra: dict[str, Any], target: Target, allowed: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(OpenAI fields to send, other keys to send, keys not sent -> why) from a copy of ``extra``."""
    profile = target.profile
    for key in CONSUMED_EXTRA:
        extra.pop(key, None)
    fields = {k: extra.pop(k) for k in allowed if extra.get(k) is not None}
    for key, value in fields.items():
        spec = target.rules.params.get(key)
        why = spec.violation(value) if spec is not None else None
        if why:
            raise InvalidRequestError(f"{why} for model {target.model}.", param=key)
    ignored = {k: profile.not_sent(k) for k in fields if k not in profile.openai_fields}
    fields = {k: v for k, v in fields.items() if k in profile.openai_fields}
    if profile.extra_keys is None:
        return fields, extra, ignored
    ignored.update({k: profile.not_sent(k) for k in extra if k not in profile.extra_keys})
    return fields, {k: v for k, v in extra.items() if k in profile.extra_keys}, ignored


def seeds_of(request: Any, n: int) -> tuple[Optional[int], ...]:
    if request.seeds:
        return tuple(request.seeds)
    return (request.seed,) + (None,) * (n - 1)  # one explicit seed: the server numbers the rest


def consecutive_seeds(seeds: Optional[tuple[int, ...]]) -> bool:
    """``True`` when one request with ``seed=seeds[0]`` and ``n`` reproduces ``seeds``."""
    return not seeds or all(s == seeds[0] + i for i, s in enumerate(seeds))


def _nest(flat: Mapping[str, Any], into: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, merged into (a deep copy of) ``into``."""
    out = json.loads(json.dumps(into)) if into else {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[leaf] = value
    return out


def diffusion_params(
    request: Any, names: tuple[str, ...], seeds: tuple[Optional[int], ...], target: Target, *, sized: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(remote name -> value to send, our name -> value sent, not sent -> why).

    ``names`` are the first-class parameters of the task; the first seed travels as
    ``seed`` (servers number a batch ``seed, seed+1, ...``: see :func:`consecutive_seeds`).
    ``sized``: ``width``/``height`` already travel as ``size``.
    """
    profile = target.profile
    given = {name: getattr(request, name) for name in names if getattr(request, name, None) is not None}
    if seeds and seeds[0] is not None:
        given["seed"] = seeds[0]
    if profile.refuse_unsendable:
        _reject_diffusion(
            request,
            tuple(
                k
                for k in (*names, "seed")
                if k not in profile.params and not (sized and k in ("width", "height"))
            ),
            target,
        )
    remote: dict[str, Any] = {}
    sent: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    for name, value in given.items():
        if sized and name in ("width", "height") and (profile.dims_as_size or name not in profile.params):
            continue  # they travel as size="WxH"
        if name in profile.params:
            remote[profile.params[name]] = value
            sent[name] = value
        else:
            ignored[name] = profile.not_sent(name)
    return remote, sent, ignored


def _extra_args_block(prompt: str, args: Mapping[str, Any]) -> str:
    """``prompt`` with sd-server's ``<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`` appended."""
    if f"<{EXTRA_ARGS_TAG}>" in prompt:
        raise InvalidRequestError(
            f"the prompt already holds a <{EXTRA_ARGS_TAG}> block; with profile='sdcpp' pass those settings "
            "as parameters (seed=, steps=...) or extra={...} instead.",
            param="prompt",
        )
    if not args:
        return prompt
    # one line: sd-server's regex does not match across newlines (json.dumps escapes them)
    return f"{prompt}<{EXTRA_ARGS_TAG}>{json.dumps(args, separators=(',', ':'))}</{EXTRA_ARGS_TAG}>"


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _image_body(
    request: Union[ImageGenerationRequest, ImageEditRequest], target: Target, names: tuple[str, ...]
) -> tuple[dict[str, Any], Prepared]:
    """The fields of an OpenAI-route image request, shaped by the profile."""
    profile = target.profile
    extra = dict(request.extra)
    n = request.n
    check_common(request, target, n)
    size = resolve_size(request, extra.get("size"), target)
    seeds = seeds_of(request, n)
    body: dict[str, Any] = {"prompt": request.prompt, "n": n}
    ignored: dict[str, str] = {}
    if target.model:
        if profile.model_field:
            body[profile.model_field] = target.model
        else:
            ignored["model"] = profile.not_sent("model")
    if size:
        body["size"] = size
    fields, passthrough, extra_ignored = split_extra(extra, target, OPENAI_IMAGE_FIELDS)
    body.update(fields)
    if (
        "response_format" not in body
        and "response_format" in profile.openai_fields
        and target.response_format
        and not target.rules.b64_only
    ):
        body["response_format"] = target.response_format
    remote, sent, not_sent = diffusion_params(request, names, seeds, target, sized=size is not None)
    if profile.carrier == "prompt_block":
        body["prompt"] = _extra_args_block(request.prompt, _nest(remote, passthrough))
    else:
        body.update(passthrough)
        body.update(_nest(remote))
    if "seed" not in sent:
        seeds = (None,) * n
    ignored.update(not_sent)
    ignored.update(extra_ignored)
    effective = {"size": size} if size else {}
    partials = partial_images_for(request, profile)
    if partials is not None:  # live previews: OpenAI's streamed partial images
        body.update(stream=True, partial_images=partials)
    return body, Prepared(b"", "", n, seeds, ignored, effective, sent, stream=partials is not None)


_GENERATION_PARAMS = ("negative_prompt", "steps", "guidance_scale", "width", "height")
_EDIT_PARAMS = ("negative_prompt", "steps", "guidance_scale", "strength", "width", "height")


def image_generation(request: ImageGenerationRequest, target: Target) -> Prepared:
    """JSON body of ``POST /images/generations``."""
    body, prepared = _image_body(request, target, _GENERATION_PARAMS)
    prepared.content = json.dumps(body).encode()
    prepared.content_type = "application/json"
    return prepared


def _file_part(name: str, data: bytes, stem: str) -> tuple[str, str, bytes, str]:
    """(field, filename, bytes, real content type) for a multipart upload."""
    mime = sniff_mime(data) or "application/octet-stream"
    return name, f"{stem}{extension_for_mime(mime)}", data, mime


def check_edit_inputs(request: ImageEditRequest, target: Target) -> None:
    if request.reference_images and not (target.rules.multi_image and target.profile.multi_image):
        who = f"model {target.model}" if target.rules.known else target.profile.label
        raise InvalidRequestError(
            f"{who} edits a single image; remove reference_images.", param="reference_images"
        )
    if request.mask is not None and target.rules.known and "mask" not in target.rules.inputs:
        raise InvalidRequestError(f"model {target.model} does not take a mask.", param="mask")


def mask_for(profile: Profile, mask: bytes) -> bytes:
    """The mask in the profile's convention (the library's is white = repaint)."""
    return mask_to_openai(mask) if profile.mask == "dual" else mask_from_openai(mask)


def image_edit(request: ImageEditRequest, target: Target) -> Prepared:
    """Multipart body of ``POST /images/edits`` (``image`` or ``image[]``, ``mask``)."""
    check_edit_inputs(request, target)
    images = [request.image, *request.reference_images]
    body, prepared = _image_body(request, target, _EDIT_PARAMS)
    key = "image[]" if len(images) > 1 else "image"
    files = [_file_part(key, data, f"image_{i}") for i, data in enumerate(images)]
    if request.mask is not None:
        files.append(_file_part("mask", mask_for(target.profile, request.mask), "mask"))
    fields = [(k, _form_value(v)) for k, v in body.items()]
    prepared.content_type, prepared.content = encode_multipart(fields, files)
    return prepared


def video(request: VideoRequest, target: Target, *, image: Optional[bytes], as_json: bool) -> Prepared:
    """``POST /videos`` (multipart, ``input_reference``) or the synchronous JSON variant."""
    extra = dict(request.extra)
    check_common(request, target, 1)
    size = resolve_size(request, extra.get("size"), target)
    body: dict[str, Any] = {}
    if request.prompt is not None:
        body["prompt"] = request.prompt
    if target.model:
        body["model"] = target.model
    if size:
        body["size"] = size
    seconds = extra.get("seconds")
    if seconds is not None:
        spec = target.rules.params.get("seconds")
        why = spec.violation(str(seconds)) if spec is not None else None
        if why:
            raise InvalidRequestError(f"{why} for model {target.model}.", param="seconds")
        body["seconds"] = str(seconds)
    fields, passthrough, ignored = split_extra(extra, target, OPENAI_VIDEO_FIELDS)
    body.update(fields)
    seeds: tuple[Optional[int], ...] = (request.seed,)
    names = ("negative_prompt", "num_frames", "fps", "steps", "guidance_scale", "width", "height")
    sent: dict[str, Any] = {}
    if target.diffusion:
        body.update(
            {name: getattr(request, name) for name in names if getattr(request, name, None) is not None}
        )
        if request.seed is not None:
            body["seed"] = sent["seed"] = request.seed
        body.update(passthrough)
    else:
        _reject_diffusion(request, (*names[:5], "seed"), target)
        seeds = (None,)
    prepared = Prepared(b"", "", 1, seeds, ignored, {"size": size} if size else {}, sent)
    if as_json:
        if image is not None:
            mime = sniff_mime(image) or "application/octet-stream"
            body["image"] = f"data:{mime};base64,{base64.b64encode(image).decode()}"
        prepared.content, prepared.content_type = json.dumps(body).encode(), "application/json"
    else:
        files = [_file_part("input_reference", image, "reference")] if image is not None else []
        form = [(k, _form_value(v)) for k, v in body.items()]
        prepared.content_type, prepared.content = encode_multipart(form, files)
    return prepared
