"""generate_angles on real engines: tiny Diffusers pipelines and a loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import os

import pytest

from abstractvision import AsyncVisionManager, VisionManager


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from abstractvision.testing.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(os.path.join(tmp_path_factory.mktemp("angles"), "tiny-sd"))


@pytest.fixture(scope="module")
def diffusers_vm(tiny_sd):
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

    backend = HuggingFaceDiffusersVisionBackend(
        config=HuggingFaceDiffusersBackendConfig(model_id=tiny_sd, device="cpu")
    )
    with VisionManager(backend=backend) as vm:
        yield vm


@pytest.mark.diffusers
def test_orchestrated_views_on_diffusers(diffusers_vm):
    angles = ["front", "three_quarter", "side", "back", "30,20"]
    views = diffusers_vm.generate_angles(
        "a small red chair", angles=angles, width=64, height=64, steps=2, seed=123, contact_sheet=True
    )
    assert views.strategy == "orchestrated"
    assert [v.metadata["angle"] for v in views] == ["front", "three_quarter", "side", "back", "az30_el20"]
    assert all(v.metadata["seed"] == 123 and v.metadata["strategy"] == "orchestrated" for v in views)
    assert all(v.to_pil().size == (64, 64) for v in views)
    assert views.contact_sheet.to_pil().size == (4 * 64, 2 * 64)
    # deterministic for a fixed seed, different for another seed
    again = diffusers_vm.generate_angles(
        "a small red chair", angles=angles, width=64, height=64, steps=2, seed=123
    )
    assert [v.to_pil().tobytes() for v in again] == [v.to_pil().tobytes() for v in views]
    other = diffusers_vm.generate_angles(
        "a small red chair", angles=["back"], width=64, height=64, steps=2, seed=124
    )
    assert other[0].to_pil().tobytes() != views[3].to_pil().tobytes()


@pytest.mark.diffusers
def test_orchestrated_from_a_reference_image_on_diffusers(diffusers_vm):
    from fakes import png_bytes

    views = diffusers_vm.generate_angles(
        "a chair", reference_image=png_bytes(64, 64), angles=["side", "back"], steps=2, seed=1
    )
    assert [v.metadata["view_source"] for v in views] == ["image_to_image", "image_to_image"]
    assert all(v.to_pil().size == (64, 64) for v in views)


@pytest.fixture
def openai_server():
    from backends.openai.openai_fake_server import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    yield server
    server.stop()


def _openai_backend(server):
    from abstractvision.backends import OpenAICompatibleBackendConfig, OpenAICompatibleVisionBackend

    return OpenAICompatibleVisionBackend(
        config=OpenAICompatibleBackendConfig(base_url=server.base_url, model_id="tiny")
    )


def test_orchestrated_views_through_an_openai_compatible_server(openai_server):
    with VisionManager(backend=_openai_backend(openai_server)) as vm:
        views = vm.generate_angles("a chair", angles=["front", "side", "back"], seed=9)
    assert views.strategy == "orchestrated"
    assert [v.metadata["angle"] for v in views] == ["front", "side", "back"]
    paths = [r.path for r in openai_server.requests]
    assert paths.count("/images/generations") == 1 and paths.count("/images/edits") == 2
    assert all(v.metadata["seed"] == 9 for v in views)


def test_orchestrated_views_async_through_an_openai_compatible_server(openai_server):
    async def main():
        async with AsyncVisionManager(backend=_openai_backend(openai_server)) as vm:
            return await vm.generate_angles("a chair", angles=["front", "back"], seed=2)

    views = asyncio.run(main())
    assert [v.metadata["angle"] for v in views] == ["front", "back"]
