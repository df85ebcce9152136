"""Differential: generated bodies are accepted or refused exactly as the served /openapi.json says.

Thousands of request bodies, drawn from the published schemas themselves (their bounds, one
past them, enum members and strangers, wrong types, unknown and missing fields), go to the
real app with a fake engine. For each, ``jsonschema`` decides validity against the document
the server serves at ``/openapi.json``; the server must answer with its schema error
(400, ``code: invalid_request_body``) exactly when that validator refuses the body. A valid
body may still be refused later for another reason (pixel limit, unreadable image, unknown
model, a full queue): those answers carry other codes, and none may be a 500.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_helpers import png

from fakes import FakeBackend

pytestmark = pytest.mark.server

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = 1200  # per route: 3,600 bodies in all
SCHEMA_ERROR = "invalid_request_body"
_DATA_URL = "data:image/png;base64," + base64.b64encode(png()).decode()

_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def app_client() -> Any:
    from starlette.testclient import TestClient

    from abstractvision.server import create_app

    app = create_app(
        FakeBackend(), max_output_pixels=64 * 64, queue_size=2, max_n=4, allowed_extra_keys=("scheduler",)
    )
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def served(app_client: Any) -> dict[str, Any]:
    return app_client.get("/openapi.json").json()


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _numbers(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    """Each bound, one step past it, values in between, and the same as floats."""
    lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    hi = schema.get("maximum", lo + 100)
    step = 1 if integer else 0.5
    edges = [lo, hi, lo - step, hi + step, (lo + hi) // 2 if integer else (lo + hi) / 2]
    inner = st.integers(min_value=int(lo), max_value=int(hi)) if integer else st.floats(lo, hi)
    floats = [float(e) for e in edges if abs(e) < 2**53] + [lo + 0.5]
    return st.one_of(st.sampled_from(edges), inner, st.sampled_from(floats))


def _strings(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from([*schema["enum"], "bogus", ""])
    samples = ["a cat", "", "   ", "a\u0000b", "x" * 600, "\U0001f600 ok"]
    if name == "size":
        samples += ["32x32", "64x64", "auto", "0x5", "4096x4096", "4097x1", "99999x99999", "8X8"]
    if name == "seconds":
        samples += ["1", "4", "4.5", "60", "61", "0"]
    return st.one_of(st.sampled_from(samples), st.text(max_size=12))


def _value(name: str, schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one property: mostly near what its schema allows, sometimes anything."""
    schema = _resolve(schema, doc)
    if "oneOf" in schema:  # ImageInput
        return st.sampled_from(
            [
                _DATA_URL,
                "data:image/png;base64,@@",
                "/etc/passwd",
                {"$artifact": "0" * 64},
                {"$artifact": "x"},
                3,
            ]
        )
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    options: list[st.SearchStrategy[Any]] = [_JUNK]
    if "null" in kinds:
        options.append(st.none())
    if "const" in schema:
        options.append(st.just(schema["const"]))
    if "integer" in kinds:
        options += [_numbers(schema, True)] * 3
    if "number" in kinds:
        options += [_numbers(schema, False)] * 3
    if "string" in kinds:
        options += [_strings(name, schema)] * 3
    if "array" in kinds:
        item = _value(name, schema.get("items", {}), doc)
        most = schema.get("maxItems", 4)
        options += [st.lists(item, max_size=3)] * 2 + [st.lists(item, min_size=most + 1, max_size=most + 1)]
        if name == "angles":
            options.append(
                st.lists(st.sampled_from(["front", "side", 45, -30.5, " "]), min_size=1, max_size=4)
            )
    if "object" in kinds:
        if name == "input_reference":
            options.append(
                st.sampled_from(
                    [{"image_url": _DATA_URL}, {"file_id": "0" * 64}, {}, {"image_url": "x"}, {"a": 1}]
                )
            )
        else:  # extra
            options.append(st.dictionaries(st.sampled_from(["scheduler", "nope"]), _JUNK, max_size=2))
    return st.one_of(options)


def _good(name: str, schema: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the property's schema allows (the ones a careful client sends)."""
    schema = _resolve(schema, doc)
    if "oneOf" in schema:  # ImageInput
        return st.sampled_from([_DATA_URL, {"$artifact": "0" * 64}])
    if "const" in schema:
        return st.just(schema["const"])
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    options: list[st.SearchStrategy[Any]] = [st.none()] if "null" in kinds else []
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "integer" in kinds:
        options.append(st.integers(schema.get("minimum", 0), schema.get("maximum", 100)))
    elif "number" in kinds:
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        options.append(st.floats(low, schema.get("maximum", 100), exclude_min="exclusiveMinimum" in schema))
    if "string" in kinds:
        options.append(st.just({"size": "32x32", "seconds": "4"}.get(name, "a lighthouse")))
    if name == "angles":
        options.append(st.lists(st.sampled_from(["front", "side", 45]), min_size=1, max_size=3))
    elif "array" in kinds:
        options.append(st.lists(_good(name, schema.get("items", {}), doc), max_size=2))
    if name == "input_reference":
        options.append(st.just({"image_url": _DATA_URL}))
    elif "object" in kinds:
        options.append(st.just({"scheduler": "euler"}))
    return st.one_of(options)


@st.composite
def _bodies(draw: Any, component: str, doc: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve({"$ref": f"#/components/schemas/{component}"}, doc)
    if "oneOf" in schema:  # JobCreateRequest: first the task, then that task's fields
        branch = draw(st.sampled_from(schema["oneOf"]))
        schema = _resolve(branch, doc)
    props = schema["properties"]
    names = sorted(props)
    careful = draw(st.booleans())  # half the bodies come from careful clients, with a slip or two
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        if careful or draw(st.integers(0, 9)):  # required fields are usually there
            body[name] = draw(_good(name, props[name], doc))
    for name in draw(st.lists(st.sampled_from(names), max_size=5, unique=True)):
        slip = not careful or not draw(st.integers(0, 7))
        body[name] = draw(_value(name, props[name], doc) if slip else _good(name, props[name], doc))
    if careful:
        return body
    if not draw(st.integers(0, 14)):
        body[draw(st.sampled_from(["colour", "num_inference_steps", "task_id"]))] = draw(_JUNK)
    if "task" in body and not draw(st.integers(0, 19)):
        body["task"] = draw(st.sampled_from(["paint", None, 3]))
    return body


ROUTES = [
    ("/v1/images/generations", "ImageGenerationRequest"),
    ("/v1/jobs", "JobCreateRequest"),
    ("/v1/videos", "VideoCreateRequest"),
]


@pytest.mark.parametrize(("path", "component"), ROUTES)
def test_server_accepts_exactly_what_the_served_schema_accepts(app_client, served, path, component):
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": served["components"]}
    )
    seen = {"valid": 0, "invalid": 0}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_bodies(component, served))
    def check(body: dict[str, Any]) -> None:
        valid = validator.is_valid(body)
        r = app_client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (body, r.text)
        error = r.json().get("error") if r.status_code >= 400 else None
        refused = error is not None and error.get("code") == SCHEMA_ERROR
        assert refused == (not valid), (body, r.status_code, r.text)
        if refused:
            assert r.status_code == 400 and error["message"] and error["param"], r.text
        seen["valid" if valid else "invalid"] += 1

    check()
    # both sides were exercised in earnest
    assert seen["valid"] >= EXAMPLES // 10 and seen["invalid"] >= EXAMPLES // 10, seen
