"""Artifact refs and stores: hand back small JSON references instead of bytes.

An artifact ref is a JSON-safe dict::

    {"$artifact": "<id>", "content_type": "image/png", "sha256": "...", "size_bytes": 1234,
     "metadata": {...}}

- :class:`LocalAssetStore` keeps blobs on the local disk, content-addressed by sha256
  (default ``~/.abstractvision/assets``, overridden by ``ABSTRACTVISION_STORE_DIR``).
- :class:`RuntimeArtifactStoreAdapter` wraps any external store that has
  ``store(...)``, ``load(id)`` and ``get_metadata(id)`` (duck-typed).
- :class:`MediaStore` is the protocol both implement and that ``VisionManager(store=...)``
  accepts.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

from ._fileio import atomic_write_bytes, extension_for_mime
from ._lazy import lazy_module
from ._refs import (
    MediaStore,
    _artifact_id_of,
    _json_safe,
    _utc_now_iso,
    is_artifact_ref,
    make_media_ref,
)
from .errors import (
    AbstractVisionError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStoreError,
    InvalidRequestError,
)

if TYPE_CHECKING:  # pragma: no cover
    import dataclasses
    import hashlib
    import json
    import pathlib
    from pathlib import Path
else:  # imported on first use: `from abstractvision import LocalAssetStore` stays cheap
    dataclasses = lazy_module("dataclasses", globals())
    hashlib = lazy_module("hashlib", globals())
    json = lazy_module("json", globals())
    pathlib = lazy_module("pathlib", globals())

__all__ = [
    "STORE_DIR_ENV_VAR",
    "LocalAssetStore",
    "MediaStore",
    "RuntimeArtifactStoreAdapter",
    "is_artifact_ref",
    "make_media_ref",
]

STORE_DIR_ENV_VAR = "ABSTRACTVISION_STORE_DIR"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")  # use fullmatch: "$" also matches before a final "\n"
_SIDECAR_SCHEMA = "abstractvision.asset.v1"


class LocalAssetStore:
    """Content-addressed store on the local disk.

    Layout: ``<base_dir>/<id[:2]>/<id><ext>`` for the blob and ``<id>.json`` beside it for
    the sidecar (content type, size, sha256, created time, tags, metadata). The id *is* the
    sha256 of the bytes, so storing the same bytes twice keeps one blob. Writes are atomic
    (temporary file + rename), reads verify the checksum, and ids are validated so that no
    id can name a path outside ``base_dir``.

    Permissions: blobs and sidecars are created with mode ``0o600`` (owner read/write only,
    whatever the umask), because a sidecar holds the full provenance of a generation,
    prompts included; folders are created with the umask (``0o777 & ~umask``). Export a file
    (``abstractvision store export`` or :meth:`GeneratedAsset.save`) to share it: those follow
    the umask. See docs/reproducibility.md.
    """

    #: Mode of the blob and sidecar files this store creates (see the class docstring).
    FILE_MODE = 0o600

    def __init__(self, base_dir: Optional[Union[str, os.PathLike[str]]] = None) -> None:
        if base_dir is None:
            env = os.environ.get(STORE_DIR_ENV_VAR)
            base_dir = env if env else pathlib.Path.home() / ".abstractvision" / "assets"
        if not isinstance(base_dir, (str, os.PathLike)) or (
            isinstance(base_dir, str) and not base_dir.strip()
        ):
            raise InvalidRequestError(
                f"base_dir must be a non-empty path (str or os.PathLike), got {base_dir!r}.", param="base_dir"
            )
        try:
            self._base_dir = pathlib.Path(base_dir).expanduser().resolve()
        except (TypeError, ValueError, RuntimeError) as exc:  # NUL byte, bytes path, unknown ~user
            raise InvalidRequestError(f"Invalid base_dir {base_dir!r}: {exc}.", param="base_dir") from exc
        try:
            self._base_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"Cannot create the store directory {self._base_dir}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalAssetStore(base_dir={str(self._base_dir)!r})"

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    # -- file primitives (the only methods that touch the file system; FsspecAssetStore
    #    overrides them to keep the same layout on any fsspec file system) -------------------

    def _read_file(self, path: Any) -> Optional[bytes]:
        """The file's bytes, ``None`` when it does not exist."""
        try:
            return pathlib.Path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # EIO, EACCES, EISDIR...
            raise ArtifactStoreError(f"Cannot read {path}: {exc.strerror or exc}") from exc

    def _write_file(self, path: Any, data: bytes) -> None:
        """Write the whole file atomically (readers see the old file or the new one)."""
        folder = pathlib.Path(path).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"Cannot create {folder}: {exc}") from exc
        atomic_write_bytes(path, data, mode=self.FILE_MODE)

    def _is_file(self, path: Any) -> bool:
        return pathlib.Path(path).is_file()

    def _file_names(self, folder: Any) -> builtins.list[str]:
        """Names of the regular files in ``folder`` (hidden ones left out)."""
        try:
            return [
                e.name for e in pathlib.Path(folder).iterdir() if not e.name.startswith(".") and e.is_file()
            ]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _sidecar_names(self) -> Iterator[tuple[str, str]]:
        """``(shard folder, file name)`` of every ``*.json`` file in the shards."""
        if not self._base_dir.is_dir():
            return
        for folder in self._base_dir.iterdir():
            if len(folder.name) == 2 and folder.is_dir():
                for name in self._file_names(folder):
                    if name.endswith(".json"):
                        yield folder.name, name

    def _remove_file(self, path: Any) -> bool:
        try:
            pathlib.Path(path).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ArtifactStoreError(f"Cannot delete {path}: {exc}") from exc

    # -- paths ------------------------------------------------------------------------

    def _validate_id(self, artifact_id: str) -> str:
        if not isinstance(artifact_id, str) or not _SHA256_RE.fullmatch(artifact_id):
            raise InvalidRequestError(
                f"Invalid artifact id {artifact_id!r}: {type(self).__name__} ids are 64 lowercase hex "
                "characters (the sha256 of the content).",
                param="artifact_id",
            )
        return artifact_id

    def _dir_for(self, artifact_id: str) -> Any:
        return self._base_dir / artifact_id[:2]

    def _sidecar_path(self, artifact_id: str) -> Any:
        return self._dir_for(artifact_id) / f"{artifact_id}.json"

    def _blob_path(self, artifact_id: str, content_type: str) -> Any:
        return self._dir_for(artifact_id) / f"{artifact_id}{extension_for_mime(content_type)}"

    def _blobs(self, artifact_id: str) -> Iterator[Any]:
        """Every blob file of the id (the same bytes stored under several content types)."""
        folder = self._dir_for(artifact_id)
        for name in self._file_names(folder):
            stem, _, ext = name.partition(".")
            if stem == artifact_id and ext != "json":
                yield folder / name

    def _find_blob(self, artifact_id: str, meta: Optional[dict[str, Any]]) -> Optional[Any]:
        if meta is not None:
            path = self._blob_path(artifact_id, str(meta.get("content_type", "")))
            if self._is_file(path):
                return path
        return next(self._blobs(artifact_id), None)

    def get_content_path(self, artifact_id: Union[str, dict[str, Any]]) -> Path:
        """Path of the stored blob (raises :class:`ArtifactNotFoundError`)."""
        aid = self._validate_id(_artifact_id_of(artifact_id))
        path = self._find_blob(aid, self._read_sidecar(aid))
        if path is None:
            raise ArtifactNotFoundError(f"No artifact {aid} in {self._base_dir}.")
        return path

    # -- write ------------------------------------------------------------------------

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
        """Store ``content`` and return its artifact ref.

        ``artifact_id``, when given, must equal the sha256 of ``content`` (ids are
        content addresses here).
        """
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise InvalidRequestError(
                f"content must be bytes, got {type(content).__name__}.", param="content"
            )
        data = bytes(content)
        if not isinstance(content_type, str) or "/" not in content_type:
            raise InvalidRequestError(
                f"content_type must be a MIME type like 'image/png', got {content_type!r}.",
                param="content_type",
            )
        if tags is not None and not isinstance(tags, dict):
            raise InvalidRequestError("tags must be a dict of strings.", param="tags")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequestError("metadata must be a dict.", param="metadata")
        sha = hashlib.sha256(data).hexdigest()
        if artifact_id is not None and artifact_id != sha:
            raise InvalidRequestError(
                f"{type(self).__name__} ids are the sha256 of the content; the given artifact_id does not match.",
                param="artifact_id",
            )
        blob = self._blob_path(sha, content_type)
        if not self._blob_matches(blob, sha):
            self._write_file(blob, data)
        previous = self._read_sidecar(sha)
        sidecar: dict[str, Any] = {
            "schema": _SIDECAR_SCHEMA,
            "artifact_id": sha,
            "content_type": content_type,
            "size_bytes": len(data),
            "sha256": sha,
            "created_at": (previous or {}).get("created_at") or _utc_now_iso(),
            "updated_at": _utc_now_iso(),
            "content_file": blob.name,
            "tags": {str(k): str(v) for k, v in (tags or {}).items()},
            "metadata": _json_safe(metadata or {}),
        }
        if filename:
            sidecar["filename"] = os.path.basename(str(filename))
        if run_id:
            sidecar["run_id"] = str(run_id)
        self._write_file(
            self._sidecar_path(sha), json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8")
        )
        return make_media_ref(
            sha,
            content_type=content_type,
            filename=sidecar.get("filename"),
            sha256=sha,
            size_bytes=len(data),
            metadata=sidecar["metadata"],
        )

    def _blob_matches(self, path: Any, sha: str) -> bool:
        try:
            with open(path, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest() == sha  # type: ignore[attr-defined]
        except AttributeError:  # Python 3.10: no hashlib.file_digest
            return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest() == sha
        except OSError:
            return False

    # -- read -------------------------------------------------------------------------

    def _read_sidecar(self, artifact_id: str) -> Optional[dict[str, Any]]:
        raw = self._read_file(self._sidecar_path(artifact_id))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested (tampered) JSON
            raise ArtifactIntegrityError(f"The sidecar of artifact {artifact_id} is not valid JSON.") from exc
        return data if isinstance(data, dict) else None

    def load_bytes(self, artifact_id: Union[str, dict[str, Any]]) -> bytes:
        """Return the stored bytes, verified against their sha256.

        Raises :class:`ArtifactNotFoundError` or :class:`ArtifactIntegrityError`.
        """
        aid = self._validate_id(_artifact_id_of(artifact_id))
        path = self._find_blob(aid, self._read_sidecar(aid))
        data = None if path is None else self._read_file(path)
        if data is None:  # missing, or deleted concurrently
            raise ArtifactNotFoundError(f"No artifact {aid} in {self._base_dir}.")
        if hashlib.sha256(data).hexdigest() != aid:
            raise ArtifactIntegrityError(
                f"Artifact {aid} is corrupted: its bytes no longer match its sha256 ({path})."
            )
        return data

    def get_metadata(self, artifact_id: Union[str, dict[str, Any]]) -> Optional[dict[str, Any]]:
        """The sidecar dict, or ``None`` when the artifact does not exist."""
        aid = self._validate_id(_artifact_id_of(artifact_id))
        meta = self._read_sidecar(aid)
        if meta is None and self._find_blob(aid, None) is None:
            return None
        return meta

    def exists(self, artifact_id: Union[str, dict[str, Any]]) -> bool:
        aid = self._validate_id(_artifact_id_of(artifact_id))
        return self._find_blob(aid, self._read_sidecar(aid)) is not None

    def _iter_sidecars(self) -> Iterator[dict[str, Any]]:
        for _shard, name in self._sidecar_names():
            if not _SHA256_RE.fullmatch(name[:-5]):
                continue
            with contextlib.suppress(ArtifactStoreError, ArtifactIntegrityError):
                meta = self._read_sidecar(name[:-5])
                # a sidecar that names another artifact was tampered with (or copied): skip it
                if meta is not None and meta.get("artifact_id") == name[:-5]:
                    yield meta

    def list(
        self,
        *,
        tags: Optional[dict[str, str]] = None,
        content_type: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> builtins.list[dict[str, Any]]:
        """Sidecars of stored artifacts, newest first, filtered by tags / content type prefix."""
        if tags is not None and not isinstance(tags, Mapping):
            raise InvalidRequestError(f"tags must be a dict, got {type(tags).__name__}.", param="tags")
        if content_type is not None and not isinstance(content_type, str):
            raise InvalidRequestError(
                f"content_type must be a string such as 'image/', got {type(content_type).__name__}.",
                param="content_type",
            )
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise InvalidRequestError(f"limit must be an integer >= 0 or None, got {limit!r}.", param="limit")
        out = []
        for meta in self._iter_sidecars():
            if content_type and not str(meta.get("content_type", "")).startswith(content_type):
                continue
            if tags:
                have = meta.get("tags")
                have = have if isinstance(have, dict) else {}
                if any(have.get(str(k)) != str(v) for k, v in tags.items()):
                    continue
            out.append(meta)
        out.sort(key=lambda m: (str(m.get("created_at", "")), str(m.get("artifact_id", ""))), reverse=True)
        return out[:limit] if limit is not None else out

    def delete(self, artifact_id: Union[str, dict[str, Any]]) -> bool:
        """Remove the blob and its sidecar; ``False`` when there was nothing to delete.

        The sidecar goes first, so an interrupted delete never leaves a listed artifact
        without its bytes; every blob of the id goes (the same bytes stored under several
        content types have one file per extension).
        """
        aid = self._validate_id(_artifact_id_of(artifact_id))
        removed = False
        for path in (self._sidecar_path(aid), *self._blobs(aid)):
            removed = self._remove_file(path) or removed
        return removed

    def cleanup_temporary_files(self, *, older_than_s: float = 3600.0) -> int:
        """Remove leftovers of interrupted writes (``.tmp-*.part``) older than ``older_than_s``."""
        return self._cleanup(older_than_s)

    def _cleanup(self, older_than_s: float) -> int:
        if (
            not isinstance(older_than_s, (int, float))
            or isinstance(older_than_s, bool)
            or not older_than_s >= 0  # also rejects NaN
        ):
            raise InvalidRequestError(
                f"older_than_s must be a number of seconds >= 0, got {older_than_s!r}.", param="older_than_s"
            )
        count = 0
        now = time.time()
        for tmp in pathlib.Path(str(self._base_dir)).glob("*/.tmp-*.part"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    count += 1
        return count


class RuntimeArtifactStoreAdapter:
    """Adapter for an external artifact store (for example AbstractRuntime's ``ArtifactStore``).

    The wrapped object needs ``store(content, *, content_type, ...)`` returning something
    with an ``artifact_id`` (attribute or key), ``load(artifact_id)`` returning bytes or an
    object with ``.content``, and optionally ``get_metadata(artifact_id)``. Keyword arguments
    the external ``store`` does not accept are not passed; ``metadata`` is forwarded when it
    accepts it.
    """

    def __init__(self, artifact_store: Any) -> None:
        if not callable(getattr(artifact_store, "store", None)) or not callable(
            getattr(artifact_store, "load", None)
        ):
            raise InvalidRequestError(
                "artifact_store must have callable store(...) and load(...) methods.", param="artifact_store"
            )
        self._store = artifact_store

    @property
    def wrapped(self) -> Any:
        return self._store

    def _accepted_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        import inspect

        try:
            params = inspect.signature(self._store.store).parameters
        except (TypeError, ValueError):
            return kwargs
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k in params}

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
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise InvalidRequestError(
                f"content must be bytes, got {type(content).__name__}.", param="content"
            )
        data = bytes(content)
        sha = hashlib.sha256(data).hexdigest()
        merged_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if filename:
            merged_tags.setdefault("filename", str(filename))
        merged_tags.setdefault("sha256", sha)
        safe_meta = _json_safe(metadata) if metadata else None
        kwargs = self._accepted_kwargs(
            {
                "content_type": content_type,
                "run_id": run_id,
                "tags": merged_tags or None,
                "artifact_id": artifact_id,
                "metadata": safe_meta,
            }
        )
        try:
            result = self._store.store(data, **kwargs)
        except AbstractVisionError:
            raise
        except Exception as exc:
            raise ArtifactStoreError(f"The external artifact store failed to store: {exc}") from exc
        out_id = (
            result.get("artifact_id") if isinstance(result, dict) else getattr(result, "artifact_id", None)
        )
        if not isinstance(out_id, str) or not out_id.strip():
            raise ArtifactStoreError("artifact_store.store(...) did not return a usable artifact_id.")
        return make_media_ref(
            out_id,
            content_type=content_type,
            filename=filename,
            sha256=sha,
            size_bytes=len(data),
            metadata=safe_meta,
        )

    def load_bytes(self, artifact_id: Union[str, dict[str, Any]]) -> bytes:
        aid = _artifact_id_of(artifact_id)
        try:
            artifact = self._store.load(aid)
        except AbstractVisionError:
            raise
        except (KeyError, FileNotFoundError) as exc:
            raise ArtifactNotFoundError(f"Artifact not found: {aid}") from exc
        except Exception as exc:
            raise ArtifactStoreError(
                f"The external artifact store failed to load {aid}: {type(exc).__name__}: {exc}"
            ) from exc
        if artifact is None:
            raise ArtifactNotFoundError(f"Artifact not found: {aid}")
        if isinstance(artifact, (bytes, bytearray, memoryview)):
            return bytes(artifact)
        content = getattr(artifact, "content", None)
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content)
        raise ArtifactStoreError(
            "artifact_store.load(...) returned neither bytes nor an object with .content."
        )

    def get_metadata(self, artifact_id: Union[str, dict[str, Any]]) -> Optional[dict[str, Any]]:
        aid = _artifact_id_of(artifact_id)
        meta_fn = getattr(self._store, "get_metadata", None)
        if not callable(meta_fn):
            return None
        try:
            meta = meta_fn(aid)
        except AbstractVisionError:
            raise
        except (KeyError, FileNotFoundError):  # "no such artifact": None, as documented
            return None
        except Exception as exc:
            raise ArtifactStoreError(
                f"The external artifact store failed to read the metadata of {aid}: {type(exc).__name__}: {exc}"
            ) from exc
        if meta is None:
            return None
        if isinstance(meta, dict):
            return meta
        to_dict = getattr(meta, "to_dict", None)
        if callable(to_dict):
            out = to_dict()
            return out if isinstance(out, dict) else None
        if dataclasses.is_dataclass(meta) and not isinstance(meta, type):
            return dataclasses.asdict(meta)
        return None
