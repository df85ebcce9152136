"""The application factory and the whole route list, in one place.

``create_app(backend)`` serves one backend (or a manager, or ``{model name: backend}``)
over HTTP: the OpenAI-compatible routes, the job API with server-sent events, the artifacts
this server produced, ``/healthz``, ``/openapi.json`` and the playground page at ``/``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..artifacts import LocalAssetStore
from . import job_routes as jobs_api
from . import openai_routes as openai_api
from .artifacts import ArtifactIndex
from .errors import APIError, error_from_exception
from .options import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IMAGE_PIXELS, ServerOptions
from .security import GuardMiddleware
from .state import BaseState, ServerState, engines_from_target

__all__ = ["ROUTES", "create_app"]

_ID = "{job_id}"

#: Every route of the server. ``/openapi.json`` documents exactly these (a test checks it).
ROUTES: list[Any] = [
    Route("/", jobs_api.playground, methods=["GET"]),
    Route("/healthz", jobs_api.healthz, methods=["GET"]),
    Route("/openapi.json", jobs_api.openapi_json, methods=["GET"]),
    # OpenAI-compatible
    Route("/v1/models", openai_api.list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", openai_api.get_model, methods=["GET"]),
    Route("/v1/images/generations", openai_api.generate_images, methods=["POST"]),
    Route("/v1/images/edits", openai_api.edit_images, methods=["POST"]),
    Route("/v1/videos", openai_api.create_video, methods=["POST"]),
    Route("/v1/videos", openai_api.list_videos, methods=["GET"]),
    Route("/v1/videos/{video_id}", openai_api.get_video, methods=["GET"]),
    Route("/v1/videos/{video_id}", openai_api.delete_video, methods=["DELETE"]),
    Route("/v1/videos/{video_id}/content", openai_api.get_video_content, methods=["GET"]),
    # jobs: every task, progress as server-sent events
    Route("/v1/jobs", jobs_api.create_job, methods=["POST"]),
    Route("/v1/jobs", jobs_api.list_jobs, methods=["GET"]),
    Route(f"/v1/jobs/{_ID}", jobs_api.get_job, methods=["GET"]),
    Route(f"/v1/jobs/{_ID}", jobs_api.delete_job, methods=["DELETE"]),
    Route(f"/v1/jobs/{_ID}/events", jobs_api.job_events, methods=["GET"]),
    Route(f"/v1/jobs/{_ID}/cancel", jobs_api.cancel_job, methods=["POST"]),
    # results
    Route("/v1/artifacts", jobs_api.list_artifacts, methods=["GET"]),
    Route("/v1/artifacts/{artifact_id}", jobs_api.get_artifact, methods=["GET"]),
    # playground assets (package data)
    Mount("/playground", StaticFiles(packages=[("abstractvision", "playground")]), name="playground"),
]


def create_app(
    target: Any = None,
    *,
    api_key: Optional[str] = None,
    cors_origins: Sequence[str] = (),
    workers: int = 1,
    queue_size: int = 16,
    job_ttl_s: float = 3600.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    store: Any = None,
    model_name: Optional[str] = None,
    on_shutdown: Sequence[Callable[[], Any]] = (),
    broker: Optional[str] = None,
    distributed: Optional[Mapping[str, Any]] = None,
    **options: Any,
) -> Starlette:
    """Build the ASGI app serving ``target``.

    Args:
        target: a :class:`~abstractvision.backends.VisionBackend`, a
            :class:`~abstractvision.VisionManager` / ``AsyncVisionManager`` (its registry
            gating is kept), a mapping ``{model name: backend or manager}``, or a list of
            :class:`~abstractvision.served_models.ServedModel` (backends created here, loaded
            on first use, closed at shutdown) to serve several models, each with its own queue
            and workers. The first model is the default for requests without ``model``
            that it can run.
        api_key: require ``Authorization: Bearer <api_key>`` on every API route.
        cors_origins: browser origins allowed by CORS (off when empty).
        workers: engine calls at the same time, per served model.
        queue_size: waiting jobs per served model before 429.
        job_ttl_s: how long finished jobs stay retrievable.
        max_body_bytes: request body limit (413).
        max_image_pixels: uploaded image limit in pixels (413).
        store: a :class:`~abstractvision.artifacts.MediaStore` for results; default: the
            given manager's store, else a temporary directory removed at shutdown.
        model_name: the served model id of a single backend (default: the basename of its
            model's path, or its hub id).
        on_shutdown: callables run when the app stops (after the workers).
        broker: a Redis URL: serve as an *API node* of the distributed mode (no ``target``:
            jobs are kept in Redis and run by ``abstractvision worker`` processes; ``store``
            is the store they share). See ``docs/scale-out.md``.
        distributed: options of :class:`~abstractvision.distributed.api.DistributedState`
            (``prefix``, ``heartbeat_s``, ``lease_s``, ``max_attempts``...).
        **options: any other :class:`~abstractvision.server.options.ServerOptions` field
            (``coalesce``, ``max_n``, ``allowed_extra_keys``, ``public_url``, ``max_loaded``,
            ``preload``...).
    """
    opts = ServerOptions(
        api_key=api_key,
        cors_origins=tuple(cors_origins),
        workers=workers,
        queue_size=queue_size,
        job_ttl_s=job_ttl_s,
        max_body_bytes=max_body_bytes,
        max_image_pixels=max_image_pixels,
        **options,
    )
    cleanups: list[Callable[[], Any]] = []
    state: BaseState
    if broker is not None:
        if target is not None:
            raise ValueError(
                "An API node (broker=...) runs no engine: serve the models with workers "
                "(abstractvision worker) and pass no target here."
            )
        if store is None:
            raise ValueError("An API node needs the shared store its workers write to (store=...).")
        from ..distributed.api import DistributedState

        state = DistributedState(broker, opts=opts, artifacts=ArtifactIndex(store), **(distributed or {}))
    else:
        engines, manager_store = engines_from_target(target, model_name)
        if isinstance(target, Sequence) and not isinstance(target, (str, bytes)):
            # backends built here from ServedModel settings are ours to close
            cleanups += [engine.manager.require_backend().close for engine in engines]
        if store is None:
            store = manager_store
        if store is None:
            tmp = tempfile.mkdtemp(prefix="abstractvision-server-")
            store = LocalAssetStore(tmp)
            cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
        state = ServerState(engines, opts=opts, artifacts=ArtifactIndex(store))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()
            for fn in [*on_shutdown, *cleanups]:
                with contextlib.suppress(Exception):
                    fn()

    middleware = []
    if opts.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(opts.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                expose_headers=["Retry-After", "X-Job-Id", "Location"],
            )
        )
    middleware.append(Middleware(GuardMiddleware, api_key=opts.api_key, max_body_bytes=opts.max_body_bytes))

    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={APIError: _api_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.router.redirect_slashes = False  # one spelling per route: no 307 to a slash-less twin
    app.state.av = state
    return app


def _json_error(request: Request, error: APIError) -> Response:
    state: ServerState = request.app.state.av
    return JSONResponse(error.body(state.redact), status_code=error.status, headers=error.headers or None)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _json_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = APIError(404, f"No route {request.method} {request.url.path[:200]}.", code="not_found")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request.scope.get("path", ""))
        error = APIError(
            405,
            f"Method {request.method} is not allowed on {request.url.path[:200]}; allowed: {', '.join(allowed)}.",
            code="method_not_allowed",
            headers={"Allow": ", ".join(allowed)},
        )
    else:
        error = APIError(exc.status_code, str(exc.detail), code="http_error")
    return _json_error(request, error)


def _allowed_methods(path: str) -> list[str]:
    """Every method of every route matching ``path`` (several routes can share a path)."""
    methods: set[str] = set()
    for route in ROUTES:
        if isinstance(route, Route) and route.path_regex.match(path):
            methods |= set(route.methods or ())
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _json_error(request, error_from_exception(exc))
