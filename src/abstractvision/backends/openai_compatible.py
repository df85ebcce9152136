"""OpenAI-compatible HTTP backend (httpx): images, edits, video jobs and model catalogs.

Talks to the OpenAI API or any server that speaks its protocol (a local server on
``http://localhost:1234/v1``, the abstractvision server...)::

    backend = OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url="http://localhost:1234/v1")
    )
    for model in backend.list_provider_models(task="text_to_image"):
        print(model.id)

The remote's dialect is a server profile (``profile=``: ``generic``, ``openai``, ``sdcpp``,
``a1111`` or ``auto``; see ``_openai/profiles.py``). The operations are written once as
I/O-free flows (``_openai/flows.py`` over ``_openai/protocol.py``); the configuration lives
in ``_openai/config.py``. This module holds the backend and two small transports that run
the flows, one on ``httpx.Client`` and one on ``httpx.AsyncClient`` (the native async
methods ``agenerate_image``... used by :class:`~abstractvision.AsyncVisionManager`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Optional, TypeVar

from .._lazy import lazy_module
from ..errors import InvalidRequestError
from ..types import (
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    ProviderModelInfo,
    VideoGenerationRequest,
    VisionBackendCapabilities,
)
from ._openai import flows, payloads, profiles
from ._openai.config import OpenAICompatibleBackendConfig, wire_for
from ._openai.protocol import BodyReader, Flow, HttpRequest, Reply, Sleep, TruncatedBody, log
from .base_backend import VisionBackend, honour_all

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

    import httpx

    from ..model_capabilities import VisionModelCapabilitiesRegistry
    from ._openai import async_transport, deadline_transport
else:  # imported when the first request is sent: importing the backend stays cheap
    asyncio = lazy_module("asyncio", globals())
    httpx = lazy_module("httpx", globals())
    deadline_transport = lazy_module("abstractvision.backends._openai.deadline_transport", globals())
    async_transport = lazy_module("abstractvision.backends._openai.async_transport", globals())

__all__ = ["OpenAICompatibleBackendConfig", "OpenAICompatibleVisionBackend"]

_T = TypeVar("_T")
_IMAGE_TASKS = ("text_to_image", "image_to_image")
_VIDEO_TASKS = ("text_to_video", "image_to_video")


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
        # the sync path's own connection pool when it needs no httpx.Client (no injected
        # client, no proxy, no credentials in the URL); False: use a client
        self._direct: Any = None if config.http_client is None and "@" not in config.base_url else False
        self._aclient: Optional[httpx.AsyncClient] = config.async_http_client
        self._aclient_loop: Optional[asyncio.AbstractEventLoop] = None
        self._aclient_closer: Optional[AsyncGenerator[None, None]] = None
        self._registry: Optional[VisionModelCapabilitiesRegistry] = None
        self._caps: Optional[tuple[Any, VisionBackendCapabilities]] = None
        profile = profiles.initial_profile(
            config.profile,
            send_diffusion_params=config.send_diffusion_params,
            targets_openai=config.targets_openai,
        )
        self._ctx = flows.Context(
            wire=wire_for(config),
            paths=flows.Paths(
                config.generations_path,
                config.edits_path,
                config.models_path,
                config.videos_path,
                config.video_sync_path,
            ),
            image_model=config.model_id,
            video_model=config.video_model_id or config.model_id,
            profile=None if profile == "auto" else profiles.PROFILES[profile],
            openai_target=config.targets_openai,
            response_format=config.response_format,
            deadline_s=config.deadline_s,
            poll_interval_s=config.poll_interval_s,
            video_mode=config.video_mode,
            cancel_remote_jobs=config.cancel_remote_jobs,
            registry=self._get_registry,
            max_batch=config.max_batch,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.config.public_base_url!r}, model_id={self.config.model_id!r})"

    def _get_registry(self) -> VisionModelCapabilitiesRegistry:
        if self._registry is None:
            from ..model_capabilities import VisionModelCapabilitiesRegistry

            self._registry = VisionModelCapabilitiesRegistry()
        return self._registry

    # -- introspection ----------------------------------------------------------------

    @property
    def profile(self) -> Optional[str]:
        """The server profile in use; ``None`` while ``profile="auto"`` is not detected yet."""
        profile = self._ctx.profile
        return profile.name if profile is not None else None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.name,
            "model": self.config.model_id,
            "base_url": self.config.public_base_url,
            "profile": self.profile or "auto (not detected yet)",
        }
        if self.config.video_model_id:
            out["video_model"] = self.config.video_model_id
        return out

    def get_capabilities(self) -> VisionBackendCapabilities:
        """Image tasks per ``model_id``, video tasks per ``video_model_id`` (all when unknown),
        narrowed by the server profile once it is known (``auto`` is not probed here).

        Computed once per profile (the managers ask on every call): the same object is
        returned each time, to be treated as read-only."""
        ctx = self._ctx
        cached = self._caps
        if cached is not None and cached[0] is ctx.profile:
            return cached[1]
        caps = self._capabilities(ctx)
        self._caps = (ctx.profile, caps)
        return caps

    def _capabilities(self, ctx: flows.Context) -> VisionBackendCapabilities:
        profile = ctx.profile or profiles.GENERIC  # auto, undetected: the flows check again
        rules = {
            t: payloads.model_rules(
                ctx.registry(), ctx.video_model if t in _VIDEO_TASKS else ctx.image_model, t
            )
            for t in (*_IMAGE_TASKS, *_VIDEO_TASKS)
        }
        tasks = [t for t, r in rules.items() if r.task_supported is not False]
        hints = {}
        if not profile.video:
            hints = {
                t: f"{profile.label} (profile {profile.name!r}) has no video route." for t in _VIDEO_TASKS
            }
            tasks = [t for t in tasks if t not in _VIDEO_TASKS]
        edit = rules["image_to_image"]
        target = payloads.Target(rules=rules["text_to_image"], profile=profile)
        # width/height travel as `size` where a profile has no fields for them
        unsendable = [
            p for p in profiles.IMAGE_PARAMS if p not in profile.params and p not in ("width", "height")
        ]
        return VisionBackendCapabilities(
            supported_tasks=tuple(tasks),
            supports_mask=not edit.known or "mask" in edit.inputs,
            supports_native_batch=True,
            supports_progress=True,
            supports_cancel=True,
            max_batch=target.batch_limit(self.config.max_batch),
            # what reaches the server: every parameter, except the diffusion parameters this
            # profile cannot send (refused when given, reported as ignored when planned, such
            # as a batch's seeds); what a server then ignores is reported per call
            honoured_parameters={
                task: tuple(p for p in names if p not in unsendable)
                for task, names in honour_all(tasks).items()
            },
            ignored_reasons={name: profile.not_sent(name) for name in unsendable},
            raw={
                "base_url": self.config.public_base_url,
                "video_mode": self.config.video_mode,
                "profile": self.profile,
                # OpenAI image fields this profile sends (a server passes them on as they are)
                "openai_fields": list(profile.openai_fields),
                **({"hints": hints} if hints else {}),
            },
        )

    def detect_profile(self) -> str:
        """The server profile: with ``profile="auto"`` the server is probed now (once)."""
        return self._run(self._resolved(lambda ctx: _done(ctx)))

    async def adetect_profile(self) -> str:
        """Async :meth:`detect_profile`."""
        return await self._arun(self._resolved(lambda ctx: _done(ctx)))

    def _resolved(self, make: Callable[[flows.Context], Flow[_T]]) -> Flow[_T]:
        """Run ``make(ctx)`` with the profile known, detecting it first for ``auto``."""
        ctx = self._ctx
        if ctx.profile is None:
            name = yield from profiles.detect(
                ctx.wire, targets_openai=self.config.targets_openai, timeout_s=self.config.probe_timeout_s
            )
            with self._lock:
                if self._ctx.profile is None:
                    log.info("profile='auto': %s identifies as %r", self.config.public_base_url, name)
                    self._ctx = dataclasses.replace(self._ctx, profile=profiles.PROFILES[name])
                ctx = self._ctx
        return (yield from make(ctx))

    # -- sync API ---------------------------------------------------------------------

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        request = _single(request)
        return self._run(self._resolved(lambda c: flows.images(c, request, "text_to_image")))[0]

    def generate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return self._run(self._resolved(lambda c: flows.images(c, request, "text_to_image")))

    def edit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        request = _single(request)
        return self._run(self._resolved(lambda c: flows.images(c, request, "image_to_image")))[0]

    def edit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return self._run(self._resolved(lambda c: flows.images(c, request, "image_to_image")))

    def generate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        return self._run(self._resolved(lambda c: flows.video(c, request, "text_to_video", None)))

    def image_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        return self._run(self._resolved(lambda c: flows.video(c, request, "image_to_video", request.image)))

    def list_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        """The server's catalog (``GET /models``; A1111: ``GET /sdapi/v1/sd-models``),
        filtered by ``task`` where the catalog declares tasks.

        Never changes the configured model.
        """
        return self._run(self._resolved(lambda c: flows.models(c, task)))

    def close(self) -> None:
        """Close the clients this backend created (injected ones are left open)."""
        with self._lock:
            client, self._client = self._client, self.config.http_client
            direct, self._direct = self._direct, (None if self._direct is not False else False)
            aclient, self._aclient = self._aclient, self.config.async_http_client
            closer, self._aclient_closer = self._aclient_closer, None
        if client is not None and client is not self.config.http_client:
            client.close()
        if direct:
            direct.close()
        if aclient is not None and aclient is not self.config.async_http_client:
            loop, self._aclient_loop = self._aclient_loop, None
            if loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(closer.aclose() if closer is not None else aclient.aclose())
            # a closed loop finalized ``closer`` (and closed the client) when it shut down

    # -- async API --------------------------------------------------------------------

    async def agenerate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        request = _single(request)
        return (await self._arun(self._resolved(lambda c: flows.images(c, request, "text_to_image"))))[0]

    async def agenerate_image_batch(self, request: ImageGenerationRequest) -> list[GeneratedAsset]:
        return await self._arun(self._resolved(lambda c: flows.images(c, request, "text_to_image")))

    async def aedit_image(self, request: ImageEditRequest) -> GeneratedAsset:
        request = _single(request)
        return (await self._arun(self._resolved(lambda c: flows.images(c, request, "image_to_image"))))[0]

    async def aedit_image_batch(self, request: ImageEditRequest) -> list[GeneratedAsset]:
        return await self._arun(self._resolved(lambda c: flows.images(c, request, "image_to_image")))

    async def agenerate_video(self, request: VideoGenerationRequest) -> GeneratedAsset:
        return await self._arun(self._resolved(lambda c: flows.video(c, request, "text_to_video", None)))

    async def aimage_to_video(self, request: ImageToVideoRequest) -> GeneratedAsset:
        return await self._arun(
            self._resolved(lambda c: flows.video(c, request, "image_to_video", request.image))
        )

    async def alist_provider_models(self, *, task: Optional[str] = None) -> list[ProviderModelInfo]:
        return await self._arun(self._resolved(lambda c: flows.models(c, task)))

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
                from urllib.request import getproxies

                transport = None if getproxies() else deadline_transport.DeadlineTransport()
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

    def _direct_transport(self) -> Any:
        """The transport the sync path sends on without httpx.Client, or ``None``."""
        direct = self._direct
        if direct is None:
            from urllib.request import getproxies

            with self._lock:
                if self._direct is None:
                    # a proxy from the environment: httpx.Client handles it (see _sync_client)
                    self._direct = False if getproxies() else deadline_transport.DeadlineTransport()
                direct = self._direct
        return direct or None

    def _send(self, action: HttpRequest) -> Reply:
        direct = self._direct_transport()
        if direct is not None:
            return direct.exchange(action)
        client = self._sync_client()
        request = client.build_request(
            action.method,
            action.url,
            headers=dict(action.headers),
            content=action.content,
            timeout=action.timeout(),
        )
        started = time.monotonic()
        token = deadline_transport.REQUEST_DEADLINE.set(action.deadline_at)
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
            deadline_transport.REQUEST_DEADLINE.reset(token)
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
            from urllib.request import getproxies

            # one socket write per small request; a custom transport turns httpx's proxy
            # environment variables off, so not when a proxy is set
            transport = None if getproxies() else async_transport.JoinedWritesTransport()
            client = httpx.AsyncClient(
                follow_redirects=False, timeout=self._default_timeout(), transport=transport
            )
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


def _done(ctx: flows.Context) -> Flow[str]:
    """A flow that only reports the profile."""
    assert ctx.profile is not None
    return ctx.profile.name
    yield  # a generator: the transports drive it like any other flow


def _single(request: Any) -> Any:
    if request.n != 1:
        raise InvalidRequestError(
            f"n={request.n}: single-output methods take n=1; use the *_batch method for several outputs.",
            param="n",
        )
    return request
