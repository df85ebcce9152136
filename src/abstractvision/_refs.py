"""Artifact refs: their shape, their checks, and JSON-safe metadata (no store here).

Re-exported by :mod:`abstractvision.artifacts`, the public module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union, runtime_checkable

from ._lazy import lazy_module
from .errors import InvalidRequestError

if TYPE_CHECKING:  # pragma: no cover
    import datetime
    import json
else:  # imported on first use: `from abstractvision import LocalAssetStore` stays cheap
    datetime = lazy_module("datetime", globals())
    json = lazy_module("json", globals())

__all__ = ["MediaStore", "is_artifact_ref", "make_media_ref"]


def _utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # the text json.dumps itself would use for this key
    return str(key)  # tuples, objects...: json.dumps would raise TypeError


def _plain(value: Any, seen: frozenset[int]) -> Any:
    if isinstance(value, (Mapping, list, tuple)):
        if id(value) in seen:
            return "<circular reference>"
        inner = seen | {id(value)}
        if isinstance(value, Mapping):
            return {_json_key(k): _plain(v, inner) for k, v in value.items()}
        return [_plain(v, inner) for v in value]
    return value


_NOT_PLAIN: Any = object()
_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_copy(value: Any, depth: int) -> Any:
    """A copy of ``value`` when it is made of dicts with str keys, lists and JSON scalars only
    (what the round trip below would return unchanged), else ``_NOT_PLAIN``."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if depth > 64:
        return _NOT_PLAIN
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                return _NOT_PLAIN
            copied = _json_copy(item, depth + 1)
            if copied is _NOT_PLAIN:
                return _NOT_PLAIN
            out[key] = copied
        return out
    if kind is list:
        items = []
        for item in value:
            copied = _json_copy(item, depth + 1)
            if copied is _NOT_PLAIN:
                return _NOT_PLAIN
            items.append(copied)
        return items
    return _NOT_PLAIN


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so metadata is always serialisable.

    Unknown objects become ``str``, keys of any type become strings (``sort_keys`` works),
    cycles and absurd nesting become marker strings instead of exceptions.
    """
    copied = _json_copy(value, 0)
    if copied is not _NOT_PLAIN:  # already plain JSON (the usual metadata): copied, no round trip
        return copied
    try:
        return json.loads(json.dumps(_plain(value, frozenset()), default=str))
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to record>"


def is_artifact_ref(value: Any) -> bool:
    """True when ``value`` has the artifact-ref shape ``{"$artifact": "<non-empty id>", ...}``."""
    return isinstance(value, dict) and isinstance(value.get("$artifact"), str) and bool(value["$artifact"])


def make_media_ref(
    artifact_id: str,
    *,
    content_type: Optional[str] = None,
    filename: Optional[str] = None,
    sha256: Optional[str] = None,
    size_bytes: Optional[int] = None,
    metadata: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Build an artifact ref dict; empty optional fields are left out."""
    if not isinstance(artifact_id, str) or not artifact_id:
        raise InvalidRequestError("artifact_id must be a non-empty string.", param="artifact_id")
    if size_bytes is not None and (
        not isinstance(size_bytes, int) or isinstance(size_bytes, bool) or size_bytes < 0
    ):
        raise InvalidRequestError(
            f"size_bytes must be an integer >= 0 or None, got {size_bytes!r}.", param="size_bytes"
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidRequestError(
            f"metadata must be a dict or None, got {type(metadata).__name__}.", param="metadata"
        )
    out: dict[str, Any] = {"$artifact": artifact_id}
    if content_type:
        out["content_type"] = str(content_type)
    if filename:
        out["filename"] = str(filename)
    if sha256:
        out["sha256"] = str(sha256)
    if size_bytes is not None:
        out["size_bytes"] = int(size_bytes)
    if metadata:
        out["metadata"] = _json_safe(metadata)
    return out


def _artifact_id_of(value: Union[str, dict[str, Any]]) -> str:
    if isinstance(value, dict):
        if not is_artifact_ref(value):
            raise InvalidRequestError("Expected an artifact id or an artifact ref dict.", param="artifact_id")
        return str(value["$artifact"])
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"artifact id must be a string, got {type(value).__name__}.", param="artifact_id"
        )
    return value


@runtime_checkable
class MediaStore(Protocol):
    """What ``VisionManager(store=...)`` needs from a store."""

    def store_bytes(
        self,
        content: bytes,
        *,
        content_type: str,
        filename: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
        tags: Optional[dict[str, str]] = None,
        run_id: Optional[str] = None,
        artifact_id: Optional[str] = None,
    ) -> dict[str, Any]: ...

    def load_bytes(self, artifact_id: str) -> bytes: ...

    def get_metadata(self, artifact_id: str) -> Optional[dict[str, Any]]: ...
