"""LoRA adapters for the stable-diffusion.cpp backend: finding the file, and checking it applied.

stable-diffusion.cpp takes LoRAs as ``<lora:NAME:SCALE>`` tags in the prompt and looks ``NAME``
up in ``lora_model_dir`` (trying ``.safetensors``, ``.gguf``, ``.pt``). A name it cannot find
is only a log line there, and the image is generated without the adapter. Here every adapter
is resolved to a file before the engine runs, and a missing one is a
:class:`~abstractvision.errors.ModelLoadError` that lists what the directory holds.

After a generation the engine reports how many of the adapter's tensors it applied
(``(6 / 6) LoRA tensors have been applied``); an adapter none of whose tensors fit the model
(a LoRA for another family) raises :class:`~abstractvision.errors.InvalidRequestError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Optional

from ...errors import InvalidRequestError, ModelLoadError
from .files import check_model_file

__all__ = ["LORA_EXTENSIONS", "applied_stats", "check_applied", "lora_tags", "resolve_lora"]

#: what sd.cpp tries after a bare name, in its order
LORA_EXTENSIONS = (".safetensors", ".gguf", ".pt")
_APPLIED = re.compile(r"\((\d+) / (\d+)\) LoRA tensors have been applied, lora_file_path = (.+)$")


def _available(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.splitext(n)[0] for n in names if n.endswith(LORA_EXTENSIONS)]


def resolve_lora(source: str, lora_model_dir: Optional[str]) -> str:
    """The absolute path of the adapter ``source``: a file path, or a name in ``lora_model_dir``.

    Raises:
        ModelLoadError: no such file or name (the message lists the directory's adapters).
    """
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequestError("A LoRA source must be a file path or a name.", param="lora_adapters")
    expanded = os.path.expanduser(source)
    if (
        os.path.isabs(expanded)
        or os.sep in source
        or (os.altsep and os.altsep in source)
        or os.path.isfile(expanded)
    ):
        return check_model_file(expanded, role="lora_adapters").path
    if not lora_model_dir:
        raise ModelLoadError(
            f"LoRA {source!r} is a name, but no lora_model_dir is configured: set "
            "StableDiffusionCppBackendConfig.lora_model_dir or pass the adapter's file path."
        )
    folder = os.path.abspath(os.path.expanduser(os.fspath(lora_model_dir)))
    for candidate in (source, *(source + ext for ext in LORA_EXTENSIONS)):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return check_model_file(path, role="lora_adapters").path
    found = _available(folder)
    listing = ", ".join(found) if found else "no .safetensors/.gguf/.pt files"
    raise ModelLoadError(
        f"LoRA {source!r} was not found in lora_model_dir {folder!r} (tried {', '.join(LORA_EXTENSIONS)}); "
        f"it holds: {listing}."
    )


def lora_tags(adapters: Sequence[Any], lora_model_dir: Optional[str]) -> tuple[str, list[dict[str, Any]]]:
    """The prompt tags for ``adapters`` and their description for the metadata."""
    tags, used = [], []
    for adapter in adapters or ():
        path = resolve_lora(adapter.source, lora_model_dir)
        if ":" in path or ">" in path:
            raise InvalidRequestError(
                f"LoRA path {path!r} contains ':' or '>', which sd.cpp's prompt syntax cannot carry; "
                "move the file to a simpler path.",
                param="lora_adapters",
            )
        tags.append(f"<lora:{path}:{adapter.scale:g}>")
        used.append({"source": adapter.source, "path": path, "scale": float(adapter.scale)})
    return "".join(tags), used


def applied_stats(line: str) -> Optional[tuple[str, int, int]]:
    """``(path, applied, total)`` from an engine log line that reports a LoRA, else None."""
    found = _APPLIED.search(line.strip())
    if found is None:
        return None
    return found.group(3).strip(), int(found.group(1)), int(found.group(2))


def check_applied(used: list[dict[str, Any]], stats: dict[str, tuple[int, int]]) -> None:
    """Record the engine's applied/total counts on ``used``; refuse an adapter that applied nothing."""
    for adapter in used:
        counts = stats.get(adapter["path"])
        if counts is None:
            continue  # already merged into the weights by an earlier call: the engine says nothing
        applied, total = counts
        adapter["applied_tensors"] = f"{applied}/{total}"
        if applied == 0 and adapter["scale"] != 0:
            raise InvalidRequestError(
                f"LoRA {adapter['source']!r} matched none of the model's tensors (0 of {total} applied): "
                "it was made for another model family.",
                param="lora_adapters",
            )
