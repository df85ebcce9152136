"""Error messages that name the cause and the fix (issue 20): a failed hub download, an sd.cpp
model file that does not exist, an input that is not an image.

The download failures are the real ones, without internet: ``HF_ENDPOINT`` points the hub
client at an unresolvable ``.invalid`` host (DNS failure), at a closed loopback port (refused
connection), and at a loopback HTTP server that answers 401 ``GatedRepo`` as the hub does for
a gated model. The CLI runs as a subprocess so that huggingface_hub reads ``HF_ENDPOINT``.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from cli_helpers import run_subprocess

pytestmark = pytest.mark.diffusers


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is: nothing listens there


class GatedHub(http.server.BaseHTTPRequestHandler):
    """Answers every request as the hub answers an anonymous client asking for a gated model."""

    disable_nagle_algorithm = True
    requests: list[str] = []

    def _gated(self) -> None:
        GatedHub.requests.append(f"{self.command} {self.path}")
        message = (
            "Access to model someorg/gated-model is restricted. You must have access to it and be "
            "authenticated to access it. Please log in."
        )
        body = json.dumps({"error": message}).encode()
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _gated

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gated_hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GatedHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _download(model: str, endpoint: str, tmp_path) -> str:
    pytest.importorskip("diffusers")
    result = run_subprocess(
        ["generate", "a cat", "--backend", "diffusers", "--model", model, "--allow-download",
         "--device", "cpu", "--skip-registry-check", "-o", str(tmp_path / "x.png")],
        timeout=180,
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_CACHE=str(tmp_path / "hf-home" / "hub"),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
    )  # fmt: skip
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "x.png").exists()
    first = result.err.splitlines()[0]
    # what the old message said: diffusers' text, a stacktrace that is not shown, and a flag already given
    assert "stacktrace above" not in result.err
    assert "allow_download=True" not in result.err and "pass --allow-download" not in result.err
    return first


def test_download_with_no_dns(tmp_path) -> None:
    first = _download("someorg/some-model", "http://hub.abstractvision-test.invalid", tmp_path)
    assert first.startswith(
        "abstractvision: error: Downloading 'someorg/some-model' from http://hub.abstractvision-test.invalid failed: "
        "the host name hub.abstractvision-test.invalid could not be resolved (DNS failure"
    ), first
    assert "To fix it: connect this machine to the network" in first
    assert "`hf download someorg/some-model`" in first


def test_download_with_a_refused_connection(tmp_path) -> None:
    port = _closed_port()
    first = _download("someorg/some-model", f"http://127.0.0.1:{port}", tmp_path)
    assert f"Downloading 'someorg/some-model' from http://127.0.0.1:{port} failed: the connection to " in first
    assert "was refused" in first
    assert "To fix it: check HF_ENDPOINT and the proxy settings" in first


def test_download_of_a_gated_model(tmp_path, gated_hub) -> None:
    GatedHub.requests.clear()
    first = _download("someorg/gated-model", gated_hub, tmp_path)
    assert GatedHub.requests, "the hub was never asked"
    assert f"Downloading 'someorg/gated-model' from {gated_hub} failed: the hub answered 401: " in first
    assert "someorg/gated-model is a gated model" in first
    assert f"accept the model's conditions on {gated_hub}/someorg/gated-model" in first
    assert "`hf auth login`" in first and "HF_TOKEN" in first


def test_missing_weights_without_download_say_how_to_get_them(cli, tmp_path) -> None:
    pytest.importorskip("diffusers")
    result = cli(
        "generate", "x", "--backend", "diffusers", "--model", "someone/not-downloaded-model", "--device", "cpu",
        "--skip-registry-check", "-o", str(tmp_path / "x.png"),
    )  # fmt: skip
    assert result.code == 1
    assert "is not available locally and downloads are disabled" in result.err
    assert "`hf download someone/not-downloaded-model`" in result.err
    assert "--allow-download on the command line" in result.err


# -- stable-diffusion.cpp: a model path that does not exist --------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("missing/nope.gguf", "The sdcpp model file 'missing/nope.gguf' does not exist (looked for {cwd}/missing/nope.gguf)"),
        ("nope.safetensors", "The sdcpp model file 'nope.safetensors' does not exist"),
        ("someorg/some-model", "The sdcpp model 'someorg/some-model' is not a file; stable-diffusion.cpp loads "
                               "local checkpoint files (GGUF or safetensors) and downloads nothing"),
        (".", "The sdcpp model '.' is a folder; stable-diffusion.cpp loads one checkpoint file"),
    ],
)  # fmt: skip
def test_sdcpp_model_that_is_not_a_file(cli, tmp_path, monkeypatch, model, expected) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("generate", "a cat", "--backend", "sdcpp", "--model", model, "-o", str(tmp_path / "x.png"))
    assert result.code == 2, result.err
    assert expected.format(cwd=tmp_path) in result.err
    assert "needs a model" not in result.err  # the old message, which blamed the configuration
    assert "--diffusion-model FILE" in result.err  # the other way to give a model


def test_sdcpp_model_label_beside_components_is_still_a_label(tmp_path) -> None:
    from abstractvision.config import BackendSettings, create_backend

    diffusion = tmp_path / "flux.gguf"
    diffusion.write_bytes(b"GGUF")
    backend = create_backend(
        BackendSettings(
            backend="sdcpp",
            model="black-forest-labs/FLUX.1-schnell",
            options={"diffusion_model": str(diffusion), "check_components": False},
        )
    )
    assert backend.config.model_id == "black-forest-labs/FLUX.1-schnell"
    assert backend.config.model is None


# -- an input that is not an image names the file -------------------------------------------


def test_input_that_is_not_an_image_names_the_file(cli, tmp_path) -> None:
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"this is a text file, not a picture\n")
    truncated = tmp_path / "cut.png"
    from fakes import png_bytes

    truncated.write_bytes(png_bytes(32, 32)[:60])
    backend = ("--backend", "openai", "--base-url", f"http://127.0.0.1:{_closed_port()}/v1")
    for argv, source in (
        (("edit", "x", "-i", str(bad)), f"the file {str(bad)!r}"),
        (("edit", "x", "-i", str(truncated)), f"the file {str(truncated)!r}"),
        (("upscale", str(bad)), f"the file {str(bad)!r}"),
        (("i2v", "x", "-i", str(bad)), f"the file {str(bad)!r}"),
        (("angles", "x", "-i", str(bad)), f"the file {str(bad)!r}"),
    ):
        result = cli(*argv, *backend, "-o", str(tmp_path / "out.png"))
        assert result.code == 2, result.err
        assert f"{source} is not a usable image: " in result.err, result.err
        assert "Give a PNG, JPEG, WebP, GIF, BMP or TIFF image." in result.err
    result = cli("edit", "x", "-i", "-", *backend, stdin=bad.read_bytes())
    assert result.code == 2
    assert "image: the data read from stdin is not a usable image: the bytes are not a recognised image format" in (
        result.err
    )
    mask = cli("edit", "x", "-i", str(tmp_path / "none.png"), *backend)
    assert "image: no such file: " in mask.err and "none.png" in mask.err
