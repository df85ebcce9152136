"""Shared fixtures: isolated store directories and the fake backend."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from _skip_policy import (  # noqa: F401 - the skip policy's hooks, registered with this conftest
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.abstractvision, their capability overrides or their model caches."""
    for name in list(os.environ):
        if name.startswith("ABSTRACTVISION_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ABSTRACTVISION_STORE_DIR", str(tmp_path_factory.mktemp("default-store")))
    # local model discovery must not see the developer's Hugging Face cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hf-hub-cache")))


@pytest.fixture
def store(tmp_path):
    from abstractvision import LocalAssetStore

    return LocalAssetStore(tmp_path / "assets")


@pytest.fixture
def fake_backend():
    from fakes import FakeBackend

    return FakeBackend()
