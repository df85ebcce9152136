"""Read what a generated file carries, the way other programs read it (Pillow, PyAV, A1111's parser)."""

from __future__ import annotations

import io
import json
import re
from typing import Any, Optional


def open_image(data: bytes) -> Any:
    """Decode fully with Pillow (which also checks PNG chunk CRCs)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def user_comment(img: Any) -> Optional[str]:
    """EXIF ``UserComment`` as A1111 (piexif) reads it: ``UNICODE`` prefix, UTF-16BE text."""
    raw = img.getexif().get_ifd(0x8769).get(0x9286)
    if raw is None:
        return None
    assert raw[:8] == b"UNICODE\x00", raw[:8]
    return bytes(raw[8:]).decode("utf-16-be")


def xmp_provenance(img: Any) -> dict[str, Any]:
    """The JSON provenance in the XMP packet of a JPEG or WebP."""
    from xml.sax.saxutils import unescape

    xmp = img.info["xmp"]
    xmp = xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp
    found = re.search(r"<abstractvision:provenance>(.*?)</abstractvision:provenance>", xmp, re.S)
    assert found, xmp
    return json.loads(unescape(found.group(1)))


def parse_infotext(text: str) -> tuple[str, Optional[str], dict[str, str]]:
    """(prompt, negative prompt, fields) of an A1111 ``parameters`` text, split as A1111 does."""
    lines = text.split("\n")
    pairs = re.findall(r'\s*([\w ]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)', lines[-1])
    fields = {k.strip(): (json.loads(v) if v.startswith('"') else v) for k, v in pairs}
    negative = None
    prompt_lines = []
    for line in lines[:-1]:
        if line.startswith("Negative prompt: "):
            negative = line[len("Negative prompt: ") :]
        else:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), negative, fields


def mp4_tags(data: bytes) -> tuple[dict[str, str], list[Any]]:
    """Container tags and decoded frames (RGB arrays) of an MP4, read with PyAV."""
    import av

    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return dict(container.metadata), frames
