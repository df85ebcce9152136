"""The job API (every task, with progress as server-sent events), artifacts, health and the playground.

- ``POST /v1/jobs`` queues any task (JSON; images as data URLs or ``{"$artifact": id}``)
  and answers 202 with the job; ``GET /v1/jobs/{id}`` polls it (404: unknown id, 410:
  expired); ``GET /v1/jobs/{id}/events`` streams its progress; ``POST /v1/jobs/{id}/cancel``
  cancels it; ``DELETE /v1/jobs/{id}`` cancels and forgets it.
- ``GET /v1/artifacts`` lists the results this server stored; ``GET /v1/artifacts/{id}``
  serves one (the ``url`` of image responses and job results points here).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from .._fileio import extension_for_mime
from .._version import __version__
from .errors import APIError, bad_request
from .jobs import JOB_STATES
from .openai_routes import _query_int, _summary, state_of, url_base
from .params import CallSpec, decode_image_input, parse_size, read_json
from .schemas.requests import ARTIFACT_ID_PATTERN

__all__ = [
    "cancel_job",
    "create_job",
    "delete_job",
    "get_artifact",
    "get_job",
    "healthz",
    "job_events",
    "list_artifacts",
    "list_jobs",
    "openapi_json",
    "playground",
]

_ARTIFACT_ID = re.compile(ARTIFACT_ID_PATTERN)
_IMAGE_KEYS = ("image", "mask", "reference_image")
_CONTROL_KEYS = ("task", "model", "n")


async def create_job(request: Request) -> Response:
    """``POST /v1/jobs``: queue any task; 202 with the job."""
    state = state_of(request)
    raw = await read_json(request)
    task, body = state.validators.validate_job(raw)
    params: dict[str, Any] = {}
    for key, value in body.items():
        if key in _CONTROL_KEYS or value is None:
            continue
        if key in _IMAGE_KEYS:
            params[key] = await asyncio.to_thread(decode_image_input, value, key, state.opts, state.artifacts)
        elif key == "reference_images":
            params[key] = tuple(
                [
                    await asyncio.to_thread(
                        decode_image_input, item, f"reference_images[{i}]", state.opts, state.artifacts
                    )
                    for i, item in enumerate(value)
                ]
            )
        else:
            params[key] = value
    parse_size(None, params.get("width"), params.get("height"), state.opts)
    spec = CallSpec(
        task=task,
        params=params,
        model=body.get("model"),
        n=body.get("n") or 1,
        summary=_summary(params, n=body.get("n")),
    )
    job = await state.submit(spec, kind="job", url_base=url_base(request))
    return JSONResponse(job.view(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def list_jobs(request: Request) -> Response:
    """``GET /v1/jobs?status=&limit=``: newest first."""
    state = state_of(request)
    status = request.query_params.get("status")
    if status is not None and status not in JOB_STATES:
        raise bad_request(f"'status' must be one of {', '.join(JOB_STATES)}.", param="status")
    limit = _query_int(request, "limit", 50, 1, 1000)
    jobs = sorted(await state.list_jobs(), key=lambda j: (j.created_at, j.id), reverse=True)
    if status is not None:
        jobs = [j for j in jobs if j.status == status]
    return JSONResponse(
        {"object": "list", "data": [j.view() for j in jobs[:limit]], "has_more": len(jobs) > limit}
    )


async def get_job(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}``: 404 for an unknown id, 410 once a finished job expired."""
    job = await state_of(request).get_job(request.path_params["job_id"])
    return JSONResponse(job.view())


async def job_events(request: Request) -> Response:
    """``GET /v1/jobs/{job_id}/events``: progress as server-sent events (resumable with Last-Event-ID)."""
    state = state_of(request)
    job = await state.get_job(request.path_params["job_id"])
    after = 0
    for name, text in (
        ("after", request.query_params.get("after")),
        ("Last-Event-ID", request.headers.get("last-event-id")),
    ):
        if text is None:
            continue
        if not text.isdigit():
            raise bad_request(f"{name} must be a non-negative integer event id.", param="after")
        after = int(text)  # the header, sent by reconnecting clients, wins over the query
    return StreamingResponse(
        state.job_events(job, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def cancel_job(request: Request) -> Response:
    """``POST /v1/jobs/{job_id}/cancel``: 409 when the job already completed or failed."""
    state = state_of(request)
    job = await state.get_job(request.path_params["job_id"])
    if job.status in ("completed", "failed"):
        raise APIError(409, f"Job {job.id} already {job.status}; nothing to cancel.", code="job_finished")
    await state.cancel_job(job)
    return JSONResponse((await state.get_job(job.id)).view())


async def delete_job(request: Request) -> Response:
    """``DELETE /v1/jobs/{job_id}``: cancel it if needed and forget it (its artifacts stay)."""
    state = state_of(request)
    job = await state.get_job(request.path_params["job_id"])
    await state.delete_job(job)
    return JSONResponse({"id": job.id, "object": "job.deleted", "deleted": True})


# -- artifacts ------------------------------------------------------------------------


def artifact_view(meta: dict[str, Any], base: str) -> dict[str, Any]:
    aid = str(meta.get("artifact_id") or meta.get("sha256") or "")
    tags = meta.get("tags") or {}
    return {
        "id": aid,
        "object": "artifact",
        "content_type": meta.get("content_type"),
        "size_bytes": meta.get("size_bytes"),
        "created_at": meta.get("created_at"),
        "task": tags.get("task"),
        "job": tags.get("job"),
        "url": f"{base}/v1/artifacts/{aid}",
        "metadata": meta.get("metadata") or {},
    }


async def list_artifacts(request: Request) -> Response:
    """``GET /v1/artifacts?limit=&content_type=``: the results this server stored, newest first."""
    state = state_of(request)
    limit = _query_int(request, "limit", 50, 1, 1000)
    ctype = request.query_params.get("content_type")
    if ctype is not None and ctype not in ("image", "video", "image/", "video/"):
        raise bad_request("'content_type' must be 'image' or 'video'.", param="content_type")
    prefix = ctype.rstrip("/") + "/" if ctype else None
    metas = await asyncio.to_thread(state.artifacts.list, limit=limit, content_type=prefix)
    base = state.opts.public_url or url_base(request)
    return JSONResponse({"object": "list", "data": [artifact_view(m, base.rstrip("/")) for m in metas]})


async def get_artifact(request: Request) -> Response:
    """``GET /v1/artifacts/{artifact_id}``: the bytes (``?download=1`` for an attachment)."""
    state = state_of(request)
    aid = request.path_params["artifact_id"]
    if not _ARTIFACT_ID.match(aid):
        raise bad_request("An artifact id is 64 lowercase hex characters.", param="artifact_id")
    etag = f'"{aid}"'
    if request.headers.get("if-none-match") == etag and state.artifacts.owns(aid):
        return Response(status_code=304, headers={"ETag": etag})
    data, content_type = await asyncio.to_thread(state.artifacts.load, aid)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    download = request.query_params.get("download", "0")
    if download not in ("0", "1", "false", "true"):
        raise bad_request("'download' must be 1/true or 0/false.", param="download")
    if download in ("1", "true"):
        headers["Content-Disposition"] = (
            f'attachment; filename="{aid[:16]}{extension_for_mime(content_type)}"'
        )
    return Response(data, media_type=content_type, headers=headers)


# -- service --------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """``GET /healthz``: liveness plus queue depths (no secrets)."""
    state = state_of(request)
    return JSONResponse({"status": "ok", "version": __version__, **await state.health()})


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json``: the OpenAPI 3.1 document of this server (the one bodies are validated with)."""
    return JSONResponse(state_of(request).openapi)


def _playground_file(name: str) -> bytes:
    return (importlib.resources.files("abstractvision") / "playground" / name).read_bytes()


async def playground(request: Request) -> Response:
    """``GET /``: the playground page (package data, no CDN)."""
    return HTMLResponse(_playground_file("index.html"))
