"""Fixtures: a real fake OpenAI server on loopback, backends pointed at it, sync/async runners.

``runner`` is parametrized: every test using it runs once through the sync surface
(``VisionManager`` / backend methods) and once through the native async one
(``AsyncVisionManager`` / ``a``-prefixed backend methods on one event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from openai_fake_server import FakeOpenAIServer

from abstractvision import AsyncVisionManager, VisionManager
from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

API_KEY = "sk-test-SECRET-0123456789abcdef"

FAST = {
    "api_key": API_KEY,
    "backoff_base_s": 0.01,
    "backoff_max_s": 0.05,
    "poll_interval_s": 0.01,
    "timeout_s": 5.0,
    "connect_timeout_s": 2.0,
    "deadline_s": 10.0,
}


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    srv = FakeOpenAIServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_backend(server: FakeOpenAIServer) -> Iterator[Callable[..., OpenAICompatibleVisionBackend]]:
    created: list[OpenAICompatibleVisionBackend] = []

    def make(**overrides: Any) -> OpenAICompatibleVisionBackend:
        settings = {"base_url": server.base_url, **FAST, **overrides}
        backend = OpenAICompatibleVisionBackend(config=OpenAICompatibleBackendConfig(**settings))
        created.append(backend)
        return backend

    yield make
    for backend in created:
        backend.close()


class _AsyncBridge:
    """Calls an async object's coroutine methods on one private event loop."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        return attr


class Runner:
    """Runs the same test through the sync or the async surface."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop = asyncio.new_event_loop()

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def manager(self, backend: Any, **kwargs: Any) -> Any:
        """A VisionManager, or an AsyncVisionManager whose methods are run to completion."""
        if self.is_async:
            return _AsyncBridge(AsyncVisionManager(backend=backend, **kwargs), self.loop)
        return VisionManager(backend=backend, **kwargs)

    def call(self, backend: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """``backend.method(...)`` or ``await backend.a<method>(...)``."""
        if self.is_async:
            return self.loop.run_until_complete(getattr(backend, "a" + method)(*args, **kwargs))
        return getattr(backend, method)(*args, **kwargs)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    r = Runner(request.param)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def vm(runner: Runner, make_backend: Callable[..., OpenAICompatibleVisionBackend]) -> Any:
    """A manager (sync or async) over a default backend pointed at the fake server."""
    return runner.manager(make_backend())
