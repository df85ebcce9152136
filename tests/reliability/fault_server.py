"""A fault-injecting OpenAI-compatible server on 127.0.0.1, written at the socket level.

``http.server`` cannot misbehave the way real networks and proxies do, so this server
speaks HTTP/1.1 over raw sockets (one thread per connection, keep-alive) and answers each
request either normally or with a *fault* taken from a queue::

    with FaultServer() as server:
        server.inject("reset", "status_503")      # the next two requests misbehave
        server.inject("stall_headers", route="/files/")
        server.always("slow_body")                # every later request (until cleared)

Normal answers cover what the backend uses: ``POST /v1/images/generations`` and
``/v1/images/edits`` (base64 PNGs, or ``url`` outputs under ``/files/`` when the request asks
``response_format=url``), ``GET /v1/models``, the video job protocol (``POST /v1/videos``,
``GET``/``DELETE /v1/videos/{id}``, ``GET /v1/videos/{id}/content``) and ``GET /files/{name}``.

The faults are listed in :data:`FAULTS`. Stalls end as soon as the client hangs up, so
:attr:`FaultServer.open_connections` (server side) drops back to zero once every client
socket is closed: the tests use it, with a client-side count, to find connection leaks.
"""

from __future__ import annotations

import base64
import collections
import functools
import io
import itertools
import json
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 4


@functools.lru_cache(maxsize=4)
def png_bytes(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


#: name -> what the server does instead of answering normally.
FAULTS: dict[str, str] = {
    "ok": "answer normally",
    "late_headers": "wait late_s, then answer normally",
    "reset": "read the request, then reset the connection (SO_LINGER 0 + close): RST, no answer",
    "close": "read the request, then close the connection (FIN) without answering",
    "garbage": "answer bytes that are not HTTP, then close",
    "stall_headers": "read the request and never answer (until the client hangs up)",
    "no_read": "read no request body for no_read_s (an upload stalls once socket buffers fill), never answer",
    "slow_headers": "send the status line and endless headers, one byte every trickle_s",
    "stall_body": "send the headers and 10 bytes of the body, then stall",
    "slow_body": "send the headers, then the body one byte every trickle_s (JSON padded with spaces)",
    "reset_mid_body": "send the headers and half the body, then reset",
    "short_body": "announce the full Content-Length, send half the body, close",
    "chunked_cut": "chunked encoding, cut in the middle of a chunk, close",
    "bad_gzip": "Content-Encoding: gzip on a body that is not gzip",
    "empty_200": "200 with an empty body",
    "html_200": "200 text/html page instead of JSON (or of the image)",
    "json_200": "200 application/json error document instead of the image (downloads)",
    "bad_b64": "image JSON whose b64_json is not base64",
    "b64_not_image": "image JSON whose b64_json decodes to text",
    "not_image": "200 image/png whose bytes are not an image (downloads)",
    "bad_url": "image JSON whose url contains a control character",
    "status_429": "429 with a JSON error",
    "status_429_retry_after": "429 with Retry-After: 0.05",
    "status_429_long_retry_after": "429 with Retry-After: 3600 (longer than max_retry_after_s)",
    "status_500": "500 with a JSON error",
    "status_502_html": "502 with an HTML page",
    "status_503": "503 with a JSON error",
    "status_503_retry_after": "503 with Retry-After: 0 and an empty body",
    "status_503_retry_after_ms": "503 with retry-after-ms: 30",
    "redirect_loop": "307 to the same URL",
    "redirect_offsite": "302 to another host (http://127.0.0.2:9/...)",
    "redirect_bad_location": "302 to a Location that is not a URL (http://[::1)",
}

_JSON = "application/json"


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def head(self, *, length: Optional[int] = None, extra: Optional[dict[str, str]] = None) -> bytes:
        reason = {200: "OK", 302: "Found", 307: "Temporary Redirect", 429: "Too Many Requests"}
        lines = [f"HTTP/1.1 {self.status} {reason.get(self.status, 'Status')}"]
        headers = {**self.headers, **(extra or {})}
        if length is not None:
            headers["Content-Length"] = str(length)
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Request:
    method: str
    path: str  # without the /v1 prefix and the query string
    headers: dict[str, str]
    body: bytes = field(repr=False)


@dataclass
class Served:
    """One request as the server saw it, and the fault it got."""

    method: str
    path: str
    fault: str


class _Gone(Exception):
    """The client hung up (or the server is stopping)."""


class FaultServer:
    """See the module docstring.

    Args:
        trickle_s: pause between the bytes of ``slow_headers`` / ``slow_body``.
        stall_s: longest stall before the server gives up on its own.
        late_s: how late ``late_headers`` answers.
        no_read_s: how long ``no_read`` reads nothing (then it drains the request and stalls).
    """

    def __init__(
        self, *, trickle_s: float = 0.02, stall_s: float = 60.0, late_s: float = 0.1, no_read_s: float = 1.0
    ) -> None:
        self.no_read_s = no_read_s
        self.trickle_s = trickle_s
        self.stall_s = stall_s
        self.late_s = late_s
        self.served: list[Served] = []
        self.injected: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self.max_open = 0
        self.job_polls = 0  # "in_progress" answers to GET /videos/{id} before "completed"
        self._queue: list[tuple[Optional[str], str]] = []
        self._always: list[tuple[Optional[str], str]] = []
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._polls: dict[str, int] = {}
        self._listener: Optional[socket.socket] = None
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultServer:
        png_bytes()  # import Pillow now, not while the first request is timed
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.05)
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        thread = threading.Thread(target=self._accept_loop, name="fault-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # -- scripting and inspection -------------------------------------------------------

    def inject(self, *faults: str, route: Optional[str] = None) -> None:
        """Answer the next requests whose path starts with ``route`` with ``faults``, in order."""
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._queue.extend((route, f) for f in faults)

    def always(self, fault: str, *, route: Optional[str] = None) -> None:
        """Answer every request on ``route`` with ``fault`` once the queue has none for it."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._always.append((route, fault))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._always.clear()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def wait_closed(self, timeout: float = 5.0) -> int:
        """Wait until no connection is open on the server side; return how many still are."""
        end = time.monotonic() + timeout
        with self._idle:
            while self._conns and time.monotonic() < end:
                self._idle.wait(0.05)
            return len(self._conns)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    # -- connections --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.add(conn)
                self.accepted += 1
                self.max_open = max(self.max_open, len(self._conns))
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            conn.settimeout(30)
            while not self._stop.is_set():
                head, buf = self._read_head(conn, buf)
                if head is None:
                    return
                fault = self._next_fault(head)  # chosen before the body: no_read never reads it
                with self._lock:
                    self.served.append(Served(head.method, head.path, fault))
                    if fault != "ok":
                        self.injected[fault] += 1
                if fault == "no_read":
                    self._wait_hangup(conn)
                    return
                request, buf = self._read_body(conn, head, buf)
                if request is None or not self._answer(conn, request, fault):
                    return
        except (_Gone, OSError):
            return
        finally:
            with self._idle:
                self._conns.discard(conn)
                self._idle.notify_all()
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _read_head(conn: socket.socket, buf: bytes) -> tuple[Optional[Request], bytes]:
        """The request line and headers (``body`` still empty) and the bytes after them."""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        path = target.split("?")[0]
        path = path[3:] if path.startswith("/v1/") else path
        return Request(method, path, headers, b""), rest

    @staticmethod
    def _read_body(conn: socket.socket, head: Request, buf: bytes) -> tuple[Optional[Request], bytes]:
        length = int(head.headers.get("content-length") or 0)
        while len(buf) < length:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buf += data
        return Request(head.method, head.path, head.headers, buf[:length]), buf[length:]

    def _wait_hangup(self, conn: socket.socket) -> None:
        """Read nothing for ``no_read_s`` (or until the client hangs up), then drain and stall.

        A client that gave up on a stalled upload closes its socket, but its FIN waits behind
        the unsent data for a window that never opens: draining lets it through, so the
        server side closes too.
        """
        hangup = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
        poller = select.poll()
        poller.register(conn, hangup)
        end = time.monotonic() + self.no_read_s
        while time.monotonic() < end:
            if self._stop.is_set() or poller.poll(50):
                return
        self._pause(conn, self.stall_s)

    def _next_fault(self, request: Request) -> str:
        with self._lock:
            for i, (route, fault) in enumerate(self._queue):
                if route is None or request.path.startswith(route):
                    del self._queue[i]
                    return fault
            for route, fault in self._always:
                if route is None or request.path.startswith(route):
                    return fault
        return "ok"

    # -- low-level moves ----------------------------------------------------------------

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
        except OSError as exc:
            raise _Gone from exc

    def _pause(self, conn: socket.socket, seconds: float) -> None:
        """Sleep ``seconds``; raise :class:`_Gone` early when the client hangs up."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if self._stop.is_set():
                raise _Gone
            if left <= 0:
                return
            readable, _, _ = select.select([conn], [], [], min(left, 0.05))
            if readable:
                try:
                    data = conn.recv(65536)
                except OSError as exc:
                    raise _Gone from exc
                if not data:
                    raise _Gone

    @staticmethod
    def _reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _trickle(self, conn: socket.socket, data: Iterator[int]) -> None:
        deadline = time.monotonic() + self.stall_s
        for byte in data:
            if time.monotonic() > deadline:
                return
            self._send(conn, bytes((byte,)))
            self._pause(conn, self.trickle_s)

    # -- answers ------------------------------------------------------------------------

    def _answer(self, conn: socket.socket, request: Request, fault: str) -> bool:
        """Answer ``request`` with ``fault``; ``False`` closes the connection."""
        ok = self._route(request)
        if fault == "ok":
            self._send(conn, ok.head(length=len(ok.body)) + ok.body)
            return True
        if fault == "late_headers":
            self._pause(conn, self.late_s)
            self._send(conn, ok.head(length=len(ok.body)) + ok.body)
            return True
        if fault == "reset":
            self._reset(conn)
            return False
        if fault == "close":
            return False
        if fault == "garbage":
            self._send(conn, b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n")
            return False
        if fault == "stall_headers":
            self._pause(conn, self.stall_s)
            return False
        if fault == "slow_headers":
            endless = itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Pad: a\r\n"))
            self._trickle(conn, endless)
            return False
        if fault == "stall_body":
            self._send(conn, ok.head(length=len(ok.body)) + ok.body[:10])
            self._pause(conn, self.stall_s)
            return False
        if fault == "slow_body":
            pad = b" " * 100_000 if ok.headers.get("Content-Type") == _JSON else b""
            body = pad + ok.body if pad else ok.body + b"\0" * 100_000
            self._send(conn, ok.head(length=len(body)))
            self._trickle(conn, iter(body))
            return False
        if fault == "reset_mid_body":
            self._send(conn, ok.head(length=len(ok.body)) + ok.body[: len(ok.body) // 2])
            time.sleep(0.01)  # let the bytes leave before the RST
            self._reset(conn)
            return False
        if fault == "short_body":
            self._send(conn, ok.head(length=len(ok.body)) + ok.body[: len(ok.body) // 2])
            return False
        if fault == "chunked_cut":
            half = ok.body[: len(ok.body) // 2]
            head = ok.head(extra={"Transfer-Encoding": "chunked"})
            self._send(conn, head + b"%x\r\n" % len(half) + half + b"\r\n" + b"400\r\n" + b"x" * 10)
            return False
        if fault == "bad_gzip":
            self._send(conn, ok.head(length=len(ok.body), extra={"Content-Encoding": "gzip"}) + ok.body)
            return True
        answer = self._faulty_answer(request, fault)
        self._send(conn, answer.head(length=len(answer.body)) + answer.body)
        return True

    def _faulty_answer(self, request: Request, fault: str) -> Response:
        if fault == "empty_200":
            return Response(200, {"Content-Type": _JSON})
        if fault == "html_200":
            return Response(
                200, {"Content-Type": "text/html"}, b"<html><body>Welcome to nginx!</body></html>"
            )
        if fault == "json_200":
            return Response(200, {"Content-Type": _JSON}, b'{"error": {"message": "expired link"}}')
        if fault == "not_image":
            return Response(200, {"Content-Type": "image/png"}, b"this is not a PNG, honest")
        if fault in ("bad_b64", "b64_not_image", "bad_url"):
            entry = {
                "bad_b64": {"b64_json": "iVBORw0KGgo%%%%not*base64"},
                "b64_not_image": {"b64_json": base64.b64encode(b"hello, world").decode()},
                "bad_url": {"url": f"{self.origin}/files/\x01bad.png"},
            }[fault]
            return _json(200, {"created": 1, "data": [entry]})
        if fault.startswith("status_"):
            status = int(fault.split("_")[1])
            headers = {
                "status_429_retry_after": {"Retry-After": "0.05"},
                "status_429_long_retry_after": {"Retry-After": "3600"},
                "status_503_retry_after": {"Retry-After": "0"},
                "status_503_retry_after_ms": {"retry-after-ms": "30"},
            }.get(fault, {})
            if fault == "status_502_html":
                return Response(502, {"Content-Type": "text/html"}, b"<html>502 Bad Gateway</html>")
            if fault == "status_503_retry_after":
                return Response(503, headers)
            answer = _json(status, {"error": {"message": f"injected {status}", "type": "fault"}})
            answer.headers.update(headers)
            return answer
        if fault == "redirect_loop":
            return Response(307, {"Location": f"/v1{request.path}" if _api(request) else request.path})
        if fault == "redirect_offsite":
            return Response(302, {"Location": "http://127.0.0.2:9/elsewhere.png"})
        if fault == "redirect_bad_location":
            return Response(302, {"Location": "http://[::1"})
        raise AssertionError(f"fault {fault!r} has no answer")

    # -- normal answers -----------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        m, p = request.method, request.path
        if m == "POST" and p in ("/images/generations", "/images/edits"):
            return self._images(request)
        if m == "GET" and p == "/models":
            return _json(200, {"object": "list", "data": [{"id": "tiny-sd", "object": "model"}]})
        if m == "POST" and p == "/videos":
            return _json(200, {"id": f"video_{next(self._ids)}", "object": "video", "status": "queued"})
        if p.startswith("/videos/"):
            parts = p.split("/")
            if m == "DELETE":
                return _json(200, {"id": parts[2], "deleted": True})
            if parts[3:] == ["content"]:
                return Response(200, {"Content-Type": "video/mp4"}, MP4_BYTES)
            with self._lock:
                polls = self._polls[parts[2]] = self._polls.get(parts[2], 0) + 1
            if polls <= self.job_polls:
                return _json(200, {"id": parts[2], "status": "in_progress", "progress": 50})
            return _json(200, {"id": parts[2], "status": "completed", "progress": 100})
        if m == "GET" and p.startswith("/files/"):
            return Response(200, {"Content-Type": "image/png"}, png_bytes())
        return _json(404, {"error": {"message": f"no route {m} {p}"}})

    def _images(self, request: Request) -> Response:
        as_url = re.search(rb'"response_format": "url"|name="response_format"\r\n\r\nurl', request.body)
        n_match = re.search(rb'"n": (\d+)|name="n"\r\n\r\n(\d+)', request.body)
        n = int(next(g for g in n_match.groups() if g)) if n_match else 1
        data: list[dict[str, Any]] = []
        for _ in range(n):
            if as_url:
                data.append({"url": f"{self.origin}/files/img_{next(self._ids)}.png"})
            else:
                data.append({"b64_json": base64.b64encode(png_bytes()).decode()})
        return _json(200, {"created": 1, "data": data})


def client_sockets(port: int) -> Optional[int]:
    """TCP sockets of this process connected to ``port`` on the other end (``None``: unknown).

    Linux: the socket inodes of ``/proc/self/fd`` looked up in ``/proc/self/net/tcp{,6}``;
    elsewhere ``psutil`` when installed. The server's own ends (local port ``port``) are
    not counted, so with the server in this process this is the client side only.
    """
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            with open(table, encoding="ascii") as fh:
                for line in fh.readlines()[1:]:
                    fields = line.split()
                    remote_port = int(fields[2].rpartition(":")[2], 16)
                    if remote_port == port and fields[9] in inodes:
                        count += 1
        return count
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    conns = psutil.Process().net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port)


def _json(status: int, doc: Any) -> Response:
    return Response(status, {"Content-Type": _JSON, "x-request-id": "req_fault"}, json.dumps(doc).encode())


def _api(request: Request) -> bool:
    return not request.path.startswith("/files/")
