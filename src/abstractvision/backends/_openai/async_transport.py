"""The async backend's ``httpx`` transport: httpx's default HTTP/1.1 pool, one write per request.

httpcore writes a request's headers and its body in two socket writes: two packets
(``TCP_NODELAY``) and two wake-ups of the server per request, which with many requests in
flight is measurable on both ends. :class:`JoinedWritesTransport` is httpx's default
async transport (same pool limits, TLS context and exception types) on a network backend
whose streams hold writes until the first read (HTTP/1.1 reads only once the request is
sent) or until 64 KiB are pending. The sync path does the same in ``deadline_transport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Optional

import httpcore
import httpx

from .deadline_transport import _COALESCE_BYTES, _httpx_errors, core_request

__all__ = ["JoinedWritesTransport"]


class _JoinedStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._write_timeout: Optional[float] = None

    async def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            await self._stream.write(data, self._write_timeout)

    async def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        await self._flush()
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_size += len(buffer)
        self._write_timeout = timeout
        if self._pending_size >= _COALESCE_BYTES:
            await self._flush()

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: Optional[str] = None, timeout: Optional[float] = None
    ) -> httpcore.AsyncNetworkStream:
        await self._flush()
        return _JoinedStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _JoinedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[Any]] = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _JoinedStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class JoinedWritesTransport(httpx.AsyncBaseTransport):
    """httpx's default async HTTP/1.1 transport, sending each small request in one write."""

    def __init__(self) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_JoinedBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request(request))
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_ResponseBody(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
