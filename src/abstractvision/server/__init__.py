"""The HTTP server (extra ``server``): OpenAI-compatible routes, jobs with live progress, a playground.

- :func:`create_app` builds the Starlette app for a backend, a manager or several models.
- :func:`run` serves resolved :class:`~abstractvision.config.BackendSettings` with uvicorn
  (what ``abstractvision serve`` calls).
- :func:`serve_in_thread` runs an app on a free loopback port in a thread (tests, notebooks).

See ``docs/server.md`` for the routes, the job protocol and the security defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .app import ROUTES, create_app
    from .options import ServerOptions
    from .runner import RunningServer, check_bind, run, serve_in_thread

_EXPORTS = {
    "ROUTES": "app",
    "RunningServer": "runner",
    "ServerOptions": "options",
    "check_bind": "runner",
    "create_app": "app",
    "run": "runner",
    "serve_in_thread": "runner",
}

__all__ = ["ROUTES", "RunningServer", "ServerOptions", "check_bind", "create_app", "run", "serve_in_thread"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'abstractvision.server' has no attribute {name!r}")
    import importlib

    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:
        if exc.name in ("starlette", "uvicorn", "multipart", "python_multipart"):
            from ..errors import OptionalDependencyMissingError

            raise OptionalDependencyMissingError(exc.name, "server", purpose="the HTTP server") from exc
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
