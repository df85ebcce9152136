"""The OpenAI-compatible routes: images, models and the video job protocol.

``POST /v1/images/generations`` and ``/v1/images/edits`` answer synchronously (the job runs
through the same queue; a client that disconnects cancels it), or with ``stream: true`` as
OpenAI's server-sent image events (:mod:`.previews`). Videos follow OpenAI's job
protocol: ``POST /v1/videos`` answers at once with a ``video`` object to poll, and
``GET /v1/videos/{id}/content`` serves the bytes once completed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import _params
from .._fileio import extension_for_mime
from .errors import APIError, bad_request
from .openai_fields import IMAGE_FIELDS
from .params import (
    CallSpec,
    check_image_bytes,
    coerce_form,
    decode_image_input,
    file_parts,
    openai_mask,
    parse_size,
    read_form,
    read_json,
)
from .previews import completed_event, partial_event, sse
from .state import ServerState

__all__ = [
    "create_video",
    "delete_video",
    "edit_images",
    "generate_images",
    "get_model",
    "get_video",
    "get_video_content",
    "list_models",
    "list_videos",
]

_DIFFUSION_KEYS = ("negative_prompt", "seed", "steps", "guidance_scale")


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.av
    return state


def url_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _summary(params: dict[str, Any], **more: Any) -> dict[str, Any]:
    out = {k: v for k, v in params.items() if not isinstance(v, (bytes, tuple))}
    for key in ("image", "mask"):
        if isinstance(params.get(key), bytes):
            out[key] = f"<{len(params[key])} bytes>"
    if params.get("reference_images"):
        out["reference_images"] = f"<{len(params['reference_images'])} images>"
    out.update({k: v for k, v in more.items() if v is not None})
    return out


def _common_params(body: dict[str, Any], opts: Any) -> dict[str, Any]:
    width, height = parse_size(body.get("size"), body.get("width"), body.get("height"), opts)
    params: dict[str, Any] = {k: body[k] for k in _DIFFUSION_KEYS if body.get(k) is not None}
    if width is not None:
        params["width"] = width
    if height is not None:
        params["height"] = height
    if body.get("extra"):
        params["extra"] = dict(body["extra"])
    for key in ("output_format", "output_compression"):  # image routes only (the video schema has neither)
        if body.get(key) is not None:
            params[key] = body[key]
    return params


async def wait_for_job(request: Request, job: Any, *, outputs: bool = False) -> tuple[Any, list[Any]]:
    """Wait for the job (see :meth:`ServerState.wait_job`); cancel it if the client goes away first."""
    state = state_of(request)

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    waiting = asyncio.ensure_future(state.wait_job(job, outputs=outputs))
    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await gone
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiting
            await state.cancel_job(job)
    if waiting.cancelled():
        return job, []
    return waiting.result()


def job_error_response(job: Any) -> JSONResponse:
    if job.status == "cancelled":
        return JSONResponse(
            {
                "error": {
                    "message": f"Job {job.id} was cancelled.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "cancelled",
                }
            },
            status_code=409,
        )
    return JSONResponse({"error": job.error}, status_code=job.error_status or 500, headers=job.error_headers)


async def _images_response(request: Request, job: Any) -> Response:
    """The OpenAI ``ImagesResponse``: b64_json answers as soon as the outputs exist (the
    artifact store write finishes in the background); url waits for the store."""
    b64 = job.response_format != "url"
    job, assets = await wait_for_job(request, job, outputs=b64)
    if (b64 and not assets) or (not b64 and job.status != "completed"):
        return job_error_response(job)
    if b64:
        data = [{"b64_json": base64.b64encode(a.data).decode("ascii")} for a in assets]
    else:
        data = [{"url": ref["url"]} for ref in job.result_views()]
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    first = assets[0]
    if first.mime_type.startswith("image/"):
        body["output_format"] = first.mime_type.split("/", 1)[1]
        with contextlib.suppress(Exception):
            from PIL import Image

            with Image.open(io.BytesIO(first.data)) as img:  # header only
                body["size"] = f"{img.size[0]}x{img.size[1]}"
    for key in ("quality", "background"):  # what the request's level / background became
        if job.summary.get(key) in ("low", "medium", "high", "opaque", "transparent"):
            body[key] = job.summary[key]
    return JSONResponse(body, headers={"X-Job-Id": job.id})


def _stream_options(body: dict[str, Any], params: dict[str, Any]) -> bool:
    """``stream`` / ``partial_images``: previews for the engine to make; ``True`` to stream."""
    partials = body.get("partial_images")
    if body.get("stream") is not True:
        if partials is not None:
            params["ignored_parameters"] = {
                "partial_images": "'partial_images' only applies with stream=true"
            }
        return False
    if (body.get("n") or 1) != 1:
        raise bad_request("stream=true returns one image; use n=1 (or stream=false).", param="n")
    if body.get("response_format") == "url":
        raise bad_request(
            "stream=true sends the image as b64_json; drop response_format=url.", param="response_format"
        )
    if partials:
        params["partial_images"] = partials
    return True


async def _run_images(request: Request, task: str, body: dict[str, Any], params: dict[str, Any]) -> Response:
    """Queue an image task for a synchronous OpenAI route and answer with its images (or a stream)."""
    stream = _stream_options(body, params)
    spec = CallSpec(
        task=task,
        params=params,
        model=body.get("model"),
        n=body.get("n") or 1,
        response_format=body.get("response_format") or "b64_json",
        summary=_summary(params, n=body.get("n")),
        openai={k: body[k] for k in IMAGE_FIELDS if body.get(k) is not None},
    )
    job = await state_of(request).submit(spec, kind="image", url_base=url_base(request), keep_assets=True)
    if stream:
        kind = "image_edit" if task == "image_to_image" else "image_generation"
        return StreamingResponse(
            _image_events(request, job, kind),
            media_type="text/event-stream",
            headers={"X-Job-Id": job.id, "Cache-Control": "no-cache"},
        )
    return await _images_response(request, job)


async def _image_events(request: Request, job: Any, kind: str) -> AsyncIterator[str]:
    """OpenAI's image stream: ``{kind}.partial_image`` per preview, then ``{kind}.completed``
    (or an ``error`` event). A client that goes away cancels the job."""
    state = state_of(request)
    summary = dict(job.summary)
    partial = 0
    finished = False
    try:
        async for item in state.iter_job_events(job):
            if item is None:
                yield ": keepalive\n\n"
            elif item[1] == "preview":
                yield sse(f"{kind}.partial_image", partial_event(kind, item[2], partial, summary))
                partial += 1
        job, assets = await state.wait_job(job, outputs=True)
        finished = True
        if job.status == "completed" and assets:
            for asset in assets:
                yield sse(f"{kind}.completed", completed_event(kind, asset.data, asset.mime_type, summary))
        else:
            error = job.error or {"message": f"Job {job.id} was {job.status}.", "code": job.status}
            yield sse("error", {"type": "error", "error": error})
    finally:
        if not finished:  # the client went away: cancel (shielded from this task's own cancellation)
            with contextlib.suppress(Exception):
                await asyncio.shield(state.cancel_job(job))


async def generate_images(request: Request) -> Response:
    """``POST /v1/images/generations``."""
    state = state_of(request)
    body = state.validators.validate(await read_json(request), "image_generation")
    params = {"prompt": body["prompt"], **_common_params(body, state.opts)}
    return await _run_images(request, "text_to_image", body, params)


async def edit_images(request: Request) -> Response:
    """``POST /v1/images/edits`` (multipart: ``image`` or ``image[]``, optional ``mask``)."""
    state = state_of(request)
    schema = state.openapi["components"]["schemas"]["ImageEditRequest"]
    fields, files = await read_form(
        request, file_fields=("image", "image[]", "mask"), multi_files=("image[]",)
    )
    body = state.validators.validate(file_parts(coerce_form(fields, schema), files, schema), "image_edit")
    images = files.get("image", []) + files.get("image[]", [])  # the schema requires one of them
    most = _params.PARAMS["reference_images"]["max_items"]
    if len(images) > most:  # image and image[] together (the schema bounds each alone)
        raise bad_request(f"At most {most} images can be uploaded.", param="image")
    opts = state.opts
    params = {"prompt": body["prompt"], **_common_params(body, opts)}
    params["image"] = check_image_bytes(images[0], "image", opts)
    if len(images) > 1:
        params["reference_images"] = tuple(check_image_bytes(b, "image[]", opts) for b in images[1:])
    if files.get("mask"):
        params["mask"] = openai_mask(check_image_bytes(files["mask"][0], "mask", opts))
    if body.get("strength") is not None:
        params["strength"] = body["strength"]
    return await _run_images(request, "image_to_image", body, params)


# -- models ---------------------------------------------------------------------------


def served_model_entry(engine: Any, **fields: Any) -> dict[str, Any]:
    """A served model as ``/v1/models`` lists it: OpenAI's fields plus ours (``fields`` add or
    replace some: the distributed mode's ``loaded`` and ``workers``)."""
    residency = engine.residency.view() if engine.residency is not None else {}
    entry: dict[str, Any] = {
        "id": engine.name,
        "object": "model",
        "created": engine.created,
        "owned_by": engine.owned_by,
        "served": True,
        "capabilities": list(engine.tasks),
        "tasks": list(engine.tasks),
        "backend": engine.kind,
        "registry_id": engine.registry_id,
        "loaded": residency.get("loaded"),
    }
    if residency:
        entry["residency"] = residency
    if getattr(engine, "description", None):
        entry["description"] = engine.description
    return {**entry, **fields}


def catalog_entry(engine: Any, info: dict[str, Any]) -> dict[str, Any]:
    """A model of a remote backend's catalog that this server does not serve itself."""
    tasks = list(info.get("capabilities") or [])
    return {
        "id": str(info.get("id")),
        "object": "model",
        "created": int(info.get("created") or engine.created),
        "owned_by": str(info.get("owned_by") or engine.owned_by),
        "served": False,
        "capabilities": tasks,
        "tasks": tasks,
        "backend": engine.kind,
    }


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the served models first (in serving order, with their tasks and
    whether they are loaded), then what remote backends' catalogs offer besides."""
    return JSONResponse({"object": "list", "data": await state_of(request).model_entries()})


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model_id}``."""
    model_id = request.path_params["model_id"]
    for entry in await state_of(request).model_entries():
        if entry["id"] == model_id:
            return JSONResponse(entry)
    raise APIError(
        404, f"The model {model_id[:200]!r} does not exist.", code="model_not_found", param="model"
    )


# -- videos ---------------------------------------------------------------------------


def video_view(job: Any) -> dict[str, Any]:
    """A job as OpenAI's ``video`` object (``progress`` in percent)."""
    summary = job.summary
    meta: dict[str, Any] = job.results[0].get("metadata", {}) if job.results else {}
    params: dict[str, Any] = meta.get("parameters") or {}
    if not isinstance(params, dict):
        params = {}
    frames = meta.get("num_frames") or params.get("num_frames") or summary.get("num_frames")
    fps = meta.get("fps") or params.get("fps") or summary.get("fps")
    if summary.get("seconds") is not None:
        seconds = str(summary["seconds"])
    elif frames and fps:
        seconds = f"{float(frames) / float(fps):g}"
    else:
        seconds = ""
    width, height = summary.get("width"), summary.get("height")
    error = None
    if job.error:
        error = {
            "code": job.error.get("code") or "generation_failed",
            "message": job.error.get("message", ""),
        }
    elif job.status == "cancelled":
        error = {"code": "cancelled", "message": "The video job was cancelled."}
    return {
        "id": job.id,
        "object": "video",
        "created_at": int(job.created_at),
        "completed_at": None if job.completed_at is None else int(job.completed_at),
        "expires_at": None if job.expires_at is None else int(job.expires_at),
        "model": job.model,
        "progress": round(job.progress * 100),
        "prompt": summary.get("prompt"),
        "seconds": seconds,
        "size": f"{width}x{height}" if width and height else "auto",
        "status": job.status,
        "error": error,
        "remixed_from_video_id": None,
    }


async def create_video(request: Request) -> Response:
    """``POST /v1/videos`` (JSON, or multipart with an ``input_reference`` file)."""
    state = state_of(request)
    opts = state.opts
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    reference: Optional[bytes] = None
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        schema = state.openapi["components"]["schemas"]["VideoCreateMultipart"]
        fields, files = await read_form(request, file_fields=("input_reference",))
        body = state.validators.validate(
            file_parts(coerce_form(fields, schema), files, schema), "video_multipart"
        )
        if files.get("input_reference"):
            reference = check_image_bytes(files["input_reference"][0], "input_reference", opts)
    else:
        body = state.validators.validate(await read_json(request), "video_json")
        ref = body.get("input_reference")
        if ref is not None:
            reference = _json_reference(ref, state)
    params: dict[str, Any] = {**_common_params(body, opts)}
    if body.get("prompt") is not None:
        params["prompt"] = body["prompt"]
    for key in ("num_frames", "fps"):
        if body.get(key) is not None:
            params[key] = body[key]
    seconds = body.get("seconds")
    if reference is not None:
        params["image"] = reference
    spec = CallSpec(
        task="image_to_video" if reference is not None else "text_to_video",
        params=params,
        model=body.get("model"),
        summary=_summary(params, seconds=seconds),
        openai={"seconds": int(seconds)} if seconds is not None else {},
    )
    job = await state.submit(spec, kind="video", url_base=url_base(request))
    return JSONResponse(video_view(job), headers={"X-Job-Id": job.id})


def _json_reference(ref: Any, state: ServerState) -> bytes:
    if not isinstance(ref, dict) or len(ref) != 1 or not ({"image_url", "file_id"} & set(ref)):
        raise bad_request(
            '\'input_reference\' must be {"image_url": "data:image/...;base64,..."} or {"file_id": "<artifact id>"}.',
            param="input_reference",
        )
    if "image_url" in ref:
        return decode_image_input(ref["image_url"], "input_reference", state.opts, state.artifacts)
    file_id = ref["file_id"]
    if not isinstance(file_id, str):
        raise bad_request("'input_reference.file_id' must be a string.", param="input_reference")
    return decode_image_input({"$artifact": file_id}, "input_reference", state.opts, state.artifacts)


async def get_video(request: Request) -> Response:
    """``GET /v1/videos/{video_id}``."""
    job = await state_of(request).get_job(request.path_params["video_id"], kind="video")
    return JSONResponse(video_view(job))


async def get_video_content(request: Request) -> Response:
    """``GET /v1/videos/{video_id}/content``: 409 while the job is not completed."""
    state = state_of(request)
    job = await state.get_job(request.path_params["video_id"], kind="video")
    variant = request.query_params.get("variant", "video")
    if variant != "video":
        raise bad_request(
            f"variant {variant[:40]!r} is not available here; only 'video' is.", param="variant"
        )
    if job.status != "completed":
        code = {"failed": "video_failed", "cancelled": "video_cancelled"}.get(job.status, "video_not_ready")
        detail = f": {job.error.get('message')}" if job.error else ""
        raise APIError(
            409, f"Video {job.id} is {job.status}{detail}; poll GET /v1/videos/{job.id}.", code=code
        )
    ref = job.results[0]
    data, content_type = await asyncio.to_thread(state.artifacts.load, ref["$artifact"])
    filename = f"{job.id}{extension_for_mime(content_type)}"
    return Response(
        data,
        media_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-Job-Id": job.id},
    )


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"'{name}' must be an integer, got {text[:40]!r}.", param=name) from None
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be between {lo} and {hi}, got {value}.", param=name)
    return value


async def list_videos(request: Request) -> Response:
    """``GET /v1/videos?after=&limit=&order=`` (cursor page, newest first by default)."""
    state = state_of(request)
    limit = _query_int(request, "limit", 20, 1, 100)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(f"'order' must be 'asc' or 'desc', got {order[:20]!r}.", param="order")
    jobs = sorted(
        await state.list_jobs(kind="video"), key=lambda j: (j.created_at, j.id), reverse=order == "desc"
    )
    after = request.query_params.get("after")
    if after:
        ids = [j.id for j in jobs]
        if after not in ids:
            raise APIError(
                404,
                f"'after': no video {after[:80]!r} on this server.",
                param="after",
                code="video_not_found",
            )
        jobs = jobs[ids.index(after) + 1 :]
    page = jobs[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": [video_view(j) for j in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(jobs) > limit,
        }
    )


async def delete_video(request: Request) -> Response:
    """``DELETE /v1/videos/{video_id}``: cancels the job if it still runs, then forgets it."""
    state = state_of(request)
    job = await state.get_job(request.path_params["video_id"], kind="video")
    await state.delete_job(job)
    return JSONResponse({"id": job.id, "object": "video.deleted", "deleted": True})
