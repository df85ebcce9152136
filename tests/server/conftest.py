"""Fixtures for the HTTP server: real uvicorn servers on free loopback ports.

Most tests serve the fake backend (fast, deterministic, controllable); the OpenAI SDK and
browser tests serve tiny random-weight Diffusers models built once per session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

sys.path.insert(0, os.path.dirname(__file__))

from server_helpers import TINY_KEY, diffusers_server

from fakes import FakeBackend


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(target, **create_app_options)`` -> a running server (``.url``); all stopped at the end."""
    from abstractvision.server import create_app, serve_in_thread

    stack: list[Any] = []

    def start(target: Any = None, **options: Any) -> Any:
        app = create_app(target if target is not None else FakeBackend(), **options)
        cm = serve_in_thread(app)
        server = cm.__enter__()
        stack.append(cm)
        return server

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def client() -> Iterator[Any]:
    """``client(server, **httpx_kwargs)`` -> an httpx.Client on the server's URL."""
    import httpx

    clients: list[httpx.Client] = []

    def make(server: Any, **kwargs: Any) -> httpx.Client:
        c = httpx.Client(base_url=server.url, timeout=30, **kwargs)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# -- tiny Diffusers models -----------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd, build_tiny_wan

    root = tmp_path_factory.mktemp("server-tiny")
    return {
        "tiny-sd": build_tiny_sd(os.path.join(root, "tiny-sd")),
        "tiny-wan": build_tiny_wan(os.path.join(root, "tiny-wan")),
    }


@pytest.fixture(scope="session")
def tiny_server(tiny_models: dict[str, str]) -> Iterator[Any]:
    """One server per session: ``tiny-sd`` (images) and ``tiny-wan`` (video), API key ``TINY_KEY``."""
    with diffusers_server(tiny_models, api_key=TINY_KEY) as server:
        yield server
