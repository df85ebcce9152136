"""Security review of the HTTP server, as tests (see ``SECURITY.md`` for the threat model).

Path traversal through artifact ids, SSRF through image inputs and provider ``url``
outputs (refused without connecting anywhere), CORS, the API-key check, secrets kept out
of logs and errors, request size limits and the loopback-only default bind. Everything runs
on 127.0.0.1; no test opens a connection to another host.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fakes import FakeBackend, png_bytes

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

KEY = "sk-security-review-0123456789"


@contextmanager
def _served(target: Any = None, **options: Any) -> Iterator[Any]:
    from abstractvision.server import create_app, serve_in_thread

    app = create_app(target if target is not None else FakeBackend(), **options)
    with serve_in_thread(app) as server:
        yield server


def _is_openai_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert {"message", "type", "code"} <= set(error)
    return error


# -- path traversal -------------------------------------------------------------------

TRAVERSALS = [
    "/v1/artifacts/../../etc/passwd",
    "/v1/artifacts/..%2F..%2Fetc%2Fpasswd",
    "/v1/artifacts/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/artifacts/..%252F..%252Fetc%252Fpasswd",
    "/v1/artifacts/%2Fetc%2Fpasswd",
    "/v1/artifacts//etc/passwd",
    "/v1/artifacts/..\\..\\secret.txt",
    "/v1/artifacts/" + "a" * 63 + "%00",
    "/v1/artifacts/" + "../" * 20 + "secret.txt",
    "/playground/../../../../etc/passwd",
    "/playground/%2e%2e/%2e%2e/secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_and_static_paths_do_not_escape(path: str, tmp_path: Any) -> None:
    from abstractvision.artifacts import LocalAssetStore

    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    store = LocalAssetStore(str(tmp_path / "store"))
    # raw path over a socket: httpx would normalise the dots away
    with (
        _served(store=store) as server,
        socket.create_connection(("127.0.0.1", httpx.URL(server.url).port), timeout=10) as sock,
    ):
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status = int(raw.split(b" ", 2)[1])
    assert status in (400, 404), raw[:300]
    assert b"TOP-SECRET" not in raw and b"root:" not in raw


def test_artifact_job_image_refs_cannot_name_files(tmp_path: Any) -> None:
    with _served() as server, httpx.Client(base_url=server.url, timeout=30) as c:
        for ref in ("../../etc/passwd", "/etc/passwd", "a" * 64 + "/../x", "0" * 63 + "."):
            r = c.post(
                "/v1/jobs", json={"task": "image_to_image", "prompt": "x", "image": {"$artifact": ref}}
            )
            assert r.status_code in (400, 404), r.text
            assert "root:" not in r.text


# -- SSRF -----------------------------------------------------------------------------


@pytest.fixture
def tripwire() -> Iterator[tuple[int, list[Any]]]:
    """A loopback listener that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    seen: list[Any] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            seen.append(conn)
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1], seen
    stop.set()
    t.join(2)
    sock.close()


SSRF_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "file:///etc/passwd",
    "http://10.255.255.1/x.png",
    "https://example.com/a.png",
    "ftp://127.0.0.1/a.png",
    "gopher://127.0.0.1:70/_x",
]


def test_image_inputs_given_as_urls_are_refused_without_fetching(tripwire: Any) -> None:
    port, seen = tripwire
    urls = [*SSRF_URLS, f"http://127.0.0.1:{port}/a.png", f"//127.0.0.1:{port}/a.png"]
    with _served() as server, httpx.Client(base_url=server.url, timeout=10) as c:
        for url in urls:
            for body in (
                {"task": "image_to_image", "prompt": "x", "image": url},
                {"task": "image_to_image", "prompt": "x", "image": {"url": url}},
                {"task": "text_to_image", "prompt": "x", "reference_images": [url]},
            ):
                r = c.post("/v1/jobs", json=body)
                assert r.status_code == 400, (url, r.status_code, r.text[:200])
            r = c.post("/v1/images/edits", data={"prompt": "x", "image": url})
            assert r.status_code in (400, 415), (url, r.status_code, r.text[:200])
    assert seen == [], "the server connected to an image URL"


def test_provider_url_outputs_to_another_host_are_refused_without_download() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend
    from abstractvision.errors import ProviderResponseError
    from abstractvision.server import serve_in_thread
    from abstractvision.types import ImageGenerationRequest

    hits: list[str] = []

    async def generations(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse({"created": 1, "data": [{"url": "http://10.255.255.1/x.png"}]})

    async def anything(request: Request) -> JSONResponse:
        hits.append(request.url.path)
        return JSONResponse({"error": {"message": "no"}}, status_code=404)

    provider = Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/{rest:path}", anything, methods=["GET", "POST"]),
        ]
    )
    with serve_in_thread(provider) as upstream:
        backend = OpenAICompatibleVisionBackend(
            config=OpenAICompatibleBackendConfig(
                base_url=upstream.url + "/v1", api_key=KEY, model_id="m", timeout_s=5
            )
        )
        try:
            with pytest.raises(ProviderResponseError, match="refusing to download") as info:
                backend.generate_image(ImageGenerationRequest(prompt="x"))
        finally:
            backend.close()
    assert KEY not in str(info.value)
    assert hits.count("/v1/images/generations") == 1
    assert all(h.startswith("/v1/images/generations") for h in hits), hits  # no download


# -- CORS -----------------------------------------------------------------------------


def test_cors_is_off_by_default_and_limited_to_configured_origins() -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with _served() as server, httpx.Client(base_url=server.url, timeout=10) as c:
        r = c.options("/v1/images/generations", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    with (
        _served(cors_origins=["https://app.example"]) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):
        r = c.get("/v1/models", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.options("/v1/images/generations", headers=preflight)
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"


# -- API key --------------------------------------------------------------------------


def test_api_key_compare_is_constant_time() -> None:
    from abstractvision.server.security import GuardMiddleware

    assert "hmac.compare_digest" in inspect.getsource(GuardMiddleware._authorized)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        f"Bearer {KEY[:-1]}",
        f"Bearer {KEY}x",
        f"Bearer {KEY[:8]}",
        f"Basic {KEY}",
        KEY,
        f"Bearer {KEY.upper()}",
        f"Bearer\t{KEY}x",
    ],
)
def test_wrong_missing_or_partial_keys_get_401(header: str | None) -> None:
    with _served(api_key=KEY) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        headers = {} if header is None else {"Authorization": header}
        for method, path in (
            ("GET", "/v1/models"),
            ("POST", "/v1/images/generations"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/artifacts"),
            ("GET", "/v1/artifacts/" + "0" * 64),
        ):
            r = c.request(method, path, headers=headers, json={"prompt": "x"} if method == "POST" else None)
            error = _is_openai_error(r, 401)
            assert error["type"] == "authentication_error"
            assert KEY not in r.text
        ok = c.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


# -- secrets --------------------------------------------------------------------------


def test_keys_are_absent_from_logs_and_error_bodies(caplog: pytest.LogCaptureFixture) -> None:
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    upstream_key = "sk-upstream-secret-abcdef123456"
    caplog.set_level(logging.DEBUG)
    with _served(FakeBackend(), api_key=upstream_key) as upstream:
        backend = OpenAICompatibleVisionBackend(
            config=OpenAICompatibleBackendConfig(
                base_url=upstream.url + "/v1", api_key=upstream_key + "-wrong", model_id="fake-model"
            )
        )
        with (
            _served(backend, api_key=KEY, secrets=(upstream_key + "-wrong",)) as front,
            httpx.Client(base_url=front.url, timeout=30) as c,
        ):
            auth = {"Authorization": f"Bearer {KEY}"}
            bodies = [
                c.post("/v1/images/generations", headers=auth, json={"prompt": "x"}).text,
                c.post("/v1/images/generations", headers=auth, json={"prompt": KEY}).text,
                c.get("/v1/models", headers={"Authorization": f"Bearer {KEY}x"}).text,
                c.post("/v1/jobs", headers=auth, json={"task": "nope", "prompt": "x"}).text,
            ]
            jobs = c.get("/v1/jobs", headers=auth).text
        backend.close()
    for text in [*bodies, jobs, caplog.text]:
        assert upstream_key not in text
        assert KEY + "x" not in text
    assert KEY not in caplog.text


# -- size limits ----------------------------------------------------------------------


def test_request_body_and_image_limits_answer_413() -> None:
    with (
        _served(max_body_bytes=4096, max_image_pixels=64 * 64) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):
        big = {"prompt": "x" * 10_000}
        _is_openai_error(c.post("/v1/images/generations", json=big), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"prompt": "'
            for _ in range(20):
                yield b"y" * 1024
            yield b'"}'

        r = c.post("/v1/images/generations", content=chunks(), headers={"Content-Type": "application/json"})
        _is_openai_error(r, 413)
    with (
        _served(max_image_pixels=64 * 64) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):
        r = c.post(
            "/v1/images/edits",
            data={"prompt": "x"},
            files={"image": ("a.png", png_bytes(128, 128), "image/png")},
        )
        _is_openai_error(r, 413)


# -- bind -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_run_refuses_a_non_loopback_bind_without_a_key(host: str) -> None:
    from abstractvision.config import BackendSettings
    from abstractvision.errors import InvalidRequestError
    from abstractvision.server import run

    with pytest.raises(InvalidRequestError, match="without an API key"):
        run(BackendSettings(), host=host)  # refused before anything is built or bound
