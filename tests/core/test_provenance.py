"""What a generated file carries (embed_metadata, output_format) and what a result says was applied.

Backends here implement the real VisionBackend contract and render real images with Pillow;
files are read back with Pillow, as any other program would read them.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from abstractvision import AsyncVisionManager, InvalidRequestError, VisionManager
from abstractvision.backends import VisionBackend
from abstractvision.errors import SizeMismatchError
from abstractvision.types import GeneratedAsset, ImageGenerationRequest, VisionBackendCapabilities
from embedded import mp4_tags, open_image, parse_infotext, user_comment, xmp_provenance
from fakes import FakeBackend, png_bytes

PROMPT = "a red cube, on a table"
NEGATIVE = "blurry, low quality"


class SamplerBackend(FakeBackend):
    """The fake engine, reporting a sampler and declaring that it honours every parameter."""

    def get_capabilities(self) -> VisionBackendCapabilities:
        from abstractvision.backends.base_backend import honour_all

        caps = super().get_capabilities()
        return VisionBackendCapabilities(
            supported_tasks=caps.supported_tasks,
            supports_mask=True,
            supports_native_batch=True,
            honoured_parameters=honour_all(caps.supported_tasks or ()),
        )

    def _image(self, task: str, request: Any, seed: Any, w: Any = None, h: Any = None) -> GeneratedAsset:
        asset = super()._image(task, request, seed, w, h)
        return GeneratedAsset(
            "image", asset.data, "image/png", {**asset.metadata, "parameters": {"sampler": "Euler a"}}
        )


def _generate(vm: Any, **kw: Any) -> Any:
    args = {
        "negative_prompt": NEGATIVE,
        "width": 24,
        "height": 16,
        "steps": 3,
        "seed": 7,
        "guidance_scale": 2.5,
    }
    args.update(kw)
    return vm.generate_image(PROMPT, **args)


# -- embed_metadata ---------------------------------------------------------------------


def test_default_policy_writes_no_text_at_all():
    asset = _generate(VisionManager(backend=SamplerBackend()))
    img = open_image(asset.data)
    assert img.format == "PNG" and img.text == {} and "exif" not in img.info
    assert asset.metadata["embedded_metadata"] == {"policy": "none"}
    # the returned metadata is complete whatever the file carries
    assert asset.metadata["parameters"]["prompt"] == PROMPT and asset.metadata["seed"] == 7


def test_parameters_chunk_read_back_with_pillow_has_every_field():
    vm = VisionManager(backend=SamplerBackend(), embed_metadata="parameters")
    asset = _generate(vm)
    img = open_image(asset.data)
    assert set(img.text) == {"parameters"}  # only the A1111-style chunk, no JSON
    prompt, negative, fields = parse_infotext(img.text["parameters"])
    assert prompt == PROMPT and negative == NEGATIVE
    assert fields == {
        "Steps": "3",
        "Sampler": "Euler a",
        "CFG scale": "2.5",
        "Seed": "7",
        "Size": "24x16",
        "Model": "fake-model",
    }
    assert img.text["parameters"].split("\n")[-1] == (
        "Steps: 3, Sampler: Euler a, CFG scale: 2.5, Seed: 7, Size: 24x16, Model: fake-model"
    )


def test_full_adds_json_provenance_without_volatile_facts():
    asset = _generate(VisionManager(backend=SamplerBackend()), embed_metadata="full")
    img = open_image(asset.data)
    assert set(img.text) == {"parameters", "abstractvision"}
    embedded = json.loads(img.text["abstractvision"])
    assert embedded["parameters"] == asset.metadata["parameters"]
    assert embedded["seed"] == 7 and embedded["seed_source"] == "requested"
    assert embedded["backend"] == "fake" and embedded["task"] == "text_to_image"
    assert embedded["software"].startswith("abstractvision ")
    for volatile in ("created_at", "timings", "embedded_metadata"):
        assert volatile not in embedded
    # ...while the returned metadata keeps them
    assert "created_at" in asset.metadata and "total_s" in asset.metadata["timings"]


@pytest.mark.parametrize("policy", ["none", "parameters", "full"])
@pytest.mark.parametrize("fmt", [None, "jpeg", "webp"])
def test_same_request_and_seed_give_the_same_file_bytes(policy, fmt):
    vm = VisionManager(backend=SamplerBackend(), embed_metadata=policy)
    first = _generate(vm, output_format=fmt)
    second = _generate(vm, output_format=fmt)
    assert first.metadata["timings"] is not second.metadata["timings"]
    assert first.data == second.data
    assert _generate(vm, output_format=fmt, seed=8).data != first.data


def test_store_sidecar_keeps_the_volatile_facts(store):
    vm = VisionManager(backend=SamplerBackend(), store=store, embed_metadata="full")
    first = _generate(vm)
    second = _generate(vm)
    assert first["$artifact"] == second["$artifact"]  # identical bytes: one blob in the store
    sidecar = store.get_metadata(first["$artifact"])["metadata"]
    assert "created_at" in sidecar and "total_s" in sidecar["timings"]
    assert "created_at" not in json.loads(
        open_image(store.load_bytes(first["$artifact"])).text["abstractvision"]
    )


def test_policy_replaces_text_the_backend_put_in_its_file():
    class ChattyBackend(VisionBackend):
        """Returns a PNG that already carries text (as a remote server's PNG often does)."""

        def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
            from PIL import Image
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text("parameters", "secret prompt\nSteps: 20")
            info.add_text("Comment", "made on host-42")
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG", pnginfo=info)
            return GeneratedAsset("image", buf.getvalue(), "image/png", {"seed": request.seed})

    vm = VisionManager(backend=ChattyBackend())
    assert open_image(vm.generate_image("x").data).text == {}
    text = open_image(vm.generate_image("mine", embed_metadata="parameters").data).text
    assert set(text) == {"parameters"} and text["parameters"].startswith("mine\n")


# -- output_format / output_compression --------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "pil", "mime"), [("jpeg", "JPEG", "image/jpeg"), ("webp", "WEBP", "image/webp")]
)
def test_jpeg_and_webp_decode_as_requested_and_carry_the_chosen_metadata(fmt, pil, mime):
    vm = VisionManager(backend=SamplerBackend())
    none = _generate(vm, output_format=fmt)
    img = open_image(none.data)
    assert none.mime_type == mime and img.format == pil and img.size == (24, 16)
    assert user_comment(img) is None and "xmp" not in img.info
    assert none.metadata["encoding"] == {"format": fmt, "compression": 100, "converted_from": "image/png"}

    params = _generate(vm, output_format=fmt, embed_metadata="parameters")
    img = open_image(params.data)
    prompt, negative, fields = parse_infotext(user_comment(img) or "")
    assert (prompt, negative, fields["Seed"], fields["Size"]) == (PROMPT, NEGATIVE, "7", "24x16")
    assert "xmp" not in img.info

    full = _generate(vm, output_format=fmt, embed_metadata="full")
    img = open_image(full.data)
    assert user_comment(img) == user_comment(open_image(params.data))
    embedded = xmp_provenance(img)
    assert embedded["seed"] == 7 and embedded["encoding"]["format"] == fmt and "created_at" not in embedded


class NoiseBackend(VisionBackend):
    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        from PIL import Image

        noise = Image.effect_noise((64, 64), 80).convert("RGB")
        buf = io.BytesIO()
        noise.save(buf, format="PNG")
        return GeneratedAsset("image", buf.getvalue(), "image/png", {"seed": request.seed})


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_output_compression_is_the_encoder_quality(fmt):
    vm = VisionManager(backend=NoiseBackend())
    sizes = {}
    for quality in (10, 95):
        asset = vm.generate_image("noise", output_format=fmt, output_compression=quality)
        assert asset.metadata["encoding"]["compression"] == quality
        sizes[quality] = len(asset.data)
    assert sizes[10] < sizes[95] / 2
    assert vm.generate_image("x", output_format="jpg").mime_type == "image/jpeg"  # "jpg" is accepted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_format": "gif"}, "'output_format' must be one of"),
        ({"output_compression": 80}, "applies to JPEG and WebP"),
        ({"output_format": "png", "output_compression": 80}, "applies to JPEG and WebP"),
        ({"output_format": "webp", "output_compression": 101}, "between 0 and 100"),
        ({"embed_metadata": "all"}, "'embed_metadata' must be one of"),
        ({"on_size_mismatch": "warn"}, "'on_size_mismatch' must be one of"),
    ],
)
def test_output_options_are_validated_before_the_backend_runs(kwargs, match):
    backend = FakeBackend()
    with pytest.raises(InvalidRequestError, match=match):
        VisionManager(backend=backend).generate_image("x", **kwargs)
    assert backend.calls == []
    with pytest.raises(InvalidRequestError, match="embed_metadata"):
        VisionManager(backend=backend, embed_metadata="everything")


def test_video_tasks_take_the_policy_but_no_image_format():
    vm = VisionManager(backend=FakeBackend())
    with pytest.raises(InvalidRequestError, match="Unknown parameter 'output_format'"):
        vm.generate_video("waves", output_format="png")
    video = vm.generate_video("waves", num_frames=3, embed_metadata="full")
    # a GIF carries no embedded metadata here: the result says so instead of pretending
    assert video.metadata["embedded_metadata"]["omitted"]


# -- honest metadata: ignored parameters, seeds, sizes --------------------------------------


class NativeSizeBackend(VisionBackend):
    """An engine that renders 32x32 whatever is asked, takes no seed and no steps (declared)."""

    name = "native-size"

    def get_capabilities(self) -> VisionBackendCapabilities:
        return VisionBackendCapabilities(
            supported_tasks=("text_to_image",),
            honoured_parameters={"text_to_image": ("negative_prompt", "width", "height", "guidance_scale")},
            ignored_reasons={"seed": "this engine draws its own noise"},
        )

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return GeneratedAsset("image", png_bytes(32, 32), "image/png", {"seed": request.seed})


def test_declared_ignored_parameters_are_reported_never_claimed():
    asset = VisionManager(backend=NativeSizeBackend()).generate_image(
        "x", width=32, height=32, steps=9, seed=7, embed_metadata="parameters"
    )
    meta = asset.metadata
    assert meta["ignored_parameters"] == {
        "seed": "this engine draws its own noise",
        "steps": "the native-size backend does not pass 'steps' on to its engine for text_to_image",
    }
    assert meta["seed"] is None and meta["seed_source"] == "unknown" and asset.seed is None
    assert "seed" not in meta["parameters"] and "steps" not in meta["parameters"]
    _, _, fields = parse_infotext(open_image(asset.data).text["parameters"])
    assert "Seed" not in fields and "Steps" not in fields and fields["Size"] == "32x32"
    # the seeds a batch plans are not claimed either
    batch = VisionManager(backend=NativeSizeBackend()).generate_image_batch("x", count=2, seed=3)
    assert [(a.seed, a.metadata["seed_source"]) for a in batch] == [(None, "unknown")] * 2
    assert all("seed" in a.metadata["ignored_parameters"] for a in batch)


def test_a_callers_ignored_parameters_join_the_backends_report():
    """A surface built on the manager (the server's OpenAI fields) says what it did not apply."""
    why = {"style": "no style knob", "steps": "caller's reason"}
    asset = VisionManager(backend=NativeSizeBackend()).generate_image(
        "x", steps=9, ignored_parameters=why, embed_metadata="full"
    )
    ignored = asset.metadata["ignored_parameters"]
    assert ignored["style"] == "no style knob"
    assert ignored["steps"].startswith("the native-size backend")  # the backend's own report wins
    embedded = json.loads(open_image(asset.data).text["abstractvision"])
    assert embedded["ignored_parameters"] == ignored  # the file says the same
    video = asyncio.run(AsyncVisionManager(backend=FakeBackend()).generate_video("x", ignored_parameters=why))
    assert video.metadata["ignored_parameters"] == why
    with pytest.raises(InvalidRequestError, match="dict\\[str, str\\]"):
        VisionManager(backend=FakeBackend()).generate_image("x", ignored_parameters={"style": 1})


def test_size_change_is_recorded_and_can_be_refused(store):
    vm = VisionManager(backend=NativeSizeBackend(), store=store)
    ref = vm.generate_image("x", width=64, height=48)
    meta = ref["metadata"]
    assert meta["size_adjusted"] == {
        "requested": {"width": 64, "height": 48},
        "returned": {"width": 32, "height": 32},
    }
    assert (meta["parameters"]["width"], meta["parameters"]["height"]) == (32, 32)  # what was applied
    assert "size_adjusted" not in vm.generate_image("x", width=32, height=32)["metadata"]

    strict = VisionManager(backend=NativeSizeBackend(), store=store, on_size_mismatch="error")
    before = len(store.list())
    with pytest.raises(SizeMismatchError, match="returned 32x32 for a 64x48") as caught:
        strict.generate_image("x", width=64, height=48, seed=3)
    assert caught.value.requested == {"width": 64, "height": 48}
    assert len(store.list()) == before  # nothing kept
    with pytest.raises(SizeMismatchError):
        vm.generate_image("x", width=64, on_size_mismatch="error")  # per call


class ReportingBackend(VisionBackend):
    """Reports, per call, what its engine did (as the HTTP backend does against a remote)."""

    name = "reporting"

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def generate_image(self, request: ImageGenerationRequest) -> GeneratedAsset:
        return GeneratedAsset("image", png_bytes(8, 8), "image/png", dict(self.report))


@pytest.mark.parametrize(
    ("report", "seed", "source", "ignored"),
    [
        # the engine echoed the seed it used
        ({"seed": 1234, "seed_source": "engine"}, 1234, "engine", {}),
        # an older spelling of the same thing
        ({"seed": 1234, "seed_source": "provider"}, 1234, "engine", {}),
        # the backend passed the requested seed on
        ({"seed": 7}, 7, "requested", {}),
        # the backend says the remote dropped it
        (
            {"seed": 7, "ignored_parameters": {"seed": "the server ignores seed"}},
            None,
            "unknown",
            {"seed": "the server ignores seed"},
        ),
        # a bare list (older backends) is accepted; the reason says who reported it
        (
            {"ignored_parameters": ["style"]},
            None,
            "unknown",
            {"style": "reported as ignored by the reporting backend"},
        ),
        # a backend that says nothing about seeds: nothing is claimed
        ({}, None, "unknown", {}),
        # a backend that says it knows no seed (it could not pass one on)
        ({"seed": None}, None, "unknown", {}),
    ],
)
def test_seed_source_says_what_is_known(report, seed, source, ignored):
    asset = VisionManager(backend=ReportingBackend(report)).generate_image("x", seed=7)
    assert (asset.metadata["seed"], asset.metadata["seed_source"]) == (seed, source)
    assert asset.metadata.get("ignored_parameters", {}) == ignored
    assert ("ignored_parameters" in asset.metadata) == bool(ignored)  # absent when nothing is ignored


def test_generated_seeds_are_marked_generated():
    vm = VisionManager(backend=SamplerBackend())
    batch = vm.generate_image_batch("x", count=2)
    assert [a.metadata["seed_source"] for a in batch] == ["generated", "generated"]
    assert [a.metadata["seed_source"] for a in vm.generate_image_batch("x", count=2, seed=5)] == [
        "requested",
        "requested",
    ]


def test_async_manager_finalizes_the_same_way():
    async def run() -> list[Any]:
        vm = AsyncVisionManager(backend=NativeSizeBackend(), embed_metadata="full")
        return [await vm.generate_image("x", width=64, height=64, seed=1) for _ in range(2)]

    first, second = asyncio.run(run())
    sync = VisionManager(backend=NativeSizeBackend(), embed_metadata="full").generate_image(
        "x", width=64, height=64, seed=1
    )
    assert first.data == second.data == sync.data
    assert first.metadata["size_adjusted"] == sync.metadata["size_adjusted"]
    assert first.metadata["ignored_parameters"] == sync.metadata["ignored_parameters"] != {}


# -- video (MP4) -------------------------------------------------------------------------


class Mp4Backend(VisionBackend):
    """Encodes a few frames to MP4 with the library's own encoder (PyAV), as the Diffusers backend does."""

    def generate_video(self, request: Any) -> GeneratedAsset:
        import numpy as np

        from abstractvision.backends._video_encode import encode_mp4

        frames = np.random.RandomState(request.seed or 0).rand(request.num_frames or 3, 16, 16, 3)
        return GeneratedAsset("video", encode_mp4(frames, fps=8).data, "video/mp4", {"seed": request.seed})


def test_mp4_carries_exactly_the_chosen_metadata():
    pytest.importorskip("av")
    pytest.importorskip("numpy")
    vm = VisionManager(backend=Mp4Backend())
    raw_tags, raw_frames = mp4_tags(Mp4Backend().generate_video(dataclass_request(num_frames=3, seed=2)).data)
    assert "encoder" in raw_tags  # what the encoder writes by itself

    none = vm.generate_video("waves", num_frames=3, seed=2)
    tags, frames = mp4_tags(none.data)
    assert not {"encoder", "comment", "abstractvision"} & set(tags)  # no text at all
    assert len(frames) == 3 and all((a == b).all() for a, b in zip(frames, raw_frames, strict=True))

    full = vm.generate_video("waves", num_frames=3, seed=2, embed_metadata="full")
    tags, frames = mp4_tags(full.data)
    prompt, _, fields = parse_infotext(tags["comment"])
    assert prompt == "waves" and fields["Seed"] == "2" and fields["Frames"] == "3"
    assert json.loads(tags["abstractvision"])["seed"] == 2
    assert all((a == b).all() for a, b in zip(frames, raw_frames, strict=True))  # samples untouched
    assert vm.generate_video("waves", num_frames=3, seed=2, embed_metadata="full").data == full.data


def dataclass_request(**kw: Any) -> Any:
    from abstractvision.types import VideoGenerationRequest

    return VideoGenerationRequest(prompt="waves", **kw)
