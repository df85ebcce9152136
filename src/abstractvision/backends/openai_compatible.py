"""OpenAI-compatible HTTP backend (httpx): images, edits, video jobs and model catalogs.

Talks to the OpenAI API or any server that speaks its protocol (a local server on
``http://localhost:1234/v1``, the abstractvision server...)::

    backend = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1")
    )
    for model in backend.list_provider_models(task="text_to_image"):
        print(model.id)

The operations are written once as I/O-free flows (``_openai_flows.py`` over
``_openai_protocol.py``): this module holds the configuration and two small transports
that run them, one on ``httpx.Client`` and one on ``httpx.AsyncClient`` (the native async
methods ``agenerate_image``... used by :class:`~abstractvision.AsyncVisionManager`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

import httpx

from .._version import __version__
from ..errors import InvalidRequestError
from ..model_capabilities import VisionModelCapabilitiesRegistry
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ProviderModelInfo,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from . import _openai_flows as flows
from ._deadline_transport import REQUEST_DEADLINE, DeadlineTransport
from ._openai_protocol import (
    BodyReader,
    Flow,
    HttpRequest,
    Reply,
    RetryPolicy,
    Sleep,
    TruncatedBody,
    Wire,
)
from .base_backend import VisionBackend

__all__ = ["OpenAICompatibleBackendConfig", "OpenAICompatibleVisionBackend"]

_T = TypeVar("_T")
OPENAI_API_HOST = "api.openai.com"
VIDEO_MODES = ("jobs", "sync")
_SENSITIVE_HEADER_PARTS = ("auth", "key", "token", "secret", "cookie")
_IMAGE_TASKS = ("text_to_image", "image_to_image")
_VIDEO_TASKS = ("text_to_video", "image_to_video")


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
        send_diffusion_params: send ``negative_prompt``, ``seed``, ``steps``,
            ``guidance_scale``, ``width``/``height`` and unknown ``extra`` keys. ``None``:
            yes unless ``base_url`` is the OpenAI API.
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
        for name in ("timeout_s", "connect_timeout_s", "poll_interval_s"):
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


def _wire(config: OpenAICompatibleBackendConfig) -> Wire:
    api_key = config.api_key
    if not api_key and config.targets_openai:
        api_key = os.environ.get("OPENAI_API_KEY") or None
    secrets: list[str] = [api_key] if api_key else []
    password = urlsplit(config.base_url).password
    if password:
        secrets.append(password)
    headers = {"User-Agent": config.user_agent or f"abstractvision/{__version__} httpx/{httpx.__version__}"}
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


def _sleep(seconds: float, cancel: Any) -> None:
    end = time.monotonic() + seconds
    while True:
        if cancel is not None and cancel.is_set():
            return
        left = end - time.monotonic()
        if left <= 0:
            return
        if isinstance(cancel, threading.Event):
            cancel.wait(left)
        else:
            time.sleep(left if cancel is None else min(left, 0.05))


async def _asleep(seconds: float, cancel: Any) -> None:
    end = time.monotonic() + seconds
    while True:
        if cancel is not None and cancel.is_set():
            return
        left = end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(left if cancel is None else min(left, 0.05))


class OpenAICompatibleVisionBackend(VisionBackend):
    """Images, edits and videos through an OpenAI-compatible HTTP API.

    Args:
        config: the :class:`OpenAICompatibleBackendConfig`; keyword arguments override
            its fields (or build one when ``config`` is omitted).

    Sync methods use an ``httpx.Client``, the ``a``-prefixed twins an
    ``httpx.AsyncClient``; both are created on first use unless given in the config.
    """

    name = "openai"

    def __init__(self, config: Optional[OpenAICompatibleBackendConfig] = None, **overrides: Any) -> None:
        if config is None:
            config = OpenAICompatibleBackendConfig(**overrides)
        elif not isinstance(config, OpenAICompatibleBackendConfig):
            raise InvalidRequestError("config must be an OpenAICompatibleBackendConfig.", param="config")
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self._lock = threading.Lock()
        self._client: Optional[httpx.Client] = config.http_client
        self._aclient: Optional[httpx.AsyncClient] = config.async_http_client
        self._aclient_loop: Optional[asyncio.AbstractEventLoop] = None
        self._aclient_closer: Optional[AsyncGenerator[None, None]] = None
        self._registry: Optional[VisionModelCapabilitiesRegistry] = None
        diffusion = config.send_diffusion_params
        self._ctx = flows.Context(
            wire=_wire(config),
            paths=flows.Paths(
                config.generations_path,
                config.edits_path,
                config.models_path,
                config.videos_path,
                config.video_sync_path,
            ),
            image_model=config.model_id,
            video_model=config.video_model_id or config.model_id,
            diffusion=(not config.targets_openai) if diffusion is None else diffusion,
            openai_target=config.targets_openai,
            response_format=config.response_format,
            deadline_s=config.deadline_s,
            poll_interval_s=config.poll_interval_s,
            video_mode=config.video_mode,
            cancel_remote_jobs=config.cancel_remote_jobs,
            registry=self._get_registry,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.config.public_base_url!r}, model_id={self.config.model_id!r})"

    def _get_registry(self) -> VisionModelCapabilitiesRegistry:
        if self._registry is None:
            self._registry = VisionModelCapabilitiesRegistry()
        return self._registry

    # -- introspection ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.name,
            "model": self.config.model_id,
            "base_url": self.config.public_base_url,
        }
        if self.config.video_model_id:
            out["video_model"] = self.config.video_model_id
        return out

    def get_capabilities(self) -> VisionBackendCapabilities:
        """Image tasks per ``model_id``, video tasks per ``video_model_id`` (all when unknown)."""
        tasks = []
        image_rules = {t: self._ctx.target(self._ctx.image_model, t).rules for t in _IMAGE_TASKS}
        video_rules = {t: self._ctx.target(self._ctx.video_model, t).rules for t in _VIDEO_TASKS}
        for task, rules in {**image_rules, **video_rules}.items():
            if rules.task_supported is not False:
                tasks.append(task)
        edit = image_rules["image_to_image"]
        max_n = image_rules["text_to_image"].max_n
        return VisionBackendCapabilities(
            supported_tasks=tuple(tasks),
            supports_mask=not edit.known or "mask" in edit.inputs,
            supports_native_batch=True,
            supports_progress=True,
            supports_cancel=True,
            max_batch=min(self.config.max_batch, max_n) if max_n else self.config.max_batch,
            raw={"base_url": self.config.public_base_url, "video_mode": self.config.video_mode},
        )

    # -- sync API ---------------------------------------------------------------------

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return self._run(flows.images(self._ctx, _single(request), "text_to_image"))[0]

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return self._run(flows.images(self._ctx, request, "text_to_image"))

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        return self._run(flows.images(self._ctx, _single(request), "image_to_image"))[0]

    def edit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return self._run(flows.images(self._ctx, request, "image_to_image"))

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        return self._run(flows.video(self._ctx, request, "text_to_video", None))

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        return self._run(flows.video(self._ctx, request, "image_to_video", request.image))

    def list_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        """``GET /models``; filtered by ``task`` where the catalog declares tasks.

        Never changes the configured model.
        """
        return self._run(flows.models(self._ctx, task))

    def close(self) -> None:
        """Close the clients this backend created (injected ones are left open)."""
        with self._lock:
            client, self._client = self._client, self.config.http_client
            aclient, self._aclient = self._aclient, self.config.async_http_client
            closer, self._aclient_closer = self._aclient_closer, None
        if client is not None and client is not self.config.http_client:
            client.close()
        if aclient is not None and aclient is not self.config.async_http_client:
            loop, self._aclient_loop = self._aclient_loop, None
            if loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(closer.aclose() if closer is not None else aclient.aclose())
            # a closed loop finalized ``closer`` (and closed the client) when it shut down

    # -- async API --------------------------------------------------------------------

    async def agenerate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return (await self._arun(flows.images(self._ctx, _single(request), "text_to_image")))[0]

    async def agenerate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return await self._arun(flows.images(self._ctx, request, "text_to_image"))

    async def aedit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        return (await self._arun(flows.images(self._ctx, _single(request), "image_to_image")))[0]

    async def aedit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return await self._arun(flows.images(self._ctx, request, "image_to_image"))

    async def agenerate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        return await self._arun(flows.video(self._ctx, request, "text_to_video", None))

    async def aimage_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        return await self._arun(flows.video(self._ctx, request, "image_to_video", request.image))

    async def alist_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        return await self._arun(flows.models(self._ctx, task))

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        closer = None
        if self._aclient is not None and self._aclient is not self.config.async_http_client:
            if self._aclient_loop is asyncio.get_running_loop():
                closer = self._aclient_closer
            self._aclient, self._aclient_loop = self.config.async_http_client, None
            self._aclient_closer = None
        if closer is not None:
            await closer.aclose()
        self.close()

    # -- sync transport ---------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None or (
                self._client.is_closed and self._client is not self.config.http_client
            ):
                # DeadlineTransport ends socket reads at the deadline; a custom transport
                # turns httpx's proxy environment variables off, so not when a proxy is set
                transport = None if getproxies() else DeadlineTransport()
                self._client = httpx.Client(
                    follow_redirects=False, timeout=self._default_timeout(), transport=transport
                )
            return self._client

    def _default_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)

    def _run(self, flow: Flow[_T]) -> _T:
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                action = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(action, Sleep):
                    _sleep(action.seconds, action.cancel)
                else:
                    value = self._send(action)
            except BaseException as exc:  # handed to the flow, which maps or re-raises it
                error = exc

    def _send(self, action: HttpRequest) -> Reply:
        client = self._sync_client()
        request = client.build_request(
            action.method,
            action.url,
            headers=dict(action.headers),
            content=action.content,
            timeout=action.timeout(),
        )
        started = time.monotonic()
        token = REQUEST_DEADLINE.set(action.deadline_at)
        try:
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                reader = BodyReader(action, request, response.headers)
                try:
                    for chunk in response.iter_bytes():
                        reader.feed(chunk)
                except (httpx.TimeoutException, httpx.DecodingError):
                    raise
                except httpx.TransportError as exc:
                    raise TruncatedBody(str(exc) or type(exc).__name__) from exc
            finally:
                response.close()
        finally:
            REQUEST_DEADLINE.reset(token)
        return Reply(
            response.status_code,
            response.headers,
            reader.body(),
            str(response.url),
            time.monotonic() - started,
        )

    # -- async transport --------------------------------------------------------------

    async def _async_client(self) -> httpx.AsyncClient:
        injected = self.config.async_http_client
        if injected is not None:
            return injected
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient.is_closed or self._aclient_loop is not loop:
            # an AsyncClient's connections belong to the loop that opened them: the loop
            # finalizes ``closer`` when it shuts down (asyncio.run does), closing the client
            client = httpx.AsyncClient(follow_redirects=False, timeout=self._default_timeout())
            closer = _close_with_loop(client)
            await closer.asend(None)
            self._aclient, self._aclient_loop, self._aclient_closer = client, loop, closer
        assert self._aclient is not None
        return self._aclient

    async def _arun(self, flow: Flow[_T]) -> _T:
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                action = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            try:
                if isinstance(action, Sleep):
                    await _asleep(action.seconds, action.cancel)
                else:
                    value = await self._asend(action)
            except BaseException as exc:  # task cancellation included: the flow cancels the job
                error = exc

    async def _asend(self, action: HttpRequest) -> Reply:
        if action.deadline_at is None:
            return await self._asend_now(action)
        # httpx times each socket read separately: a server trickling bytes would never
        # time out, so the whole exchange is cut at the deadline. With an anyio scope, not
        # asyncio.wait_for: httpcore shields its connection cleanup from anyio cancellation
        # only (a native cancel landing there left the connection open in the pool).
        import anyio  # httpx's async dependency, already imported by httpcore

        with anyio.move_on_after(max(0.0, action.deadline_at - time.monotonic())):
            return await self._asend_now(action)
        raise httpx.ReadTimeout("the overall deadline passed")

    async def _asend_now(self, action: HttpRequest) -> Reply:
        client = await self._async_client()
        request = client.build_request(
            action.method,
            action.url,
            headers=dict(action.headers),
            content=action.content,
            timeout=action.timeout(),
        )
        started = time.monotonic()
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            reader = BodyReader(action, request, response.headers)
            try:
                async for chunk in response.aiter_bytes():
                    reader.feed(chunk)
            except (httpx.TimeoutException, httpx.DecodingError):
                raise
            except httpx.TransportError as exc:
                raise TruncatedBody(str(exc) or type(exc).__name__) from exc
        finally:
            await response.aclose()
        return Reply(
            response.status_code,
            response.headers,
            reader.body(),
            str(response.url),
            time.monotonic() - started,
        )


async def _close_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Closes ``client`` when finalized: by ``aclose()``, or by its event loop shutting down."""
    try:
        yield
    finally:
        await client.aclose()


def _single(request: Any) -> Any:
    if request.n != 1:
        raise InvalidRequestError(
            f"n={request.n}: single-output methods take n=1; use the *_batch method for several outputs.",
            param="n",
        )
    return request
