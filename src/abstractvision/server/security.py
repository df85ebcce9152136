"""Security by default: API key check, body size limit, hardening headers, loopback detection.

:class:`GuardMiddleware` is a plain ASGI middleware (no response buffering, so server-sent
events stream through it). It answers 401 before a body is read when an API key is
configured and the request lacks ``Authorization: Bearer <key>`` (compared with
:func:`hmac.compare_digest`), 413 when ``Content-Length`` or the streamed body exceeds the
limit, and adds ``nosniff``/frame/referrer headers (and a strict CSP for the playground).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from typing import Any, Optional

from .errors import APIError, error_body

__all__ = ["PUBLIC_PATHS", "GuardMiddleware", "is_loopback_host"]

#: Paths served without an API key: the playground (it asks for the key), health, schema.
PUBLIC_PATHS = ("/", "/healthz", "/openapi.json", "/favicon.ico")
PUBLIC_PREFIXES = ("/playground/",)

_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)

ASGIApp = Callable[..., Any]


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; ``0.0.0.0`` and ``::`` are *not* loopback."""
    name = (host or "").strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BodyTooLarge(APIError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The request body is larger than this server's limit of {limit} bytes.",
            code="request_too_large",
        )


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: Optional[str], max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if (
            self.api_key is not None
            and scope.get("method") != "OPTIONS"
            and not _is_public(path)
            and not self._authorized(headers.get("authorization", b""))
        ):
            await _send_error(
                send,
                APIError(
                    401,
                    "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
                    code="invalid_api_key",
                    type="authentication_error",
                    headers={"WWW-Authenticate": 'Bearer realm="abstractvision"'},
                ),
            )
            return
        length = headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(
                    send, APIError(400, "Invalid Content-Length header.", code="invalid_request")
                )
                return
            if declared > self.max_body_bytes:
                await _send_error(send, BodyTooLarge(self.max_body_bytes))
                return
        received = 0
        limit = self.max_body_bytes

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        html = path == "/" or path.startswith(PUBLIC_PREFIXES)

        async def hardened_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if html:
                    extra.append((b"content-security-policy", _CSP.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, counting_receive, hardened_send)

    def _authorized(self, header: bytes) -> bool:
        assert self.api_key is not None
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(token.strip(), self.api_key)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


async def _send_error(send: Callable[..., Any], error: APIError) -> None:
    body = json.dumps(error_body(error.message, type=error.type, code=error.code, param=error.param)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *[(k.lower().encode(), v.encode()) for k, v in error.headers.items()],
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
