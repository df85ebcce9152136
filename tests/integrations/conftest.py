"""Fixtures for the AbstractCore plugin tests: a loopback OpenAI-compatible server, a tiny
Diffusers model, a temporary entry-point declaration, and capability factories."""

from __future__ import annotations

import base64
import email.policy
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

PLUGIN_VALUE = "abstractvision.integrations.abstractcore_plugin:register"


def _png(width: int, height: int, seed: str) -> bytes:
    from PIL import Image

    digest = hashlib.sha256(seed.encode()).digest()
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (digest[0], digest[1], digest[2])).save(buf, format="PNG")
    return buf.getvalue()


class LoopbackOpenAI:
    """A small OpenAI-compatible image server on 127.0.0.1 (stdlib, Nagle off)."""

    MODELS = ("loop-image-1", "loop-image-2")

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, {}))
                if self.path.rstrip("/") == "/v1/models":
                    data = [
                        {"id": m, "object": "model", "created": 1, "owned_by": "loopback"}
                        for m in outer.MODELS
                    ]
                    self._send(200, {"object": "list", "data": data})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/"):
                    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
                        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw
                    )
                    fields: dict[str, Any] = {}
                    for part in msg.iter_parts():
                        name = str(part.get_param("name", header="content-disposition"))
                        payload = part.get_payload(decode=True) or b""
                        fields[name] = (
                            f"<file {len(payload)} bytes>" if part.get_filename() else payload.decode()
                        )
                else:
                    fields = json.loads(raw or b"{}")
                outer.requests.append(("POST", self.path, fields))
                if self.path not in ("/v1/images/generations", "/v1/images/edits"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                n = int(fields.get("n") or 1)
                prompt = str(fields.get("prompt", ""))
                data = [
                    {"b64_json": base64.b64encode(_png(16, 16, f"{prompt}|{i}")).decode()} for i in range(n)
                ]
                self._send(200, {"created": 1, "data": data})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [fields for method, p, fields in self.requests if method == "POST" and p == path]

    def __enter__(self) -> LoopbackOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def openai_server() -> Iterator[LoopbackOpenAI]:
    with LoopbackOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random-weight Stable Diffusion pipeline folder (built once per session)."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny") / "tiny-sd")


@pytest.fixture
def plugin_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Declare our entry point in a temporary distribution on ``sys.path``.

    AbstractCore then discovers the plugin through ``importlib.metadata`` exactly as it does
    for the installed package, whether or not this checkout's install declares it.
    """
    dist = tmp_path / "site" / "abstractvision_plugin_probe-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: abstractvision-plugin-probe\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[abstractcore.capabilities_plugins]\nabstractvision = {PLUGIN_VALUE}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return PLUGIN_VALUE


class Owner:
    """The smallest AbstractCore host: a ``config`` dict (what ``BaseProvider.config`` is)."""

    model = "test-host"

    def __init__(self, **config: Any) -> None:
        self.config = dict(config)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no text generation in these tests")


@pytest.fixture
def make_owner() -> Callable[..., Owner]:
    return Owner


@pytest.fixture
def fake_capability() -> Callable[..., Any]:
    """``fake_capability(**kwargs)``: an AbstractVisionCapability on FakeBackend instances."""
    from abstractvision.integrations.capability import AbstractVisionCapability
    from fakes import FakeBackend

    def make(**kwargs: Any) -> Any:
        created: list[Any] = []

        def factory(settings: Any) -> Any:
            backend = FakeBackend()
            backend.settings = settings  # type: ignore[attr-defined]
            created.append(backend)
            return backend

        kwargs.setdefault("settings", {"backend": "diffusers", "model": "fake-model"})
        kwargs.setdefault("env", {})
        cap = AbstractVisionCapability(backend_factory=factory, **kwargs)
        cap.created = created  # type: ignore[attr-defined]
        return cap

    return make
