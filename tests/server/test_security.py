"""Security defaults: API key, loopback-only binding, CORS, body/image limits, the queue bound,
redaction, and no path from a request reaching the filesystem."""

from __future__ import annotations

import threading

import httpx
import pytest
from server_helpers import GatedBackend, data_url, png

from fakes import FakeBackend

pytestmark = pytest.mark.server

KEY = "s3cret-key-for-tests"


def test_api_key_is_required_on_api_routes_but_not_on_public_ones(serve, client):
    server = serve(FakeBackend(), api_key=KEY)
    anon = client(server)
    for path in ("/v1/models", "/v1/jobs", "/v1/artifacts", "/v1/videos"):
        r = anon.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert anon.post("/v1/images/generations", json={"prompt": "x"}).status_code == 401
    wrong = client(server, headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.get("/v1/models").status_code == 401
    assert client(server, headers={"Authorization": f"Basic {KEY}"}).get("/v1/models").status_code == 401
    for path in ("/", "/healthz", "/openapi.json", "/playground/app.js"):
        assert anon.get(path).status_code == 200, path
    ok = client(server, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.get("/v1/models").status_code == 200
    assert ok.post("/v1/images/generations", json={"prompt": "x"}).status_code == 200
    doc = anon.get("/openapi.json").json()
    assert doc["security"] == [{"bearerAuth": []}]
    assert KEY not in anon.get("/openapi.json").text and KEY not in anon.get("/healthz").text


def test_openai_sdk_with_a_wrong_key_gets_authentication_error(serve):
    openai = pytest.importorskip("openai")
    server = serve(FakeBackend(), api_key=KEY)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong-key", max_retries=0).models.list()
    models = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0).models.list()
    assert [m.id for m in models] == ["fake-model"]


def test_non_loopback_bind_needs_an_api_key():
    from abstractvision.config import BackendSettings
    from abstractvision.errors import InvalidRequestError
    from abstractvision.server import check_bind, run
    from abstractvision.server.security import is_loopback_host

    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert (
        not is_loopback_host("0.0.0.0") and not is_loopback_host("::") and not is_loopback_host("192.168.1.4")
    )
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", KEY)
    with pytest.raises(InvalidRequestError, match="without an API key"):
        run(BackendSettings(backend="diffusers", model="/nonexistent"), host="0.0.0.0")


def test_cors_is_off_by_default_and_on_for_configured_origins(serve, client):
    plain = client(serve(FakeBackend()))
    r = plain.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = plain.options(
        "/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in pre.headers

    c = client(serve(FakeBackend(), cors_origins=["https://app.example"], api_key=KEY))
    pre = c.options(
        "/v1/images/generations",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    denied = c.options(
        "/v1/models", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert denied.headers.get("access-control-allow-origin") != "https://evil.example"


def test_body_limit_answers_413(serve, client):
    c = client(serve(FakeBackend(), max_body_bytes=4096))
    r = c.post("/v1/images/generations", json={"prompt": "x" * 5000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(10):
            yield b"x" * 1024

    r = c.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_image_pixel_limit_answers_413(serve, client):
    c = client(serve(FakeBackend(), max_image_pixels=64 * 64))
    big = png(100, 100)
    r = c.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", big, "image/png")})
    assert r.status_code == 413 and r.json()["error"]["param"] == "image"
    r = c.post("/v1/jobs", json={"task": "image_to_image", "prompt": "x", "image": data_url(big)})
    assert r.status_code == 413
    ok = c.post(
        "/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", png(32, 32), "image/png")}
    )
    assert ok.status_code == 200


def test_full_queue_answers_429_with_retry_after(serve, client):
    backend = GatedBackend()
    backend.gate.clear()
    c = client(serve(backend, workers=1, queue_size=2, coalesce=False))
    first = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "running"})
    assert first.status_code == 202 and backend.started.wait(5)
    queued = [c.post("/v1/jobs", json={"task": "text_to_image", "prompt": f"q{i}"}) for i in range(2)]
    assert [r.status_code for r in queued] == [202, 202]
    full = c.post("/v1/jobs", json={"task": "text_to_image", "prompt": "one too many"})
    assert full.status_code == 429
    assert int(full.headers["retry-after"]) >= 1
    assert full.json()["error"]["code"] == "queue_full"
    sync = c.post("/v1/images/generations", json={"prompt": "sync too"})
    assert sync.status_code == 429 and "retry-after" in sync.headers
    health = c.get("/healthz").json()["queues"]["fake-model"]
    assert health["pending"] == 2 and health["running"] == 1
    backend.gate.set()


def test_disconnecting_client_cancels_its_synchronous_job(serve, client):
    backend = GatedBackend()
    backend.gate.clear()
    server = serve(backend)
    c = client(server)

    def doomed() -> None:
        try:
            httpx.post(server.url + "/v1/images/generations", json={"prompt": "bye"}, timeout=0.5)
        except httpx.TimeoutException:
            pass

    t = threading.Thread(target=doomed)
    t.start()
    t.join()
    for _ in range(200):
        jobs = c.get("/v1/jobs").json()["data"]
        if jobs and jobs[0]["status"] == "cancelled":
            break
        threading.Event().wait(0.02)
    assert jobs[0]["status"] == "cancelled"
    backend.gate.set()


def test_secrets_are_redacted_from_errors(serve, client):
    class Leaky(FakeBackend):
        def generate_image(self, request):
            from abstractvision.errors import ProviderBadRequestError

            raise ProviderBadRequestError(
                f"upstream said: bad key {KEY}, header Authorization: Bearer sk-abcdefghijklmnop",
                status_code=400,
            )

    c = client(
        serve(Leaky(), api_key=KEY, secrets=("backend-secret-value",)),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    r = c.post("/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 400
    text = r.text
    assert KEY not in text and "sk-abcdefghijklmnop" not in text and "***" in text


def test_no_request_value_reaches_the_filesystem(serve, client, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png())
    backend = FakeBackend()
    c = client(serve(backend))
    for value in (str(secret), f"file://{secret}", "../../etc/passwd", "https://example.com/a.png"):
        r = c.post("/v1/jobs", json={"task": "image_to_image", "prompt": "x", "image": value})
        assert r.status_code == 400 and "data URL" in r.json()["error"]["message"], value
    r = c.post(
        "/v1/jobs", json={"task": "image_to_image", "prompt": "x", "image": {"$artifact": "../../etc/passwd"}}
    )
    # the published ImageInput schema takes 64-hex artifact ids only: refused before any lookup
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    r = c.post(
        "/v1/jobs", json={"task": "text_to_image", "prompt": "x", "lora_adapters": [{"source": str(secret)}]}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "lora_adapters"
    r = c.post("/v1/images/generations", json={"prompt": "x", "extra": {"loras_json": str(secret)}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "extra"
    for path in (
        "/v1/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/v1/artifacts/" + "a" * 63 + "/",
        "/v1/artifacts/%2e%2e",
    ):
        assert c.get(path).status_code in (400, 404), path
    assert c.get("/v1/artifacts/" + "0" * 64).status_code == 404
    assert c.get("/playground/../server/app.py").status_code == 404
    assert c.get("/playground/%2e%2e/server/app.py").status_code == 404
    assert backend.calls == []


def test_artifacts_of_other_programs_in_a_shared_store_are_not_served(serve, client, store):
    ref = store.store_bytes(png(), content_type="image/png", tags={"origin": "someone-else"})
    c = client(serve(FakeBackend(), store=store))
    assert c.get(f"/v1/artifacts/{ref['$artifact']}").status_code == 404
    assert c.get("/v1/artifacts").json()["data"] == []


def test_hardening_headers(serve, client):
    c = client(serve(FakeBackend()))
    page = c.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert c.get("/healthz").headers["x-content-type-options"] == "nosniff"


def test_static_assets_are_package_data(serve, client):
    c = client(serve())
    page = c.get("/")
    assert page.status_code == 200 and '<script src="/playground/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert c.get("/playground/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/playground/style.css").headers["content-type"].startswith("text/css")
