"""`abstractvision serve`: a real server process over a loopback upstream, its guards and errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from cli_helpers import subprocess_env, wait_healthy

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_proxies_an_upstream_and_stops_on_ctrl_c(openai_server, tmp_path) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "abstractvision", "serve", "--base-url", openai_server.base_url,
            "--backend-api-key", "sk-upstream-key", "-O", "max_retries=0", "--port", str(port),
            "--api-key", "server-key-123", "--store-dir", str(tmp_path / "jobs"), "--log-level", "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, timeout=30)
        headers = {"Authorization": "Bearer server-key-123"}
        assert (
            httpx.post(f"{base}/v1/images/generations", json={"prompt": "x"}, timeout=10).status_code == 401
        )
        reply = httpx.post(
            f"{base}/v1/images/generations", json={"prompt": "a cat", "n": 1}, headers=headers, timeout=30
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["data"][0]["b64_json"]
        (upstream,) = openai_server.calls("POST", "/images/generations")
        assert upstream.headers["authorization"] == "Bearer sk-upstream-key"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "abstractvision serve: serving openai (openai backend) on http://127.0.0.1:" in err
    assert "Traceback" not in err


def test_serve_refuses_a_public_bind_without_a_key(cli) -> None:
    pytest.importorskip("starlette")
    result = cli("serve", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--host", "0.0.0.0")
    assert result.code == 2
    assert "without an API key" in result.err


def test_serve_without_the_server_extra(cli, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    result = cli("serve", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "-q")
    assert result.code == 3
    assert 'pip install "abstractvision[server]"' in result.err


def test_serve_passes_the_options(cli, monkeypatch) -> None:
    import abstractvision.server as server

    seen = {}
    monkeypatch.setattr(server, "run", lambda models, **kw: seen.update(models=models, **kw))
    monkeypatch.setenv("ABSTRACTVISION_SERVER_API_KEY", "from-env-key")
    result = cli(
        "serve", "--backend", "diffusers", "--model", "m", "--port", "9001", "--cors-origin", "http://a.example",
        "--workers", "2", "--queue-size", "4", "--job-ttl", "60", "--allow-extra-key", "clip_skip", "--preload",
        "--max-loaded", "1", "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    (model,) = seen["models"]
    assert model.name == "m" and model.settings.backend == "diffusers" and model.settings.model == "m"
    assert seen["max_loaded"] == 1
    assert seen["port"] == 9001 and seen["host"] == "127.0.0.1"
    assert seen["api_key"] == "from-env-key"
    assert seen["cors_origins"] == ("http://a.example",)
    assert (seen["workers"], seen["queue_size"], seen["job_ttl_s"]) == (2, 4, 60.0)
    assert seen["allowed_extra_keys"] == ("clip_skip",) and seen["preload"] is True
    assert "max_body_bytes" not in seen  # the server's own default applies
