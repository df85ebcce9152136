"""Model catalogs of the OpenAI-compatible backend: ``GET /models`` and A1111's ``sd-models`` (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ...model_capabilities import VisionModelCapabilitiesRegistry
from ...types import TASKS, ProviderModelInfo
from .protocol import Reply, response_error

_TASK_ALIASES: dict[str, str] = {
    **{t: t for t in TASKS},
    **dict.fromkeys(
        (
            "text-to-image",
            "t2i",
            "txt2img",
            "image_generation",
            "image-generation",
            "images/generations",
            "generations",
        ),
        "text_to_image",
    ),
    **dict.fromkeys(
        (
            "image-to-image",
            "i2i",
            "img2img",
            "image_edit",
            "image-edit",
            "images/edits",
            "edits",
            "inpainting",
        ),
        "image_to_image",
    ),
    **dict.fromkeys(("upscale", "image-upscale", "super-resolution", "super_resolution"), "image_upscale"),
    **dict.fromkeys(
        ("text-to-video", "t2v", "video_generation", "video-generation", "videos"), "text_to_video"
    ),
    **dict.fromkeys(("image-to-video", "i2v"), "image_to_video"),
    **dict.fromkeys(("multi-view-image", "multi_view"), "multi_view_image"),
}
_OPENAI_PREFIXES = (
    ("gpt-image", ("text_to_image", "image_to_image")),
    ("dall-e", ("text_to_image",)),
    ("sora", ("text_to_video", "image_to_video")),
)


def declared_tasks(entry: Mapping[str, Any]) -> Optional[tuple[str, ...]]:
    """Tasks an entry of ``/models`` declares (``capabilities``, ``tasks``, ``task``...)."""
    found: list[str] = []
    declared = False
    for key in ("capabilities", "tasks", "task", "pipeline_tag"):
        value = entry.get(key)
        if isinstance(value, str):
            value = [value]
        elif isinstance(value, dict):
            value = [k for k, v in value.items() if v]
        if isinstance(value, list):
            declared = True
            found.extend(
                _TASK_ALIASES[v.lower()] for v in value if isinstance(v, str) and v.lower() in _TASK_ALIASES
            )
    return tuple(sorted(set(found))) if declared else None


def parse_models(
    doc: Any,
    reply: Reply,
    *,
    task: Optional[str],
    registry: Optional[VisionModelCapabilitiesRegistry],
    openai_target: bool,
    what: str,
    default_tasks: Optional[tuple[str, ...]] = None,
) -> list[ProviderModelInfo]:
    """``GET /models`` -> entries, filtered by ``task`` where the catalog says so.

    An entry without declared tasks gets the registry's tasks when the registry knows
    it, else ``default_tasks`` (what the server profile knows its routes run); against the
    OpenAI API, unknown undeclared ids (chat models...) are left out of a task-filtered
    listing, elsewhere they are kept (the server did not say).
    """
    data = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(data, list):
        raise response_error(f"{what}: expected {{'data': [...]}}.", reply)
    out = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise response_error(f"{what}: a catalog entry has no string 'id': {str(entry)[:100]!r}.", reply)
        model_id: str = entry["id"]
        tasks = declared_tasks(entry)
        if tasks is None and registry is not None and model_id in registry:
            tasks = tuple(sorted(registry.get(model_id).tasks))
        if tasks is None and default_tasks is not None:
            tasks = default_tasks
        if tasks is None and openai_target:
            tasks = next((t for prefix, t in _OPENAI_PREFIXES if model_id.startswith(prefix)), ())
        if task is not None and tasks is not None and task not in tasks:
            continue
        created = entry.get("created")
        owned_by = entry.get("owned_by")
        out.append(
            ProviderModelInfo(
                id=model_id,
                object=str(entry["object"]) if entry.get("object") is not None else None,
                created=created if isinstance(created, int) and not isinstance(created, bool) else None,
                owned_by=str(owned_by) if owned_by is not None else None,
                capabilities=tasks or (),
                raw=dict(entry),
            )
        )
    return out


def parse_sd_models(
    doc: Any, reply: Reply, *, task: Optional[str], tasks: tuple[str, ...], what: str
) -> list[ProviderModelInfo]:
    """A1111's ``GET /sdapi/v1/sd-models`` (``[{"title", "model_name", ...}]``) as catalog entries.

    The id is ``model_name`` (what ``override_settings.sd_model_checkpoint`` accepts) or
    ``title``; every checkpoint runs the txt2img/img2img routes, so ``tasks`` applies to all.
    """
    if not isinstance(doc, list):
        raise response_error(f"{what}: expected a list of checkpoints.", reply)
    out = []
    for entry in doc:
        name = entry.get("model_name") or entry.get("title") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise response_error(
                f"{what}: a checkpoint has no 'model_name' or 'title': {str(entry)[:100]!r}.", reply
            )
        if task is not None and task not in tasks:
            continue
        out.append(ProviderModelInfo(id=name, object="model", capabilities=tasks, raw=dict(entry)))
    return out
