"""Artifact stores by location: a folder, ``file://`` or any fsspec URL (``s3://``, ``gs://``...).

:func:`open_store` turns a location into a :class:`~abstractvision.artifacts.MediaStore`:

- a plain folder -> :class:`~abstractvision.artifacts.LocalAssetStore`;
- ``file:///dir``, ``s3://bucket/prefix``, ``gs://...``, ``az://...``, ``memory://...`` ->
  :class:`FsspecAssetStore`: the same content-addressed layout (``<root>/<id[:2]>/<id><ext>``
  plus a ``<id>.json`` sidecar), checksum-on-read and id validation, on any file system fsspec
  serves (extra ``distributed`` brings fsspec and s3fs).

Credentials and endpoints come from where the file system's own library reads them: for S3,
the ``AWS_*`` environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` for S3-compatible servers) or ``~/.aws``; storage options passed here win
(``open_store("s3://b/p", endpoint_url="http://127.0.0.1:9000")``).
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any, Optional
from urllib.parse import urlsplit

from .artifacts import LocalAssetStore
from .errors import ArtifactStoreError, InvalidRequestError, OptionalDependencyMissingError

__all__ = ["FsspecAssetStore", "open_store"]

_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def _shown(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@")


class FsspecAssetStore(LocalAssetStore):
    """:class:`~abstractvision.artifacts.LocalAssetStore`'s layout and checks on an fsspec file system.

    Every write is a whole-object put (atomic on object stores; the local file system writes
    a temporary file and renames it), the blob before its sidecar, so a listed artifact always
    has its bytes. Two writers of the same bytes write the same object: nothing is lost.

    Args:
        url: ``s3://bucket/prefix``, ``file:///dir``, ``memory://root``...
        **storage_options: passed to the file system (``endpoint_url``, ``key``, ``secret``,
            ``client_kwargs``...); ``endpoint_url`` is moved into s3fs's ``client_kwargs``.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise InvalidRequestError(
                f"Expected a store URL like s3://bucket/prefix, got {url!r}.", param="store"
            )
        protocol = url.split("://", 1)[0].lower()
        try:
            import fsspec
        except ImportError as exc:
            raise OptionalDependencyMissingError(
                "fsspec", "distributed", purpose=f"a {protocol}:// store"
            ) from exc
        if protocol in ("s3", "s3a") and "endpoint_url" in storage_options:
            client = dict(storage_options.pop("client_kwargs", None) or {})
            client["endpoint_url"] = storage_options.pop("endpoint_url")
            storage_options["client_kwargs"] = client
        try:
            fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            package = _PACKAGES.get(protocol, getattr(exc, "name", None) or protocol)
            raise OptionalDependencyMissingError(
                package, "distributed", purpose=f"the {protocol}:// store"
            ) from exc
        except ValueError as exc:
            raise InvalidRequestError(f"Cannot open the store {_shown(url)}: {exc}", param="store") from exc
        self.url = url
        self.fs = fs
        self._base_dir = PurePosixPath(root.rstrip("/") or "/")  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FsspecAssetStore({_shown(self.url)!r})"

    @property
    def base_dir(self) -> Any:
        return self._base_dir

    def check(self) -> None:
        """Reach the store now: raise :class:`ArtifactStoreError` naming the URL and what to check."""
        try:
            self.fs.ls(
                str(self._base_dir.parent) if self._base_dir.parent != self._base_dir else "/", detail=False
            )
            self.fs.find(str(self._base_dir), maxdepth=1)
        except FileNotFoundError as exc:
            raise ArtifactStoreError(
                f"The store {_shown(self.url)} does not exist ({exc}); create the bucket or folder first."
            ) from None
        except Exception as exc:
            raise ArtifactStoreError(
                f"Cannot reach the store {_shown(self.url)} ({type(exc).__name__}: {exc}); check the URL, the "
                "endpoint (AWS_ENDPOINT_URL for S3-compatible servers) and the credentials (AWS_* variables)."
            ) from None

    # -- file primitives on the fsspec file system -------------------------------------------------

    def _fail(self, what: str, path: Any, exc: Exception) -> ArtifactStoreError:
        return ArtifactStoreError(f"Cannot {what} {path} in {_shown(self.url)}: {type(exc).__name__}: {exc}")

    def _read_file(self, path: Any) -> Optional[bytes]:
        try:
            return bytes(self.fs.cat_file(str(path)))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail("read", path, exc) from exc

    @property
    def _local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    def _write_file(self, path: Any, data: bytes) -> None:
        if self._local:  # a temporary file renamed into place, as LocalAssetStore does
            super()._write_file(path, data)
            return
        try:
            self.fs.pipe_file(str(path), data)
        except Exception as exc:
            raise self._fail("write", path, exc) from exc

    def _is_file(self, path: Any) -> bool:
        try:
            return bool(self.fs.isfile(str(path)))
        except Exception as exc:
            raise self._fail("check", path, exc) from exc

    def _file_names(self, folder: Any) -> builtins.list[str]:
        try:
            entries = self.fs.ls(str(folder), detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._fail("list", folder, exc) from exc
        names = []
        for entry in entries:
            name = PurePosixPath(str(entry.get("name", ""))).name
            if entry.get("type") == "file" and name and not name.startswith("."):
                names.append(name)
        return names

    def _sidecar_names(self) -> Iterator[tuple[str, str]]:
        root = str(self._base_dir)
        try:
            found = self.fs.find(root, maxdepth=2)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._fail("list", root, exc) from exc
        for path in found:
            parts = PurePosixPath(str(path)).parts
            if len(parts) >= 2 and len(parts[-2]) == 2 and parts[-1].endswith(".json"):
                yield parts[-2], parts[-1]

    def _remove_file(self, path: Any) -> bool:
        try:
            if not self.fs.exists(str(path)):
                return False
            self.fs.rm_file(str(path))
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._fail("delete", path, exc) from exc

    def _blob_matches(self, path: Any, sha: str) -> bool:
        import hashlib

        try:
            data = self._read_file(path)
        except ArtifactStoreError:
            return False
        return data is not None and hashlib.sha256(data).hexdigest() == sha

    def get_content_path(self, artifact_id: Any) -> Any:
        """The blob's path on the store's file system (a string such as ``bucket/prefix/ab/ab...png``)."""
        return str(super().get_content_path(artifact_id))

    def cleanup_temporary_files(self, *, older_than_s: float = 3600.0) -> int:
        """Leftovers of interrupted writes: only a local file system has any (object puts leave none)."""
        if self._local:
            return LocalAssetStore._cleanup(self, older_than_s)
        return 0


def open_store(location: Optional[str] = None, *, check: bool = False, **storage_options: Any) -> Any:
    """The artifact store at ``location`` (see the module docstring).

    ``None`` is the default local store (``ABSTRACTVISION_STORE_DIR`` or
    ``~/.abstractvision/assets``). ``check=True`` reaches the store now and raises
    :class:`ArtifactStoreError` with the URL and what to check when it cannot. Storage options
    can also come as JSON in ``ABSTRACTVISION_STORE_OPTIONS`` (explicit keyword arguments win).
    """
    if location is None or "://" not in str(location):
        if storage_options:
            raise InvalidRequestError(
                "Storage options apply to URL stores (s3://...), not folders.", param="store"
            )
        return LocalAssetStore(location)
    text = str(location)
    env_options = os.environ.get("ABSTRACTVISION_STORE_OPTIONS")
    options: dict[str, Any] = {}
    if env_options:
        try:
            options = dict(json.loads(env_options))
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(
                f"ABSTRACTVISION_STORE_OPTIONS must be a JSON object: {exc}", param="store_options"
            ) from exc
    options.update(storage_options)
    store = FsspecAssetStore(text, **options)
    if check:
        store.check()
    return store
