"""The server's view of its artifact store: what it stored, and only that, is served.

Results are written to the store with the tag ``origin=abstractvision-server``; the
artifact routes serve an id only when it is a well-formed store id *and* this server
produced it (in this process, or tagged so by an earlier run on the same store). Ids are
validated by pattern before the store is asked, and the store validates them again; no
request value is ever joined to a filesystem path here.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Optional

from ..errors import ArtifactError
from ..types import GeneratedAsset
from .errors import APIError

__all__ = ["ORIGIN_TAG", "ArtifactIndex"]

ORIGIN_TAG = ("origin", "abstractvision-server")
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class ArtifactIndex:
    """Stores results and answers "is this one of ours?" for the artifact routes."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._ours: set[str] = set()
        self._lock = threading.Lock()

    def put(
        self, asset: GeneratedAsset, *, job_id: str, task: str, metadata: Optional[dict[str, Any]] = None
    ) -> dict[str, Any]:
        """Store one result (blocking: call it in a worker thread) and return its artifact ref.

        ``metadata`` replaces the asset's own (the server passes it redacted).
        """
        ref = self.store.store_bytes(
            asset.data,
            content_type=asset.mime_type,
            metadata=asset.metadata if metadata is None else metadata,
            tags={ORIGIN_TAG[0]: ORIGIN_TAG[1], "job": job_id, "task": task},
            run_id=job_id,
        )
        with self._lock:
            self._ours.add(str(ref["$artifact"]))
        return dict(ref)

    def owns(self, artifact_id: str) -> bool:
        if not isinstance(artifact_id, str) or not _ID_RE.match(artifact_id):
            return False
        with self._lock:
            if artifact_id in self._ours:
                return True
        try:
            meta = self.store.get_metadata(artifact_id)
        except ArtifactError:
            return False
        except Exception:  # an external store may reject ids in its own way
            return False
        tags = (meta or {}).get("tags") or {}
        return isinstance(tags, dict) and tags.get(ORIGIN_TAG[0]) == ORIGIN_TAG[1]

    def load(self, artifact_id: str, *, param: Optional[str] = None) -> tuple[bytes, str]:
        """Bytes and content type of one of our artifacts (404 otherwise)."""
        if not self.owns(artifact_id):
            raise self._missing(artifact_id, param)
        try:
            data = bytes(self.store.load_bytes(artifact_id))
            meta = self.store.get_metadata(artifact_id) or {}
        except ArtifactError:
            raise self._missing(artifact_id, param) from None
        return data, str(meta.get("content_type") or "application/octet-stream")

    def metadata(self, artifact_id: str) -> dict[str, Any]:
        if not self.owns(artifact_id):
            raise self._missing(artifact_id, None)
        return dict(self.store.get_metadata(artifact_id) or {})

    def list(self, *, limit: int = 50, content_type: Optional[str] = None) -> list[dict[str, Any]]:
        """Sidecars of our artifacts, newest first (stores without ``list`` give this process's only)."""
        lister = getattr(self.store, "list", None)
        if callable(lister):
            return list(lister(tags={ORIGIN_TAG[0]: ORIGIN_TAG[1]}, content_type=content_type, limit=limit))
        with self._lock:
            ids = sorted(self._ours)
        out = []
        for aid in ids[:limit]:
            meta = self.store.get_metadata(aid) or {"artifact_id": aid}
            if content_type and not str(meta.get("content_type", "")).startswith(content_type):
                continue
            out.append(meta)
        return out

    @staticmethod
    def _missing(artifact_id: str, param: Optional[str]) -> APIError:
        shown = artifact_id[:80] if isinstance(artifact_id, str) else "?"
        return APIError(404, f"No artifact {shown!r} on this server.", code="artifact_not_found", param=param)
