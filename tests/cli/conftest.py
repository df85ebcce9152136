"""CLI fixtures: an in-process runner, the fake backend behind every --backend, a loopback
OpenAI-compatible server and a tiny random-weight Stable Diffusion folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cli_helpers import Result


class CliRunner:
    """Runs ``abstractvision.cli.main(argv)`` in this process and captures stdout/stderr."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: bytes | None = None) -> Result:
        from abstractvision.cli import main

        self.capsys.readouterr()
        if stdin is not None:
            import io

            self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return CliRunner(capsys, monkeypatch)


class FakeFactory:
    """Stands in for ``abstractvision.config.create_backend``; records the settings it got."""

    def __init__(self) -> None:
        from fakes import FakeBackend

        self.backend = FakeBackend()
        self.settings: list[Any] = []

    def __call__(self, settings: Any) -> Any:
        self.settings.append(settings)
        return self.backend


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeFactory:
    """Every backend the CLI creates is the FakeBackend (real manager, real outputs)."""
    import abstractvision.config as config

    factory = FakeFactory()
    monkeypatch.setattr(config, "create_backend", factory)
    return factory


@pytest.fixture
def openai_server() -> Iterator[Any]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "backends", "openai"))
    try:
        from openai_fake_server import FakeOpenAIServer
    finally:
        sys.path.pop(0)
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("cli-tiny") / "tiny-sd")
