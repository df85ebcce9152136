"""HTTP errors in the OpenAI error shape, and the one place library errors become statuses.

Every error response of the server has the body OpenAI clients expect::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "width", "code": "..."}}

:func:`error_from_exception` maps the :mod:`abstractvision.errors` tree to a status code;
anything unexpected becomes a 500 whose message carries no exception text (the traceback is
logged instead). Messages pass through :class:`Redactor`, so configured secrets and
anything that looks like a bearer token never reach a client.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .. import errors as av

logger = logging.getLogger("abstractvision.server")

__all__ = ["APIError", "Redactor", "error_body", "error_from_exception"]

_TOKEN_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]{4,}"),
)


class Redactor:
    """Removes secrets, token-looking strings and this machine's paths from what clients see.

    ``paths`` maps known local paths (a served model's folder or files) to the public name
    that replaces them; any other absolute path whose first folder exists on this machine
    becomes ``…/<basename>``. A server's responses, events and stored result metadata pass
    through it, so no client ever learns where the server keeps its models.
    """

    def __init__(
        self, secrets: Iterable[Optional[str]] = (), paths: Optional[Mapping[str, str]] = None
    ) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.paths = sorted(
            ((p.rstrip("/") or p, n) for p, n in (paths or {}).items() if len(p) > 1),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        for pattern in _TOKEN_PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
        if "/" in text or "\\" in text:
            for path, name in self.paths:
                text = text.replace(path, name)
            text = _PATH_RE.sub(_scrub_path, text)
        return text

    def obj(self, value: Any) -> Any:
        """``value`` with every string in it (dict keys and values, lists) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


#: an absolute POSIX path (not part of a URL: no word, '.', ':' or '/' right before it)
_PATH_RE = re.compile(r"(?<![\w.:/~@-])(?:~/|/)[^\s'\"<>,;:()\[\]{}|`*?]+")


@functools.lru_cache(maxsize=1)
def _machine_roots() -> frozenset[str]:
    """The top-level folders of this machine (``/v1/...`` routes are not among them)."""
    try:
        return frozenset(os.listdir("/"))
    except OSError:
        return frozenset()


def _scrub_path(match: re.Match[str]) -> str:
    text = match.group(0)
    core = text.rstrip(".")
    if core.startswith("~/"):
        first = "~"
    else:
        parts = core.split("/")
        first = parts[1] if len(parts) > 1 else ""
        if first not in _machine_roots() or (len(parts) < 3 and not os.path.exists(core)):
            return text
    base = core.rstrip("/").rsplit("/", 1)[-1]
    return "…/" + base + text[len(core) :] if base and base != "~" else "…"


class APIError(Exception):
    """An error answered to the client: status, OpenAI error fields and optional headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: Optional[str] = None,
        param: Optional[str] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self, redact: Optional[Redactor] = None) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param, redact=redact)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: Optional[str] = None,
    param: Optional[str] = None,
    redact: Optional[Redactor] = None,
) -> dict[str, Any]:
    text = redact(message) if redact is not None else message
    return {"error": {"message": text, "type": type, "param": param, "code": code}}


def bad_request(message: str, *, param: Optional[str] = None, code: str = "invalid_parameter") -> APIError:
    return APIError(400, message, param=param, code=code)


def error_from_exception(exc: BaseException) -> APIError:
    """Map any exception raised while serving a request (or running a job) to an :class:`APIError`."""
    if isinstance(exc, APIError):
        return exc
    message = str(exc) or type(exc).__name__
    param = getattr(exc, "param", None)
    if isinstance(exc, av.ParameterConstraintError):
        return APIError(400, message, param=param, code="parameter_constraint")
    if isinstance(exc, av.InvalidRequestError):
        return APIError(400, message, param=param, code="invalid_parameter")
    if isinstance(exc, av.CapabilityNotSupportedError):
        return APIError(400, message, code="unsupported")
    if isinstance(exc, av.UnknownModelError):
        return APIError(404, message, code="model_not_found", param="model")
    if isinstance(exc, av.ArtifactNotFoundError):
        return APIError(404, message, code="artifact_not_found")
    if isinstance(exc, av.GenerationCancelledError):
        return APIError(409, message, code="cancelled")
    if isinstance(exc, av.GenerationTimeoutError):
        return APIError(504, message, type="server_error", code="timeout")
    if isinstance(exc, av.OptionalDependencyMissingError):
        return APIError(503, message, type="server_error", code="dependency_missing")
    if isinstance(exc, av.ProviderError):
        return _provider_error(exc, message)
    if isinstance(exc, av.OutOfMemoryError):
        return APIError(503, message, type="server_error", code="out_of_memory")
    if isinstance(exc, av.ModelLoadError):
        return APIError(503, message, type="server_error", code="model_load_failed")
    if isinstance(exc, av.AbstractVisionError):
        return APIError(500, message, type="server_error", code="engine_error")
    logger.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__))
    return APIError(
        500, "Internal server error; see the server log.", type="server_error", code="internal_error"
    )


def _provider_error(exc: av.ProviderError, message: str) -> APIError:
    """Upstream provider failures: the client's fault only when the provider said so (400/404)."""
    headers: dict[str, str] = {}
    if isinstance(exc, av.ProviderRateLimitError):
        retry = exc.retry_after
        headers["Retry-After"] = str(max(1, round(retry))) if retry else "1"
        return APIError(429, message, type="rate_limit_error", code="upstream_rate_limited", headers=headers)
    if isinstance(exc, av.ProviderBadRequestError):
        return APIError(400, message, code="upstream_bad_request")
    if isinstance(exc, av.ProviderNotFoundError):
        return APIError(404, message, code="upstream_not_found")
    if isinstance(exc, av.ProviderTimeoutError):
        return APIError(504, message, type="server_error", code="upstream_timeout")
    return APIError(502, message, type="server_error", code="upstream_error")
