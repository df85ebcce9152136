"""generate_angles: angle parsing, strategy choice (native vs orchestrated), orchestration."""

from __future__ import annotations

import asyncio
import io

import pytest

from abstractvision import AsyncVisionManager, CapabilityNotSupportedError, InvalidRequestError, VisionManager
from abstractvision._angles import parse_angle
from abstractvision.backends import VisionBackend
from abstractvision.types import GeneratedAsset
from fakes import FakeBackend, TextOnlyBackend, png_bytes


class EditingBackend(VisionBackend):
    """text_to_image + image_to_image only (no native multi-view): the orchestrated path."""

    name = "editing"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def generate_image(self, request):
        self.calls.append(("generate_image", request))
        return GeneratedAsset(
            "image",
            png_bytes(request.width or 16, request.height or 16, ((request.seed or 0) % 256, 0, 0)),
            "image/png",
            {"seed": request.seed},
        )

    def edit_image(self, request):
        from PIL import Image

        self.calls.append(("edit_image", request))
        size = Image.open(io.BytesIO(request.image)).size
        shade = sum(request.prompt.encode()) % 256
        return GeneratedAsset(
            "image",
            png_bytes(*size, (shade, (request.seed or 0) % 256, 0)),
            "image/png",
            {"seed": request.seed},
        )


@pytest.mark.parametrize(
    ("value", "label", "az", "el"),
    [
        ("front", "front", 0, 0),
        ("Three-Quarter", "three_quarter", 45, 0),
        (90, "side", 90, 0),
        ("right", "right", 90, 0),
        (-90, "left", 270, 0),
        ("30,20", "az30_el20", 30, 20),
        ("az=210,el=-10", "az210_el-10", 210, -10),
        ({"azimuth": 180}, "back", 180, 0),
        ("top", "top", 0, 90),
    ],
)
def test_parse_angle(value, label, az, el):
    view = parse_angle(value)
    assert (view.label, view.azimuth, view.elevation) == (label, az, el)


@pytest.mark.parametrize("bad", ["sideways", "30,120", True, {"elevation": 3}, float("nan"), ""])
def test_bad_angles_list_what_works(bad):
    with pytest.raises(InvalidRequestError, match=r"angle|elevation|finite"):
        VisionManager(backend=EditingBackend()).generate_angles("a chair", angles=[bad])


def test_empty_or_too_many_angles():
    vm = VisionManager(backend=EditingBackend())
    with pytest.raises(InvalidRequestError, match="non-empty"):
        vm.generate_angles("a chair", angles=[])
    with pytest.raises(InvalidRequestError, match="at most 36"):
        vm.generate_angles("a chair", angles=list(range(37)))


def test_orchestrated_views_share_one_seed_and_the_reference():
    backend = EditingBackend()
    views = VisionManager(backend=backend).generate_angles("a red chair", width=24, height=16, seed=11)
    assert views.strategy == "orchestrated"
    assert [v.metadata["angle"] for v in views] == ["front", "three_quarter", "side", "back"]
    assert [v.metadata["azimuth"] for v in views] == [0, 45, 90, 180]
    assert all(v.metadata["seed"] == 11 and v.metadata["strategy"] == "orchestrated" for v in views)
    assert all(v.to_pil().size == (24, 16) for v in views)
    names = [c[0] for c in backend.calls]
    assert names == [
        "generate_image",
        "edit_image",
        "edit_image",
        "edit_image",
    ]  # front view is the reference
    reference = views[0].metadata
    assert reference["view_source"] == "reference"
    edits = [c[1] for c in backend.calls[1:]]
    assert all(e.seed == 11 and e.strength == 0.75 for e in edits)
    assert "side view" in edits[1].prompt and "back view" in edits[2].prompt


def test_orchestrated_is_deterministic_and_picks_a_recorded_seed():
    vm = VisionManager(backend=EditingBackend())
    a = vm.generate_angles("a chair", seed=5)
    b = vm.generate_angles("a chair", seed=5)
    assert [x.data for x in a] != [] and [x.to_pil().tobytes() for x in a] == [
        x.to_pil().tobytes() for x in b
    ]
    c = vm.generate_angles("a chair")
    seed = c[0].metadata["seed"]
    assert isinstance(seed, int) and all(v.metadata["seed"] == seed for v in c)


def test_reference_image_skips_generation():
    backend = EditingBackend()
    views = VisionManager(backend=backend).generate_angles(
        "a chair", reference_image=png_bytes(12, 12), angles=["front", "back"], strength=0.5
    )
    assert [c[0] for c in backend.calls] == ["edit_image", "edit_image"]
    assert all(c[1].strength == 0.5 for c in backend.calls)
    assert [v.metadata["view_source"] for v in views] == ["image_to_image", "image_to_image"]


def test_contact_sheet_and_store(store):
    vm = VisionManager(backend=EditingBackend(), store=store)
    refs = vm.generate_angles(
        "a chair", angles=["front", "side", "back"], width=8, height=8, contact_sheet=True
    )
    assert len(refs) == 3
    sheet = refs.contact_sheet
    assert sheet["metadata"]["contact_sheet"] is True and sheet["metadata"]["angles"] == [
        "front",
        "side",
        "back",
    ]
    from PIL import Image

    assert Image.open(io.BytesIO(store.load_bytes(sheet))).size == (24, 8)
    assert store.get_metadata(sheet["$artifact"])["tags"]["angle"] == "contact_sheet"
    assert store.get_metadata(refs[1]["$artifact"])["tags"]["angle"] == "side"


def test_native_backend_is_used_when_it_implements_the_task():
    backend = FakeBackend()
    views = VisionManager(backend=backend).generate_angles("a chair", angles=["front", 45])
    assert views.strategy == "native" and backend.calls[0][0] == "generate_angles"
    assert backend.calls[0][1].angles == ("front", "three_quarter")
    orchestrated = VisionManager(backend=backend).generate_angles(
        "a chair", angles=["front"], strategy="orchestrated"
    )
    assert orchestrated.strategy == "orchestrated"


def test_unsupported_combinations_say_what_works():
    with pytest.raises(CapabilityNotSupportedError, match="image_to_image") as info:
        VisionManager(backend=TextOnlyBackend()).generate_angles("a chair")
    assert info.value.supported == ["text_to_image"]
    with pytest.raises(CapabilityNotSupportedError, match="native multi-view strategy needs"):
        VisionManager(backend=EditingBackend()).generate_angles("a chair", strategy="native")
    with pytest.raises(InvalidRequestError, match="strategy must be one of"):
        VisionManager(backend=EditingBackend()).generate_angles("a chair", strategy="magic")


def test_registry_chooses_the_strategy():
    # Zero123++ is native with fixed views: a free angle is refused with the list of its views
    vm = VisionManager(backend=FakeBackend(), model_id="sudo-ai/zero123plus-v1.2")
    with pytest.raises(
        CapabilityNotSupportedError, match=r"fixed views only; front is not one of them.*azimuth 30"
    ):
        vm.generate_angles("x", reference_image=png_bytes(), angles=["front"])
    views = vm.generate_angles("x", reference_image=png_bytes(), angles=["30,20", "90,-10"])
    assert views.strategy == "native"
    # ... and a backend without native multi-view cannot run it
    with pytest.raises(CapabilityNotSupportedError, match="native multi-view strategy needs"):
        VisionManager(backend=EditingBackend(), model_id="sudo-ai/zero123plus-v1.2").generate_angles(
            "x", reference_image=png_bytes()
        )
    # SD 1.5 has t2i + i2i: orchestrated, even on a backend that also has a native path
    sd = VisionManager(backend=EditingBackend(), model_id="runwayml/stable-diffusion-v1-5")
    assert sd.generate_angles("x", angles=["front", "back"], width=64, height=64).strategy == "orchestrated"
    with pytest.raises(CapabilityNotSupportedError, match="cannot produce multiple views"):
        VisionManager(backend=EditingBackend(), model_id="dall-e-3").generate_angles("x")


def test_progress_reports_views():
    events = []
    VisionManager(backend=EditingBackend()).generate_angles(
        "x", angles=["front", "back"], on_progress=events.append
    )
    views = [e for e in events if e.phase == "view"]
    assert [(e.step, e.total_steps, e.message) for e in views] == [(1, 2, "front"), (2, 2, "back")]
    assert events[0].phase == "started" and events[-1].phase == "completed"


def test_async_orchestration_matches_sync():
    sync = VisionManager(backend=EditingBackend()).generate_angles("a chair", seed=3, contact_sheet=True)
    result = asyncio.run(
        AsyncVisionManager(backend=EditingBackend()).generate_angles("a chair", seed=3, contact_sheet=True)
    )
    assert [v.to_pil().tobytes() for v in result] == [v.to_pil().tobytes() for v in sync]
    assert result.strategy == "orchestrated" and result.contact_sheet is not None
