"""Agent tool helpers: artifact refs out, registry-driven defaults, no paths from models."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from abstractvision import LocalAssetStore, is_artifact_ref
from abstractvision.errors import InvalidRequestError
from abstractvision.integrations.tools import TOOL_TASKS, make_vision_tools
from fakes import png_bytes

SCHNELL = "black-forest-labs/FLUX.1-schnell"


@pytest.fixture
def cap(fake_capability: Any, tmp_path: Any) -> Any:
    return fake_capability(
        settings={"backend": "diffusers", "model": SCHNELL, "store_dir": str(tmp_path / "store")}
    )


def _tools(capability: Any, **kwargs: Any) -> dict[str, Any]:
    return {t.name: t for t in make_vision_tools(capability, **kwargs)}


def test_one_tool_per_task_with_json_safe_schemas(cap: Any) -> None:
    tools = make_vision_tools(cap, tasks=TOOL_TASKS)
    assert [t.task for t in tools] == list(TOOL_TASKS)
    for tool in tools:
        doc = tool.to_dict()
        assert json.loads(json.dumps(doc)) == doc
        assert len(tool.description) <= 200 and len(tool.when_to_use) <= 240
        assert all("default" in p for name, p in tool.parameters.items() if name not in doc["required_args"])
    assert _tools(cap)["vision_generate_image"].to_dict()["required_args"] == ["prompt"]
    assert _tools(cap, tasks=TOOL_TASKS)["vision_edit_image"].to_dict()["required_args"] == [
        "image",
        "prompt",
    ]


def test_tools_follow_the_backends_tasks(fake_capability: Any) -> None:
    from abstractvision.integrations.capability import AbstractVisionCapability
    from fakes import TextOnlyBackend

    cap = AbstractVisionCapability(
        settings={"backend": "diffusers", "model": "m"}, backend_factory=lambda s: TextOnlyBackend(), env={}
    )
    assert [t.task for t in make_vision_tools(cap)] == ["text_to_image"]


def test_registry_defaults_fill_the_schema_and_the_call(cap: Any) -> None:
    gen = _tools(cap)["vision_generate_image"]
    assert gen.parameters["steps"]["default"] == 4 and gen.parameters["width"]["default"] == 1024
    assert gen.parameters["width"]["minimum"] == 64
    ref = gen(prompt="a red bicycle", width=64, height=64)
    assert is_artifact_ref(ref)
    request = cap.created[-1].calls[-1][1]
    assert (request.steps, request.guidance_scale, request.width) == (4, 0.0, 64)
    gen(prompt="a red bicycle", steps=2, width=64, height=64)
    assert cap.created[-1].calls[-1][1].steps == 2


def test_edit_takes_an_earlier_artifact_and_keeps_its_size(cap: Any) -> None:
    tools = _tools(cap)
    first = tools["vision_generate_image"](prompt="a cat", width=64, height=64)
    assert tools["vision_edit_image"].parameters["width"]["default"] is None
    for image in (
        first["$artifact"],
        first,
        "data:image/png;base64," + base64.b64encode(png_bytes()).decode(),
    ):
        out = tools["vision_edit_image"](prompt="make it blue", image=image)
        assert is_artifact_ref(out)
        request = cap.created[-1].calls[-1][1]
        assert request.width is None and request.steps == 4 and request.strength == 0.8
    store = cap.default_store()
    assert store.get_metadata(out)["tags"]["tool"] == "vision_edit_image"


def test_tools_never_read_paths(fake_capability: Any, tmp_path: Any) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(png_bytes())
    cap = fake_capability(
        allow_local_paths=True, settings={"backend": "diffusers", "store_dir": str(tmp_path)}
    )
    edit = _tools(cap)["vision_edit_image"]
    for value in (str(path), "../secret.png", "~/x.png"):
        with pytest.raises(InvalidRequestError):
            edit(prompt="x", image=value)


def test_argument_errors(cap: Any) -> None:
    gen = _tools(cap)["vision_generate_image"]
    with pytest.raises(InvalidRequestError, match="unknown argument"):
        gen(prompt="x", num_inference_steps=3)
    with pytest.raises(InvalidRequestError, match="missing required"):
        gen(prompt="")


def test_multi_view_video_upscale_tools_return_refs(fake_capability: Any, tmp_path: Any) -> None:
    cap = fake_capability(settings={"backend": "diffusers", "model": "unlisted", "store_dir": str(tmp_path)})
    tools = _tools(cap, tasks=TOOL_TASKS)
    assert [t.task for t in make_vision_tools(cap)] == list(TOOL_TASKS)
    views = tools["vision_multi_view_image"](prompt="a chair", angles="front, back", width=64, height=64)
    assert len(views) == 2 and all(is_artifact_ref(v) for v in views)
    img = tools["vision_generate_image"](prompt="a boat", width=64, height=64)
    assert is_artifact_ref(tools["vision_upscale_image"](image=img["$artifact"], scale=2))
    assert is_artifact_ref(tools["vision_image_to_video"](image=img, prompt="sail", num_frames=3))


def test_explicit_store_and_lazy_capability(fake_capability: Any, tmp_path: Any) -> None:
    cap = fake_capability()
    store = LocalAssetStore(tmp_path / "explicit")
    tools = make_vision_tools(lambda: cap, artifact_store=store)
    assert [t.task for t in tools] == list(TOOL_TASKS)
    assert tools[0].parameters["steps"]["default"] is None
    ref = tools[0](prompt="a cat", width=64, height=64)
    assert store.load_bytes(ref).startswith(b"\x89PNG")
