"""Live previews from stable-diffusion.cpp's own preview callback (binding 0.4.7), on the tiny Flux:
its TAESD with ``auto``, its latent projection with ``proj``, in the worker process and in-process."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("stable_diffusion_cpp")

pytestmark = pytest.mark.sdcpp

GEN = {"width": 64, "height": 64, "guidance_scale": 1.0, "seed": 3}


@pytest.mark.parametrize(
    ("method", "decoder", "size"), [("auto", "tiny_autoencoder", (64, 64)), ("proj", "latent_rgb", (8, 8))]
)
def test_the_engines_previews_at_the_steps_asked_for(
    make_manager: Any, method: str, decoder: str, size: Any
) -> None:
    vm = make_manager(preview_method=method)
    seen: list[Any] = []
    asset = vm.generate_image("a cat", steps=4, on_preview=seen.append, partial_images=2, **GEN)
    assert [(e.step, e.total_steps, e.index, e.decoder) for e in seen] == [
        (2, 4, 0, decoder),
        (3, 4, 0, decoder),
    ]
    assert seen[0].to_pil().size == size  # TAESD decodes to the output size; proj stays at the latent grid
    plain = vm.generate_image("a cat", steps=4, **GEN)
    assert plain.to_pil().tobytes() == asset.to_pil().tobytes()  # previews do not change the result


def test_batch_previews_in_process_leave_later_calls_untouched(make_manager: Any) -> None:
    vm = make_manager(isolate=False)  # in-process: the same callback, no worker
    before = vm.generate_image("a cat", steps=2, **GEN)
    seen: list[Any] = []
    vm.generate_image_batch("a cat", count=2, steps=2, on_preview=seen.append, preview_every=2, **GEN)
    assert sorted((e.step, e.index) for e in seen) == [(2, 0), (2, 1)]
    after = vm.generate_image("a cat", steps=2, **GEN)  # the engine's preview is switched off again
    assert after.to_pil().tobytes() == before.to_pil().tobytes()


def test_preview_method_is_validated(make_config: Any) -> None:
    from abstractvision.backends import StableDiffusionCppVisionBackend
    from abstractvision.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="preview_method"):
        StableDiffusionCppVisionBackend(make_config(preview_method="taesd"))
