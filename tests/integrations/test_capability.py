"""AbstractVisionCapability on fake backends: outputs, stores, inputs, settings, residency."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from abstractvision import LocalAssetStore
from abstractvision.errors import CapabilityNotSupportedError, InvalidRequestError
from abstractvision.integrations.capability import AbstractVisionCapability
from abstractvision.types import ProviderModelInfo
from fakes import FakeBackend, png_bytes


class RuntimeLikeStore:
    """AbstractRuntime's ArtifactStore shape: store(...) -> object with artifact_id, load(id)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def store(
        self,
        content: bytes,
        *,
        content_type: str = "application/octet-stream",
        run_id: Any = None,
        tags: Any = None,
        artifact_id: Any = None,
        metadata: Any = None,
    ) -> dict[str, Any]:
        aid = artifact_id or f"art-{len(self.items)}"
        self.items[aid] = {
            "content": content,
            "content_type": content_type,
            "run_id": run_id,
            "tags": tags,
            "metadata": metadata,
        }
        return {"artifact_id": aid}

    def load(self, artifact_id: str) -> bytes:
        return self.items[artifact_id]["content"]


def test_t2i_returns_bytes_without_store(fake_capability: Any) -> None:
    cap = fake_capability()
    out = cap.t2i("a red bicycle", width=24, height=16, seed=3)
    assert isinstance(out, bytes) and out.startswith(b"\x89PNG")
    assert cap.created[0].calls[0][1].width == 24


def test_outputs_are_refs_with_local_store_and_forward_run_id_tags_metadata(
    fake_capability: Any, tmp_path: Any
) -> None:
    cap = fake_capability()
    store = LocalAssetStore(tmp_path / "assets")
    ref = cap.t2i(
        "a cat", artifact_store=store, run_id="run-7", tags={"team": "a"}, metadata={"origin": "test"}
    )
    json.dumps(ref)
    side = store.get_metadata(ref)
    assert side["run_id"] == "run-7"
    assert side["tags"]["team"] == "a" and side["tags"]["task"] == "text_to_image"
    assert side["metadata"]["origin"] == "test" and side["metadata"]["task"] == "text_to_image"
    assert store.load_bytes(ref).startswith(b"\x89PNG")


def test_runtime_artifact_store_goes_through_the_adapter_with_metadata(fake_capability: Any) -> None:
    cap = fake_capability()
    runtime = RuntimeLikeStore()
    ref = cap.t2i("a cat", artifact_store=runtime, run_id="r1", tags={"k": "v"}, metadata={"m": 1})
    stored = runtime.items[ref["$artifact"]]
    assert stored["run_id"] == "r1" and stored["tags"]["k"] == "v"
    assert stored["metadata"]["m"] == 1 and stored["metadata"]["backend"] == "fake"
    assert ref["metadata"]["m"] == 1
    # a ref from that store is accepted as an image input
    out = cap.i2i("make it blue", ref, artifact_store=runtime)
    assert out["$artifact"] in runtime.items


def test_batches_multi_view_video_upscale(fake_capability: Any) -> None:
    cap = fake_capability()
    images = cap.t2i_batch("a cat", count=3, seed=10)
    assert len(images) == 3 and all(isinstance(i, bytes) for i in images)
    assert cap.created[0].calls[-1][1].seeds == (10, 11, 12)
    assert len(cap.t2i_batch("a cat", seeds=[5, 9])) == 2
    assert len(cap.i2i_batch("edit", png_bytes(), count=2)) == 2
    assert len(cap.t2v_batch("waves", count=2, num_frames=3)) == 2
    assert len(cap.i2v_batch(png_bytes(), prompt="move", count=2)) == 2
    views = cap.multi_view_image("a chair", angles=["front", "back"])
    assert len(views) == 2
    assert isinstance(cap.t2v("waves", num_frames=3), bytes)
    assert isinstance(cap.i2v(png_bytes(), prompt="move"), bytes)
    big = cap.upscale_image(png_bytes(8, 8), scale=2)
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(big)).size == (16, 16)


def test_unknown_kwargs_fail_loudly(fake_capability: Any) -> None:
    cap = fake_capability()
    with pytest.raises(InvalidRequestError, match="num_inference_steps"):
        cap.t2i("x", num_inference_steps=4)


@pytest.mark.parametrize("form", ["bytes", "data_url", "base64", "base64_urlsafe_unpadded", "pil"])
def test_image_inputs_accepted(fake_capability: Any, form: str) -> None:
    from PIL import Image

    raw = png_bytes(12, 10)
    value: Any = {
        "bytes": raw,
        "data_url": "data:image/png;base64," + base64.b64encode(raw).decode(),
        "base64": base64.b64encode(raw).decode(),
        "base64_urlsafe_unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "pil": Image.new("RGB", (12, 10)),
    }[form]
    cap = fake_capability()
    cap.i2i("edit", value)
    request = cap.created[0].calls[-1][1]
    assert Image.open(__import__("io").BytesIO(request.image)).size == (12, 10)


def test_paths_refused_unless_host_allows(fake_capability: Any, tmp_path: Any, make_owner: Any) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes())
    cap = fake_capability()
    for value in (str(path), path):
        with pytest.raises(InvalidRequestError, match="path"):
            cap.i2i("edit", value)
    with pytest.raises(InvalidRequestError, match="path"):
        cap.i2i("edit", png_bytes(), mask=str(path))
    assert fake_capability(allow_local_paths=True).i2i("edit", str(path))
    owner = make_owner(vision_allow_local_paths="true")
    assert fake_capability(owner=owner).i2i("edit", path)


def test_bad_inputs(fake_capability: Any) -> None:
    cap = fake_capability()
    with pytest.raises(InvalidRequestError, match="no artifact_store"):
        cap.i2i("edit", {"$artifact": "abc"})
    with pytest.raises(InvalidRequestError):
        cap.i2i("edit", base64.b64encode(b"not an image at all, just text").decode())
    with pytest.raises(InvalidRequestError, match="artifact_store must have"):
        cap.t2i("x", artifact_store=object())


def test_settings_from_owner_config_env_and_forced_backend(make_owner: Any, tmp_path: Any) -> None:
    owner = make_owner(
        vision_backend="openai-compatible", vision_base_url="http://127.0.0.1:9/v1", vision_model_id="m"
    )
    cap = AbstractVisionCapability(owner, env={})
    assert (cap.settings.backend, cap.settings.base_url, cap.settings.model) == (
        "openai",
        "http://127.0.0.1:9/v1",
        "m",
    )
    assert cap.settings.sources["backend"] == "explicit"

    env = {"ABSTRACTVISION_BACKEND": "diffusers", "ABSTRACTVISION_MODEL": "/models/sd"}
    cap = AbstractVisionCapability(make_owner(), env=env)
    assert (cap.settings.backend, cap.settings.model) == ("diffusers", "/models/sd")
    assert cap.settings.sources["model"] == "environment"

    config = tmp_path / "vision.json"
    config.write_text(json.dumps({"backend": "sdcpp", "model": "flux-tiny", "options": {"n_threads": 2}}))
    cap = AbstractVisionCapability(make_owner(vision_config=str(config)), env={})
    assert (cap.settings.backend, cap.settings.options) == ("sdcpp", {"n_threads": 2})

    nested = make_owner(abstractvision={"backend": "diffusers", "model": "a"}, vision_model="b")
    assert AbstractVisionCapability(nested, env={}).settings.model == "b"

    forced = AbstractVisionCapability(owner, backend="diffusers", env={}, settings={"model": "x"})
    assert forced.settings.backend == "diffusers" and forced.backend_id == "abstractvision"

    unconfigured = AbstractVisionCapability(
        make_owner(), env={"ABSTRACTVISION_MODELS_DIR": str(tmp_path / "none")}
    )
    assert unconfigured.settings.backend is None  # constructing never fails for a missing configuration
    with pytest.raises(InvalidRequestError, match="No vision backend configured"):
        unconfigured.t2i("a lighthouse")
    with pytest.raises(InvalidRequestError, match="Unknown backend"):
        AbstractVisionCapability(make_owner(vision_backend="mlx-gen"), env={})


def test_registry_gating_for_known_models(fake_capability: Any) -> None:
    cap = fake_capability(settings={"backend": "diffusers", "model": "black-forest-labs/FLUX.1-schnell"})
    with pytest.raises(CapabilityNotSupportedError):
        cap.t2v("a clip")
    assert cap.task_defaults("text_to_image")["steps"] == 4
    assert fake_capability().task_defaults("text_to_image") == {}


class ResidentFake(FakeBackend):
    """Reports what it holds through ``loaded_models()``, like the Diffusers backend."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.held: list[str] = []

    def loaded_models(self) -> list[dict[str, Any]]:
        return [{"model": m, "device": "cpu"} for m in self.held]

    def preload(self) -> None:
        self.held = [self.model]

    def generate_image(self, request: Any) -> Any:
        self.held = [self.model]
        return super().generate_image(request)

    def unload(self) -> None:
        self.held = []

    def list_provider_models(self, *, task: Any = None) -> list[ProviderModelInfo]:
        return [
            ProviderModelInfo(
                id=self.model, object="model", owned_by="local", capabilities=("text_to_image",)
            )
        ]


def _resident_capability(**kwargs: Any) -> AbstractVisionCapability:
    backends: list[ResidentFake] = []

    def factory(settings: Any) -> ResidentFake:
        backends.append(ResidentFake(str(settings.model)))
        return backends[-1]

    cap = AbstractVisionCapability(
        settings={"backend": "diffusers", "model": "m-a"}, backend_factory=factory, env={}, **kwargs
    )
    cap.backends = backends  # type: ignore[attr-defined]
    return cap


def test_residency_records_follow_the_backend_state() -> None:
    cap = _resident_capability()
    assert cap.list_loaded_models() == [] and cap.list_resident_models() == []
    rec = cap.load_resident_model({"model": "m-a", "task": "text_to_image"})
    json.dumps(rec)
    assert (
        rec["loaded"] is True
        and rec["state"] == "loaded"
        and rec["pinned"] is True
        and rec["loaded_new"] is True
    )
    assert rec["load_id"] == "diffusers:m-a" and rec["weights"] == [{"model": "m-a", "device": "cpu"}]
    assert cap.load_resident_model({})["loaded_new"] is False
    # the engine drops its weights behind our back: the record follows
    cap.backends[0].held = []
    (rec,) = cap.list_loaded_models()
    assert rec["loaded"] is False and rec["state"] == "not_loaded"
    assert cap.list_resident_models() == []
    cap.t2i("x")
    assert [r["model"] for r in cap.list_resident_models(filters={"provider": "huggingface"})] == ["m-a"]
    assert cap.list_resident_models({"model": "other"}) == []
    out = cap.unload_resident_model({"load_id": "diffusers:m-a"})
    assert out["state"] == "unloaded" and out["loaded"] is False and out["unloaded"] is True
    assert cap.backends[0].held == [] and cap.backends[0].closed
    assert cap.list_loaded_models() == []
    with pytest.raises(InvalidRequestError, match="No loaded vision model"):
        cap.unload_resident_model({"model": "m-a"})


def test_unknown_state_is_reported_as_unknown(fake_capability: Any) -> None:
    cap = fake_capability()
    cap.t2i("x")
    (rec,) = cap.list_loaded_models()
    assert rec["loaded"] is None and rec["state"] == "unknown"
    assert cap.list_resident_models() == []


def test_per_call_model_opens_a_binding_and_evicts_the_unpinned_one() -> None:
    cap = _resident_capability()
    cap.load_resident_model({})  # pinned m-a
    cap.t2i("x", model="m-b")
    cap.t2i("x", model="m-c")  # evicts m-b (unpinned), keeps pinned m-a
    held = {r["model"]: r for r in cap.list_loaded_models()}
    assert set(held) == {"m-a", "m-c"}
    assert cap.backends[1].closed and not cap.backends[0].closed
    with pytest.raises(InvalidRequestError, match="Ambiguous"):
        cap.unload_resident_model({"provider": "diffusers"})
    cap.close()
    assert all(b.closed for b in cap.backends)


def test_remote_binding_is_configured_not_loaded(openai_server: Any) -> None:
    cap = AbstractVisionCapability(settings={"backend": "openai", "base_url": openai_server.base_url}, env={})
    cap.t2i("a cat")
    (rec,) = cap.list_loaded_models()
    assert rec["state"] == "configured" and rec["loaded"] is False and rec["provider"] == "openai-compatible"
    assert rec["options"]["base_url"] == openai_server.base_url
    # per-call model goes to the request, on the same HTTP client
    cap.t2i("a dog", model="loop-image-2")
    assert openai_server.posts("/v1/images/generations")[-1]["model"] == "loop-image-2"
    assert len(cap.list_loaded_models()) == 1
    cap.close()


def test_catalog_is_json_safe(fake_capability: Any) -> None:
    cap = _resident_capability()
    models = cap.list_provider_models(task="text_to_image")
    assert json.loads(json.dumps(models)) == models
    (entry,) = models
    assert entry["id"] == "m-a" and entry["provider"] == "diffusers" and entry["model"] == "diffusers/m-a"
    assert entry["configured"] is True and entry["tasks"] == ["text_to_image"]
    with pytest.raises(InvalidRequestError, match="Unknown task"):
        cap.list_provider_models(task="text_to_music")
    assert fake_capability().list_provider_adapters() == []
    providers = cap.available_providers(task="image_upscale")
    assert providers["providers"] == ["diffusers"] and providers["selected"] == "diffusers"
    json.dumps(providers)
    ops = cap.list_operations()
    assert {op["operation_id"] for op in ops} >= {"t2i", "i2i"}
    json.dumps(ops)
