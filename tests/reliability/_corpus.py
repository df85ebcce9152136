"""Crafted image inputs: every mode and container a caller may hand us, and broken ones.

Each entry maps a name to ``(bytes, expected)`` where ``expected`` is ``"ok"`` (a decodable
image the manager must accept), ``"invalid"`` (must be rejected with InvalidRequestError) or
``"either"`` (Pillow may or may not accept it; either way the outcome must be typed).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Any

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def encode(img: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, *, color_type: int = 0) -> bytes:
    """A well-formed PNG header claiming ``width x height`` with one tiny IDAT (a bomb header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF header whose logical screen and only frame claim ``width x height``."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame + b"\x3b"


@functools.lru_cache(maxsize=1)
def corpus() -> dict[str, tuple[bytes, str]]:
    from PIL import Image

    rgb = Image.new("RGB", (16, 16), (10, 200, 30))
    png = encode(rgb, "PNG")
    jpeg = encode(rgb, "JPEG")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] * 128)
    frames_rgb = [Image.new("RGB", (16, 16), (i * 60, 0, 0)) for i in range(4)]
    frames_rgba = [Image.new("RGBA", (16, 16), (0, i * 60, 0, 100 + i * 30)) for i in range(4)]
    bad_ihdr_crc = bytearray(png)
    bad_ihdr_crc[29] ^= 0xFF  # last byte of the IHDR CRC
    bad_idat = bytearray(png)
    idat = png.index(b"IDAT")
    bad_idat[idat + 6] ^= 0xFF  # inside the compressed IDAT payload
    out: dict[str, tuple[bytes, str]] = {
        # decodable images of every mode/container: must be accepted
        "png_rgb": (png, "ok"),
        "png_rgba": (encode(Image.new("RGBA", (16, 16), (1, 2, 3, 4)), "PNG"), "ok"),
        "png_la": (encode(Image.new("LA", (16, 16), (9, 200)), "PNG"), "ok"),
        "png_l": (encode(Image.new("L", (16, 16), 7), "PNG"), "ok"),
        "png_1bit": (encode(Image.new("1", (16, 16), 1), "PNG"), "ok"),
        "png_16bit_I;16": (encode(Image.new("I;16", (16, 16), 40000), "PNG"), "ok"),
        "png_palette_transparency": (encode(palette, "PNG", transparency=0), "ok"),
        "png_1x1": (encode(Image.new("RGB", (1, 1)), "PNG"), "ok"),
        "png_4096x1": (encode(Image.new("L", (4096, 1)), "PNG"), "ok"),
        "apng_animated": (encode(frames_rgba[0], "PNG", save_all=True, append_images=frames_rgba[1:]), "ok"),
        "gif_animated": (encode(frames_rgb[0], "GIF", save_all=True, append_images=frames_rgb[1:]), "ok"),
        "jpeg_rgb": (jpeg, "ok"),
        "jpeg_cmyk": (encode(Image.new("CMYK", (16, 16), (0, 50, 100, 0)), "JPEG"), "ok"),
        "jpeg_gray": (encode(Image.new("L", (16, 16), 99), "JPEG"), "ok"),
        "webp_rgba": (encode(Image.new("RGBA", (16, 16), (5, 6, 7, 8)), "WEBP"), "ok"),
        "bmp_rgb": (encode(rgb, "BMP"), "ok"),
        "tiff_cmyk": (encode(Image.new("CMYK", (16, 16)), "TIFF"), "ok"),
        "tiff_16bit": (encode(Image.new("I;16", (16, 16), 1234), "TIFF"), "ok"),
        "tiff_float": (encode(Image.new("F", (16, 16), 0.5), "TIFF"), "ok"),
        # broken, hostile or not an image: must be rejected
        "empty": (b"", "invalid"),
        "random_bytes": (bytes(range(256)) * 3, "invalid"),
        "text": (b"a lighthouse at dusk", "invalid"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "invalid"),
        "mp4_header": (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "invalid"),
        "png_signature_only": (PNG_SIG, "invalid"),
        "png_truncated_in_header": (png[:20], "invalid"),
        "png_truncated_in_idat": (png[: idat + 10], "invalid"),
        "png_no_iend": (png[:-12], "either"),
        "png_bad_ihdr_crc": (bytes(bad_ihdr_crc), "invalid"),
        "png_corrupt_idat": (bytes(bad_idat), "invalid"),
        "png_zero_width": (png_claiming(0, 16), "invalid"),
        "png_bomb_100000x100000": (png_claiming(100_000, 100_000), "invalid"),
        "png_bomb_10000x10000": (png_claiming(10_000, 10_000), "invalid"),
        "png_bomb_9000x9000": (png_claiming(9_000, 9_000), "invalid"),
        "png_bomb_1x2000000000": (png_claiming(1, 2_000_000_000), "invalid"),
        "gif_bomb_65535x65535": (gif_claiming(65535, 65535), "invalid"),
        "jpeg_truncated": (jpeg[: len(jpeg) // 2], "invalid"),
        "jpeg_header_only": (jpeg[:4], "invalid"),
        "gif_truncated": (encode(frames_rgb[0], "GIF")[:20], "invalid"),
        "webp_truncated": (encode(rgb, "WEBP")[:24], "invalid"),
        "bmp_header_only": (encode(rgb, "BMP")[:30], "invalid"),
        "tiff_header_only": (b"II*\x00\x08\x00\x00\x00", "invalid"),
    }
    return out


def valid_names() -> list[str]:
    return [name for name, (_, expected) in corpus().items() if expected == "ok"]


def data(name: str) -> bytes:
    return corpus()[name][0]
