"""The server in front of the project's own OpenAI-compatible backend, and ``run()`` wiring."""

from __future__ import annotations

import time

import pytest
from server_helpers import png

from fakes import FakeBackend

pytestmark = pytest.mark.server

UPSTREAM_KEY = "upstream-key-123456"


def test_server_proxies_another_server_through_the_openai_backend(serve, client):
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    upstream = serve(FakeBackend(), api_key=UPSTREAM_KEY)
    backend = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(
            base_url=upstream.url + "/v1", api_key=UPSTREAM_KEY, model_id="fake-model", poll_interval_s=0.05
        )
    )
    front = serve(backend, secrets=(UPSTREAM_KEY,))
    c = client(front)
    assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["fake-model"]
    r = c.post("/v1/images/generations", json={"prompt": "a cube", "n": 2, "size": "32x32", "seed": 3})
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    r = c.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", png(32, 32), "image/png")})
    assert r.status_code == 200
    video = c.post("/v1/videos", json={"prompt": "waves", "num_frames": 3}).json()
    for _ in range(200):
        video = c.get(f"/v1/videos/{video['id']}").json()
        if video["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert video["status"] == "completed", video
    assert c.get(f"/v1/videos/{video['id']}/content").content.startswith(b"GIF")
    backend.close()


def test_upstream_errors_keep_their_meaning_and_lose_the_key(serve, client):
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    upstream = serve(FakeBackend(), api_key=UPSTREAM_KEY)
    backend = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(
            base_url=upstream.url + "/v1", api_key="wrong-upstream-key", model_id="fake-model", max_retries=0
        )
    )
    c = client(serve(backend, secrets=("wrong-upstream-key",)))
    r = c.post("/v1/images/generations", json={"prompt": "x"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    assert "wrong-upstream-key" not in r.text
    backend.close()


def test_run_builds_the_backend_from_settings_and_serves_it(monkeypatch, tmp_path, serve):
    """``run()`` (what ``abstractvision serve`` calls): settings -> real backend -> app -> uvicorn.

    Only uvicorn's blocking ``run`` is replaced (by the same app served on a free port); the
    backend is the real OpenAI-compatible one built by ``config.create_backend`` from the
    settings, talking to a real upstream server.
    """
    import httpx
    import uvicorn

    from abstractvision.config import BackendSettings
    from abstractvision.server import run, serve_in_thread

    upstream = serve(FakeBackend(), api_key=UPSTREAM_KEY)
    seen = {}

    def fake_uvicorn_run(app, **kwargs):
        seen.update(kwargs)
        headers = {"Authorization": "Bearer local-server-key"}
        with serve_in_thread(app) as server, httpx.Client(base_url=server.url) as c:
            seen["health"] = c.get("/healthz").json()
            seen["unauthorized"] = c.get("/v1/models").status_code
            seen["models"] = c.get("/v1/models", headers=headers).json()
            seen["image"] = c.post("/v1/images/generations", json={"prompt": "a cube"}, headers=headers)
            seen["backend"] = app.state.av.default.manager.backend

    monkeypatch.setattr(uvicorn, "run", fake_uvicorn_run)
    run(
        BackendSettings(
            backend="openai", model="fake-model", base_url=upstream.url + "/v1", api_key=UPSTREAM_KEY
        ),
        host="0.0.0.0",
        port=8123,
        api_key="local-server-key",
        store_dir=str(tmp_path / "store"),
        allowed_extra_keys=("scheduler",),
    )
    assert seen["host"] == "0.0.0.0" and seen["port"] == 8123
    assert type(seen["backend"]).__name__ == "OpenAICompatibleVisionBackend"
    assert seen["backend"].config.base_url == upstream.url + "/v1"
    assert seen["health"]["models"] == ["fake-model"]
    assert seen["unauthorized"] == 401
    assert seen["models"]["data"][0]["id"] == "fake-model"
    assert seen["image"].status_code == 200, seen["image"].text
    assert seen["image"].json()["data"][0]["b64_json"]
    assert (tmp_path / "store").is_dir()
