"""One socket write per small request (issue 18), on the sync and the async transports.

httpcore's own HTTP/1.1 connection drives a recording network stream (a fake that keeps
httpcore's stream contract): plain, it writes the headers and the body separately; through
the backend's stream wrappers the request leaves in one write, and a large body still
streams in pieces.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import httpcore

from abstractvision.backends._openai.async_transport import _JoinedStream
from abstractvision.backends._openai.deadline_transport import _COALESCE_BYTES, _DeadlineStream

REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
ORIGIN = httpcore.Origin(b"http", b"127.0.0.1", 8000)


class Recording(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self._reply = REPLY

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        out, self._reply = self._reply[:max_bytes], self._reply[max_bytes:]
        return out

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if buffer:  # an empty write sends nothing (httpcore's socket streams skip it too)
            self.writes.append(bytes(buffer))

    def close(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return None


class AsyncRecording(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.sync = Recording()

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        return self.sync.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        self.sync.write(buffer, timeout)

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return None


def _request(body: bytes, chunk: int = 0) -> httpcore.Request:
    content: Any = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else body
    return httpcore.Request(
        "POST",
        "http://127.0.0.1:8000/v1/images/generations",
        headers=[(b"Host", b"127.0.0.1:8000"), (b"Content-Length", b"%d" % len(body))],
        content=content,
    )


def _exchange(stream: Any, body: bytes, chunk: int = 0) -> bytes:
    conn = httpcore.HTTP11Connection(ORIGIN, stream)
    response = conn.handle_request(_request(body, chunk))
    try:
        return response.read()
    finally:
        response.close()


def test_plain_httpcore_writes_headers_and_body_separately():
    raw = Recording()
    assert _exchange(raw, b'{"prompt": "a cat"}') == b"{}"
    assert len(raw.writes) == 2  # what the wrappers below avoid


def test_sync_stream_sends_a_small_request_in_one_write():
    raw = Recording()
    assert _exchange(_DeadlineStream(raw), b'{"prompt": "a cat"}') == b"{}"
    assert len(raw.writes) == 1
    assert raw.writes[0].startswith(b"POST /v1/images/generations HTTP/1.1\r\n")
    assert raw.writes[0].endswith(b'\r\n\r\n{"prompt": "a cat"}')


def test_sync_stream_still_streams_a_large_body():
    raw = Recording()
    body = b"x" * (4 * _COALESCE_BYTES)
    assert _exchange(_DeadlineStream(raw), body, chunk=_COALESCE_BYTES) == b"{}"
    assert len(raw.writes) == 4 and b"".join(raw.writes).endswith(body)


def test_async_stream_sends_a_small_request_in_one_write():
    async def scenario() -> list[bytes]:
        raw = AsyncRecording()
        conn = httpcore.AsyncHTTP11Connection(ORIGIN, _JoinedStream(raw))
        response = await conn.handle_async_request(_request(b'{"prompt": "a cat"}'))
        try:
            assert await response.aread() == b"{}"
        finally:
            await response.aclose()
        return raw.sync.writes

    writes = asyncio.run(scenario())
    assert len(writes) == 1 and writes[0].endswith(b'{"prompt": "a cat"}')
