"""Running the server: :func:`run` for ``abstractvision serve``, :func:`serve_in_thread` for tests.

:func:`run` serves :class:`~abstractvision.served_models.ServedModel` s (backends built from
settings resolved by the shared resolver, as the CLI and the plugin use it) and refuses to
listen on a non-loopback address without an API key.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Optional, Union

from ..config import BackendSettings
from ..errors import InvalidRequestError, OptionalDependencyMissingError
from ..served_models import ServedModel, served_models_from_args
from .options import DEFAULT_MAX_BODY_BYTES
from .security import is_loopback_host

__all__ = ["RunningServer", "check_bind", "run", "serve_in_thread"]


def _require_server_extra() -> None:
    import importlib.util

    for modules, package in (
        (("starlette",), "starlette"),
        (("uvicorn",), "uvicorn"),
        (("python_multipart", "multipart"), "python-multipart"),
    ):
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            raise OptionalDependencyMissingError(package, "server", purpose="abstractvision serve")


def check_bind(host: str, api_key: Optional[str]) -> None:
    """Refuse a non-loopback bind address without an API key."""
    if not is_loopback_host(host) and not api_key:
        raise InvalidRequestError(
            f"Refusing to listen on {host!r} without an API key: anyone who can reach this address could "
            "use the server. Pass an API key (serve --api-key, or ABSTRACTVISION_SERVER_API_KEY) or bind to 127.0.0.1.",
            param="host",
        )


def run(
    models: Union[BackendSettings, Sequence[ServedModel], None] = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: Optional[str] = None,
    cors_origins: Sequence[str] = (),
    workers: int = 1,
    queue_size: int = 16,
    store_dir: Optional[str] = None,
    store: Any = None,
    broker: Optional[str] = None,
    job_ttl_s: float = 3600.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
    preload: bool = False,
    max_loaded: Optional[int] = None,
    **options: Any,
) -> None:
    """Serve ``models`` until interrupted (blocking).

    ``models`` is a list of :class:`~abstractvision.served_models.ServedModel` (what
    ``abstractvision serve`` builds from ``--model``, ``--models-file`` and ``--discover``), or
    one :class:`~abstractvision.config.BackendSettings` (served under its default name).
    Engines load on their first request; ``preload=True`` loads them before accepting
    requests, and ``max_loaded`` caps how many hold weights at once. Results go to ``store``
    (a store or a location for :func:`abstractvision.stores.open_store`, e.g. ``s3://b/p``) or
    ``store_dir``; without either, to a temporary directory removed at shutdown.

    With ``broker`` (a Redis URL) this is an API node of the distributed mode: no ``models``,
    a ``store`` shared with the workers, and both are checked before listening. Other keyword
    arguments are :class:`~abstractvision.server.options.ServerOptions` (and ``distributed``,
    the options of the API node's state).
    """
    check_bind(host, api_key)
    _require_server_extra()
    import uvicorn

    from ..stores import open_store
    from .app import create_app

    if isinstance(models, BackendSettings):
        models = served_models_from_args(models)
    served = list(models or [])
    if broker is not None:
        if served:
            raise InvalidRequestError("An API node (broker=...) serves no models of its own.", param="broker")
        _check_broker(broker)
    elif not served:
        raise InvalidRequestError("Nothing to serve: give models (or a broker for an API node).", param="model")
    location = store if store is not None else store_dir
    if location is None:
        location = next((m.settings.store_dir for m in served if m.settings.store_dir), None)
    if isinstance(location, (str, os.PathLike)):
        location = open_store(os.fspath(location), check=True)
    app = create_app(
        served or None,
        broker=broker,
        api_key=api_key,
        cors_origins=cors_origins,
        workers=workers,
        queue_size=queue_size,
        job_ttl_s=job_ttl_s,
        max_body_bytes=max_body_bytes,
        store=location,
        secrets=tuple(m.settings.api_key for m in served if m.settings.api_key),
        preload=preload,
        max_loaded=max_loaded,
        **options,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, proxy_headers=False)


def _check_broker(url: str) -> None:
    """Fail fast, before listening, when the broker is unreachable (the URL shown without its password)."""
    try:
        import redis
    except ImportError as exc:
        raise OptionalDependencyMissingError("redis", "distributed", purpose="the distributed mode") from exc
    from ..distributed.redis_state import redact_url

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        raise InvalidRequestError(
            f"Cannot reach the broker at {redact_url(url)} ({type(exc).__name__}: {exc}); check that Redis "
            "is running and reachable from this machine.",
            param="broker",
        ) from None
    finally:
        client.close()


class RunningServer:
    """A uvicorn server on a background thread (``url``, ``stop()``)."""

    def __init__(self, server: Any, thread: threading.Thread, url: str) -> None:
        self.server = server
        self.thread = thread
        self.url = url

    @property
    def app(self) -> Any:
        """The ASGI app being served."""
        return self.server.config.app

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
) -> Iterator[RunningServer]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; stop it on exit.

    Example::

        with serve_in_thread(create_app(backend)) as server:
            httpx.get(server.url + "/healthz")
    """
    _require_server_extra()
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets that say they are TCP,
    # and without it every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, server_header=False, proxy_headers=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="abstractvision-server"
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("The server did not start; see the log above.")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    running = RunningServer(server, thread, f"http://{shown}:{bound_port}")
    try:
        yield running
    finally:
        running.stop()
        sock.close()
