"""VisionManager against a fake backend registered through the real VisionBackend contract."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest

from abstractvision import (
    BackendNotConfiguredError,
    CapabilityNotSupportedError,
    GeneratedAsset,
    GenerationCancelledError,
    InvalidRequestError,
    ProgressEvent,
    UnknownModelError,
    VisionManager,
    VisionModelCapabilitiesRegistry,
    is_artifact_ref,
)
from abstractvision._media import read_png_text
from abstractvision.errors import BackendError, ParameterConstraintError
from fakes import FakeBackend, TextOnlyBackend, png_bytes


@pytest.fixture
def vm(fake_backend):
    return VisionManager(backend=fake_backend)


# -- every task method ------------------------------------------------------------------


def test_generate_image_returns_asset_with_provenance(vm, fake_backend):
    asset = vm.generate_image("a red cube", width=24, height=16, steps=3, seed=7, guidance_scale=2.5)
    assert isinstance(asset, GeneratedAsset)
    assert asset.media_type == "image" and asset.mime_type == "image/png"
    assert asset.to_pil().size == (24, 16)
    meta = asset.metadata
    assert meta["backend"] == "fake" and meta["model"] == "fake-model" and meta["task"] == "text_to_image"
    assert meta["seed"] == 7 and asset.seed == 7
    assert meta["parameters"] == {
        "prompt": "a red cube",
        "width": 24,
        "height": 16,
        "steps": 3,
        "seed": 7,
        "guidance_scale": 2.5,
    }
    assert meta["timings"]["total_s"] >= 0 and "inference_s" in meta["timings"]
    assert read_png_text(asset.data) == {}  # embed_metadata="none" by default: no text in the file
    full = vm.generate_image("a red cube", width=24, height=16, steps=3, seed=7, embed_metadata="full")
    text = read_png_text(full.data)
    assert text["parameters"].startswith("a red cube\n")
    assert json.loads(text["abstractvision"])["parameters"]["seed"] == 7
    request = fake_backend.calls[0][1]
    assert request.n == 1 and request.seed == 7 and request.steps == 3


def test_edit_image_with_mask_and_references(vm, fake_backend):
    image, mask = png_bytes(20, 12), png_bytes(20, 12, 255, "L")
    asset = vm.edit_image("make it blue", image, mask=mask, strength=0.5, reference_images=[png_bytes(4, 4)])
    assert asset.to_pil().size == (20, 12)
    request = fake_backend.calls[-1][1]
    assert request.image == image and request.mask == mask and request.strength == 0.5
    assert len(request.reference_images) == 1
    params = asset.metadata["parameters"]
    assert params["image_input"]["width"] == 20 and params["mask_input"]["height"] == 12
    assert "image" not in params  # never bytes in metadata


def test_upscale_video_i2v_and_angles(vm):
    up = vm.upscale_image(png_bytes(8, 6), scale=2)
    assert up.to_pil().size == (16, 12) and up.metadata["task"] == "image_upscale"
    video = vm.generate_video("waves", num_frames=4, fps=8, width=8, height=8)
    assert video.media_type == "video" and video.metadata["task"] == "text_to_video"
    assert video.metadata["parameters"]["num_frames"] == 4
    i2v = vm.image_to_video(png_bytes(8, 8), "drift", num_frames=3)
    assert i2v.metadata["task"] == "image_to_video"
    views = vm.generate_angles("a chair", angles=["front", "side", 90])
    assert [v.metadata["angle"] for v in views] == ["front", "side", "side"]
    assert all(v.metadata["task"] == "multi_view_image" for v in views)


def test_list_provider_models_and_lifecycle(fake_backend):
    with VisionManager(backend=fake_backend) as vm:
        assert vm.list_provider_models(task="text_to_image") == []
        vm.preload()
        vm.unload()
        with pytest.raises(InvalidRequestError, match="Unknown task"):
            vm.list_provider_models(task="text_to_sound")
    assert fake_backend.closed


# -- store vs asset ---------------------------------------------------------------------


def test_store_returns_refs_with_metadata(fake_backend, store):
    vm = VisionManager(backend=fake_backend, store=store, embed_metadata="parameters")
    ref = vm.generate_image("a studio photo", width=16, height=16, steps=2, seed=1)
    assert is_artifact_ref(ref)
    assert ref["content_type"] == "image/png" and ref["size_bytes"] > 0
    assert ref["metadata"]["seed"] == 1
    data = store.load_bytes(ref["$artifact"])
    assert read_png_text(data)["parameters"].startswith("a studio photo\n")
    assert store.get_metadata(ref["$artifact"])["tags"] == {
        "kind": "generated_media",
        "modality": "image",
        "task": "text_to_image",
    }
    json.dumps(ref)  # JSON-safe


def test_store_can_be_set_after_construction(fake_backend, store):
    vm = VisionManager(backend=fake_backend)
    assert isinstance(vm.generate_image("x"), GeneratedAsset)
    vm.store = store
    assert is_artifact_ref(vm.generate_image("x"))


# -- input coercion ---------------------------------------------------------------------


def test_image_inputs_accept_bytes_path_pil_ref_and_data_url(fake_backend, store, tmp_path):
    from PIL import Image

    raw = png_bytes(10, 10)
    path = tmp_path / "in.png"
    path.write_bytes(raw)
    ref = store.store_bytes(raw, content_type="image/png")
    vm = VisionManager(backend=fake_backend, store=store)
    data_url = "data:image/png;base64," + base64.b64encode(raw).decode()
    for value in (raw, bytearray(raw), str(path), path, Image.open(io.BytesIO(raw)), ref, data_url):
        vm.edit_image("x", value)
        request = fake_backend.calls[-1][1]
        assert Image.open(io.BytesIO(request.image)).size == (10, 10)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not an image at all", "not a recognised image"),
        (png_bytes()[:40], "could not be decoded"),
        (b"", "empty"),
        (12345, "expected bytes, a file path"),
        ("/no/such/file.png", "no such file"),
        ({"$artifact": "0" * 64}, "no store is configured"),
        ({"url": "x"}, "artifact ref"),
    ],
)
def test_bad_image_inputs_are_typed_errors(vm, value, message):
    with pytest.raises(InvalidRequestError, match=message) as info:
        vm.edit_image("x", value)
    assert info.value.param == "image"


def test_mask_of_the_wrong_size_is_rejected(vm):
    with pytest.raises(InvalidRequestError, match="same size"):
        vm.edit_image("x", png_bytes(16, 16), mask=png_bytes(8, 8))


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": ""}, "empty"),
        ({"prompt": "   "}, "empty"),
        ({"prompt": None}, "required"),
        ({"prompt": 42}, "must be a string"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"prompt": "x" * 100_001}, "limit"),
        ({"prompt": "x", "width": 0}, "'width' must be between"),
        ({"prompt": "x", "height": -64}, "'height' must be between"),
        ({"prompt": "x", "width": 12.5}, "'width' must be an integer"),
        ({"prompt": "x", "width": True}, "'width' must be an integer"),
        ({"prompt": "x", "steps": 0}, "'steps'"),
        ({"prompt": "x", "seed": -1}, "'seed'"),
        ({"prompt": "x", "seed": "7"}, "'seed' must be an integer"),
        ({"prompt": "x", "guidance_scale": float("nan")}, "finite"),
        ({"prompt": "x", "extra": [1]}, "'extra' must be a dict"),
        ({"prompt": "x", "on_progress": 3}, "callable"),
        ({"prompt": "x", "cancel": object()}, "is_set"),
        ({"prompt": "x", "num_inference_steps": 4}, "Did you mean 'steps'"),
        ({"prompt": "x", "n": 2}, "_batch"),
    ],
)
def test_bad_parameters_are_typed_errors(vm, fake_backend, kwargs, message):
    with pytest.raises(InvalidRequestError, match=message):
        vm.generate_image(**kwargs)
    assert fake_backend.calls == []


def test_strength_range(vm):
    for bad in (0, 1.5, -0.1):
        with pytest.raises(InvalidRequestError, match="strength"):
            vm.edit_image("x", png_bytes(), strength=bad)


def test_no_backend_is_a_typed_error():
    with pytest.raises(BackendNotConfiguredError, match="backend="):
        VisionManager().generate_image("x")


# -- gating -----------------------------------------------------------------------------


def test_registry_gates_before_the_backend():
    backend = TextOnlyBackend()
    vm = VisionManager(backend=backend, model_id="stabilityai/stable-diffusion-x4-upscaler")
    # the backend could run text_to_image, but the registry says this model cannot
    with pytest.raises(CapabilityNotSupportedError, match="does not support task 'text_to_image'") as info:
        vm.generate_image("x")
    assert info.value.supported == ["image_upscale"]
    assert backend.calls == 0
    # the registry allows image_upscale; now the backend's own capability check answers
    with pytest.raises(CapabilityNotSupportedError, match="configured backend") as info:
        vm.upscale_image(png_bytes())
    assert info.value.supported == ["text_to_image"]


def test_registry_constraints_are_enforced_not_dropped(fake_backend):
    vm = VisionManager(backend=fake_backend, model_id="black-forest-labs/FLUX.1-schnell")
    with pytest.raises(ParameterConstraintError, match="above the maximum 4") as info:
        vm.generate_image("x", steps=8)
    assert info.value.param == "steps"
    with pytest.raises(ParameterConstraintError, match="not supported"):
        vm.generate_image("x", negative_prompt="blurry")
    with pytest.raises(ParameterConstraintError, match="multiple of 16"):
        vm.generate_image("x", width=1000)
    assert fake_backend.calls == []
    assert vm.generate_image("x", steps=4, width=64, height=64).metadata["model"] == "fake-model"


def test_unknown_model_fails_at_construction():
    with pytest.raises(UnknownModelError, match="Unknown vision model id"):
        VisionManager(backend=TextOnlyBackend(), model_id="no-such/model")


def test_registry_instance_is_reused(fake_backend):
    reg = VisionModelCapabilitiesRegistry()
    vm = VisionManager(backend=fake_backend, model_id="runwayml/stable-diffusion-v1-5", registry=reg)
    assert vm.registry is reg
    vm.generate_image("x", width=64, height=64)


def test_backend_capabilities_gate_mask_and_sizes():
    vm = VisionManager(backend=FakeBackend(supports_mask=False))
    with pytest.raises(CapabilityNotSupportedError, match="masked"):
        vm.edit_image("x", png_bytes(), mask=png_bytes())
    with pytest.raises(InvalidRequestError, match="exceeds the backend's maximum"):
        vm.generate_image("x", width=8192)


def test_unsupported_task_lists_what_is_supported():
    backend = TextOnlyBackend()
    with pytest.raises(CapabilityNotSupportedError) as info:
        backend.generate_video(None)  # type: ignore[arg-type]
    assert info.value.supported == ["text_to_image"]
    assert "Supported: text_to_image" in str(info.value)


def test_backend_failures_and_bad_returns_are_mapped():
    class Broken(TextOnlyBackend):
        def generate_image(self, request):
            raise RuntimeError("engine exploded")

    with pytest.raises(BackendError, match="engine exploded"):
        VisionManager(backend=Broken()).generate_image("x")

    class Wrong(TextOnlyBackend):
        def generate_image(self, request):
            return b"raw bytes"

    with pytest.raises(BackendError, match="must return GeneratedAsset"):
        VisionManager(backend=Wrong()).generate_image("x")


# -- progress and cancellation ----------------------------------------------------------


def test_progress_events_in_order(vm):
    events: list[ProgressEvent] = []
    vm.generate_image("x", steps=3, on_progress=events.append)
    assert [e.phase for e in events] == ["started", "step", "step", "step", "completed"]
    assert [e.step for e in events if e.phase == "step"] == [1, 2, 3]
    assert all(e.elapsed_s is not None and e.task == "text_to_image" for e in events)
    assert events[-1].progress == 1.0


def test_cancel_before_start_never_reaches_the_backend(vm, fake_backend):
    token = threading.Event()
    token.set()
    with pytest.raises(GenerationCancelledError):
        vm.generate_image("x", cancel=token)
    assert fake_backend.calls == []


def test_cancel_during_generation():
    backend = FakeBackend(steps_delay_s=0.02)
    vm = VisionManager(backend=backend)
    token = threading.Event()

    def on_progress(event: ProgressEvent) -> None:
        if event.step == 2:
            token.set()

    with pytest.raises(GenerationCancelledError, match="step 3"):
        vm.generate_image("x", steps=50, cancel=token, on_progress=on_progress)


# -- batches ----------------------------------------------------------------------------


def test_batch_uses_native_batching_with_planned_seeds(vm, fake_backend):
    assets = vm.generate_image_batch("x", count=4, seed=100)
    assert [a.seed for a in assets] == [100, 101, 102, 103]
    assert len(fake_backend.calls) == 1 and fake_backend.calls[0][0] == "generate_image_batch"
    assert fake_backend.calls[0][1].seeds == (100, 101, 102, 103) and fake_backend.calls[0][1].n == 4
    assert assets[2].metadata["batch"] == {"index": 2, "count": 4, "seeds": [100, 101, 102, 103]}
    # each image is reproducible alone from its seed
    single = vm.generate_image("x", seed=102)
    assert single.to_pil().tobytes() == assets[2].to_pil().tobytes()


def test_batch_explicit_and_random_seeds(vm):
    assert [a.seed for a in vm.generate_image_batch("x", seeds=[5, 9, 5])] == [5, 9, 5]
    assert [a.seed for a in vm.generate_image_batch("x", n=2, seeds=[1, 2])] == [1, 2]
    random_seeds = [a.seed for a in vm.generate_image_batch("x", count=3)]
    assert len(random_seeds) == 3 and all(isinstance(s, int) for s in random_seeds)
    with pytest.raises(InvalidRequestError, match="does not match"):
        vm.generate_image_batch("x", count=3, seeds=[1, 2])
    with pytest.raises(InvalidRequestError, match="count"):
        vm.generate_image_batch("x", count=0)
    with pytest.raises(InvalidRequestError, match="count"):
        vm.generate_image_batch("x", count=65)


def test_batch_is_chunked_to_the_backend_max_batch():
    backend = FakeBackend(max_batch=2)
    assets = VisionManager(backend=backend).generate_image_batch("x", count=5, seed=0)
    assert [a.seed for a in assets] == [0, 1, 2, 3, 4]
    assert [c[1].seeds for c in backend.calls] == [(0, 1), (2, 3), (4,)]


def test_batch_falls_back_to_one_call_per_seed():
    backend = TextOnlyBackend()
    assets = VisionManager(backend=backend).generate_image_batch("x", count=3, seed=10)
    assert [a.seed for a in assets] == [10, 11, 12] and backend.calls == 3


def test_other_batch_methods(vm, store, fake_backend):
    vm.store = store
    refs = vm.edit_image_batch("x", png_bytes(), count=2, seed=3)
    assert [r["metadata"]["seed"] for r in refs] == [3, 4]
    assert len(vm.generate_video_batch("x", count=2, num_frames=2)) == 2
    assert len(vm.image_to_video_batch(png_bytes(), "x", seeds=[1, 2])) == 2


def test_backend_hints_reach_the_capability_error():
    from abstractvision.types import VisionBackendCapabilities

    class Hinting(TextOnlyBackend):
        def get_capabilities(self):
            return VisionBackendCapabilities(
                supported_tasks=("text_to_image",), raw={"hints": {"image_upscale": "Set upscaler_model_id."}}
            )

    with pytest.raises(
        CapabilityNotSupportedError, match=r"does not support task 'image_upscale'\. Set upscaler_model_id\."
    ):
        VisionManager(backend=Hinting()).upscale_image(png_bytes())


def test_default_batch_loop_plans_distinct_seeds_when_called_directly():
    from abstractvision.types import ImageGenerationRequest

    backend = TextOnlyBackend()
    assets = backend.generate_image_batch(ImageGenerationRequest(prompt="x", n=3, seed=7))
    assert [a.seed for a in assets] == [7, 8, 9]
    unseeded = backend.generate_image_batch(ImageGenerationRequest(prompt="x", n=2))
    assert len({a.seed for a in unseeded}) == 2


def test_batch_n_is_named_in_errors_and_store_failures_are_typed(fake_backend):
    from abstractvision.errors import ArtifactStoreError

    vm = VisionManager(backend=fake_backend)
    with pytest.raises(InvalidRequestError, match="'n' must be between") as info:
        vm.generate_image_batch("x", n=0)
    assert info.value.param == "n"

    class BrokenStore:
        def store_bytes(self, content, **kwargs):
            raise OSError("disk on fire")

        def load_bytes(self, artifact_id):
            raise KeyError(artifact_id)

    with pytest.raises(ArtifactStoreError, match="disk on fire"):
        VisionManager(backend=fake_backend, store=BrokenStore()).generate_image("x")


def test_to_pil_on_non_image_bytes_is_a_typed_error():
    with pytest.raises(InvalidRequestError, match="not a decodable image"):
        GeneratedAsset("image", b"not an image", "image/png").to_pil()
