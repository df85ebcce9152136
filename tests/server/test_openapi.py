"""/openapi.json documents exactly the routes the app serves, with the schemas it validates with."""

from __future__ import annotations

import re

import pytest
from server_helpers import data_url, png

from fakes import FakeBackend

pytestmark = pytest.mark.server


def _route_table():
    from starlette.routing import Route

    from abstractvision.server import ROUTES

    table = set()
    for route in ROUTES:
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
            for method in route.methods or ():
                if method != "HEAD":
                    table.add((method.lower(), path))
    return table


def test_every_route_is_documented_and_nothing_else(serve, client):
    doc = client(serve(FakeBackend())).get("/openapi.json").json()
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _route_table()
    assert doc["openapi"].startswith("3.1")
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_document_is_valid_openapi(serve, client):
    validator = pytest.importorskip("openapi_spec_validator")
    doc = client(serve(FakeBackend(), api_key="k" * 12, allowed_extra_keys=("scheduler",))).get(
        "/openapi.json"
    )
    validator.validate(doc.json())


def test_limits_in_the_document_follow_the_configuration(serve, client):
    doc = client(serve(FakeBackend(), max_n=3)).get("/openapi.json").json()
    gen = doc["components"]["schemas"]["ImageGenerationRequest"]
    assert gen["properties"]["n"]["maximum"] == 3
    assert gen["additionalProperties"] is False and "extra" not in gen["properties"]


BODIES = [
    {"task": "text_to_image", "prompt": "a cat", "n": 2, "seed": 1},
    {"task": "text_to_image", "prompt": "a cat", "size": "32x32"},
    {"task": "text_to_image", "prompt": "", "steps": 2},
    {"task": "text_to_image", "prompt": "a", "width": 0},
    {"task": "image_to_image", "prompt": "edit", "image": "IMAGE", "strength": 0.5},
    {"task": "image_to_image", "prompt": "edit", "image": "IMAGE", "strength": 0},
    {"task": "image_to_image", "prompt": "edit", "image": "/etc/passwd"},
    {"task": "image_to_image", "prompt": "edit", "image": {"$artifact": "nope"}},
    {"task": "image_upscale", "image": "IMAGE", "scale": 2},
    {"task": "image_upscale", "image": "IMAGE", "scale": 17},
    {"task": "multi_view_image", "prompt": "chair", "angles": ["front", 45]},
    {"task": "multi_view_image", "prompt": "chair", "angles": [None]},
    {"task": "text_to_video", "prompt": "waves", "num_frames": 3, "fps": 8},
    {"task": "text_to_video", "prompt": "waves", "fps": 1000},
    {"task": "image_to_video", "image": "IMAGE", "num_frames": 2},
    {"task": "image_to_video", "num_frames": 2},
    {"task": "text_to_image", "prompt": "x", "extra_field": 1},
]


@pytest.mark.parametrize("body", BODIES)
def test_published_job_schema_agrees_with_the_server(serve, client, body):
    """What jsonschema says about a body (against the published document) is what the server does."""
    jsonschema = pytest.importorskip("jsonschema")
    server = serve(FakeBackend())
    c = client(server)
    doc = c.get("/openapi.json").json()
    body = {k: (data_url(png()) if v == "IMAGE" else v) for k, v in body.items()}
    schema = {"$ref": "#/components/schemas/JobCreateRequest", "components": doc["components"]}
    valid = jsonschema.Draft202012Validator(schema).is_valid(body)
    r = c.post("/v1/jobs", json=body)
    assert (r.status_code == 202) == valid, (valid, r.text)
    if not valid:
        assert r.status_code in (400, 404), r.text


def test_size_patterns_follow_the_limits():
    from abstractvision.server.schemas.requests import Limits, int_range_pattern, size_pattern

    for hi in (1, 9, 10, 64, 999, 1000, 4096, 16384):
        pattern = re.compile(f"^{int_range_pattern(hi)}$")
        assert [n for n in range(0, 20000) if pattern.match(str(n))] == list(range(1, hi + 1))
    size = re.compile(size_pattern(Limits(max_width=512, max_height=768)))
    assert size.match("512x768") and size.match("auto") and size.match("1x1")
    assert not size.match("513x768") and not size.match("512x769") and not size.match("0512x768")
