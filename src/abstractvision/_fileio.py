"""Small file helpers: atomic writes and MIME <-> extension mapping (stdlib only)."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Union

from .errors import ArtifactStoreError

_EXT_BY_MIME = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "application/json": ".json",
    "application/octet-stream": ".bin",
}

_MIME_BY_EXT = {v: k for k, v in _EXT_BY_MIME.items()} | {".jpeg": "image/jpeg", ".tif": "image/tiff"}


def extension_for_mime(mime_type: str) -> str:
    """``"image/png"`` -> ``".png"``; unknown types -> ``".bin"``."""
    return _EXT_BY_MIME.get((mime_type or "").split(";")[0].strip().lower(), ".bin")


def mime_for_extension(path: str) -> str:
    return _MIME_BY_EXT.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


#: Mode of the files written for the user (``-o``, :meth:`GeneratedAsset.save`): the kernel
#: applies the process umask to it, as for any file a tool creates (0o644 under umask 022).
USER_FILE_MODE = 0o666


def atomic_write_bytes(
    path: Union[str, os.PathLike[str]], data: bytes, *, fsync: bool = True, mode: int = USER_FILE_MODE
) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are flushed to disk, then
    renamed over ``path``. The temporary file is created with ``mode`` and the process
    umask applies (``0o666 & ~umask`` by default, like any tool's output; the artifact store
    passes ``0o600``). On any failure the temporary file is removed and an
    :class:`~abstractvision.errors.ArtifactStoreError` (disk full, permissions) is raised.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp = None
    try:
        # inside the try: creating the temporary file fails too (missing directory, EACCES, ENOSPC)
        fd, tmp = _create_temporary(directory, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            hint = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
            raise ArtifactStoreError(f"Could not write {target}{hint}: {exc.strerror or exc}") from exc
        raise


def _create_temporary(directory: str, mode: int) -> tuple[int, str]:
    """A new, exclusive ``.tmp-*.part`` file in ``directory``, created with ``mode`` (umask applies).

    ``tempfile.mkstemp`` always creates 0o600, whatever the umask; ``os.open`` with
    ``O_CREAT | O_EXCL`` lets the kernel apply the umask (and default ACLs) instead,
    without touching the process-wide umask (which other threads share).
    """
    import secrets

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f".tmp-{secrets.token_hex(6)}.part")
        try:
            return os.open(path, flags, mode), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "No usable temporary file name", directory)
