"""The OpenAPI 3.1 document of the server: its routes and the schemas it validates with.

Request bodies come from :mod:`.requests` (limits such as ``max_n`` are the configured
ones), responses from :mod:`.responses`. The server builds this document once at start-up,
serves it at ``/openapi.json`` and validates request bodies against it. A test checks that
every route of :data:`abstractvision.server.app.ROUTES` is documented here and nothing else.
"""

from __future__ import annotations

from typing import Any, Optional

from ..._version import __version__
from ...types import TASKS
from ..jobs import JOB_STATES
from ..options import ServerOptions
from . import requests as rq
from .responses import response_components

__all__ = ["build_openapi"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    400: "Malformed or invalid request.",
    401: "Missing or wrong API key.",
    404: "Unknown id or model.",
    409: "Not possible in the current state.",
    410: "The job finished and expired.",
    413: "Body or image too large.",
    415: "Wrong content type.",
    429: "Queue full; see Retry-After.",
}


# one server-sent event, as SSE-aware tools parse the stream
_SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"enum": ["status", "progress", "preview"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {
            "type": "string",
            "description": "JSON: a status payload, a ProgressEvent, or (when the job asked for previews) a "
            "preview: step, total_steps, index, decoder, frame, width, height, mime_type, b64_json "
            "(a JPEG of at most 384 px and 96 KiB).",
        },
        "retry": {"type": "integer"},
    },
}


# one server-sent event of a streamed image response (stream: true)
_IMAGE_STREAM_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "enum": [
                "image_generation.partial_image",
                "image_generation.completed",
                "image_edit.partial_image",
                "image_edit.completed",
                "error",
            ]
        },
        "data": {
            "type": "string",
            "description": "JSON: OpenAI's ImageGenPartialImageEvent / ImageGenCompletedEvent (or the image_edit "
            "pair): type, b64_json, partial_image_index (partials), size, quality, background, "
            "output_format, created_at, usage (completed; token counts are 0).",
        },
    },
}


def _images(description: str) -> dict[str, Any]:
    """An image route's 200: the ImagesResponse, or the event stream with ``stream: true``."""
    response = _json(_ref("ImagesResponse"), description)
    response["content"]["text/event-stream"] = {"schema": _IMAGE_STREAM_EVENT}
    return response


def _errors(*codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        response = _json(_ref("Error"), _ERRORS[code])
        if code == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
        out[str(code)] = response
    return out


def _path_param(name: str, pattern: Optional[str] = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tags: tuple[str, ...],
    body: Optional[dict[str, Any]] = None,
    params: tuple[dict[str, Any], ...] = (),
    public: bool = False,
    secured: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": list(tags),
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = list(params)
    if secured and not public:
        responses.update(_errors(401))
    if public:
        op["security"] = []
    return op


def _components(opts: ServerOptions, limits: rq.Limits) -> dict[str, Any]:
    """Every schema the document names: the request bodies (validated with), then the responses."""
    return {**_request_components(opts, limits), **response_components()}


def _request_components(opts: ServerOptions, limits: rq.Limits) -> dict[str, Any]:
    """The request bodies: what the server validates with (server/validation.py), nothing else."""
    schemas: dict[str, Any] = {
        "ImageInput": rq.image_input_component(),
        "ImageGenerationRequest": rq.image_generation_schema(opts, limits),
        "ImageEditRequest": rq.image_edit_schema(opts, limits),
        "VideoCreateRequest": rq.video_create_schema(opts, limits=limits),
        "VideoCreateMultipart": rq.video_create_schema(opts, multipart=True, limits=limits),
        "JobCreateRequest": rq.job_schema(opts),
    }
    schemas.update({f"Job_{task}": rq.job_task_schema(task, opts, limits) for task in TASKS})
    return schemas


def _service_paths() -> dict[str, Any]:
    """The playground, the health check and this document (public)."""
    return {
        "/": {
            "get": _op(
                "playground",
                "The playground page.",
                {
                    "200": {
                        "description": "HTML page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                tags=("service",),
                public=True,
            )
        },
        "/healthz": {
            "get": _op(
                "healthz",
                "Liveness and queue depths.",
                {"200": _json(_ref("Health"), "OK.")},
                tags=("service",),
                public=True,
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi",
                "This document.",
                {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
                tags=("service",),
                public=True,
            )
        },
    }


def _image_paths(s: bool) -> dict[str, Any]:
    """Models and the synchronous image routes (OpenAI)."""
    json_body = {"application/json": {"schema": _ref("ImageGenerationRequest")}}
    return {
        "/v1/models": {
            "get": _op(
                "listModels",
                "Served models, then the rest of the backend catalog.",
                {"200": _json(_ref("ModelList"), "Models.")},
                tags=("openai",),
                secured=s,
            )
        },
        "/v1/models/{model_id}": {
            "get": _op(
                "retrieveModel",
                "One model.",
                {"200": _json(_ref("Model"), "Model."), **_errors(404)},
                tags=("openai",),
                params=(_path_param("model_id"),),
                secured=s,
            )
        },
        "/v1/images/generations": {
            "post": _op(
                "createImage",
                "Text to image (synchronous; server-sent events with stream: true).",
                {"200": _images("Images, or the event stream."), **_errors(400, 404, 409, 413, 415, 429)},
                tags=("openai",),
                body=json_body,
                secured=s,
            )
        },
        "/v1/images/edits": {
            "post": _op(
                "createImageEdit",
                "Image to image / inpainting (synchronous, multipart; server-sent events with stream: true).",
                {"200": _images("Images, or the event stream."), **_errors(400, 404, 409, 413, 415, 429)},
                tags=("openai",),
                body={"multipart/form-data": {"schema": _ref("ImageEditRequest")}},
                secured=s,
            )
        },
    }


def _video_paths(s: bool) -> dict[str, Any]:
    """The video jobs (OpenAI)."""
    video_id = _path_param("video_id", rq.VIDEO_ID_PATTERN)
    return {
        "/v1/videos": {
            "post": _op(
                "createVideo",
                "Queue a video job (text to video; image to video with input_reference).",
                {"200": _json(_ref("Video"), "The queued video job."), **_errors(400, 404, 413, 415, 429)},
                tags=("openai",),
                body={
                    "application/json": {"schema": _ref("VideoCreateRequest")},
                    "multipart/form-data": {"schema": _ref("VideoCreateMultipart")},
                },
                secured=s,
            ),
            "get": _op(
                "listVideos",
                "Video jobs (cursor page).",
                {"200": _json(_ref("VideoList"), "Videos."), **_errors(400, 404)},
                tags=("openai",),
                params=(
                    _query("after", {"type": "string"}, "Last id of the previous page."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                    _query("order", {"enum": ["asc", "desc"]}),
                ),
                secured=s,
            ),
        },
        "/v1/videos/{video_id}": {
            "get": _op(
                "retrieveVideo",
                "Poll a video job.",
                {"200": _json(_ref("Video"), "Video."), **_errors(404, 410)},
                tags=("openai",),
                params=(video_id,),
                secured=s,
            ),
            "delete": _op(
                "deleteVideo",
                "Cancel if running, then forget a video job.",
                {"200": _json(_ref("Deleted"), "Deleted."), **_errors(404, 410)},
                tags=("openai",),
                params=(video_id,),
                secured=s,
            ),
        },
        "/v1/videos/{video_id}/content": {
            "get": _op(
                "downloadVideoContent",
                "The video bytes once completed (409 before).",
                {
                    "200": {
                        "description": "The video.",
                        "content": {
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **_errors(400, 404, 409, 410),
                },
                tags=("openai",),
                params=(video_id, _query("variant", {"enum": ["video"]})),
                secured=s,
            )
        },
    }


def _job_paths(s: bool) -> dict[str, Any]:
    """The job API: any task, polled or streamed."""
    job_id = _path_param("job_id", rq.JOB_ID_PATTERN)
    return {
        "/v1/jobs": {
            "post": _op(
                "createJob",
                "Queue any task; poll it or stream its events.",
                {"202": _json(_ref("Job"), "Queued."), **_errors(400, 404, 413, 415, 429)},
                tags=("jobs",),
                body={"application/json": {"schema": _ref("JobCreateRequest")}},
                secured=s,
            ),
            "get": _op(
                "listJobs",
                "Jobs, newest first.",
                {"200": _json(_ref("JobList"), "Jobs."), **_errors(400)},
                tags=("jobs",),
                params=(
                    _query("status", {"enum": list(JOB_STATES)}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ),
                secured=s,
            ),
        },
        "/v1/jobs/{job_id}": {
            "get": _op(
                "retrieveJob",
                "A job (404 unknown, 410 expired).",
                {"200": _json(_ref("Job"), "Job."), **_errors(404, 410)},
                tags=("jobs",),
                params=(job_id,),
                secured=s,
            ),
            "delete": _op(
                "deleteJob",
                "Cancel if needed and forget a job.",
                {"200": _json(_ref("Deleted"), "Deleted."), **_errors(404, 410)},
                tags=("jobs",),
                params=(job_id,),
                secured=s,
            ),
        },
        "/v1/jobs/{job_id}/events": {
            "get": _op(
                "streamJobEvents",
                "Server-sent events: `status` ({id, status, progress[, results, error]}) and `progress` "
                "(a ProgressEvent); the stream ends after the terminal status.",
                {
                    "200": {
                        "description": "Event stream.",
                        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                    },
                    **_errors(400, 404, 410),
                },
                tags=("jobs",),
                params=(
                    job_id,
                    _query("after", {"type": "integer", "minimum": 0}, "Resume after this event id."),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ),
                secured=s,
            )
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": _op(
                "cancelJob",
                "Cancel a queued or running job.",
                {"200": _json(_ref("Job"), "Job."), **_errors(404, 409, 410)},
                tags=("jobs",),
                params=(job_id,),
                secured=s,
            )
        },
    }


def _artifact_paths(s: bool) -> dict[str, Any]:
    """Results stored by this server."""
    return {
        "/v1/artifacts": {
            "get": _op(
                "listArtifacts",
                "Results stored by this server, newest first.",
                {"200": _json(_ref("ArtifactList"), "Artifacts."), **_errors(400)},
                tags=("artifacts",),
                params=(
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    _query("content_type", {"enum": ["image", "video"]}),
                ),
                secured=s,
            )
        },
        "/v1/artifacts/{artifact_id}": {
            "get": _op(
                "getArtifact",
                "The bytes of a result.",
                {
                    "200": {
                        "description": "The file.",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "304": {"description": "Not modified."},
                    **_errors(400, 404),
                },
                tags=("artifacts",),
                params=(
                    _path_param("artifact_id", rq.ARTIFACT_ID_PATTERN),
                    _query("download", {"enum": ["0", "1", "false", "true"]}, "1: as an attachment."),
                ),
                secured=s,
            )
        },
    }


def build_openapi(opts: ServerOptions, limits: Optional[rq.Limits] = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server configured with ``opts`` serving up to ``limits``."""
    limits = limits or rq.Limits()
    secured = bool(opts.api_key)
    paths: dict[str, Any] = {
        **_service_paths(),
        **_image_paths(secured),
        **_video_paths(secured),
        **_job_paths(secured),
        **_artifact_paths(secured),
    }

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "abstractvision server",
            "version": __version__,
            "description": "OpenAI-compatible image and video generation, a job API with live progress, and a playground.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": _components(opts, limits),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    if opts.api_key:
        doc["security"] = [{"bearerAuth": []}]
    return doc
