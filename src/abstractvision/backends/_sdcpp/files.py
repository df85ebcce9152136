"""Model file checks for the stable-diffusion.cpp backend, done before the engine sees a file.

stable-diffusion.cpp does not fail cleanly on a bad file: a failed load returns a NULL
context that crashes later. So every configured file is checked here first: it exists, is
a readable regular file, and looks like a format sd.cpp reads (GGUF, safetensors or a
PyTorch checkpoint), with a header that parses and data that is not truncated. Failures
raise :class:`~abstractvision.errors.ModelLoadError` naming the component and the fix.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional

from ...errors import InvalidRequestError, ModelLoadError

__all__ = ["ModelFileInfo", "check_config", "check_model_file", "check_multiple", "read_tensor_names"]

#: safetensors headers larger than this are not plausible (real ones are well below 10 MB)
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
# GGUF value types: fixed sizes of the scalar types (8 = string, 9 = array)
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# ggml tensor types whose byte size is simple: type -> bytes per element
_GGML_PLAIN_SIZES = {0: 4, 1: 2, 24: 1, 25: 2, 26: 4, 27: 8, 28: 8, 30: 2}
_TEXT_ENCODERS = ("clip_l", "clip_g", "t5xxl", "llm")


@dataclass(frozen=True)
class ModelFileInfo:
    """A checked model file: absolute ``path``, detected ``format`` and ``size`` in bytes."""

    role: str
    path: str
    format: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "format": self.format, "bytes": self.size}


class _Bad(Exception):
    """Internal: the file is not in the format its header claims."""


def check_model_file(path: object, *, role: str) -> ModelFileInfo:
    """Check that ``path`` is a readable GGUF, safetensors or PyTorch checkpoint file.

    Args:
        path: the configured path (``str`` or ``os.PathLike``).
        role: the config field it came from (``"diffusion_model"``, ``"vae"``...), used in
            error messages.

    Raises:
        ModelLoadError: the file is missing, unreadable, empty, truncated or of an
            unrecognised format.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ModelLoadError(f"{role}: expected a file path, got {path!r}.")
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(full):
        raise ModelLoadError(
            f"{role}: no such file: {full!r}. Check the path in StableDiffusionCppBackendConfig.{role}."
        )
    if not os.path.isfile(full):
        raise ModelLoadError(
            f"{role}: {full!r} is not a regular file (sd.cpp needs a single .gguf/.safetensors/.ckpt file)."
        )
    try:
        size = os.path.getsize(full)
        with open(full, "rb") as fh:
            head = fh.read(16)
            if size == 0:
                raise ModelLoadError(
                    f"{role}: {full!r} is empty (0 bytes); the download or conversion did not finish."
                )
            fmt = _detect(fh, head, size)
    except ModelLoadError:
        raise
    except _Bad as exc:
        raise ModelLoadError(
            f"{role}: {full!r} is corrupt or truncated: {exc}. Re-download or re-convert it."
        ) from exc
    except OSError as exc:
        raise ModelLoadError(f"{role}: cannot read {full!r}: {exc.strerror or exc}.") from exc
    if fmt is None:
        raise ModelLoadError(
            f"{role}: {full!r} is not a GGUF, safetensors or PyTorch checkpoint file "
            f"(it starts with {head[:8]!r}). stable-diffusion.cpp reads .gguf, .safetensors, .ckpt and .pt files."
        )
    return ModelFileInfo(role=role, path=full, format=fmt, size=size)


def read_tensor_names(path: object, *, role: str = "model") -> tuple[ModelFileInfo, list[str]]:
    """The checked file and the names of its tensors, read from the header alone.

    GGUF and safetensors headers list every tensor name; a PyTorch checkpoint would have to
    be unpickled, so its list is empty. Raises :class:`ModelLoadError` as
    :func:`check_model_file` does.
    """
    info = check_model_file(path, role=role)
    if info.format not in ("gguf", "safetensors"):
        return info, []
    try:
        with open(info.path, "rb") as fh:
            names: list[str] = []
            _detect(fh, fh.read(16), info.size, names)
    except (_Bad, OSError) as exc:  # changed since the check
        raise ModelLoadError(f"{role}: cannot read the header of {info.path!r}: {exc}.") from exc
    return info, names


def _detect(fh: BinaryIO, head: bytes, size: int, names: Optional[list[str]] = None) -> Optional[str]:
    if head[:4] == b"GGUF":
        _check_gguf(fh, size, names)
        return "gguf"
    if head[:4] == b"PK\x03\x04":
        return "pytorch-zip"
    if head[:2] in _PICKLE_PROTOCOLS:
        return "pytorch-pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        _check_safetensors(fh, head, size, names)
        return "safetensors"
    return None


def _check_safetensors(fh: BinaryIO, head: bytes, size: int, names: Optional[list[str]] = None) -> None:
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len < 2 or header_len > min(_MAX_SAFETENSORS_HEADER, size - 8):
        raise _Bad(f"safetensors header length {header_len} does not fit a {size}-byte file")
    fh.seek(8)
    raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Bad("the safetensors JSON header does not parse") from exc
    if not isinstance(header, dict):
        raise _Bad("the safetensors header is not a JSON object")
    data_size = size - 8 - header_len
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise _Bad(f"tensor {name!r} has no valid data_offsets")
        end = max(end, offsets[1])
    if end > data_size:
        raise _Bad(f"the header needs {end} bytes of tensor data but the file holds {data_size}")
    if names is not None:
        names.extend(name for name in header if name != "__metadata__")


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Bad("the GGUF header ends early")
    return data


def _skip_gguf_value(fh: BinaryIO, kind: int) -> None:
    if kind in _GGUF_SCALAR_SIZES:
        _read(fh, _GGUF_SCALAR_SIZES[kind])
    elif kind == 8:
        (n,) = struct.unpack("<Q", _read(fh, 8))
        fh.seek(n, os.SEEK_CUR)
    elif kind == 9:
        item_kind, count = struct.unpack("<IQ", _read(fh, 12))
        if item_kind in _GGUF_SCALAR_SIZES:
            fh.seek(_GGUF_SCALAR_SIZES[item_kind] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_gguf_value(fh, item_kind)
    else:
        raise _Bad(f"unknown GGUF value type {kind}")


def _check_gguf(fh: BinaryIO, size: int, names: Optional[list[str]] = None) -> None:
    fh.seek(4)
    version, n_tensors, n_kv = struct.unpack("<IQQ", _read(fh, 20))
    if version not in (2, 3):
        raise _Bad(f"unsupported GGUF version {version}")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise _Bad("implausible GGUF tensor or key counts")
    alignment = 32
    for _ in range(n_kv):
        (key_len,) = struct.unpack("<Q", _read(fh, 8))
        key = _read(fh, key_len)
        (kind,) = struct.unpack("<I", _read(fh, 4))
        if key == b"general.alignment" and kind == 4:
            (alignment,) = struct.unpack("<I", _read(fh, 4))
        else:
            _skip_gguf_value(fh, kind)
    ends = []
    for _ in range(n_tensors):
        (name_len,) = struct.unpack("<Q", _read(fh, 8))
        if names is None:
            fh.seek(name_len, os.SEEK_CUR)
        else:
            names.append(_read(fh, name_len).decode("utf-8", "replace"))
        (n_dims,) = struct.unpack("<I", _read(fh, 4))
        dims = struct.unpack(f"<{n_dims}Q", _read(fh, 8 * n_dims))
        ggml_type, offset = struct.unpack("<IQ", _read(fh, 12))
        numel = 1
        for d in dims:
            numel *= d
        per = _GGML_PLAIN_SIZES.get(ggml_type)
        ends.append(offset + (numel * per if per else 1))
    data_start = fh.tell()
    data_start += -data_start % max(alignment, 1)
    if data_start > size or (ends and data_start + max(ends) > size):
        raise _Bad(
            f"the GGUF tensor table needs {data_start + max(ends or [0])} bytes but the file has {size}"
        )


# -- the configuration ----------------------------------------------------------------------


def check_config(cfg: Any) -> None:
    """Refuse a StableDiffusionCppBackendConfig the engine cannot run (before any file is read)."""
    if not (cfg.model or cfg.diffusion_model or cfg.upscaler):
        raise InvalidRequestError(
            "StableDiffusionCppBackendConfig needs a model: set 'model' (a single-file checkpoint) or "
            "'diffusion_model' with its components (or only 'upscaler' for an upscale-only backend)."
        )
    if cfg.diffusion_model and not cfg.model and cfg.check_components:
        missing = []
        if not (cfg.vae or cfg.taesd):
            missing.append("a VAE ('vae' or 'taesd')")
        if not any(getattr(cfg, name) for name in _TEXT_ENCODERS):
            missing.append("a text encoder ('clip_l', 'clip_g', 't5xxl' or 'llm')")
        if missing:
            raise ModelLoadError(
                f"A standalone diffusion_model needs {' and '.join(missing)}; stable-diffusion.cpp crashes without it. "
                "Add the component files (or set check_components=False if your model really has none)."
            )
    for name in ("width", "height", "steps", "upscale_tile_size"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}.", param=name)
    for name in ("width", "height"):
        check_multiple(getattr(cfg, name), name)
    if cfg.preview_method not in ("auto", "proj", "tae", "vae"):
        raise InvalidRequestError(
            f"preview_method must be auto, proj, tae or vae, got {cfg.preview_method!r}.",
            param="preview_method",
        )
    for name in ("timeout_s", "hang_timeout_s"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise InvalidRequestError(f"{name} must be a positive number of seconds or None.", param=name)


def check_multiple(value: int, name: str) -> None:
    if value % 8:
        raise InvalidRequestError(
            f"{name}={value} is not a multiple of 8; stable-diffusion.cpp would silently change it. "
            f"Use {value - value % 8 or 8} or {value + 8 - value % 8}.",
            param=name,
        )
