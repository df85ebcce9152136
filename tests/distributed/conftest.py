"""Real servers for the distributed mode, on 127.0.0.1 with free ports and temporary folders.

- Redis: Debian's ``redis-server`` (``.ci/run`` installs it); one per test session, restartable.
- S3: ``moto`` in server mode (PyPI, test extra), talked to through s3fs exactly as to AWS
  (credentials and endpoint from the ``AWS_*`` environment).

These tests never skip: a missing ``redis-server`` or ``moto`` is a failure that says what to
install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

REDIS_SERVER = (
    os.environ.get("ABSTRACTVISION_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start on port {port}")
        time.sleep(0.05)


class RedisServer:
    """A private redis-server (no persistence) that tests can stop and start again on the same port."""

    def __init__(self, folder: Path) -> None:
        if not os.path.exists(REDIS_SERVER):
            raise AssertionError(
                f"redis-server not found at {REDIS_SERVER}: install Debian's redis-server (apt-get install "
                "redis-server) or set ABSTRACTVISION_REDIS_SERVER; .ci/run installs it."
            )
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Any = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


class S3Server:
    """moto's S3 server on loopback; each test asks for its own bucket.

    Its request log goes to a file: a pipe nobody reads would fill up and freeze the server.
    """

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.proc, "moto S3 server")
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def bucket(self) -> str:
        import httpx

        name = f"av-{uuid.uuid4().hex[:12]}"
        assert httpx.put(f"{self.endpoint}/{name}", timeout=10).status_code == 200
        return name

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason="the distributed extra is part of the test install")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The ``AWS_*`` environment that points s3fs (botocore) at the loopback S3 server."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server.env
