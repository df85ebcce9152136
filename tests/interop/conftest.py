"""A real third-party server on loopback: stable-diffusion.cpp's ``sd-server`` on a tiny Flux.

The binary is built by ``scripts/build-sd-server.sh`` (``.ci/run`` calls it) from the same
stable-diffusion-cpp-python sdist version the ``sdcpp`` extra installed, and found through
``ABSTRACTVISION_SD_SERVER`` or the script's cache. A missing binary FAILS these tests, with
the command that builds it: the interop suite is never skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import inspect
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest

from abstractvision import AsyncVisionManager, VisionManager
from abstractvision.backends import OpenAICompatibleVisionBackend
from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

BUILD_HINT = (
    "build it with `scripts/build-sd-server.sh` (stable-diffusion.cpp's sd-server from the "
    "stable-diffusion-cpp-python sdist, CPU only, ~3-7 min, cached by version), or point "
    "ABSTRACTVISION_SD_SERVER at an sd-server binary"
)


def _cache_root() -> Path:
    return Path(os.environ.get("ABSTRACTVISION_CI_CACHE") or "~/.cache/abstractvision-ci").expanduser()


def find_sd_server() -> Path:
    """The sd-server binary, or a test failure that says how to build it."""
    given = os.environ.get("ABSTRACTVISION_SD_SERVER")
    if given:
        path = Path(given).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(
                f"ABSTRACTVISION_SD_SERVER={given} is not an executable file; {BUILD_HINT}.", pytrace=False
            )
        return path
    try:
        version = importlib.metadata.version("stable-diffusion-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            "sd-server's version follows the installed stable-diffusion-cpp-python, which is missing: "
            f'pip install -e ".[sdcpp]", then {BUILD_HINT}.',
            pytrace=False,
        )
    path = _cache_root() / f"sd-server-{version}" / "sd-server"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"sd-server {version} is not built ({path} is missing): {BUILD_HINT}.", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SdServer:
    origin: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def openai_base_url(self) -> str:
        return f"{self.origin}/v1"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(server: SdServer, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.openai_base_url}/models", timeout=2.0).status_code == 200:
                return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def sd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdServer]:
    """sd-server on 127.0.0.1 (a free port) serving a tiny random Flux (64x64 by default)."""
    binary = find_sd_server()
    root = tmp_path_factory.mktemp("sd-server")
    files = build_tiny_flux_sdcpp(root / "model", gguf=False)
    server: Optional[SdServer] = None
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        log = root / f"sd-server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(binary),
                    "--listen-ip",
                    "127.0.0.1",
                    "--listen-port",
                    str(port),
                    "--diffusion-model",
                    files.diffusion_model,
                    "--taesd",
                    files.taesd,
                    "--clip_l",
                    files.clip_l,
                    "-t",
                    "1",  # ggml threads spin: one is robust on a busy 2-core CI box
                    "--steps",
                    "2",
                    "--cfg-scale",
                    "1.0",
                    "-W",
                    "64",
                    "-H",
                    "64",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = SdServer(f"http://127.0.0.1:{port}", process, log)
        if _wait_ready(server, 120.0):
            break
        process.kill()
        process.wait(10)
        server = None
    if server is None:
        pytest.fail(
            f"sd-server ({binary}) did not start; its log:\n{log.read_text(errors='replace')[-3000:]}"
        )
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


class _AsyncBridge:
    """Runs an async object's coroutine methods to completion on one private event loop."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        return attr


class Surface:
    """Builds managers over the HTTP backend pointed at sd-server: sync, or async (awaited)."""

    def __init__(self, mode: str, server: SdServer) -> None:
        self.mode = mode
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.backends: list[OpenAICompatibleVisionBackend] = []

    def backend(self, profile: str, **config: Any) -> OpenAICompatibleVisionBackend:
        base = self.server.origin if profile == "a1111" else self.server.openai_base_url
        settings = {"base_url": base, "profile": profile, "timeout_s": 120.0, "deadline_s": 600.0, **config}
        backend = OpenAICompatibleVisionBackend(**settings)
        self.backends.append(backend)
        return backend

    def manager(self, profile: str, **config: Any) -> Any:
        backend = self.backend(profile, **config)
        if self.mode == "async":
            return _AsyncBridge(AsyncVisionManager(backend=backend), self.loop)
        return VisionManager(backend=backend)

    def call(self, backend: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "async":
            return self.loop.run_until_complete(getattr(backend, "a" + method)(*args, **kwargs))
        return getattr(backend, method)(*args, **kwargs)

    def close(self) -> None:
        for backend in self.backends:
            if self.mode == "async":
                self.loop.run_until_complete(backend.aclose())
            backend.close()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def surface(request: pytest.FixtureRequest, sd_server: SdServer) -> Iterator[Surface]:
    """Every test runs through VisionManager and through AsyncVisionManager."""
    s = Surface(request.param, sd_server)
    try:
        yield s
    finally:
        s.close()
