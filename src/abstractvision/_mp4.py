"""MP4 (ISO base media) boxes, at the byte level: the user-data tags and the video size.

:func:`replace_user_data` rewrites the movie's ``udta`` box (where ffmpeg and players keep
tags such as ``comment`` and ``encoder``) without touching a single media sample: the new
``moov`` box replaces the old one, and when the media data comes after it (a ``+faststart``
file) every chunk offset (``stco``/``co64``) is shifted by the size difference.
Fragmented files (``moof``) are left alone. Standard library only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Optional

__all__ = ["replace_user_data", "video_size"]

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """``(type, box start, payload start, box end)`` of the boxes in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise ValueError("truncated box")
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError("bad box size")
        yield kind, pos, pos + header, pos + size
        pos += size


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def _tag(name: str, value: str) -> bytes:
    """One ``ilst`` item: ``comment`` as ``©cmt``; any other name as a ``----`` free-form tag."""
    data = _box(b"data", struct.pack(">II", 1, 0) + value.encode("utf-8"))  # type 1: UTF-8
    if name == "comment":
        return _box(b"\xa9cmt", data)
    mean = _box(b"mean", b"\x00\x00\x00\x00" + b"com.abstractvision")
    label = _box(b"name", b"\x00\x00\x00\x00" + name.encode("utf-8"))
    return _box(b"----", mean + label + data)


def _user_data(tags: dict[str, str]) -> bytes:
    hdlr = _box(b"hdlr", b"\x00" * 8 + b"mdir" + b"appl" + b"\x00" * 9)
    ilst = _box(b"ilst", b"".join(_tag(k, v) for k, v in tags.items()))
    return _box(b"udta", _box(b"meta", b"\x00\x00\x00\x00" + hdlr + ilst))


def _shift_offsets(moov: bytearray, start: int, end: int, threshold: int, delta: int) -> None:
    """Add ``delta`` to every chunk offset at or after ``threshold`` (in place)."""
    for kind, _, payload, box_end in list(_boxes(bytes(moov), start, end)):
        if kind in _CONTAINERS:
            _shift_offsets(moov, payload, box_end, threshold, delta)
        elif kind in (b"stco", b"co64"):
            (count,) = struct.unpack(">I", moov[payload + 4 : payload + 8])
            wide = kind == b"co64"
            fmt, width = (">Q", 8) if wide else (">I", 4)
            for i in range(count):
                at = payload + 8 + i * width
                (offset,) = struct.unpack(fmt, moov[at : at + width])
                if offset >= threshold:
                    offset += delta
                    if not wide and not 0 <= offset < 2**32:
                        raise ValueError("chunk offset overflow")
                    moov[at : at + width] = struct.pack(fmt, offset)


def replace_user_data(data: bytes, tags: dict[str, str]) -> Optional[bytes]:
    """``data`` with the movie-level ``udta``/``meta`` replaced by ``tags`` (none: removed).

    Returns ``None`` when the file is not a layout handled here (no ``moov``, fragmented,
    malformed); the caller then keeps the bytes as they were.
    """
    try:
        top = list(_boxes(data, 0, len(data)))
        kinds = [k for k, *_ in top]
        if b"moov" not in kinds or b"moof" in kinds:
            return None
        _, moov_start, payload, moov_end = top[kinds.index(b"moov")]
        if payload - moov_start != 8:
            return None  # a 64-bit moov header: not worth a special case
        children = [
            data[s:e] for kind, s, _, e in _boxes(data, payload, moov_end) if kind not in (b"udta", b"meta")
        ]
        body = b"".join(children) + (_user_data(tags) if tags else b"")
        moov = bytearray(_box(b"moov", body))
        delta = len(moov) - (moov_end - moov_start)
        if delta:
            _shift_offsets(moov, 8, len(moov), moov_start, delta)
        return data[:moov_start] + bytes(moov) + data[moov_end:]
    except (ValueError, struct.error):
        return None


def video_size(data: bytes) -> Optional[tuple[int, int]]:
    """``(width, height)`` of the first track with a picture (from its ``tkhd``), or ``None``."""
    try:
        for kind, _, payload, end in _boxes(data, 0, len(data)):
            if kind != b"moov":
                continue
            for tkind, _, tpayload, tend in _boxes(data, payload, end):
                if tkind != b"trak":
                    continue
                for hkind, _, hpayload, hend in _boxes(data, tpayload, tend):
                    if hkind == b"tkhd" and hend - hpayload >= 84:
                        width, height = struct.unpack(">II", data[hend - 8 : hend])
                        if width and height:
                            return width >> 16, height >> 16
    except (ValueError, struct.error):
        return None
    return None
