"""Response schemas of the server (the components ``/openapi.json`` names for what it answers)."""

from __future__ import annotations

from typing import Any

from ...types import TASKS
from ..jobs import JOB_STATES
from . import requests as rq

__all__ = ["response_components"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable_int() -> dict[str, Any]:
    return {"type": ["integer", "null"]}


def response_components() -> dict[str, Any]:
    """Every response schema, by component name."""
    return {**_error_component(), **_media_components(), **_job_components(), **_artifact_components()}


def _error_component() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
    }


def _media_components() -> dict[str, Any]:
    """Images, models and videos (OpenAI's shapes)."""
    return {
        "ImagesResponse": {
            "type": "object",
            "required": ["created", "data"],
            "properties": {
                "created": {"type": "integer"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"b64_json": {"type": "string"}, "url": {"type": "string"}},
                    },
                },
                "output_format": {"type": "string"},
                "size": {"type": "string"},
            },
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "created", "owned_by"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
                "served": {"type": "boolean", "description": "True for models requests may name."},
                "description": {
                    "type": "string",
                    "description": "What the operator says about a served model (serve --demo: its outputs are noise).",
                },
                "capabilities": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ModelList": _list_of("Model"),
        "Video": {
            "type": "object",
            "required": ["id", "object", "created_at", "model", "progress", "seconds", "size", "status"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "video"},
                "created_at": {"type": "integer"},
                "completed_at": _nullable_int(),
                "expires_at": _nullable_int(),
                "model": {"type": "string"},
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "prompt": {"type": ["string", "null"]},
                "seconds": {"type": "string"},
                "size": {"type": "string"},
                "status": {"enum": list(JOB_STATES)},
                "error": {"type": ["object", "null"]},
                "remixed_from_video_id": {"type": ["string", "null"]},
            },
        },
        "VideoList": {
            **_list_of("Video"),
            "properties": {
                **_list_of("Video")["properties"],
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"]},
                "has_more": {"type": "boolean"},
            },
        },
        "Deleted": {
            "type": "object",
            "required": ["id", "object", "deleted"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string"},
                "deleted": {"type": "boolean"},
            },
        },
    }


def _job_components() -> dict[str, Any]:
    """Jobs, their progress events and the artifact refs of their results."""
    return {
        "ArtifactRef": {
            "type": "object",
            "required": ["$artifact"],
            "properties": {
                "$artifact": {"type": "string", "pattern": rq.ARTIFACT_ID_PATTERN},
                "content_type": {"type": "string"},
                "sha256": {"type": "string"},
                "size_bytes": {"type": "integer"},
                "metadata": {"type": "object"},
                "url": {"type": "string"},
            },
        },
        "ProgressEvent": {
            "type": "object",
            "required": ["task", "phase"],
            "properties": {
                "task": {"type": "string"},
                "phase": {"type": "string"},
                "step": _nullable_int(),
                "total_steps": _nullable_int(),
                "progress": {"type": ["number", "null"]},
                "message": {"type": ["string", "null"]},
                "elapsed_s": {"type": ["number", "null"]},
                "raw": {"type": "object"},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "object", "task", "model", "status", "progress", "created_at", "results"],
            "properties": {
                "id": {"type": "string", "pattern": rq.JOB_ID_PATTERN},
                "object": {"const": "job"},
                "task": {"enum": list(TASKS)},
                "model": {"type": "string"},
                "status": {"enum": list(JOB_STATES)},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "created_at": {"type": "integer"},
                "started_at": _nullable_int(),
                "completed_at": _nullable_int(),
                "expires_at": _nullable_int(),
                "cancel_requested": {"type": "boolean"},
                "params": {"type": "object"},
                "event": {"oneOf": [_ref("ProgressEvent"), {"type": "null"}]},
                "results": {"type": "array", "items": _ref("ArtifactRef")},
                "error": {"type": ["object", "null"]},
            },
        },
        "JobList": {
            **_list_of("Job"),
            "properties": {**_list_of("Job")["properties"], "has_more": {"type": "boolean"}},
        },
    }


def _artifact_components() -> dict[str, Any]:
    """Stored results and the health check."""
    return {
        "Artifact": {
            "type": "object",
            "required": ["id", "object", "url"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "artifact"},
                "content_type": {"type": ["string", "null"]},
                "size_bytes": _nullable_int(),
                "created_at": {"type": ["string", "null"]},
                "task": {"type": ["string", "null"]},
                "job": {"type": ["string", "null"]},
                "url": {"type": "string"},
                "metadata": {"type": "object"},
            },
        },
        "ArtifactList": _list_of("Artifact"),
        "Health": {
            "type": "object",
            "required": ["status", "version", "models"],
            "properties": {
                "status": {"const": "ok"},
                "version": {"type": "string"},
                "models": {"type": "array", "items": {"type": "string"}},
                "queues": {"type": "object"},
            },
        },
    }


def _list_of(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref(name)}},
    }
