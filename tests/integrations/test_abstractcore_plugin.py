"""Against the real AbstractCore package: discovery, ``llm.vision`` calls, tools, protocol surface.

AbstractCore declares a dependency on abstractvision itself; install it without its
dependencies (``pip install --no-deps abstractcore``) plus ``pydantic`` (see
``scripts/install-abstractcore.sh``). These tests are skipped when it is not installed.
"""

from __future__ import annotations

import base64
import inspect
import json
from typing import Any

import pytest

pytest.importorskip("abstractcore")

from abstractcore.capabilities import CapabilityRegistry
from abstractcore.capabilities.types import VisionCapability
from abstractcore.core.interface import AbstractCoreInterface

from abstractvision.integrations.capability import AbstractVisionCapability


class HostLLM(AbstractCoreInterface):
    """A real AbstractCore interface without a text provider: ``llm.vision`` is the real facade."""

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no text generation in these tests")

    def get_capabilities(self) -> list[str]:
        return []

    def unload_model(self, model_name: str) -> None:
        return None


def _png(size: int = 64) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (40, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _pixels(data: bytes) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.tobytes()


def _is_png(data: Any) -> bool:
    return isinstance(data, bytes) and data.startswith(b"\x89PNG")


def test_entry_point_discovered_by_capability_registry(plugin_entry_point: str, make_owner: Any) -> None:
    registry = CapabilityRegistry(
        make_owner(vision_backend="openai", vision_base_url="http://127.0.0.1:9/v1")
    )
    status = registry.status()
    assert status["group"] == "abstractcore.capabilities_plugins"
    assert {"name": "abstractvision", "value": plugin_entry_point} in status["plugins_seen"]
    assert status["plugin_errors"] == []
    vision = status["capabilities"]["vision"]
    assert vision["available"] is True and vision["selected_backend"] == "abstractvision"
    assert {b["backend_id"] for b in vision["backends"]} == {
        "abstractvision",
        "abstractvision:openai",
        "abstractvision:diffusers",
        "abstractvision:sdcpp",
    }
    json.dumps(status)
    backend = registry.get_vision()
    assert isinstance(backend, AbstractVisionCapability) and registry.vision.backend_id == "abstractvision"


def test_plugin_without_configuration_lists_and_runs_local_models(
    plugin_entry_point: str, make_owner: Any, tiny_sd: str, tmp_path: Any, monkeypatch: Any
) -> None:
    """An empty owner config: the plugin registers, lists what this machine has, runs it by name."""
    from abstractvision.errors import InvalidRequestError

    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-sd").symlink_to(tiny_sd)
    monkeypatch.setenv("ABSTRACTVISION_MODELS_DIR", str(models))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/abstractvision config file either
    registry = CapabilityRegistry(make_owner())
    assert registry.status()["plugin_errors"] == []
    vision = registry.get_vision()
    assert isinstance(vision, AbstractVisionCapability) and vision.settings.backend is None
    listed = vision.list_provider_models()
    assert json.loads(json.dumps(listed)) == listed
    (entry,) = listed
    assert (entry["id"], entry["model"], entry["provider"], entry["local"]) == (
        "tiny-sd",
        "diffusers/tiny-sd",
        "diffusers",
        True,
    )
    assert {"text_to_image", "image_to_image"} <= set(entry["tasks"])
    assert vision.list_provider_models(task="text_to_video") == []
    with pytest.raises(InvalidRequestError, match="No vision backend configured"):
        vision.t2i("a lighthouse")
    png = vision.t2i("a lighthouse", model="diffusers/tiny-sd", width=64, height=64, steps=2, seed=3)
    again = vision.t2i("a lighthouse", model="tiny-sd", width=64, height=64, steps=2, seed=3)
    assert _is_png(png) and _pixels(png) == _pixels(again)  # the same model by its plain name
    llm = HostLLM(model="host")
    assert [m["model_id"] for m in llm.capabilities.list_models("vision", task="text_to_image")] == [
        "diffusers/tiny-sd"
    ]


def test_llm_vision_over_loopback_openai_server(
    plugin_entry_point: str, openai_server: Any, tmp_path: Any
) -> None:
    llm = HostLLM(model="host", vision_backend="openai-compatible", vision_base_url=openai_server.base_url)
    png = llm.vision.t2i("a lighthouse at dusk", width=16, height=16, seed=7)
    assert _is_png(png)
    sent = openai_server.posts("/v1/images/generations")[-1]
    assert sent["prompt"] == "a lighthouse at dusk"
    assert len(llm.vision.t2i_batch("a lighthouse", count=2)) == 2

    edited = llm.vision.i2i("make it night", base64.b64encode(_png(16)).decode())
    assert _is_png(edited)
    assert openai_server.posts("/v1/images/edits")

    models = llm.vision.list_provider_models(task="text_to_image")
    assert json.loads(json.dumps(models)) == models
    assert [m["id"] for m in models] == ["loop-image-1", "loop-image-2"]
    assert {m["provider"] for m in models} == {"openai-compatible"}
    assert models[0]["model"] == "openai-compatible/loop-image-1"

    # AbstractCore's own normalisation of our payloads
    normalized = llm.capabilities.list_models("vision", task="text_to_image")
    assert [m["model_id"] for m in normalized] == [
        "openai-compatible/loop-image-1",
        "openai-compatible/loop-image-2",
    ]
    # a routed id goes back in as the provider's own id
    llm.vision.t2i("a lighthouse", model=normalized[1]["model_id"])
    assert openai_server.posts("/v1/images/generations")[-1]["model"] == "loop-image-2"
    providers = llm.capabilities.available_providers("vision")
    assert {p["provider_id"] for p in providers} >= {"openai", "diffusers", "sdcpp"}
    ops = llm.capabilities.list_operations("vision", task="text_to_image")
    assert [op["operation_id"] for op in ops] == ["t2i"]
    assert llm.vision.list_provider_adapters() == []

    records = llm.vision.list_loaded_models()
    assert [r["state"] for r in records] == ["configured"] and records[0]["loaded"] is False
    assert llm.vision.list_resident_models() == []
    json.dumps(records)


def test_llm_vision_artifact_store_path(plugin_entry_point: str, openai_server: Any, tmp_path: Any) -> None:
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(tmp_path / "assets")
    llm = HostLLM(model="host", vision_base_url=openai_server.base_url)  # base_url implies openai
    ref = llm.vision.t2i("a cat", artifact_store=store, run_id="run-1", metadata={"turn": 3})
    assert set(ref) >= {"$artifact", "content_type", "sha256", "metadata"}
    json.dumps(ref)
    assert store.get_metadata(ref)["metadata"]["turn"] == 3
    out = llm.vision.i2i("edit", ref, artifact_store=store)
    assert out["$artifact"] != ref["$artifact"] or out["content_type"] == "image/png"


@pytest.mark.diffusers
def test_llm_vision_on_tiny_diffusers_model(plugin_entry_point: str, tiny_sd: str) -> None:
    llm = HostLLM(
        model="host",
        vision_backend="diffusers",
        vision_model_id=tiny_sd,
        vision_device="cpu",
        capabilities_preferred_backends={"vision": "abstractvision:diffusers"},
    )
    assert llm.vision.backend_id == "abstractvision:diffusers"
    png = llm.vision.t2i("a cat", width=64, height=64, steps=2, seed=1)
    assert _is_png(png)
    again = llm.vision.t2i("a cat", width=64, height=64, steps=2, seed=1)
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(again)).tobytes() == Image.open(io.BytesIO(png)).tobytes()
    mask = _png(64)
    inpainted = llm.vision.i2i("a dog", png, mask=mask, steps=2, seed=2)
    assert _is_png(inpainted)

    models = llm.vision.list_provider_models(task="text_to_image")
    assert json.loads(json.dumps(models)) == models
    assert models[0]["id"] == tiny_sd and models[0]["configured"] is True

    (loaded,) = llm.vision.list_loaded_models()
    assert loaded["loaded"] is True and loaded["state"] == "loaded" and loaded["model"] == tiny_sd
    assert loaded["weights"][0]["device"] == "cpu"
    unloaded = llm.vision.unload_resident_model({"provider": "diffusers", "model": tiny_sd})
    assert unloaded["loaded"] is False and llm.vision.list_loaded_models() == []
    record = llm.vision.load_resident_model({"task": "text_to_image"})
    assert record["loaded"] is True and record["loaded_new"] is True and record["pinned"] is True
    assert [r["model"] for r in llm.vision.list_resident_models()] == [tiny_sd]
    json.dumps(llm.vision.list_loaded_models())


def test_tools_are_contributed_through_core(
    plugin_entry_point: str, openai_server: Any, monkeypatch: Any
) -> None:
    from abstractcore.tools.core import ToolDefinition

    monkeypatch.setenv("ABSTRACTVISION_BASE_URL", openai_server.base_url)
    registry = CapabilityRegistry(HostLLM(model="host"))
    tools = registry.capability_tools("vision")
    names = [t.name for t in tools]
    assert "vision_generate_image" in names and "vision_edit_image" in names
    assert all(isinstance(t, ToolDefinition) for t in tools)
    json.dumps([t.to_dict() for t in tools])
    assert registry.capability_tool_policy("vision") == {}  # hosts ask before running them
    generate = next(t for t in tools if t.name == "vision_generate_image")
    assert generate.to_dict()["required_args"] == ["prompt"]
    ref = generate.function(prompt="a red bicycle", width=16, height=16)
    assert ref["$artifact"] and ref["content_type"] == "image/png"
    edit = next(t for t in tools if t.name == "vision_edit_image")
    assert edit.function(prompt="blue", image=ref["$artifact"])["$artifact"]


# -- protocol surface ------------------------------------------------------------------------

_P = inspect.Parameter
_POSITIONAL = (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)


def _protocol_methods() -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(VisionCapability).items()
        if callable(value) and not name.startswith("_")
    }


def _call_compatible(proto: inspect.Signature, impl: inspect.Signature) -> list[str]:
    """Problems that would make a call valid for ``proto`` fail (or differ) on ``impl``."""
    problems = []
    pp = [p for p in proto.parameters.values() if p.name != "self"]
    ip = [p for p in impl.parameters.values() if p.name != "self"]
    impl_by_name = {p.name: p for p in ip}
    impl_varkw = any(p.kind is _P.VAR_KEYWORD for p in ip)
    proto_pos = [p for p in pp if p.kind in _POSITIONAL]
    impl_pos = [p for p in ip if p.kind in _POSITIONAL]
    if [p.name for p in impl_pos[: len(proto_pos)]] != [p.name for p in proto_pos]:
        problems.append(
            f"positional parameters {[p.name for p in impl_pos]} != {[p.name for p in proto_pos]}"
        )
    for p in pp:
        if p.kind is _P.VAR_KEYWORD:
            if not impl_varkw:
                problems.append("**kwargs missing")
            continue
        q = impl_by_name.get(p.name)
        if q is None:
            if not (p.kind is _P.KEYWORD_ONLY and impl_varkw):
                problems.append(f"parameter {p.name!r} missing")
            continue
        if p.kind is _P.KEYWORD_ONLY and q.kind not in (_P.KEYWORD_ONLY, _P.POSITIONAL_OR_KEYWORD):
            problems.append(f"{p.name!r} cannot be passed by keyword")
        if p.default is not _P.empty and q.default is _P.empty:
            problems.append(f"{p.name!r} is optional in the protocol but required here")
        if p.default is not _P.empty and q.default is not _P.empty and p.default != q.default:
            problems.append(f"{p.name!r} default {q.default!r} != protocol {p.default!r}")
    for q in ip:
        if (
            q.default is _P.empty
            and q.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
            and q.name not in {p.name for p in pp}
        ):
            problems.append(f"extra required parameter {q.name!r}")
    return problems


def test_every_protocol_method_exists_with_a_compatible_signature() -> None:
    methods = _protocol_methods()
    assert {
        "t2i",
        "t2i_batch",
        "i2i",
        "i2i_batch",
        "t2v",
        "i2v",
        "upscale_image",
        "list_provider_models",
    } <= set(methods)
    assert "backend_id" in VisionCapability.__annotations__
    cap = AbstractVisionCapability(
        settings={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}, env={}
    )
    assert isinstance(cap.backend_id, str)
    problems = {}
    for name, proto_fn in methods.items():
        impl_fn = getattr(cap, name, None)
        assert callable(impl_fn), f"{name} is missing"
        issues = _call_compatible(inspect.signature(proto_fn), inspect.signature(impl_fn))
        if issues:
            problems[name] = issues
    assert problems == {}


def test_every_facade_forward_exists() -> None:
    from abstractcore.capabilities.registry import _VisionFacade

    forwarded = {n for n, v in vars(_VisionFacade).items() if callable(v) and not n.startswith("_")}
    cap = AbstractVisionCapability(
        settings={"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}, env={}
    )
    assert sorted(n for n in forwarded if not callable(getattr(cap, n, None))) == []
    assert callable(cap.multi_view_image)


def test_signature_checker_catches_incompatibilities() -> None:
    def proto(self: Any, prompt: str, *, count: int = 1, **kwargs: Any) -> Any: ...

    def renamed(self: Any, text: str, *, count: int = 1, **kwargs: Any) -> Any: ...

    def no_kwargs(self: Any, prompt: str, *, count: int = 1) -> Any: ...

    def other_default(self: Any, prompt: str, *, count: int = 2, **kwargs: Any) -> Any: ...

    def extra_required(self: Any, prompt: str, size: str, *, count: int = 1, **kwargs: Any) -> Any: ...

    sig = inspect.signature
    assert _call_compatible(sig(proto), sig(proto)) == []
    for bad in (renamed, no_kwargs, other_default, extra_required):
        assert _call_compatible(sig(proto), sig(bad)), bad.__name__
