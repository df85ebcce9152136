"""What a generated file carries: its encoding (PNG, JPEG, WebP) and the metadata policy.

The managers call :func:`encode_image` once per image result when the caller asked for an
``output_format`` (backends keep returning what they return), then :func:`apply_policy`,
which makes the file carry exactly what ``embed_metadata`` says and nothing else:

========== =================================================================================
policy     inside the file
========== =================================================================================
``none``   no text at all: text chunks, EXIF, XMP and MP4 user data are removed
``parameters`` the A1111-style ``parameters`` text: a PNG ``parameters`` text chunk; EXIF
           ``UserComment`` in JPEG and WebP; the ``comment`` tag of an MP4
``full``   the same, plus the JSON provenance: a PNG ``abstractvision`` iTXt chunk; an XMP
           packet in JPEG and WebP; an ``abstractvision`` tag of an MP4
========== =================================================================================

Only deterministic facts are written (see :mod:`abstractvision._provenance`), so the same
request with the same seed gives the same file bytes. Metadata is written at the byte level
(no re-encoding of pixels); Pillow is imported only to convert to another format or to
read a non-PNG image's size. Other formats (GIF, BMP...) are left as the backend returned them.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Optional
from xml.sax.saxutils import escape

from . import _mp4
from ._media import _PNG_SIG, _chunk, sniff_mime
from ._provenance import infotext, provenance_json

__all__ = ["apply_policy", "encode_image", "image_size"]

_MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
#: Encoder quality when ``output_compression`` is not given (OpenAI's default).
DEFAULT_QUALITY = 100
_XMP_NS = "http://ns.adobe.com/xap/1.0/\x00"
_AV_NS = "https://abstractvision.dev/ns/provenance/1.0/"
_APP_MAX = 65533  # payload bytes of one JPEG APPn segment


# -- sizes ---------------------------------------------------------------------------------


def image_size(data: bytes, mime: str) -> Optional[tuple[int, int]]:
    """``(width, height)`` of an image (PNG from its header; others through Pillow's header read)."""
    if mime == "image/png" and data.startswith(_PNG_SIG) and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if not mime.startswith("image/"):
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:  # undecodable: nothing to compare (the asset itself is passed on as is)
        return None


def media_size(data: bytes, mime: str) -> Optional[tuple[int, int]]:
    """The pixel size of an image or an MP4/QuickTime video (``None`` when unknown)."""
    if mime in ("video/mp4", "video/quicktime"):
        return _mp4.video_size(data)
    return image_size(data, mime)


# -- encoding ------------------------------------------------------------------------------


def encode_image(
    data: bytes, mime: str, output_format: Optional[str], quality: Optional[int]
) -> tuple[bytes, str, dict[str, Any]]:
    """Encode an image result as ``output_format`` (``None``: keep it); return bytes, MIME, facts.

    The facts (``format``, ``compression``, ``converted_from``, ``alpha``) are recorded in
    ``metadata["encoding"]``. Encoding is deterministic: the same pixels and options give
    the same bytes. JPEG has no alpha channel: transparent pixels keep their colour and the
    alpha is dropped (recorded as ``"alpha": "dropped"``).
    """
    if output_format is None:
        return data, mime, {}
    target = _MIME_BY_FORMAT[output_format]
    if target == mime and quality is None:
        return data, mime, {"format": output_format}
    from PIL import Image

    facts: dict[str, Any] = {"format": output_format}
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        icc = img.info.get("icc_profile")
        options: dict[str, Any] = {}
        if output_format in ("jpeg", "webp"):
            options["quality"] = DEFAULT_QUALITY if quality is None else quality
            facts["compression"] = options["quality"]
        if output_format == "jpeg":
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            if has_alpha:
                facts["alpha"] = "dropped"
            options.update(optimize=False, progressive=False)
        elif output_format == "webp":
            if img.mode not in ("RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
            options.update(method=4, lossless=False)
        if icc:
            options["icc_profile"] = icc
        buf = io.BytesIO()
        img.save(buf, format=_PIL_FORMAT[output_format], **options)
    if target != mime:
        facts["converted_from"] = mime
    return buf.getvalue(), target, facts


# -- the policy ----------------------------------------------------------------------------


def apply_policy(data: bytes, mime: str, policy: str, meta: dict[str, Any]) -> tuple[bytes, list[str]]:
    """``data`` carrying exactly what ``policy`` says; returns the bytes and what could not be written.

    ``meta`` is the result's final metadata (the embedded parts are built from it).
    """
    text = infotext(meta) if policy in ("parameters", "full") else None
    provenance = provenance_json(meta) if policy == "full" else None
    kind = sniff_mime(data) or mime
    if kind == "image/png":
        return _png(data, text, provenance), []
    if kind == "image/jpeg":
        return _jpeg(data, text, provenance)
    if kind == "image/webp":
        return _webp(data, text, provenance), []
    if kind in ("video/mp4", "video/quicktime"):
        tags = {}
        if text is not None:
            tags["comment"] = text
        if provenance is not None:
            tags["abstractvision"] = provenance
        out = _mp4.replace_user_data(data, tags)
        return (out, []) if out is not None else (data, ["the MP4 layout is not one this library rewrites"])
    if policy != "none":
        return data, [f"{kind} files carry no embedded metadata here"]
    return data, []


# -- PNG -----------------------------------------------------------------------------------

_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"}


def _png_text_chunk(key: str, value: str) -> bytes:
    name = key.encode("latin-1")[:79]
    try:  # tEXt when Latin-1 can hold it (what A1111 writes); iTXt (UTF-8) otherwise
        return _chunk(b"tEXt", name + b"\x00" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", name + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))


def _png(data: bytes, text: Optional[str], provenance: Optional[str]) -> bytes:
    """Drop text, EXIF and time chunks; add ours before the first IDAT."""
    if not data.startswith(_PNG_SIG):
        return data
    ours = b""
    if text is not None:
        ours += _png_text_chunk("parameters", text)
    if provenance is not None:
        ours += _chunk(b"iTXt", b"abstractvision\x00\x00\x00\x00\x00" + provenance.encode("utf-8"))
    out = [_PNG_SIG]
    pos = len(_PNG_SIG)
    placed = False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if kind == b"IDAT" and not placed:
            out.append(ours)
            placed = True
        if kind not in _PNG_DROP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    out.append(data[pos:])
    return b"".join(out)


# -- EXIF and XMP (JPEG, WebP) -------------------------------------------------------------


def user_comment_exif(text: str) -> bytes:
    """A big-endian TIFF/EXIF block holding only ``UserComment`` (``UNICODE`` prefix, UTF-16BE).

    The layout A1111 (through piexif) writes and reads for JPEG and WebP.
    """
    comment = b"UNICODE\x00" + text.encode("utf-16-be")
    exif_ifd = 8 + 2 + 12 + 4  # after the header and IFD0 (one entry)
    data_at = exif_ifd + 2 + 12 + 4
    return (
        b"MM\x00\x2a"
        + struct.pack(">I", 8)
        + struct.pack(">H", 1)
        + struct.pack(">HHII", 0x8769, 4, 1, exif_ifd)  # ExifIFDPointer
        + struct.pack(">I", 0)
        + struct.pack(">H", 1)
        + struct.pack(">HHII", 0x9286, 7, len(comment), data_at)  # UserComment, UNDEFINED
        + struct.pack(">I", 0)
        + comment
    )


def xmp_packet(text: Optional[str], provenance: str) -> bytes:
    """An XMP packet with the infotext and the JSON provenance as ``abstractvision:`` properties."""
    parts = [f"<abstractvision:provenance>{escape(provenance)}</abstractvision:provenance>"]
    if text is not None:
        parts.insert(0, f"<abstractvision:parameters>{escape(text)}</abstractvision:parameters>")
    body = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:abstractvision="{_AV_NS}">'
        + "".join(parts)
        + '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    )
    return body.encode("utf-8")


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _jpeg(data: bytes, text: Optional[str], provenance: Optional[str]) -> tuple[bytes, list[str]]:
    """Drop APP1 (EXIF, XMP) and COM segments; add ours after SOI/APP0."""
    if not data.startswith(b"\xff\xd8"):
        return data, []
    kept: list[bytes] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        if data[pos + 1] == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker not in (0xE1, 0xFE):
            kept.append(data[pos : pos + 2 + length])
        pos += 2 + length
    omitted: list[str] = []
    ours: list[bytes] = []
    if text is not None:
        payload = b"Exif\x00\x00" + user_comment_exif(text)
        if len(payload) <= _APP_MAX:
            ours.append(_segment(0xE1, payload))
        else:
            omitted.append("the parameters text is larger than a JPEG EXIF segment (64 KiB)")
    if provenance is not None:
        payload = _XMP_NS.encode("latin-1") + xmp_packet(text, provenance)
        if len(payload) <= _APP_MAX:
            ours.append(_segment(0xE1, payload))
        else:
            omitted.append("the JSON provenance is larger than a JPEG XMP segment (64 KiB)")
    app0 = [s for s in kept if s[1] == 0xE0]  # JFIF stays first, as readers expect
    rest = [s for s in kept if s[1] != 0xE0]
    return b"\xff\xd8" + b"".join(app0 + ours + rest) + data[pos:], omitted


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def _webp_canvas(chunks: list[tuple[bytes, bytes]]) -> tuple[int, int, bool]:
    """Canvas size and alpha of a simple (VP8 / VP8L) WebP, read from its bitstream header."""
    for kind, payload in chunks:
        if kind == b"VP8 " and len(payload) >= 10:
            width, height = struct.unpack("<HH", payload[6:10])
            return width & 0x3FFF, height & 0x3FFF, False
        if kind == b"VP8L" and len(payload) >= 5:
            (bits,) = struct.unpack("<I", payload[1:5])
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise ValueError("no VP8/VP8L bitstream")


def _webp(data: bytes, text: Optional[str], provenance: Optional[str]) -> bytes:
    """Drop EXIF and XMP chunks; add ours (a VP8X header is added or updated as the format needs)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    chunks: list[tuple[bytes, bytes]] = []
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size % 2)
    chunks = [(k, p) for k, p in chunks if k not in (b"EXIF", b"XMP ")]
    extras: list[tuple[bytes, bytes]] = []
    if text is not None:
        extras.append((b"EXIF", user_comment_exif(text)))
    if provenance is not None:
        extras.append((b"XMP ", xmp_packet(text, provenance)))
    vp8x = next((i for i, (k, _) in enumerate(chunks) if k == b"VP8X"), None)
    if vp8x is None and extras:
        try:
            width, height, alpha = _webp_canvas(chunks)
        except ValueError:
            return data
        header = bytes([0x10 if alpha else 0]) + b"\x00\x00\x00"
        header += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", header))
        vp8x = 0
    if vp8x is not None:
        flags = chunks[vp8x][1][0] & ~0x0C
        flags |= 0x08 if text is not None else 0
        flags |= 0x04 if provenance is not None else 0
        chunks[vp8x] = (b"VP8X", bytes([flags]) + chunks[vp8x][1][1:])
    body = b"WEBP" + b"".join(_riff_chunk(k, p) for k, p in chunks + extras)
    return b"RIFF" + struct.pack("<I", len(body)) + body
