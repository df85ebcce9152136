"""Helpers for the CLI tests: in-process runs, subprocess runs (plain pipes or a pseudo-terminal)."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
#: a script that runs the CLI with the FakeBackend installed (see fake_cli.py)
FAKE_CLI = os.path.join(HERE, "fake_cli.py")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class TTYStringIO(io.StringIO):
    """A text stream that says it is a terminal (to see the progress bar in-process)."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTVISION_")}
    env["ABSTRACTVISION_STORE_DIR"] = os.environ.get("ABSTRACTVISION_STORE_DIR", "")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "src"), TESTS])
    env.update(extra)
    return env


def run_subprocess(
    args: Sequence[str], *, fake: bool = False, timeout: float = 60, cwd: Optional[str] = None, **env: str
) -> Result:
    """``python -m abstractvision ARGS`` (or the fake-backend script) with pipes for stdout/stderr."""
    cmd = [sys.executable, FAKE_CLI] if fake else [sys.executable, "-m", "abstractvision"]
    proc = subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(**env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class PtyRun:
    code: int
    stdout: str
    tty: str  # what the process wrote to its terminal (stderr)


def run_in_pty(
    args: Sequence[str],
    *,
    fake: bool = False,
    timeout: float = 60,
    on_output: Optional[Callable[[str, subprocess.Popen[bytes]], None]] = None,
    cwd: Optional[str] = None,
    **env: str,
) -> PtyRun:
    """Run with stderr on a pseudo-terminal (stdout stays a pipe); ``on_output`` sees the tty text so far."""
    import pty

    cmd = [sys.executable, FAKE_CLI] if fake else [sys.executable, "-m", "abstractvision"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=subprocess_env(**env),
        cwd=cwd,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"{args} did not finish in {timeout}s; tty: {b''.join(chunks)!r}")
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if data:
                    chunks.append(data)
                    if on_output is not None:
                        on_output(b"".join(chunks).decode("utf-8", "replace"), proc)
                    continue
                if proc.poll() is not None:
                    break
                time.sleep(0.01)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    return PtyRun(proc.wait(), stdout, b"".join(chunks).decode("utf-8", "replace"))


def send_sigint_once(marker: str) -> Callable[[str, subprocess.Popen[bytes]], None]:
    """An ``on_output`` hook that sends one SIGINT when ``marker`` shows up on the terminal."""
    sent = {"done": False}

    def hook(text: str, proc: subprocess.Popen[bytes]) -> None:
        if not sent["done"] and marker in text:
            sent["done"] = True
            proc.send_signal(signal.SIGINT)

    return hook


def png_file(
    path: Any, size: Sequence[int] = (16, 16), color: Any = (10, 120, 200), mode: str = "RGB"
) -> str:
    from fakes import png_bytes

    with open(path, "wb") as fh:
        fh.write(png_bytes(size[0], size[1], color, mode))
    return str(path)


# -- `serve --demo` as a real process (tests/cli/test_serve_demo.py, tests/docs) ------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[Any], base: str, timeout: float = 60, what: str = "server") -> None:
    """Return once ``base``/healthz answers 200; fail if ``proc`` exits or ``timeout`` passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.1)


@dataclass
class DemoServer:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_demo_server(*extra: str) -> DemoServer:
    """``python -m abstractvision serve --demo --port P``; returns once /healthz answers."""
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("starlette")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "abstractvision", "serve", "--demo", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    server = DemoServer(proc, port)
    wait_healthy(proc, server.url, timeout=120, what="serve --demo")
    return server


def stop_demo_server(server: DemoServer) -> tuple[int, str]:
    """Ctrl-C, as a user stops it; returns (exit code, stderr)."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGINT)
    _, err = server.proc.communicate(timeout=60)
    return server.proc.returncode, err
