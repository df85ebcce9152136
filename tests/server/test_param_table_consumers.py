"""Change one number in the parameter table: the manager, the CLI, the server and the tools all follow."""

from __future__ import annotations

from typing import Any

import pytest

from abstractvision import VisionManager, _params
from abstractvision.errors import InvalidRequestError
from fakes import FakeBackend

pytestmark = pytest.mark.server

# (row, bound key, new value, a value inside, a value outside, the CLI flag)
CHANGES = [
    ("steps", "max", 77, 77, 78, "--steps"),
    ("width", "max", 320, 320, 321, "--width"),
    ("guidance_scale", "max", 12.5, 12.5, 13.0, "--guidance-scale"),
    ("seed", "min", 5, 5, 4, "--seed"),
]


def _consumers(row: str, bound_key: str) -> dict[str, Any]:
    """The bound as each consumer sees it, each built now."""
    from abstractvision.cli.parser import build_parser
    from abstractvision.integrations.tools import make_vision_tools
    from abstractvision.server import create_app
    from abstractvision.server.options import ServerOptions
    from abstractvision.server.schemas.openapi import build_openapi

    schema_key = "maximum" if bound_key == "max" else "minimum"
    doc = build_openapi(ServerOptions())
    served = create_app(FakeBackend()).state.av.openapi  # what a running server publishes and enforces
    tools = {t.name: t for t in make_vision_tools(lambda: None)}  # no registry: the table alone
    help_text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    return {
        "job schema": doc["components"]["schemas"]["Job_text_to_image"]["properties"][row][schema_key],
        "images schema": doc["components"]["schemas"]["ImageGenerationRequest"]["properties"][row][
            schema_key
        ],
        "served schema": served["components"]["schemas"]["Job_text_to_image"]["properties"][row][schema_key],
        "tool schema": tools["vision_generate_image"].parameters[row][schema_key],
        "cli help": help_text,
    }


@pytest.mark.parametrize(("row", "bound_key", "value", "inside", "outside", "flag"), CHANGES)
def test_every_consumer_follows_one_change_in_the_table(
    monkeypatch, row, bound_key, value, inside, outside, flag
):
    from starlette.testclient import TestClient

    from abstractvision.cli.parser import build_parser
    from abstractvision.server import create_app

    before = _consumers(row, bound_key)
    assert value not in (before["job schema"], before["tool schema"])
    monkeypatch.setitem(_params.PARAMS[row], bound_key, value)
    after = _consumers(row, bound_key)
    for consumer in ("job schema", "images schema", "served schema", "tool schema"):
        assert after[consumer] == value, consumer
    assert _params.range_text(row) in after["cli help"]

    # the manager's checks
    manager = VisionManager(FakeBackend())
    manager.generate_image("x", **{row: inside})
    with pytest.raises(InvalidRequestError) as info:
        manager.generate_image("x", **{row: outside})
    assert info.value.param == row

    # the CLI's flag
    parser = build_parser()
    assert getattr(parser.parse_args(["generate", "x", flag, str(inside)]), row) == inside
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "x", flag, str(outside)])

    # the server: what it publishes is what it enforces
    with TestClient(create_app(FakeBackend(), max_output_pixels=1024 * 1024)) as client:
        ok = client.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", row: inside})
        assert ok.status_code == 202, ok.text
        refused = client.post("/v1/jobs", json={"task": "text_to_image", "prompt": "x", row: outside})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == row, refused.text
        assert refused.json()["error"]["code"] == "invalid_request_body"
