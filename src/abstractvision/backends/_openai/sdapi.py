"""The A1111 web API (``/sdapi/v1/txt2img``, ``/sdapi/v1/img2img``) and what engines report back.

AUTOMATIC1111, Forge, SD.Next and stable-diffusion.cpp's ``sd-server`` serve these routes:
one JSON body with every parameter (``steps``, ``cfg_scale``, ``seed``, ``batch_size``,
``init_images``, ``mask``, ``denoising_strength``...), answered by
``{"images": [base64...], "parameters": {...}, "info": "<json>"}``. ``info`` carries the
seeds A1111 and Forge really used (``all_seeds``); sd-server leaves it empty.

Engines of this family also write what they ran into each PNG, as a ``parameters`` text
chunk in A1111's "infotext" layout (prompt, ``Negative prompt: ...``, then
``Steps: 2, CFG scale: 1.0, Seed: 7, Size: 64x64, ...``); sd-server does so on its OpenAI
routes too. :func:`engine_report` reads either source so that the backend reports the
seed the engine used (``seed_source="engine"``) and notices parameters it did not apply.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional, Union

from ..._media import read_png_text
from ...types import ImageEditRequest, ImageGenerationRequest
from .payloads import (
    OPENAI_IMAGE_FIELDS,
    Prepared,
    Target,
    _nest,
    check_common,
    check_edit_inputs,
    diffusion_params,
    mask_for,
    parse_size,
    resolve_size,
    seeds_of,
    split_extra,
)
from .protocol import Reply, response_error
from .responses import MediaItem

TXT2IMG_PATH = "/sdapi/v1/txt2img"
IMG2IMG_PATH = "/sdapi/v1/img2img"
SD_MODELS_PATH = "/sdapi/v1/sd-models"

_GENERATION_PARAMS = ("negative_prompt", "steps", "guidance_scale", "width", "height")
_EDIT_PARAMS = ("negative_prompt", "steps", "guidance_scale", "strength", "width", "height")


def _body(
    request: Union[ImageGenerationRequest, ImageEditRequest], target: Target, names: tuple[str, ...]
) -> tuple[dict[str, Any], Prepared]:
    profile = target.profile
    extra = dict(request.extra)
    n = request.n
    check_common(request, target, n)
    size = parse_size(resolve_size(request, extra.get("size"), target))
    if size is not None and (request.width, request.height) != size:
        request_size = {"width": size[0], "height": size[1]}
    else:
        request_size = {}
    seeds = seeds_of(request, n)
    _fields, passthrough, ignored = split_extra(extra, target, OPENAI_IMAGE_FIELDS)
    flat: dict[str, Any] = {}
    if target.model and profile.model_field:
        flat[profile.model_field] = target.model
    remote, sent, not_sent = diffusion_params(request, names, seeds, target, sized=False)
    for name, value in request_size.items():  # from extra["size"]
        remote[profile.params[name]] = sent[name] = value
    flat.update(remote)
    body = _nest(flat, {**passthrough, "prompt": request.prompt, "batch_size": n})
    if "seed" not in sent:
        seeds = (None,) * n
    return body, Prepared(b"", "", n, seeds, {**not_sent, **ignored}, {}, sent)


def txt2img(request: ImageGenerationRequest, target: Target) -> Prepared:
    """JSON body of ``POST /sdapi/v1/txt2img``."""
    body, prepared = _body(request, target, _GENERATION_PARAMS)
    prepared.content, prepared.content_type = json.dumps(body).encode(), "application/json"
    return prepared


def img2img(request: ImageEditRequest, target: Target) -> Prepared:
    """JSON body of ``POST /sdapi/v1/img2img``: ``init_images``, ``mask`` (white = repaint)."""
    check_edit_inputs(request, target)
    body, prepared = _body(request, target, _EDIT_PARAMS)
    body["init_images"] = [base64.b64encode(request.image).decode()]
    if request.mask is not None:
        body["mask"] = base64.b64encode(mask_for(target.profile, request.mask)).decode()
        body.setdefault("inpainting_mask_invert", 0)
    prepared.content, prepared.content_type = json.dumps(body).encode(), "application/json"
    return prepared


def media_items(
    doc: Any, reply: Reply, *, n: int, what: str
) -> tuple[list[MediaItem], Optional[dict[str, Any]]]:
    """The first ``n`` images and the parsed ``info`` object (``None`` when empty or not JSON)."""
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list) or not images:
        raise response_error(f"{what}: the response has no 'images' list.", reply)
    out = []
    for i, entry in enumerate(images[:n]):
        if not isinstance(entry, str) or not entry:
            raise response_error(f"{what}: images[{i}] is not a base64 string.", reply)
        out.append(MediaItem(b64=entry))
    info: Any = doc.get("info")
    if isinstance(info, str):
        try:
            info = json.loads(info) if info.strip() else None
        except ValueError:
            info = None
    return out, info if isinstance(info, dict) else None


# -- what the engine reports --------------------------------------------------------------

_INFOTEXT_KEYS = {"Steps": "steps", "CFG scale": "guidance_scale", "Seed": "seed", "Size": "size"}
_INFOTEXT_FIELD = re.compile(r"(?:^|, )(Steps|CFG scale|Seed|Size): ([^,]*)")


def parse_infotext(text: str) -> dict[str, Any]:
    """Seed, steps, CFG scale, size and negative prompt from an A1111 ``parameters`` text."""
    lines = text.split("\n")
    last = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Steps: ")), None)
    if last is None:
        return {}
    out: dict[str, Any] = {"negative_prompt": ""}
    for line in lines[:last]:
        if line.startswith("Negative prompt: "):
            out["negative_prompt"] = line[len("Negative prompt: ") :]
    for key, value in _INFOTEXT_FIELD.findall(lines[last]):
        name = _INFOTEXT_KEYS[key]
        if name in out:
            continue  # the first occurrence is the generation's (later ones are hires/extras)
        try:
            out[name] = int(value) if name in ("steps", "seed") else value if name == "size" else float(value)
        except ValueError:
            continue
    return out


def _from_info(info: dict[str, Any], index: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seeds = info.get("all_seeds")
    if isinstance(seeds, list) and index < len(seeds) and isinstance(seeds[index], int):
        out["seed"] = seeds[index]
    elif index == 0 and isinstance(info.get("seed"), int):
        out["seed"] = info["seed"]
    if isinstance(info.get("steps"), int):
        out["steps"] = info["steps"]
    if isinstance(info.get("cfg_scale"), (int, float)):
        out["guidance_scale"] = float(info["cfg_scale"])
    negatives = info.get("all_negative_prompts")
    if isinstance(negatives, list) and index < len(negatives) and isinstance(negatives[index], str):
        out["negative_prompt"] = negatives[index]
    elif isinstance(info.get("negative_prompt"), str):
        out["negative_prompt"] = info["negative_prompt"]
    return out


def engine_report(
    data: bytes, *, item_seed: Optional[int] = None, info: Optional[dict[str, Any]] = None, index: int = 0
) -> tuple[dict[str, Any], Optional[str]]:
    """(what the engine says it ran, where it says so) for one output image.

    Sources, first found wins: a per-image ``seed`` in the JSON answer, A1111's ``info``,
    the PNG's ``parameters`` text chunk.
    """
    if item_seed is not None:
        return {"seed": item_seed}, "the response's 'seed'"
    if info:
        found = _from_info(info, index)
        if found:
            return found, "the response's 'info'"
    text = read_png_text(data).get("parameters") if data[:8] == b"\x89PNG\r\n\x1a\n" else None
    if text:
        found = parse_infotext(text)
        if found:
            return found, "the image's 'parameters' text"
    return {}, None


def _differs(name: str, asked: Any, reported: Any) -> bool:
    if name == "guidance_scale":
        try:
            return abs(float(asked) - float(reported)) > 1e-3 * max(1.0, abs(float(asked)))
        except (TypeError, ValueError):
            return True
    if name == "negative_prompt":
        return str(asked).strip() != str(reported).strip()
    return bool(asked != reported)


def not_applied(
    sent: dict[str, Any], report: dict[str, Any], source: Optional[str], *, hint: bool = False
) -> dict[str, str]:
    """Parameters sent whose value the engine reports otherwise -> why (``ignored_parameters``).

    ``hint``: add that another profile may send the parameter where the server reads it
    (for ``generic``, which sends body fields a server may not read).
    """
    out: dict[str, str] = {}
    for name in ("seed", "steps", "guidance_scale", "negative_prompt"):
        if name in sent and name in report and _differs(name, sent[name], report[name]):
            why = f"sent {name}={sent[name]!r}, but the server ran {report[name]!r} (per {source})"
            if hint:
                why += (
                    ": it does not read it where this profile sends it; a profile that fits the server "
                    "(profile='auto' detects one) sends it where the server reads it"
                )
            out[name] = why
    return out
