"""Where outputs go and how results are printed.

``-o`` names a file or a directory. A directory is a path that exists as one, ends with a
separator, or has no extension; files inside it are named after the command and the
content hash, so repeated runs never overwrite a different image. A file name with several
outputs gets ``-1``, ``-2`` ... (or ``-front``, ``-side`` ... for angles) before the
extension. A ``.png``, ``.jpg``/``.jpeg`` or ``.webp`` extension asks the manager for that
``output_format`` (so the chosen metadata is embedded in that format); other image
extensions (``.bmp``, ``.tiff``) are converted here, without embedded metadata, and the
result says so. Files are created with the mode any tool's output gets (``0o666 & ~umask``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .._fileio import atomic_write_bytes, extension_for_mime, mime_for_extension
from ..errors import InvalidRequestError

_IMAGE_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class OutputItem:
    """One generated output on its way to the disk and the printed result."""

    data: bytes
    mime_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    artifact_id: Optional[str] = None
    ref: Optional[dict[str, Any]] = None
    path: Optional[str] = None
    converted_from: Optional[str] = None

    @property
    def tag(self) -> Optional[str]:
        angle = self.metadata.get("angle")
        return _SAFE.sub("_", str(angle)) if angle is not None else None


def is_directory_target(output: str) -> bool:
    path = Path(output).expanduser()
    return path.is_dir() or output.endswith(("/", os.sep)) or (not path.exists() and path.suffix == "")


def check_output(output: Optional[str]) -> None:
    """Fail before generating when ``-o`` cannot work (its parent is a file, the file is a folder...)."""
    if output is None or is_directory_target(output):
        if (
            output is not None
            and Path(output).expanduser().exists()
            and not Path(output).expanduser().is_dir()
        ):
            raise InvalidRequestError(f"--output {output!r} exists and is not a directory.", param="output")
        return
    parent = Path(output).expanduser().parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise InvalidRequestError(
                    f"--output {output!r}: {ancestor} is not a directory.", param="output"
                )
            break


_FORMAT_BY_EXT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def format_from_output(output: Optional[str]) -> Optional[str]:
    """The ``output_format`` a ``-o`` file name asks for (``None`` for a directory or another extension)."""
    if output is None or is_directory_target(output):
        return None
    return _FORMAT_BY_EXT.get(Path(output).suffix.lower())


def target_paths(output: Optional[str], items: list[OutputItem], command: str) -> list[Path]:
    """The file each output is written to (see the module docstring for the rules)."""
    if output is None or is_directory_target(output):
        folder = Path(output).expanduser() if output else Path.cwd()
        names = []
        for item in items:
            digest = hashlib.sha256(item.data).hexdigest()[:12]
            tag = f"-{item.tag}" if item.tag else ""
            names.append(
                folder / f"abstractvision-{command}{tag}-{digest}{extension_for_mime(item.mime_type)}"
            )
        return names
    path = Path(output).expanduser()
    if len(items) == 1:
        return [path]
    return [
        path.with_name(f"{path.stem}-{item.tag or i}{path.suffix}") for i, item in enumerate(items, start=1)
    ]


def _convert_image(data: bytes, target_mime: str) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        fmt = _IMAGE_FORMATS[target_mime]
        if fmt == "JPEG" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue()


def write_outputs(output: Optional[str], items: list[OutputItem], command: str) -> list[str]:
    """Write every item (converting image formats when the extension asks for it); return warnings."""
    warnings: list[str] = []
    for item, path in zip(items, target_paths(output, items, command), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        data = item.data
        wanted = mime_for_extension(str(path))
        if path.suffix and wanted != item.mime_type:
            if wanted in _IMAGE_FORMATS and item.mime_type.startswith("image/"):
                data = _convert_image(data, wanted)
                item.converted_from = item.mime_type
            elif item.mime_type != "application/octet-stream":
                warnings.append(
                    f"{path} holds {item.mime_type} data (the extension suggests {wanted}); "
                    f"use {extension_for_mime(item.mime_type)} to match."
                )
        atomic_write_bytes(path, data)
        item.path = str(path)
    return warnings


def item_record(item: OutputItem) -> dict[str, Any]:
    """JSON-safe description of one output."""
    meta = item.metadata
    out: dict[str, Any] = {
        "path": item.path,
        "mime_type": item.mime_type,
        "bytes": len(item.data),
        "sha256": hashlib.sha256(item.data).hexdigest(),
        "seed": meta.get("seed"),
    }
    encoding = meta.get("encoding")
    converted = item.converted_from or (
        encoding.get("converted_from") if isinstance(encoding, dict) else None
    )
    if converted:
        out["converted_from"] = converted
    if "angle" in meta:
        out["angle"] = meta["angle"]
    if item.artifact_id:
        out["artifact_id"] = item.artifact_id
        out["ref"] = {k: v for k, v in (item.ref or {}).items() if k != "metadata"}
    out["timings"] = meta.get("timings", {})
    out["metadata"] = meta
    return out


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
