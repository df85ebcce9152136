"""An OpenAI-shaped server on loopback that answers at once (or after ``argv[1]`` seconds).

Raw asyncio sockets and one canned reply (an 8x8 PNG as ``b64_json`` for every POST, a
one-model catalog for ``GET /v1/models``), so that a client benchmark measures the
client: the server costs a few microseconds per request. Keep-alive, Content-Length
bodies only. Prints its base URL, serves until stdin closes.

usage: python bench/_instant_server.py [delay_s]
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png(w: int = 8, h: int = 8) -> bytes:
    raw = b"".join(b"\x00" + bytes([10, 20, 30]) * w for _ in range(h))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
BODY = json.dumps({"created": 1, "data": [{"b64_json": base64.b64encode(png()).decode()}]}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()


def resp(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
    )


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if DELAY:
                await asyncio.sleep(DELAY)
            writer.write(resp(MODELS if b" /v1/models" in head[:40] else BODY))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
