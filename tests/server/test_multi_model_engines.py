"""``abstractvision serve`` as a real process serving several real engines, driven by the ``openai`` SDK.

- two tiny Diffusers models (an image model and a video model) named with ``--model NAME=SPEC``;
- a three-model models file mixing Diffusers (image, video) and stable-diffusion.cpp (tiny Flux)
  under ``--max-loaded 1``: engines swap through their real ``unload()``, the server's RSS drops
  when the image model's weights go, and no absolute path of this machine shows in any response
  body or header a client can get.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.server, pytest.mark.diffusers, pytest.mark.sdcpp, pytest.mark.slow]

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

REPO = Path(__file__).resolve().parents[2]
IMG = {"steps": 1}
WAN = {"steps": 2, "num_frames": 5}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTVISION_")}
    env["PYTHONPATH"] = str(REPO / "src")
    env.update(extra)
    return env


class Served:
    """A running ``abstractvision serve`` process and every response a client got from it."""

    def __init__(self, args: list[str], cwd: Path, **env: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "abstractvision", "serve", *args, "--port", str(self.port), "--log-level", "warning"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(**env),
        )  # fmt: skip
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.http = httpx.Client(base_url=self.url, timeout=120, event_hooks={"response": [self._keep]})
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.communicate()[1].decode())
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        self.sdk = openai.OpenAI(
            base_url=self.url + "/v1", api_key="unused", http_client=self.http, max_retries=0
        )

    def _keep(self, response: Any) -> None:
        response.read()
        self.seen.append((str(response.url), dict(response.headers), response.content))

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def models(self) -> dict[str, dict[str, Any]]:
        return {m["id"]: m for m in self.http.get("/v1/models").json()["data"]}

    def stop(self) -> str:
        self.http.close()
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err.decode()
        return err.decode()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("stable_diffusion_cpp")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd, build_tiny_wan
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    root = tmp_path_factory.mktemp("served") / "models"
    # a wider SD (about 65 MB of weights) so that unloading it shows in the process's RSS
    build_tiny_sd(str(root / "sd-wide"), block_out_channels=(128, 256))
    build_tiny_wan(str(root / "wan-tiny"))
    build_tiny_flux_sdcpp(root / "flux", gguf=False)
    return root


def _image(result: Any) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))) as img:
        return img.size


def _video(sdk: Any, model: str, **extra: Any) -> bytes:
    video = sdk.videos.create(model=model, prompt="waves", extra_body={**WAN, **extra})
    deadline = time.monotonic() + 180
    while video.status not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        video = sdk.videos.retrieve(video.id)
    assert video.status == "completed", video.error
    return bytes(sdk.videos.download_content(video.id).read())


@pytest.fixture
def served() -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for server in running:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


def test_two_models_by_name_with_repeated_model_flags(models_dir: Path, served: list[Served]) -> None:
    server = Served(
        ["--backend", "diffusers", "--device", "cpu", "-m", f"pics={models_dir / 'sd-wide'}", "-m", str(models_dir / "wan-tiny")],
        cwd=models_dir,
    )  # fmt: skip
    served.append(server)
    sdk = server.sdk
    assert [m.id for m in sdk.models.list()] == ["pics", "wan-tiny"]  # NAME=SPEC, else the basename
    assert sdk.models.retrieve("wan-tiny").model_extra["tasks"] == ["text_to_video"]
    assert _image(sdk.images.generate(model="pics", prompt="a red cube", size="32x32", extra_body=IMG)) == (
        32,
        32,
    )
    assert _video(sdk, "wan-tiny", width=16, height=16)[4:8] == b"ftyp"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="wan-tiny", prompt="x", size="32x32")
    assert "served models that run it: pics" in info.value.message
    err = server.stop()
    assert "serving pics (diffusers backend), wan-tiny (diffusers backend)" in err
    assert str(models_dir) not in err


def test_models_file_three_engines_swap_under_max_loaded_1(models_dir: Path, served: list[Served]) -> None:
    (models_dir.parent / "serve.toml").write_text(
        """
[defaults]
backend = "diffusers"
device = "cpu"

[models.sd]
model = "models/sd-wide"

[models.wan]
model = "models/wan-tiny"
queue_size = 4

[models.flux]
backend = "sdcpp"      # [defaults]' device does not apply: sd.cpp takes none
[models.flux.options]
diffusion_model = "models/flux/flux-tiny-s0.safetensors"
clip_l = "models/flux/clip_l-random-s0-f16.safetensors"
taesd = "models/flux/taef1-tiny-s0.safetensors"
n_threads = 2
""",
        encoding="utf-8",
    )
    store = models_dir.parent / "store"
    server = Served(
        ["--models-file", "serve.toml", "--max-loaded", "1", "--store-dir", str(store)], cwd=models_dir.parent
    )
    served.append(server)
    sdk, http = server.sdk, server.http
    listed = {m.id: m.model_extra for m in sdk.models.list()}
    assert list(listed) == ["sd", "wan", "flux"]
    assert {k: v["backend"] for k, v in listed.items()} == {
        "sd": "diffusers",
        "wan": "diffusers",
        "flux": "sdcpp",
    }
    assert not any(v["loaded"] for v in listed.values())  # lazy: nothing loaded yet

    # one video first: the video path's one-time costs (its modules, the MP4 encoder) are then
    # paid before the RSS is measured, so the drop below is sd's weights, not those costs
    assert _video(sdk, "wan", width=16, height=16)[4:8] == b"ftyp"
    # sd loads (unloading wan); a warm-up call first, so torch's one-time allocations are not counted
    assert _image(sdk.images.generate(model="sd", prompt="warm up", size="32x32", extra_body=IMG)) == (32, 32)
    assert _image(
        sdk.images.generate(prompt="no model: first that runs t2i", size="32x32", extra_body=IMG)
    ) == (32, 32)
    with_sd = server.rss()
    assert _video(sdk, "wan", width=16, height=16)[4:8] == b"ftyp"  # unloads sd
    flux_png = sdk.images.generate(model="flux", prompt="a lighthouse", size="64x64", response_format="url")
    without_sd = server.rss()  # wan unloaded too; sd.cpp runs in its own worker process
    assert _image(sdk.images.generate(model="sd", prompt="again", size="32x32", extra_body=IMG)) == (32, 32)

    state = server.models()
    counts = {name: (m["residency"]["loads"], m["residency"]["unloads"]) for name, m in state.items()}
    assert counts == {"sd": (2, 1), "wan": (2, 2), "flux": (1, 1)}
    assert [name for name, m in state.items() if m["loaded"]] == ["sd"]
    weights = sum(p.stat().st_size for p in (models_dir / "sd-wide").rglob("*.safetensors"))
    assert with_sd - without_sd > 0.6 * weights, (with_sd, without_sd, weights)

    # the paths scan: every response body and header a client got, plus the other routes
    job_id = http.post(
        "/v1/images/generations", json={"prompt": "p", "model": "sd", "size": "32x32", **IMG}
    ).headers["x-job-id"]
    with http.stream("GET", f"/v1/jobs/{job_id}/events") as events:
        for _ in events.iter_bytes():
            pass
    artifact = flux_png.data[0].url.rsplit("/", 1)[1]
    for path in ("/", "/healthz", "/openapi.json", "/v1/jobs", "/v1/artifacts", f"/v1/artifacts/{artifact}",
                 "/v1/models/flux", "/v1/videos", "/playground/app.js"):  # fmt: skip
        assert http.get(path).status_code == 200, path
    assert http.post("/v1/images/generations", json={"prompt": "x", "model": "nope"}).status_code == 404
    assert http.post("/v1/videos", json={"prompt": "x", "model": "flux"}).status_code == 400
    needles = {str(models_dir.parent), os.path.realpath(models_dir.parent), str(store)}
    assert len(server.seen) > 20
    for url, headers, body in server.seen:
        blob = body + repr(headers).encode()
        for needle in needles:
            assert needle.encode() not in blob, f"{needle} leaked in {url}"
    err = server.stop()
    assert str(models_dir) not in err.split("\n", 1)[0]


def test_serve_discover_serves_every_local_model_by_name(
    models_dir: Path, served: list[Served], tmp_path: Path
) -> None:
    server = Served(
        ["--discover", "--max-loaded", "1"],
        cwd=tmp_path,
        ABSTRACTVISION_MODELS_DIR=str(models_dir),
        HF_HUB_CACHE=str(tmp_path / "empty-hub-cache"),
    )
    served.append(server)
    listed = {m.id: m.model_extra for m in server.sdk.models.list()}
    assert listed["flux"]["backend"] == "sdcpp" and listed["sd-wide"]["backend"] == "diffusers"
    assert set(listed) == {"flux", "sd-wide", "wan-tiny"}
    png = server.sdk.images.generate(model="flux", prompt="a lighthouse", size="64x64")
    assert _image(png) == (64, 64)
    err = server.stop()
    assert str(models_dir) not in err
