"""An ``httpx`` transport whose every socket wait ends at the caller's deadline.

httpx applies ``timeout`` to each socket operation separately: a server that trickles
bytes (endless headers, a body one byte at a time) is never timed out, and a read started
just before an overall deadline may wait a whole read timeout past it. The sync transport
of the OpenAI-compatible backend sets :data:`REQUEST_DEADLINE` around each request and
sends through :class:`DeadlineTransport`, httpx's default HTTP/1.1 transport rebuilt on
httpcore's public API with a network backend that shortens every connect, read and write
to the time left. (The async transport cuts the whole exchange with an anyio scope.)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import httpcore
import httpx

from .protocol import BodyReader, HttpRequest, Reply, TruncatedBody

__all__ = ["REQUEST_DEADLINE", "DeadlineTransport"]

#: what httpx.Client adds to every request (bar ``br``/``zstd``, which the exchange does not
#: decode; ``User-Agent`` comes with the wire headers)
_CLIENT_HEADERS = (
    (b"Accept", b"*/*"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"Connection", b"keep-alive"),
)

#: ``time.monotonic()`` deadline of the request the sync transport is sending (this thread).
REQUEST_DEADLINE: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar(
    "abstractvision_openai_request_deadline", default=None
)


def core_request(request: httpx.Request) -> httpcore.Request:
    """httpx's request as httpcore's (what httpx's own HTTPTransport does), for both pools."""
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


def _until_deadline(timeout: Optional[float], error: type[Exception]) -> Optional[float]:
    """``timeout`` shortened to what is left before :data:`REQUEST_DEADLINE`."""
    at = REQUEST_DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the overall deadline passed")
    return left if timeout is None else min(timeout, left)


#: a request up to this size goes out in one socket write (headers and body together)
_COALESCE_BYTES = 64 * 1024


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose waits end at the deadline, and whose small writes are joined.

    httpcore writes a request's headers and its body separately: two ``send`` calls, two
    packets (``TCP_NODELAY``) and two wake-ups of the server per request. Writes are held
    here until the first read (HTTP/1.1 reads only once the request is sent) or until
    ``_COALESCE_BYTES`` are pending, so a small request leaves in one write.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._write_timeout: Optional[float] = None

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            self._stream.write(data, _until_deadline(self._write_timeout, httpcore.WriteTimeout))

    def read(self, max_bytes: int, timeout: Optional[float] = None) -> bytes:
        self._flush()
        return self._stream.read(max_bytes, _until_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: Optional[float] = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_size += len(buffer)
        self._write_timeout = timeout
        if self._pending_size >= _COALESCE_BYTES:
            self._flush()

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: Optional[str] = None, timeout: Optional[float] = None
    ) -> httpcore.NetworkStream:
        self._flush()
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable[Any]] = None,
    ) -> httpcore.NetworkStream:
        timeout = _until_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


#: httpcore -> httpx exceptions, most specific first (what httpx's own transport does).
_HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _HTTPCORE_ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseBody(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """httpx's default HTTP/1.1 transport, with every socket wait cut at the deadline.

    httpx applies ``timeout`` to each socket read separately, so a server that trickles
    bytes (endless headers, a body one byte at a time) is never timed out by it, and a
    read started just before the deadline may wait a whole ``timeout_s`` past it. Here
    each connect, read and write waits at most until :data:`REQUEST_DEADLINE`.
    """

    def __init__(self) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(),
        )
        self._stdlib: Any = None  # the plain-HTTP path of exchange(), made on first use

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        with _httpx_errors():
            response = self._pool.handle_request(core_request(request))
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_ResponseBody(response.stream),
            extensions=response.extensions,
        )

    def exchange(self, action: HttpRequest) -> Reply:
        """Send ``action`` and read its reply straight on the connection pool.

        The sync backend's path when it owns its client: the same wire as
        ``httpx.Client(transport=DeadlineTransport())`` without httpx's per-request model
        (URL parsing, header and cookie objects, auth and redirect hooks), with httpx's
        exceptions. Not for URLs with credentials (httpx turns those into Basic auth).
        """
        scheme, host, port, target, authority = _split_url(action.url)
        if scheme == b"http":  # plain HTTP: the standard library's client, cheaper per request
            if self._stdlib is None:
                from .stdlib_exchange import StdlibExchange

                self._stdlib = StdlibExchange()
            return self._stdlib.exchange(action)
        headers: list[tuple[bytes, bytes]] = [(b"Host", authority), *_CLIENT_HEADERS]
        headers += [(k.encode("ascii"), v.encode("ascii")) for k, v in action.headers.items()]
        content = action.content
        if content is not None:
            headers.append((b"Content-Length", b"%d" % len(content)))
        elif action.method in ("POST", "PUT", "PATCH"):
            headers.append((b"Content-Length", b"0"))
        read = action.read_timeout_s
        request = httpcore.Request(
            action.method,
            httpcore.URL(scheme=scheme, host=host, port=port, target=target),
            headers=headers,
            content=content or b"",
            extensions={
                "timeout": {"connect": action.connect_timeout_s, "read": read, "write": read, "pool": read}
            },
        )
        started = time.monotonic()
        token = REQUEST_DEADLINE.set(action.deadline_at)
        try:
            with _httpx_errors():
                response = self._pool.handle_request(request)
            try:
                reply_headers = httpx.Headers(response.headers)
                location = reply_headers.get("location")
                if location is not None and response.status in _REDIRECTS:
                    try:  # what httpx.Client checks of a redirect, with its error
                        httpx.URL(location)
                    except httpx.InvalidURL as exc:
                        raise httpx.RemoteProtocolError(f"Invalid URL in location header: {exc}.") from None
                reader = BodyReader(action, None, reply_headers)
                decoder = _decoder(reply_headers.get("content-encoding"))
                try:
                    with _httpx_errors():
                        assert isinstance(response.stream, Iterable)
                        for chunk in response.stream:
                            reader.feed(decoder.decompress(chunk) if decoder is not None else chunk)
                        if decoder is not None:
                            reader.feed(decoder.flush())
                except (httpx.TimeoutException, httpx.DecodingError):
                    raise
                except httpx.TransportError as exc:
                    raise TruncatedBody(str(exc) or type(exc).__name__) from exc
                except zlib.error as exc:
                    raise httpx.DecodingError(f"Error decoding the response body: {exc}") from exc
            finally:
                response.close()
        finally:
            REQUEST_DEADLINE.reset(token)
        return Reply(response.status, reply_headers, reader.body(), action.url, time.monotonic() - started)

    def close(self) -> None:
        self._pool.close()
        if self._stdlib is not None:
            self._stdlib.close()


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@functools.lru_cache(maxsize=256)
def _split_url(url: str) -> tuple[bytes, bytes, Optional[int], bytes, bytes]:
    """scheme, host, port, target and Host header of ``url`` (parsed once per URL)."""
    parts = httpx.URL(url)
    host, port = parts.raw_host, parts.port
    return parts.raw_scheme, host, port, parts.raw_path, host if port is None else host + b":%d" % port


def _decoder(encoding: Optional[str]) -> Any:
    """A zlib decompressor for ``Content-Encoding`` (what httpx decodes for gzip/deflate)."""
    value = (encoding or "identity").strip().lower()
    if value == "identity":
        return None
    if value in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if value == "deflate":
        return zlib.decompressobj()  # zlib-wrapped, as servers send it (httpx also tries raw)
    raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r} (asked for gzip, deflate)")
