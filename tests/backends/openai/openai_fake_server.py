"""A fake OpenAI-compatible server on 127.0.0.1, for tests and the benchmark.

Stdlib only (``ThreadingHTTPServer``, one thread per connection, Nagle disabled so a
keep-alive response is not held back ~40 ms). It implements the endpoints the backend
uses with real wire behaviour, records every request, and can be scripted per route to
answer errors, delays, truncated or oversized bodies, or to drop the connection.
"""

from __future__ import annotations

import base64
import email.policy
import functools
import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union

#: Enough of an MP4 for MIME sniffing (``ftyp`` box) plus some payload.
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 4


@functools.lru_cache(maxsize=64)
def png_bytes(width: int = 8, height: int = 8, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Part:
    name: str
    filename: Optional[str]
    content_type: str
    data: bytes


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str  # without the /v1 prefix and the query string
    query: str
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> tuple[dict[str, list[str]], list[Part]]:
        """Parse a multipart body into (fields, files)."""
        ctype = self.headers.get("content-type", "")
        assert ctype.startswith("multipart/form-data"), ctype
        raw = b"Content-Type: " + ctype.encode() + b"\r\nMIME-Version: 1.0\r\n\r\n" + self.body
        msg = BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        assert msg.is_multipart()
        fields: dict[str, list[str]] = {}
        files: list[Part] = []
        for part in msg.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is None:
                fields.setdefault(name, []).append(data.decode())
            else:
                files.append(Part(name, filename, part.get_content_type(), data))
        return fields, files


@dataclass
class Reply:
    """A scripted answer."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    truncate_to: Optional[int] = None  # announce the full length, send this many bytes, close
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    drop: bool = False  # close the connection without answering


Handler = Callable[[Recorded], Reply]


@dataclass
class Job:
    id: str
    plan: list[tuple[str, int]]
    model: str
    index: int = 0
    deleted: bool = False

    def doc(self) -> dict[str, Any]:
        status, progress = self.plan[self.index]
        out: dict[str, Any] = {
            "id": self.id,
            "object": "video",
            "status": status,
            "progress": progress,
            "model": self.model,
            "created_at": 1700000000,
            "seconds": "4",
            "size": "720x1280",
        }
        if status == "failed":
            out["error"] = {"code": "moderation_blocked", "message": "The prompt was blocked."}
        return out


DEFAULT_MODELS = [
    {
        "id": "tiny-sd",
        "object": "model",
        "created": 1700000000,
        "owned_by": "local",
        "capabilities": ["text-to-image", "img2img"],
    },
    {"id": "tiny-wan", "object": "model", "owned_by": "local", "tasks": ["text_to_video"]},
    {"id": "gpt-image-1", "object": "model", "owned_by": "openai"},
    {"id": "mystery-model", "object": "model", "owned_by": "someone"},
]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up early is expected
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """An OpenAI-compatible server: images, edits, models, video jobs, files."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[tuple[str, str], list[Union[Reply, Handler]]] = {}
        self.files: dict[str, bytes] = {}
        self.video_plan: list[tuple[str, int]] = [("queued", 0), ("in_progress", 50), ("completed", 100)]
        self.poll_headers: dict[str, str] = {}
        self.jobs: dict[str, Job] = {}
        self.models: list[dict[str, Any]] = list(DEFAULT_MODELS)
        self.image_delay_s = 0.0
        self.echo_seeds = False
        self.sdapi = False  # serve the A1111 routes (/sdapi/v1/*) as well
        self.max_n: Optional[int] = None  # answer at most this many images per request (a silent cap)
        self.barrier: Optional[threading.Barrier] = None
        self.inflight = 0
        self.max_inflight = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        app = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                app._handle(self)

            def do_POST(self) -> None:
                app._handle(self)

            def do_DELETE(self) -> None:
                app._handle(self)

        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # -- scripting and inspection -------------------------------------------------------

    def script(self, method: str, path: str, *replies: Union[Reply, Handler]) -> None:
        """Answer the next requests to ``method path`` with ``replies``, in order."""
        self.scripts.setdefault((method, path), []).extend(replies)

    def calls(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # -- dispatch -----------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        raw_path, _, query = h.path.partition("?")
        path = raw_path[3:] if raw_path.startswith("/v1/") else raw_path
        rec = Recorded(h.command, path, query, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(rec)
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            queue = self.scripts.get((h.command, path))
            scripted = queue.pop(0) if queue else None
        try:
            if scripted is None:
                reply = self._route(rec)
            elif isinstance(scripted, Reply):
                reply = scripted
            else:
                reply = scripted(rec)
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self._write(h, reply)
        finally:
            with self._lock:
                self.inflight -= 1

    @staticmethod
    def _write(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.drop:
            h.close_connection = True
            return
        body = json.dumps(reply.json).encode() if reply.json is not None else reply.body
        h.send_response(reply.status)
        headers = {
            "Content-Type": "application/json" if reply.json is not None else "application/octet-stream"
        }
        headers.update(reply.headers)
        for name, value in headers.items():
            h.send_header(name, value)
        if reply.no_length:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if reply.truncate_to is not None:
            h.wfile.write(body[: reply.truncate_to])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def _route(self, rec: Recorded) -> Reply:
        m, p = rec.method, rec.path
        if m == "POST" and p == "/images/generations":
            return self._images(rec.json())
        if m == "POST" and p == "/images/edits":
            fields, _files = rec.form()
            return self._images({k: v[0] for k, v in fields.items()})
        if m == "GET" and p == "/models":
            return Reply(json={"object": "list", "data": self.models})
        if m == "POST" and p == "/videos":
            fields, _files = rec.form()
            job = Job(f"video_{next(self._ids)}", list(self.video_plan), fields.get("model", ["sora-2"])[0])
            with self._lock:
                self.jobs[job.id] = job
            return Reply(json=job.doc(), headers=dict(self.poll_headers))
        if m == "POST" and p == "/videos/generations":
            return Reply(json={"created": 1, "data": [{"b64_json": base64.b64encode(MP4_BYTES).decode()}]})
        if p.startswith("/videos/"):
            return self._video_job(m, p)
        if self.sdapi and p.startswith("/sdapi/v1/"):
            return self._sdapi(rec)
        if m == "GET" and p.startswith("/files/") and p[7:] in self.files:
            return Reply(body=self.files[p[7:]], headers={"Content-Type": "image/png"})
        return Reply(404, json={"error": {"message": f"no route {m} {p}", "type": "invalid_request_error"}})

    def _images(self, body: dict[str, Any]) -> Reply:
        if self.barrier is not None:
            self.barrier.wait()
        if self.image_delay_s:
            time.sleep(self.image_delay_s)
        n = int(body.get("n", 1))
        if self.max_n is not None:
            n = min(n, self.max_n)
        data = []
        for i in range(n):
            png = png_bytes(color=(i * 40 % 256, 100, 200))
            if body.get("response_format") == "url":
                name = f"img_{next(self._ids)}.png"
                self.files[name] = png
                entry: dict[str, Any] = {"url": f"{self.origin}/files/{name}"}
            else:
                entry = {"b64_json": base64.b64encode(png).decode()}
            entry["revised_prompt"] = f"{body.get('prompt')} (revised)"
            if self.echo_seeds and body.get("seed") is not None:
                entry["seed"] = int(body["seed"]) + 1000 + i
            data.append(entry)
        return Reply(
            json={"created": 1700000000, "data": data, "output_format": "png"},
            headers={"x-request-id": "req_123"},
        )

    def _sdapi(self, rec: Recorded) -> Reply:
        """The A1111 routes: txt2img/img2img (``info`` with ``all_seeds``), options, sd-models."""
        m, p = rec.method, rec.path
        if m == "GET" and p == "/sdapi/v1/options":
            return Reply(json={"samples_format": "png", "sd_model_checkpoint": "tiny"})
        if m == "GET" and p == "/sdapi/v1/sd-models":
            return Reply(json=[{"title": "tiny [abc]", "model_name": "tiny", "filename": "/m/tiny.safetensors"}])
        if m == "POST" and p in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
            body = rec.json()
            n = int(body.get("batch_size", 1))
            if self.max_n is not None:
                n = min(n, self.max_n)
            seed = int(body.get("seed", -1))
            seeds = [(seed if seed >= 0 else 1234) + i for i in range(n)]
            images = [base64.b64encode(png_bytes(color=(s % 256, 50, 60))).decode() for s in seeds]
            info = {"seed": seeds[0], "all_seeds": seeds, "steps": body.get("steps", 20)}
            return Reply(json={"images": images, "parameters": body, "info": json.dumps(info)})
        return Reply(404, json={"detail": "Not Found"})

    def _video_job(self, method: str, path: str) -> Reply:
        parts = path.split("/")  # ['', 'videos', id] or ['', 'videos', id, 'content']
        job = self.jobs.get(parts[2])
        if job is None:
            return Reply(404, json={"error": {"message": "no such video"}})
        if method == "DELETE" and len(parts) == 3:
            job.deleted = True
            job.plan[job.index] = ("cancelled", job.plan[job.index][1])
            return Reply(json={"id": job.id, "object": "video.deleted", "deleted": True})
        if method == "GET" and len(parts) == 3:
            if not job.deleted:
                job.index = min(job.index + 1, len(job.plan) - 1)
            return Reply(json=job.doc(), headers=dict(self.poll_headers))
        if method == "GET" and parts[3:] == ["content"]:
            if job.plan[job.index][0] != "completed":
                return Reply(409, json={"error": {"message": "video not ready"}})
            return Reply(body=MP4_BYTES, headers={"Content-Type": "video/mp4"})
        return Reply(405, json={"error": {"message": "method not allowed"}})


def main() -> None:
    """Serve until killed: ``python openai_fake_server.py`` prints the base URL first."""
    import signal
    import sys

    server = FakeOpenAIServer().start()
    print(server.base_url, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()  # returns when the parent closes our stdin
    finally:
        server.stop()


if __name__ == "__main__":
    main()
