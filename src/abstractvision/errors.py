"""Every exception abstractvision raises, in one tree.

Catch :class:`AbstractVisionError` to handle anything the library raises on purpose.
Backends map their native failures (HTTP status codes, CUDA out-of-memory, a crashed
native engine, a missing optional dependency) into these classes at their boundary and
chain the original exception (``raise ... from exc``).

::

    AbstractVisionError
    ├── BackendNotConfiguredError          no backend given to VisionManager
    ├── OptionalDependencyMissingError     an extra is not installed (also ImportError)
    ├── InvalidRequestError                bad input: fix the call (also ValueError)
    │   └── ParameterConstraintError       a registry constraint (min/max/enum/...) was violated
    ├── CapabilityNotSupportedError        the model or backend cannot run this task/option
    ├── UnknownModelError                  model id not in the capability registry (also KeyError)
    ├── CapabilityRegistryError            the registry JSON (or an override file) is invalid
    ├── ArtifactError
    │   ├── ArtifactNotFoundError          no artifact with that id (also KeyError)
    │   ├── ArtifactIntegrityError         stored bytes do not match their sha256
    │   └── ArtifactStoreError             the store could not write (disk full, permissions)
    ├── GenerationCancelledError           cancelled through ``cancel=`` or task cancellation
    ├── GenerationTimeoutError             an overall deadline was exceeded (also TimeoutError)
    ├── ModelLoadError                     weights missing/corrupt, pipeline class unavailable
    ├── BackendError                       the engine failed while running
    │   ├── OutOfMemoryError               device memory exhausted (advice: enable offload)
    │   ├── EngineCrashedError             a native engine process died
    │   └── SizeMismatchError              another size came back, with on_size_mismatch="error"
    └── ProviderError                      a remote provider answered with an error
        ├── ProviderBadRequestError        400, 422
        ├── ProviderAuthenticationError    401, 403
        ├── ProviderNotFoundError          404
        ├── ProviderTimeoutError           408, connect/read timeouts (also TimeoutError)
        ├── ProviderConflictError          409
        ├── ProviderRateLimitError         429
        ├── ProviderServerError            5xx
        ├── ProviderConnectionError        connection refused/reset, DNS
        └── ProviderResponseError          malformed/truncated/oversized response body

Provider errors carry ``status_code``, ``body`` and ``request_id``; none of them ever
contains the API key.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "AbstractVisionError",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "ArtifactStoreError",
    "BackendError",
    "BackendNotConfiguredError",
    "CapabilityNotSupportedError",
    "CapabilityRegistryError",
    "EngineCrashedError",
    "GenerationCancelledError",
    "GenerationTimeoutError",
    "InvalidRequestError",
    "ModelLoadError",
    "OptionalDependencyMissingError",
    "OutOfMemoryError",
    "ParameterConstraintError",
    "ProviderAuthenticationError",
    "ProviderBadRequestError",
    "ProviderConflictError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderNotFoundError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "SizeMismatchError",
    "error_for_status",
]


class AbstractVisionError(Exception):
    """Root of every error raised on purpose by abstractvision."""


class BackendNotConfiguredError(AbstractVisionError):
    """A task method was called on a manager that has no backend."""


class OptionalDependencyMissingError(AbstractVisionError, ImportError):
    """An optional dependency (an install extra) is missing.

    The message names the ``pip install "abstractvision[extra]"`` command that fixes it.
    """

    def __init__(self, package: str, extra: str, *, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"The optional dependency '{package}' is required{what} but is not installed. "
            f'Install it with: pip install "abstractvision[{extra}]"'
        )


class InvalidRequestError(AbstractVisionError, ValueError):
    """The caller passed something invalid; the message says what to fix."""

    def __init__(self, message: str, *, param: Optional[str] = None) -> None:
        self.param = param
        super().__init__(message)


class ParameterConstraintError(InvalidRequestError):
    """A parameter violates a constraint declared in the capability registry."""


class CapabilityNotSupportedError(AbstractVisionError):
    """The model (registry) or the backend cannot run this task or option.

    ``supported`` lists what *is* supported, when known.
    """

    def __init__(self, message: str, *, task: Optional[str] = None, supported: Optional[list[str]] = None):
        self.task = task
        self.supported = list(supported) if supported is not None else None
        if supported is not None and "upported:" not in message:
            listed = ", ".join(sorted(supported)) or "none"
            message = f"{message} Supported: {listed}."
        super().__init__(message)


class UnknownModelError(AbstractVisionError, KeyError):
    """The model id is not present in the capability registry."""

    def __init__(self, message: str, *, model_id: Optional[str] = None) -> None:
        self.model_id = model_id
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CapabilityRegistryError(AbstractVisionError, ValueError):
    """The capability registry (packaged or an override file) is invalid."""


class ArtifactError(AbstractVisionError):
    """Base class for artifact store failures."""


class ArtifactNotFoundError(ArtifactError, KeyError):
    """No artifact with this id exists in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ArtifactIntegrityError(ArtifactError):
    """Stored bytes no longer match the sha256 recorded when they were written."""


class ArtifactStoreError(ArtifactError, OSError):
    """The store could not complete an operation (disk full, permission denied...)."""


class GenerationCancelledError(AbstractVisionError):
    """The generation was cancelled by the caller."""


class GenerationTimeoutError(AbstractVisionError, TimeoutError):
    """The generation did not finish before its deadline."""


class ModelLoadError(AbstractVisionError):
    """Weights could not be found or loaded (missing files, corrupt file, wrong format)."""


class BackendError(AbstractVisionError):
    """The execution engine failed while running a task."""


class OutOfMemoryError(BackendError):
    """The device ran out of memory."""


class EngineCrashedError(BackendError):
    """A native engine (in its worker process) crashed or hung."""


class SizeMismatchError(BackendError):
    """The engine returned another size than requested and the caller asked for strictness.

    Raised by the managers with ``on_size_mismatch="error"`` before anything is stored;
    ``requested`` and ``returned`` are ``{"width": ..., "height": ...}`` dicts.
    """

    def __init__(
        self,
        message: str,
        *,
        requested: Optional[dict[str, Any]] = None,
        returned: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.requested = dict(requested or {})
        self.returned = dict(returned or {})


class ProviderError(AbstractVisionError):
    """A remote provider answered with an error or an unusable response."""

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        body: Any = None,
        request_id: Optional[str] = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        super().__init__(message)


class ProviderBadRequestError(ProviderError):
    """400/422: the provider rejected the request."""


class ProviderAuthenticationError(ProviderError):
    """401/403: missing or wrong API key, or no access to this model."""


class ProviderNotFoundError(ProviderError):
    """404: unknown path, model or job id."""


class ProviderTimeoutError(ProviderError, TimeoutError):
    """408 or a connect/read timeout."""


class ProviderConflictError(ProviderError):
    """409: the provider reports a conflicting state."""


class ProviderRateLimitError(ProviderError):
    """429: rate limited; ``retry_after`` holds the hint in seconds when given."""

    retry_after: Optional[float] = None


class ProviderServerError(ProviderError):
    """5xx: the provider failed."""


class ProviderConnectionError(ProviderError):
    """The connection could not be established or broke."""


class ProviderResponseError(ProviderError):
    """The response was malformed, truncated, of the wrong type or too large."""


_STATUS_CLASSES: dict[int, type[ProviderError]] = {
    400: ProviderBadRequestError,
    401: ProviderAuthenticationError,
    403: ProviderAuthenticationError,
    404: ProviderNotFoundError,
    408: ProviderTimeoutError,
    409: ProviderConflictError,
    422: ProviderBadRequestError,
    429: ProviderRateLimitError,
}


def error_for_status(status_code: int) -> type[ProviderError]:
    """Return the :class:`ProviderError` subclass for an HTTP status code."""
    if status_code in _STATUS_CLASSES:
        return _STATUS_CLASSES[status_code]
    if status_code >= 500:
        return ProviderServerError
    if 400 <= status_code < 500:
        return ProviderBadRequestError
    return ProviderError
