"""Request bodies validated against the served ``/openapi.json``, with a maintained validator.

:class:`BodyValidators` holds one ``jsonschema`` ``Draft202012Validator`` per request body,
each a ``$ref`` into the very document the server publishes (built once per server, at
start-up), so what a client generated from ``/openapi.json`` sends is accepted exactly when
that schema says it is valid. A failure becomes a 400 in the OpenAI error shape, with
``code: "invalid_request_body"``, whose ``param`` names the field and whose message says
what to fix; the message is written from the failing keyword and its value, never parsed
out of the validator's own text.

``POST /v1/jobs`` publishes ``JobCreateRequest``: ``oneOf`` the per-task ``Job_<task>``
schemas, told apart by the ``task`` constant. A body whose ``task`` names a task is valid for
that ``oneOf`` exactly when it is valid for ``Job_<task>`` (every other branch fails on its
``const``), so the server validates with that branch only and reports its errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ..types import TASKS
from .errors import APIError, bad_request

__all__ = ["BODIES", "SCHEMA_ERROR_CODE", "BodyValidators"]

#: ``code`` of every error a body gets for not matching the published schema
SCHEMA_ERROR_CODE = "invalid_request_body"

#: the component of /openapi.json each request body is validated with
BODIES = {
    "image_generation": "ImageGenerationRequest",
    "image_edit": "ImageEditRequest",
    "video_json": "VideoCreateRequest",
    "video_multipart": "VideoCreateMultipart",
    **{f"job_{task}": f"Job_{task}" for task in TASKS},
}


class BodyValidators:
    """Compiled validators for the request bodies of one OpenAPI document (built once)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        components = {"schemas": document["components"]["schemas"]}
        self._schemas = components["schemas"]
        self._validators = {
            body: Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components})
            for body, name in BODIES.items()
        }

    def validate(self, body: dict[str, Any], name: str) -> dict[str, Any]:
        """``body`` when it is valid for the body schema ``name``; else a 400 naming the field."""
        errors = list(self._validators[name].iter_errors(body))
        if errors:
            # the shallowest problem first (a missing or unknown field before a bad value inside one)
            raise _to_api_error(min(errors, key=lambda e: len(e.absolute_path)), self._schemas[BODIES[name]])
        return _integral_floats(body, self._schemas[BODIES[name]])

    def validate_job(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A ``POST /v1/jobs`` body: its task and the validated body."""
        task = body.get("task")
        if not isinstance(task, str) or task not in TASKS:
            raise bad_request(
                f"'task' must be one of: {', '.join(TASKS)}; got {task!r}.",
                param="task",
                code=SCHEMA_ERROR_CODE,
            )
        return task, self.validate(body, f"job_{task}")


def _integral_floats(body: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 3.0 as an integer; the manager wants an int."""
    props = schema.get("properties", {})
    for key, value in list(body.items()):
        kinds = props.get(key, {}).get("type", ())
        if isinstance(value, float) and "integer" in kinds and "number" not in kinds and value.is_integer():
            body[key] = int(value)
    return body


_KINDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _json_text(value: Any) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _to_api_error(error: Any, root: Mapping[str, Any]) -> APIError:
    """One validation error as a 400 that names the field and says what to fix."""
    path = [str(p) for p in error.absolute_path]
    field = ".".join(path)
    keyword, expected, value = error.validator, error.validator_value, error.instance
    param: Optional[str] = field or None
    what = f"'{field}'" if field else "The body"
    if keyword == "required":
        missing = [name for name in expected if name not in value]
        param = ".".join([*path, missing[0]])
        return _schema_error(f"'{param}' is required.", param)
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(k for k in value if k not in allowed)
        param = ".".join([*path, unknown[0]])
        return _schema_error(f"Unknown field '{param}'. Allowed fields: {', '.join(allowed)}.", param)
    if keyword == "anyOf" and all(set(branch) == {"required"} for branch in expected):
        names = [branch["required"][0] for branch in expected]
        param = names[0]
        return _schema_error(f"'{param}' is required (give {' or '.join(repr(n) for n in names)}).", param)
    got = _json_text(value)
    if "propertyNames" in error.schema_path:  # a key of an object (``extra``) that is not allowed
        keys = ", ".join(map(str, expected)) if keyword == "enum" else "see /openapi.json"
        return _schema_error(f"{what} does not take the key {got}; allowed keys: {keys}.", param)
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_KINDS.get(k, k) for k in kinds)
        message = f"{what} must be {wanted}, got {got}."
    elif keyword == "minimum":
        message = f"{what} is below the minimum of {expected}: got {got}."
    elif keyword == "maximum":
        message = f"{what} is above the maximum of {expected}: got {got}."
    elif keyword == "exclusiveMinimum":
        message = f"{what} must be greater than {expected}: got {got}."
    elif keyword == "exclusiveMaximum":
        message = f"{what} must be less than {expected}: got {got}."
    elif keyword == "enum":
        message = f"{what} must be one of {', '.join(_json_text(v) for v in expected)}; got {got}."
    elif keyword == "const":
        message = f"{what} must be {_json_text(expected)}, got {got}."
    elif keyword == "minLength":
        message = f"{what} is too short (at least {expected} characters)."
    elif keyword == "maxLength":
        message = f"{what} is too long: {len(value)} characters, at most {expected}."
    elif keyword == "minItems":
        message = f"{what} needs at least {expected} item(s), got {len(value)}."
    elif keyword == "maxItems":
        message = f"{what} takes at most {expected} item(s), got {len(value)}."
    elif keyword in ("minProperties", "maxProperties"):
        message = f"{what} must have exactly one of: {', '.join(error.schema.get('properties', {}))}."
    elif keyword == "pattern":
        message = f"{what} does not match the expected format: got {got}."
    else:
        message = f"{what} is not a valid value: got {got}."
    description = error.schema.get("description") or _described(root, path)
    if description and keyword not in ("type", "minimum", "maximum", "enum"):
        message += f" Expected: {description}"
    return _schema_error(message, param)


def _described(root: Mapping[str, Any], path: list[str]) -> str:
    """The description of the property at ``path`` (for keywords inside a ``$ref`` or ``items``)."""
    schema: Any = root
    for part in path:
        if not isinstance(schema, Mapping):
            return ""
        props = schema.get("properties")
        if isinstance(props, Mapping) and part in props:
            schema = props[part]
        elif "items" in schema:
            schema = schema["items"]
        else:
            return ""
    return str(schema.get("description", "")) if isinstance(schema, Mapping) else ""


def _schema_error(message: str, param: Optional[str]) -> APIError:
    return bad_request(message, param=param, code=SCHEMA_ERROR_CODE)
