"""The sync backend's plain-HTTP exchange: kept-alive sockets, responses read by ``http.client``.

For ``http://`` servers (local engines, the abstractvision server, sd-server...) the client
stack is most of the cost of a request. Here the request (line, headers checked once per
header set, body) leaves in one ``sendall`` and the response is parsed by the standard
library's ``http.client.HTTPResponse`` (status line, headers, Content-Length and chunked
bodies); httpcore with h11 costs about 0.1 ms more per request on the development machine.
The behaviour is the httpcore path's (``DeadlineTransport``): every socket wait ends at
:data:`REQUEST_DEADLINE` (each receive re-arms its timeout), a kept-alive connection is
checked before reuse (never a retry after sending), httpx's exception types, gzip/deflate
decoded, a short Content-Length body reported as truncated. ``https://`` stays on httpcore.
"""

from __future__ import annotations

import functools
import http.client
import re
import select
import socket
import threading
import time
import zlib
from typing import Any, Optional

import httpx

from .deadline_transport import (
    _CLIENT_HEADERS,
    _REDIRECTS,
    REQUEST_DEADLINE,
    _decoder,
    _split_url,
    _until_deadline,
)
from .protocol import BodyReader, HttpRequest, Reply, TruncatedBody

__all__ = ["StdlibExchange"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


@functools.lru_cache(maxsize=64)
def _header_block(items: tuple[tuple[str, str], ...]) -> bytes:
    """The header lines of a request (httpx's default headers first), checked once per set."""
    lines = [name + b": " + value + b"\r\n" for name, value in _CLIENT_HEADERS]
    for name, value in items:
        raw_name, raw_value = name.encode("ascii"), value.encode("ascii")
        if not _TOKEN.fullmatch(raw_name) or _BAD_VALUE.search(raw_value):
            raise httpx.LocalProtocolError(f"Illegal header name or value: {name!r}")
        lines.append(raw_name + b": " + raw_value + b"\r\n")
    return b"".join(lines)


_KEEPALIVE_S = 5.0
_MAX_IDLE = 20
_CHUNK = 64 * 1024


class _DeadlineSocket(socket.socket):
    """A socket whose every receive waits at most the read timeout and until the deadline
    (``http.client`` reads through ``makefile``, which calls ``recv_into``)."""

    read_timeout: Optional[float] = None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_until_deadline(self.read_timeout, httpx.ReadTimeout))
        return super().recv_into(buffer, nbytes, flags)


class _Connection:
    """One kept-alive socket; responses are read by ``http.client.HTTPResponse``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sock: Optional[_DeadlineSocket] = None
        self.used_at = 0.0

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def open(self, connect_timeout: float) -> None:
        try:
            raw = socket.create_connection(
                (self.host, self.port), _until_deadline(connect_timeout, httpx.ConnectTimeout)
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = _DeadlineSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())

    def reusable(self) -> bool:
        """Kept alive, not expired, and nothing to read (a readable idle socket was closed by
        the server or holds stray bytes: either way, not safe to send on)."""
        sock = self.sock
        if sock is None or time.monotonic() - self.used_at > _KEEPALIVE_S:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


class StdlibExchange:
    """Kept-alive ``http.client`` connections per ``host:port``, shared by threads."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._lock = threading.Lock()

    def _take(self, host: str, port: int, connect_timeout: float) -> _Connection:
        with self._lock:
            idle = self._idle.get((host, port))
            while idle:
                conn = idle.pop()
                if conn.reusable():
                    return conn
                conn.close()
        conn = _Connection(host, port)
        conn.open(connect_timeout)
        return conn

    def _give_back(self, conn: _Connection) -> None:
        conn.used_at = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault((conn.host, conn.port), [])
            if len(idle) < _MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def exchange(self, action: HttpRequest) -> Reply:
        """Send ``action`` (an ``http://`` URL) and read its whole reply."""
        _scheme, host, port, target, authority = _split_url(action.url)
        started = time.monotonic()
        token = REQUEST_DEADLINE.set(action.deadline_at)
        keep = False
        conn: Optional[_Connection] = None
        response: Optional[http.client.HTTPResponse] = None
        try:
            conn = self._take(host.decode("ascii"), port or 80, action.connect_timeout_s)
            sock = conn.sock
            assert isinstance(sock, _DeadlineSocket)
            sock.read_timeout = action.read_timeout_s
            response = self._send(conn, sock, action, target, authority)
            reply_headers = httpx.Headers(response.getheaders())
            location = reply_headers.get("location")
            if location is not None and response.status in _REDIRECTS:
                try:  # what httpx.Client checks of a redirect, with its error
                    httpx.URL(location)
                except httpx.InvalidURL as exc:
                    raise httpx.RemoteProtocolError(f"Invalid URL in location header: {exc}.") from None
            reader = BodyReader(action, None, reply_headers)
            decoder = _decoder(reply_headers.get("content-encoding"))
            try:
                while True:
                    chunk = response.read1(_CHUNK)
                    if not chunk:
                        break
                    reader.feed(decoder.decompress(chunk) if decoder is not None else chunk)
                if response.length:  # read1() ends quietly at EOF: Content-Length promised more
                    raise TruncatedBody(
                        "peer closed connection without sending complete message body: "
                        f"{response.length} more bytes expected"
                    )
                if decoder is not None:
                    reader.feed(decoder.flush())
            except (httpx.TimeoutException, httpx.DecodingError):
                raise
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out") from exc
            except zlib.error as exc:
                raise httpx.DecodingError(f"Error decoding the response body: {exc}") from exc
            except (http.client.HTTPException, OSError, ValueError) as exc:
                raise TruncatedBody(str(exc) or type(exc).__name__) from exc
            keep = not response.will_close
        finally:
            REQUEST_DEADLINE.reset(token)
            if response is not None:
                response.close()  # its file object only (a kept connection stays open)
            if conn is not None:
                if keep:
                    self._give_back(conn)
                else:
                    conn.close()
        return Reply(response.status, reply_headers, reader.body(), action.url, time.monotonic() - started)

    @staticmethod
    def _send(
        conn: _Connection, sock: _DeadlineSocket, action: HttpRequest, target: bytes, authority: bytes
    ) -> http.client.HTTPResponse:
        content = action.content
        length = b""
        if content is not None or action.method in ("POST", "PUT", "PATCH"):
            length = b"Content-Length: %d\r\n" % len(content or b"")
        request = b"".join(
            (
                action.method.encode("ascii"),
                b" ",
                target,
                b" HTTP/1.1\r\nHost: ",
                authority,
                b"\r\n",
                _header_block(tuple(action.headers.items())),
                length,
                b"\r\n",
                content or b"",
            )
        )
        try:
            sock.settimeout(_until_deadline(action.read_timeout_s, httpx.WriteTimeout))
            sock.sendall(request)  # request line, headers and body: one write
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc)) from exc
        response = http.client.HTTPResponse(sock, method=action.method)
        try:
            try:
                response.begin()
            except BaseException:
                response.close()  # its file object holds a reference to the socket
                raise
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out") from exc
        except http.client.RemoteDisconnected as exc:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
        except http.client.HTTPException as exc:
            raise httpx.RemoteProtocolError(f"invalid response: {exc}") from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc)) from exc
        return response
