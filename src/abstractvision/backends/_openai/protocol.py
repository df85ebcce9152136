"""Wire layer of the OpenAI-compatible backend, written once for sync and async.

Operations are generators ("flows") that *yield* actions, an :class:`HttpRequest` to send
once or a :class:`Sleep`, and receive the :class:`Reply` (or have the transport's
exception thrown in). The sync and async transports in ``openai_compatible.py`` only run
those actions; everything else lives here and in ``flows.py``: retry decisions
(exponential backoff with jitter, ``Retry-After``), the overall deadline, cancellation,
status -> typed error mapping, API-key redaction, multipart encoding and the
host/size checks of URL downloads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, TypeVar, Union
from urllib.parse import urljoin, urlsplit

from ..._lazy import lazy_module
from ...errors import (
    GenerationCancelledError,
    GenerationTimeoutError,
    ProviderAuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
    error_for_status,
)
from ...types import CancelToken

if TYPE_CHECKING:  # pragma: no cover
    import secrets as _secrets

    import httpx
else:  # imported on first use (httpx: when a request is sent)
    httpx = lazy_module("httpx", globals())
    _secrets = lazy_module("secrets", globals())

log = logging.getLogger("abstractvision.backends.openai")

_T = TypeVar("_T")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_REDACTED = "***"


# -- actions and replies ----------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """Send one request (no retries, no redirects) and read the whole body."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: Optional[bytes] = field(default=None, repr=False)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_bytes: int = 64 * 1024 * 1024
    deadline_at: Optional[float] = None  # time.monotonic() value; reading stops past it
    #: sees each chunk of a ``text/event-stream`` body as it arrives (streamed partial images)
    on_chunk: Optional[Callable[[bytes], None]] = field(default=None, repr=False, compare=False)

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``, waking early when ``cancel`` is set."""

    seconds: float
    cancel: Optional[CancelToken] = None


Action = Union[HttpRequest, Sleep]
#: A generator that yields actions and returns ``_T``.
Flow = Generator[Action, Any, _T]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)
    url: str
    elapsed_s: float = 0.0

    @property
    def request_id(self) -> Optional[str]:
        return self.headers.get("x-request-id") or self.headers.get("request-id")


class BodyTooLarge(Exception):
    """Raised by a transport when a body is (or announces itself) larger than allowed."""

    def __init__(self, limit: int, declared: Optional[int] = None) -> None:
        self.limit = limit
        self.declared = declared
        got = f"announces {declared} bytes" if declared is not None else "exceeded it"
        super().__init__(f"limit {limit} bytes, the response {got}")


class TruncatedBody(Exception):
    """Raised by a transport when the connection broke while the body was being read."""


class BodyReader:
    """Accumulates a response body, enforcing the size cap and the overall deadline."""

    def __init__(
        self, action: HttpRequest, request: Optional[httpx.Request], headers: Mapping[str, str]
    ) -> None:
        self.action = action
        self.request = request
        self.chunks: list[bytes] = []
        self.size = 0
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > action.max_bytes:
            raise BodyTooLarge(action.max_bytes, int(declared))
        streamed = headers.get("content-type", "").startswith("text/event-stream")
        self.on_chunk = action.on_chunk if streamed else None

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.action.max_bytes:
            raise BodyTooLarge(self.action.max_bytes)
        self.chunks.append(chunk)
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        if self.action.deadline_at is not None and time.monotonic() > self.action.deadline_at:
            raise httpx.ReadTimeout(
                "the overall deadline passed while reading the body", request=self.request
            )

    def body(self) -> bytes:
        return b"".join(self.chunks)


# -- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before retrying.

    Retried: 408, 409, 429, 5xx (except 501/505), connection failures and truncated
    bodies. Never retried: other 4xx, read timeouts (a slow generation would only time out
    again, and be billed twice), malformed bodies. ``x-should-retry`` from the server wins.
    """

    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> Optional[float]:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                return None
            return max(0.0, retry_after)
        cap = min(self.backoff_max_s, self.backoff_base_s * (2.0 ** min(attempt, 30)))
        return cap * (0.5 + 0.5 * random.random())  # "equal jitter": between cap/2 and cap


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or (status >= 500 and status not in (501, 505))


def parse_retry_after(headers: Mapping[str, str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if value:
        try:
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError):
            return None
        return max(0.0, when - (time.time() if now is None else now))
    return None


@dataclass(frozen=True)
class Wire:
    """Everything the flows need to address the provider."""

    base_url: str
    headers: Mapping[str, str]
    auth_headers: Mapping[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    connect_timeout_s: float = 10.0
    timeout_s: float = 120.0
    retry: RetryPolicy = RetryPolicy()
    max_bytes: int = 512 * 1024 * 1024
    allowed_hosts: tuple[str, ...] = ()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def redact(self, value: Any) -> Any:
        return redact(value, self.secrets)


class Deadline:
    """An overall time budget for one backend call (``None`` seconds: no limit)."""

    def __init__(self, seconds: Optional[float], *, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def error(self) -> GenerationTimeoutError:
        return GenerationTimeoutError(
            f"{self.what} did not finish within its {self.seconds:g} s deadline "
            "(raise deadline_s in the backend config or extra={'deadline_s': ...})."
        )

    def check(self) -> None:
        if self.expired():
            raise self.error()


def check_cancel(cancel: Optional[CancelToken], what: str) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelledError(f"{what} cancelled.")


# -- redaction and errors -----------------------------------------------------------------


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every secret replaced by ``***`` (strings, lists and dicts, recursively)."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets) for v in value)
    return value


def decode_body(content: bytes, limit: int = 4000) -> Any:
    """An error body as JSON when it parses, else (truncated) text."""
    try:
        return json.loads(content)
    except ValueError:
        text = content[:limit].decode("utf-8", "replace")
        return text + ("..." if len(content) > limit else "")


def _detail_text(value: Any) -> str:
    """Text of a ``detail``/``errors`` value: a string, FastAPI's validation list, an object."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        parts = []
        for entry in value:
            if isinstance(entry, dict) and entry.get("msg"):
                loc = entry.get("loc")
                where = ".".join(str(x) for x in loc) if isinstance(loc, (list, tuple)) else ""
                parts.append(f"{where}: {entry['msg']}" if where else str(entry["msg"]))
            elif entry:
                parts.append(_detail_text(entry))
        return "; ".join(p for p in parts if p)
    if isinstance(value, dict):
        for key in ("message", "msg", "detail", "error"):
            if value.get(key):
                return _detail_text(value[key])
        return json.dumps(value)[:300] if value else ""
    return "" if value is None else str(value)


def provider_message(body: Any) -> str:
    """The message of an error body, whatever its shape.

    OpenAI ``{"error": {"message": ...}}``; sd-server ``{"error": "text"}`` and
    ``{"error": "server_error", "message": ...}``; FastAPI/A1111 ``{"detail": ...}``
    (a string or a validation list) and ``{"error": "Name", "detail": ..., "errors": ...}``;
    ``{"message": ...}``; plain text or an HTML error page (its text).
    """
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            text = _detail_text(err)
            code = err.get("code") or err.get("type")
            if text and isinstance(code, str) and code and code not in text:
                return f"{text} ({code})"
            if text:
                return text
        parts: list[str] = []
        for key in ("error", "message", "detail", "errors"):
            text = _detail_text(body.get(key)) if key != "error" or isinstance(err, str) else ""
            if text and text not in parts:
                parts.append(text)
        if parts:
            return ": ".join(parts)
        return json.dumps(body)[:300]
    if isinstance(body, list):
        return _detail_text(body) or json.dumps(body)[:300]
    text = str(body).strip()
    if text.startswith("<"):  # an HTML error page from a proxy or a web framework
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        stripped = re.sub(
            r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", text))
        ).strip()
        text = stripped or (title.group(1).strip() if title else text)
    return text[:300] if text else "(empty body)"


_HINTS: dict[type[ProviderError], str] = {
    ProviderAuthenticationError: " Check api_key (for api.openai.com it defaults to $OPENAI_API_KEY).",
    ProviderNotFoundError: " Check base_url, the endpoint paths in the config and the model id.",
    ProviderRateLimitError: " The provider is rate limiting; retry later or lower the concurrency.",
}


def error_from_reply(reply: Reply, *, what: str, secrets: Sequence[str]) -> ProviderError:
    """The typed error for a non-2xx reply (never containing a secret)."""
    body = redact(decode_body(reply.content), secrets)
    if reply.status in REDIRECT_STATUSES:
        target = redact(reply.headers.get("location", "?"), secrets)
        cls: type[ProviderError] = ProviderResponseError
        message = f"{what}: unexpected redirect to {target}; point base_url at the final address."
    else:
        cls = error_for_status(reply.status) if reply.status >= 400 else ProviderResponseError
        rid = f" (request id {reply.request_id})" if reply.request_id else ""
        detail = provider_message(body).rstrip(". ")
        message = f"{what} failed with HTTP {reply.status}: {detail}{rid}.{_HINTS.get(cls, '')}"
    error = cls(redact(message, secrets), status_code=reply.status, body=body, request_id=reply.request_id)
    if isinstance(error, ProviderRateLimitError):
        error.retry_after = parse_retry_after(reply.headers)
    return error


def response_error(message: str, reply: Optional[Reply] = None, body: Any = None) -> ProviderResponseError:
    return ProviderResponseError(
        message,
        status_code=reply.status if reply is not None else None,
        body=body,
        request_id=reply.request_id if reply is not None else None,
    )


def parse_json(reply: Reply, *, what: str, secrets: Sequence[str] = ()) -> Any:
    try:
        return json.loads(reply.content)
    except ValueError as exc:
        snippet = redact(reply.content[:200].decode("utf-8", "replace"), secrets)
        raise response_error(f"{what}: the response is not valid JSON: {snippet!r}", reply, snippet) from exc


# -- requests -----------------------------------------------------------------------------


def _quote(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_multipart(
    fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, str, bytes, str]]
) -> tuple[str, bytes]:
    """``multipart/form-data`` body (always multipart, even without files) and its type."""
    boundary = _secrets.token_hex(16)
    out: list[bytes] = []
    for name, value in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode())
        out.append(value.encode("utf-8") + b"\r\n")
    for name, filename, data, content_type in files:
        out.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"; '
                f'filename="{_quote(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'
            ).encode()
        )
        out.append(data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def send(
    wire: Wire,
    method: str,
    path: str,
    *,
    deadline: Deadline,
    what: str,
    content: Optional[bytes] = None,
    content_type: Optional[str] = None,
    auth: bool = True,
    redirects_ok: bool = False,
    cancel: Optional[CancelToken] = None,
    max_retries: Optional[int] = None,
    on_chunk: Optional[Callable[[bytes], None]] = None,
) -> Flow[Reply]:
    """Send with retries; return the 2xx reply (or a 3xx one when ``redirects_ok``).

    ``on_chunk`` sees a ``text/event-stream`` body chunk by chunk while it arrives."""
    policy = wire.retry if max_retries is None else dataclasses.replace(wire.retry, max_retries=max_retries)
    headers = {**wire.headers, **(wire.auth_headers if auth else {})}
    if content_type is not None:
        headers["Content-Type"] = content_type
    attempt = 0
    while True:
        check_cancel(cancel, what)
        deadline.check()
        remaining = deadline.remaining()
        action = HttpRequest(
            method=method,
            url=wire.url(path),
            headers=headers,
            content=content,
            connect_timeout_s=max(0.001, min(wire.connect_timeout_s, remaining)),
            read_timeout_s=max(0.001, min(wire.timeout_s, remaining)),
            max_bytes=wire.max_bytes,
            deadline_at=deadline.at,
            on_chunk=on_chunk,
        )
        retry_after: Optional[float] = None
        cause: Optional[BaseException] = None
        try:
            reply = yield action
        except BodyTooLarge as exc:
            raise ProviderResponseError(
                f"{what}: the response is too large ({exc}); see max_download_bytes."
            ) from exc
        except TruncatedBody as exc:
            error: ProviderError = ProviderResponseError(
                f"{what}: the response body was truncated ({wire.redact(str(exc))})."
            )
            cause, retryable = exc, True
        except httpx.TimeoutException as exc:
            if deadline.expired():
                raise deadline.error() from exc
            if isinstance(exc, httpx.ConnectTimeout):
                detail = f"connect timeout after {action.connect_timeout_s:g} s (connect_timeout_s)"
            elif isinstance(exc, httpx.WriteTimeout):
                detail = f"write timeout after {action.read_timeout_s:g} s: the server stopped reading the request (timeout_s)"
            elif isinstance(exc, httpx.PoolTimeout):
                detail = f"no free connection within {action.read_timeout_s:g} s (timeout_s)"
            else:
                detail = f"read timeout after {action.read_timeout_s:g} s (timeout_s)"
            error = ProviderTimeoutError(f"{what}: {detail}.")
            cause, retryable = exc, isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
        except httpx.DecodingError as exc:
            raise ProviderResponseError(f"{what}: the response body could not be decoded ({exc}).") from exc
        except httpx.TransportError as exc:
            host = urlsplit(action.url).netloc.rpartition("@")[2]
            error = ProviderConnectionError(
                f"{what}: could not talk to {host}: {type(exc).__name__}: {wire.redact(str(exc)) or 'connection failed'}."
            )
            cause, retryable = exc, not isinstance(exc, httpx.UnsupportedProtocol)
        else:
            if 200 <= reply.status < 300 or (redirects_ok and reply.status in REDIRECT_STATUSES):
                return reply
            error = error_from_reply(reply, what=what, secrets=wire.secrets)
            retryable = is_retryable_status(reply.status)
            hint = reply.headers.get("x-should-retry")
            if hint in ("true", "false"):
                retryable = hint == "true"
            retry_after = parse_retry_after(reply.headers)
        delay = policy.delay(attempt, retry_after) if retryable else None
        if delay is None or delay >= deadline.remaining():
            raise error from cause
        log.info("%s: %s; retry %d of %d in %.2f s", what, error, attempt + 1, policy.max_retries, delay)
        yield Sleep(delay, cancel)
        attempt += 1


# -- downloads ----------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "").lower(), port


def download_allowed(wire: Wire, url: str) -> bool:
    """Same host and port as ``base_url``, or listed in ``allowed_download_hosts``.

    Entries are ``host`` (any port), ``host:port``, ``*.domain`` or ``*`` (anything).
    """
    try:
        if urlsplit(url).scheme not in ("http", "https"):
            return False
        host, port = _origin(url)
    except ValueError:  # a malformed port or host
        return False
    if (host, port) == _origin(wire.base_url):
        return True
    for entry in wire.allowed_hosts:
        entry = entry.strip().lower()
        if entry == "*" or entry == host or entry == f"{host}:{port}":
            return True
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
    return False


def fetch_url(
    wire: Wire, url: str, *, deadline: Deadline, what: str, cancel: Optional[CancelToken] = None
) -> Flow[Reply]:
    """GET ``url`` following at most 5 redirects, every hop checked against the allow-list.

    The API key is only sent to the provider's own origin.
    """
    for _ in range(MAX_REDIRECTS + 1):
        try:
            httpx.URL(url)
        except httpx.InvalidURL as exc:  # a control character, too long...
            shown = wire.redact(url[:200])
            raise ProviderResponseError(
                f"{what}: the provider gave an invalid URL {shown!r} ({exc})."
            ) from exc
        if not download_allowed(wire, url):
            shown = wire.redact(url.split("?")[0])
            raise ProviderResponseError(
                f"{what}: refusing to download {shown}: not the provider's host. "
                "Add the host to allowed_download_hosts if you trust it."
            )
        same_origin = _origin(url) == _origin(wire.base_url)
        reply = yield from send(
            wire, "GET", url, deadline=deadline, what=what, auth=same_origin, redirects_ok=True, cancel=cancel
        )
        if reply.status not in REDIRECT_STATUSES:
            return reply
        location = reply.headers.get("location")
        if not location:
            raise response_error(f"{what}: redirect without a Location header.", reply)
        url = urljoin(url, location)
    raise ProviderResponseError(f"{what}: more than {MAX_REDIRECTS} redirects.")
