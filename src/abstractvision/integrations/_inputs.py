"""Inputs and outputs at the plugin boundary: image arguments and the host's artifact store.

Image arguments reach the plugin from host code *and* from model tool calls, so a plain
filesystem path is refused unless the host opted in (``allow_local_paths=True``): a model
must not be able to make the host read arbitrary files. Bytes, ``data:`` URLs, raw base64
strings and artifact refs are always accepted.

The host's store is either an abstractvision :class:`~abstractvision.artifacts.MediaStore`
(``store_bytes``/``load_bytes``) or an AbstractCore/AbstractRuntime ``ArtifactStoreLike``
(``store``/``load``), wrapped in :class:`~abstractvision.artifacts.RuntimeArtifactStoreAdapter`.
:class:`CallScopedStore` adds the call's ``run_id``, ``tags`` and ``metadata`` to what it writes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any, Optional

from .. import _media
from ..artifacts import RuntimeArtifactStoreAdapter, is_artifact_ref
from ..errors import InvalidRequestError

__all__ = ["CallScopedStore", "as_media_store", "decode_base64_image", "resolve_image_input"]

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/_\-\s]+={0,2}\s*$")


def decode_base64_image(text: str) -> Optional[bytes]:
    """The bytes of ``text`` when it is base64 (standard or URL-safe) of an image, else ``None``."""
    compact = "".join(text.split())
    if len(compact) < 16 or not _BASE64_RE.match(compact):
        return None
    padded = compact + "=" * (-len(compact) % 4)
    for altchars in (None, b"-_"):
        try:
            data = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        mime = _media.sniff_mime(data)
        if mime is not None and mime.startswith("image/"):
            return data
    return None


def resolve_image_input(
    value: Any, *, name: str, store: Any = None, allow_local_paths: bool = False
) -> bytes:
    """Turn an image argument into bytes.

    Accepted: ``bytes``, a ``data:`` URL, a raw base64 string, an artifact ref dict (resolved
    through ``store``) and a ``PIL.Image``; a filesystem path only when
    ``allow_local_paths`` is true. Raises :class:`InvalidRequestError` naming ``name``.
    """
    if isinstance(value, str) and not value.startswith("data:"):
        decoded = decode_base64_image(value)
        if decoded is not None:
            return decoded
        if not allow_local_paths:
            raise InvalidRequestError(
                f"{name}: got a string that is neither a data URL nor base64 image data. Plain "
                "filesystem paths are refused by this host (tool arguments come from models); pass "
                "bytes, a data URL, base64 or an artifact ref, or construct the capability with "
                "allow_local_paths=True (config key vision_allow_local_paths).",
                param=name,
            )
    elif isinstance(value, os.PathLike) and not allow_local_paths:
        raise InvalidRequestError(
            f"{name}: filesystem paths are refused by this host; pass bytes, a data URL, base64 or an "
            "artifact ref (or allow_local_paths=True).",
            param=name,
        )
    elif is_artifact_ref(value) and store is None:
        raise InvalidRequestError(
            f"{name}: got an artifact ref but no artifact_store to resolve it; pass artifact_store=... "
            "to the call.",
            param=name,
        )
    return _media.coerce_image_input(value, name=name, store=store)


def as_media_store(artifact_store: Any) -> Any:
    """Wrap the host's store as a MediaStore (``None`` stays ``None``)."""
    if artifact_store is None:
        return None
    if callable(getattr(artifact_store, "store_bytes", None)) and callable(
        getattr(artifact_store, "load_bytes", None)
    ):
        return artifact_store
    if callable(getattr(artifact_store, "store", None)) and callable(getattr(artifact_store, "load", None)):
        return RuntimeArtifactStoreAdapter(artifact_store)
    raise InvalidRequestError(
        "artifact_store must have store(...)/load(...) (AbstractRuntime ArtifactStore) or "
        "store_bytes(...)/load_bytes(...) (abstractvision MediaStore).",
        param="artifact_store",
    )


class CallScopedStore:
    """A MediaStore that stamps one call's ``run_id``, ``tags`` and ``metadata`` on its writes.

    Provenance written by the manager (task, seed, parameters, timings...) wins over a
    caller metadata key of the same name; caller tags win over the manager's tags.
    """

    def __init__(
        self,
        inner: Any,
        *,
        run_id: Optional[str] = None,
        tags: Optional[dict[str, str]] = None,
        metadata: Optional[dict[str, Any]] = None,
    ) -> None:
        if tags is not None and not isinstance(tags, dict):
            raise InvalidRequestError("tags must be a dict of strings.", param="tags")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequestError("metadata must be a dict.", param="metadata")
        self._inner = inner
        self._run_id = str(run_id) if run_id else None
        self._tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self._metadata = dict(metadata or {})

    def store_bytes(
        self,
        content: bytes,
        *,
        content_type: str = "application/octet-stream",
        filename: Optional[str] = None,
        metadata: Optional[dict[str, Any]] = None,
        tags: Optional[dict[str, str]] = None,
        run_id: Optional[str] = None,
        artifact_id: Optional[str] = None,
    ) -> dict[str, Any]:
        merged_meta = {**self._metadata, **(metadata or {})}
        merged_tags = {**(tags or {}), **self._tags}
        return dict(
            self._inner.store_bytes(
                content,
                content_type=content_type,
                filename=filename,
                metadata=merged_meta or None,
                tags=merged_tags or None,
                run_id=run_id or self._run_id,
                artifact_id=artifact_id,
            )
        )

    def load_bytes(self, artifact_id: Any) -> bytes:
        return bytes(self._inner.load_bytes(artifact_id))

    def get_metadata(self, artifact_id: Any) -> Optional[dict[str, Any]]:
        getter = getattr(self._inner, "get_metadata", None)
        return getter(artifact_id) if callable(getter) else None
