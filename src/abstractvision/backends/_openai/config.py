"""Configuration of the OpenAI-compatible backend and the wire settings derived from it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit, urlunsplit

from ..._version import __version__
from ...errors import InvalidRequestError
from . import profiles
from .protocol import RetryPolicy, Wire

if TYPE_CHECKING:  # pragma: no cover
    import httpx

OPENAI_API_HOST = "api.openai.com"
VIDEO_MODES = ("jobs", "sync")
_SENSITIVE_HEADER_PARTS = ("auth", "key", "token", "secret", "cookie")


def _sensitive(header: str) -> bool:
    return any(part in header.lower() for part in _SENSITIVE_HEADER_PARTS)


def _public_url(url: str) -> str:
    """``url`` without user:password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@dataclass(frozen=True)
class OpenAICompatibleBackendConfig:
    """Configuration of :class:`OpenAICompatibleVisionBackend`.

    Attributes:
        base_url: API root including the version, e.g. ``"http://localhost:1234/v1"``.
        api_key: sent as ``Authorization: Bearer ...``; when ``base_url`` is the OpenAI API
            it defaults to ``$OPENAI_API_KEY``. Never shown in reprs, errors or logs.
        model_id: image model (``"gpt-image-1"``, a local model id...); ``None`` lets the
            server choose. ``extra={"model": ...}`` overrides it per call.
        video_model_id: video model (``"sora-2"``...); defaults to ``model_id``.
        timeout_s: read/write timeout of one HTTP request (seconds).
        connect_timeout_s: connect timeout of one HTTP request.
        deadline_s: overall budget of one call, retries and job polling included
            (``None``: no limit; ``extra={"deadline_s": ...}`` overrides it per call).
        max_retries: retries after 408/409/429/5xx, connection errors and truncated bodies.
        backoff_base_s / backoff_max_s: exponential backoff with jitter between retries.
        max_retry_after_s: a longer ``Retry-After`` is not waited for (the error is raised).
        headers: extra headers; values of headers whose name contains auth/key/token/
            secret/cookie are treated as secrets (redacted, never sent to download hosts).
        generations_path / edits_path / models_path / videos_path: endpoint paths.
        video_mode: ``"jobs"`` (OpenAI job protocol) or ``"sync"`` (one JSON ``POST`` to
            ``video_sync_path`` answering the video or ``{"data": [...]}``).
        poll_interval_s: job polling interval when the server sends no ``Retry-After``.
        cancel_remote_jobs: ``DELETE`` a video job that is abandoned before it finished.
        profile: the remote's dialect (see ``profiles.py``): ``"generic"`` (any
            OpenAI-compatible server: diffusion parameters as extra body fields),
            ``"openai"`` (the OpenAI API: only its fields), ``"sdcpp"``
            (stable-diffusion.cpp's sd-server: parameters in its ``<sd_cpp_extra_args>``
            prompt block, 8 images per request), ``"a1111"`` (the ``/sdapi/v1`` API of
            AUTOMATIC1111, Forge, SD.Next and sd-server; ``base_url`` is the server root),
            or ``"auto"`` (probe ``/models`` and ``/sdapi/v1/options`` once, before the first
            call). ``None``: ``"openai"`` when ``base_url`` is the OpenAI API or
            ``send_diffusion_params`` is ``False``, else ``"generic"``.
        probe_timeout_s: timeout of each ``profile="auto"`` probe.
        send_diffusion_params: the older switch, used when ``profile`` is ``None``:
            ``True`` -> ``"generic"``, ``False`` -> ``"openai"``.
        response_format: asked for when the model accepts it (gpt-image models always
            answer base64); ``None`` to leave it to the server.
        max_batch: most images per request (the manager splits larger batches).
        max_download_bytes: cap on any response body or downloaded output.
        allowed_download_hosts: hosts (``"host"``, ``"host:port"``, ``"*.domain"``) that
            output URLs may point to besides the provider's own origin.
        user_agent: overrides the ``User-Agent`` header.
        http_client / async_http_client: clients to use instead of creating them (the
            backend then never closes them); handy for proxies, TLS settings and tests.
    """

    base_url: str = "https://api.openai.com/v1"
    api_key: Optional[str] = None
    model_id: Optional[str] = None
    video_model_id: Optional[str] = None
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    deadline_s: Optional[float] = 900.0
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    generations_path: str = "/images/generations"
    edits_path: str = "/images/edits"
    models_path: str = "/models"
    videos_path: str = "/videos"
    video_mode: str = "jobs"
    video_sync_path: str = "/videos/generations"
    poll_interval_s: float = 2.0
    cancel_remote_jobs: bool = True
    profile: Optional[str] = None
    probe_timeout_s: float = 5.0
    send_diffusion_params: Optional[bool] = None
    response_format: Optional[str] = "b64_json"
    max_batch: int = 10
    max_download_bytes: int = 512 * 1024 * 1024
    allowed_download_hosts: tuple[str, ...] = ()
    user_agent: Optional[str] = None
    http_client: Optional[httpx.Client] = field(default=None, compare=False)
    async_http_client: Optional[httpx.AsyncClient] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(
                f"base_url must be an http(s) URL such as 'http://localhost:1234/v1', got {_public_url(self.base_url)!r}.",
                param="base_url",
            )
        for name in ("timeout_s", "connect_timeout_s", "poll_interval_s", "probe_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidRequestError(f"{name} must be > 0.", param=name)
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise InvalidRequestError("deadline_s must be > 0 or None.", param="deadline_s")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InvalidRequestError("max_retries must be an integer >= 0.", param="max_retries")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise InvalidRequestError("backoff settings must be >= 0.", param="backoff_base_s")
        if self.video_mode not in VIDEO_MODES:
            raise InvalidRequestError(
                f"video_mode must be one of {VIDEO_MODES}, got {self.video_mode!r}.", param="video_mode"
            )
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InvalidRequestError("max_batch must be an integer >= 1.", param="max_batch")
        if not isinstance(self.max_download_bytes, int) or self.max_download_bytes < 1:
            raise InvalidRequestError(
                "max_download_bytes must be a positive integer.", param="max_download_bytes"
            )
        object.__setattr__(self, "profile", profiles.check_profile_name(self.profile))
        if self.profile == "a1111" and parts.path.rstrip("/").endswith("/v1"):
            raise InvalidRequestError(
                "profile='a1111' sends /sdapi/v1/txt2img... relative to base_url, so base_url is the "
                f"server root (e.g. 'http://127.0.0.1:7860'), not {_public_url(self.base_url)!r}.",
                param="base_url",
            )
        if isinstance(self.allowed_download_hosts, str):
            object.__setattr__(self, "allowed_download_hosts", (self.allowed_download_hosts,))
        object.__setattr__(self, "allowed_download_hosts", tuple(self.allowed_download_hosts))

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value: Any = getattr(self, f.name)
            if f.name == "api_key" and value is not None:
                value = "***"
            elif f.name == "headers":
                value = {k: "***" if _sensitive(k) else v for k, v in value.items()}
            elif f.name == "base_url":
                value = _public_url(value)
            elif f.name in ("http_client", "async_http_client") and value is not None:
                value = f"<{type(value).__name__}>"
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def targets_openai(self) -> bool:
        """``True`` when ``base_url`` is the OpenAI API."""
        return (urlsplit(self.base_url).hostname or "").lower() == OPENAI_API_HOST

    @property
    def public_base_url(self) -> str:
        return _public_url(self.base_url)


def wire_for(config: OpenAICompatibleBackendConfig) -> Wire:
    """Addresses, headers, secrets, timeouts and the retry policy of ``config``."""
    api_key = config.api_key
    if not api_key and config.targets_openai:
        api_key = os.environ.get("OPENAI_API_KEY") or None
    secrets: list[str] = [api_key] if api_key else []
    password = urlsplit(config.base_url).password
    if password:
        secrets.append(password)
    if config.user_agent:
        headers = {"User-Agent": config.user_agent}
    else:
        import httpx  # the backend sends with it; its import waits until a backend is built

        headers = {"User-Agent": f"abstractvision/{__version__} httpx/{httpx.__version__}"}
    auth_headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for name, value in config.headers.items():
        if _sensitive(name):
            auth_headers[name] = value
            secrets.extend([value, value.split()[-1]] if value.strip() else [])
        else:
            headers[name] = value
    return Wire(
        base_url=config.base_url,
        headers=headers,
        auth_headers=auth_headers,
        secrets=tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)),
        connect_timeout_s=config.connect_timeout_s,
        timeout_s=config.timeout_s,
        retry=RetryPolicy(
            config.max_retries, config.backoff_base_s, config.backoff_max_s, config.max_retry_after_s
        ),
        max_bytes=config.max_download_bytes,
        allowed_hosts=config.allowed_download_hosts,
    )
