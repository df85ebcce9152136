"""Live previews of the Diffusers backend on real tiny pipelines: the decoders (latent_rgb fitted
from the model's VAE, a tiny autoencoder configured or found in the Hugging Face cache, the
full VAE when asked), packed latents (Flux), the middle frame of a video (Wan), batches,
cancellation within one step, and nothing decoded when nobody listens."""

from __future__ import annotations

import os
import shutil
import threading
from typing import Any

import pytest

pytestmark = pytest.mark.diffusers

WAN = {"steps": 4, "width": 16, "height": 16, "extra": {"max_sequence_length": 16}}


@pytest.fixture(scope="module")
def tiny_tae(tmp_path_factory: pytest.TempPathFactory) -> str:
    from abstractvision.testing.tiny_diffusers import build_tiny_autoencoder_tiny

    return build_tiny_autoencoder_tiny(tmp_path_factory.mktemp("tae") / "tiny-tae")


def test_latent_rgb_previews_of_an_sd_model(make_manager: Any, tiny_sd: str) -> None:
    vm = make_manager(tiny_sd, device="cpu")
    seen: list[Any] = []
    asset = vm.generate_image(
        "a red cat", width=64, height=48, steps=6, seed=1, on_preview=seen.append, partial_images=2
    )
    assert [(e.step, e.total_steps, e.index, e.decoder) for e in seen] == [
        (2, 6, 0, "latent_rgb"),
        (4, 6, 0, "latent_rgb"),
    ]
    assert seen[0].to_pil().size == (64, 48)  # scaled up from the latent grid to the output size
    assert seen[0].to_pil().mode == "RGB" and seen[0].image != seen[1].image  # the image forms
    again = vm.generate_image("a red cat", width=64, height=48, steps=6, seed=1)
    assert again.data == asset.data  # previews change nothing in the result
    assert "preview" not in str(asset.metadata)


def test_batch_previews_name_each_output(make_manager: Any, tiny_sd: str) -> None:
    seen: list[Any] = []
    make_manager(tiny_sd, device="cpu").generate_image_batch(
        "a cat", count=2, width=64, height=64, steps=2, seed=3, on_preview=seen.append, preview_every=2
    )
    assert sorted((e.step, e.index) for e in seen) == [(2, 0), (2, 1)]
    assert seen[0].image != seen[1].image


def test_packed_flux_latents_are_unpacked(make_manager: Any, tiny_flux: str) -> None:
    seen: list[Any] = []
    make_manager(tiny_flux, device="cpu").generate_image(
        "a cat", width=64, height=32, steps=2, seed=1, on_preview=seen.append
    )
    assert [e.step for e in seen] == [1, 2] and seen[0].to_pil().size == (64, 32)


def test_a_video_previews_its_middle_frame(make_manager: Any, tiny_wan: str) -> None:
    seen: list[Any] = []
    make_manager(tiny_wan, device="cpu").generate_video(
        "waves", num_frames=9, seed=1, on_preview=seen.append, partial_images=1, **WAN
    )
    # 9 frames are 3 latent frames (4k+1); the middle latent frame starts at frame 4
    assert [(e.step, e.frame, e.decoder) for e in seen] == [(2, 4, "latent_rgb")]
    assert seen[0].to_pil().size == (16, 16)


def test_a_configured_tiny_autoencoder_decodes_the_previews(
    make_manager: Any, tiny_sd: str, tiny_tae: str
) -> None:
    seen: list[Any] = []
    make_manager(tiny_sd, device="cpu", preview_vae=tiny_tae).generate_image(
        "a cat", width=64, height=64, steps=2, seed=1, on_preview=seen.append
    )
    assert {e.decoder for e in seen} == {"tiny_autoencoder"}
    # the tiny SD's latents are 32x32 (VAE factor 2); this autoencoder upsamples x2
    assert seen[0].to_pil().size == (64, 64)


def test_the_familys_tiny_autoencoder_is_used_when_it_is_in_the_hf_cache(
    make_manager: Any, tiny_sd: str, tiny_tae: str, tmp_path: Any
) -> None:
    """``auto`` picks madebyollin/taesd for a Stable Diffusion pipeline when it is cached (never downloaded)."""
    revision = "0" * 40
    repo = tmp_path / "models--madebyollin--taesd"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(tiny_tae, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    seen: list[Any] = []
    make_manager(tiny_sd, device="cpu", cache_dir=str(tmp_path)).generate_image(
        "a cat", width=64, height=64, steps=2, on_preview=seen.append
    )
    assert {e.decoder for e in seen} == {"tiny_autoencoder"}
    empty = tmp_path / "empty"
    empty.mkdir()
    seen.clear()
    make_manager(tiny_sd, device="cpu", cache_dir=str(empty)).generate_image(
        "a cat", width=64, height=64, steps=2, on_preview=seen.append
    )
    assert {e.decoder for e in seen} == {"latent_rgb"}


def test_the_full_vae_only_when_asked_and_a_missing_tiny_autoencoder_is_an_error(
    make_manager: Any, tiny_sd: str, tmp_path: Any
) -> None:
    from abstractvision.errors import ModelLoadError

    seen: list[Any] = []
    make_manager(tiny_sd, device="cpu", preview_decoder="vae").generate_image(
        "a cat", width=64, height=64, steps=2, on_preview=seen.append
    )
    assert {e.decoder for e in seen} == {"vae"} and seen[0].to_pil().size == (64, 64)
    vm = make_manager(tiny_sd, device="cpu", preview_decoder="tiny_autoencoder", cache_dir=str(tmp_path))
    with pytest.raises(ModelLoadError, match="needs preview_vae"):
        vm.generate_image("a cat", width=64, height=64, steps=2, on_preview=seen.append)
    # without on_preview the setting costs nothing and asks for nothing
    assert vm.generate_image("a cat", width=64, height=64, steps=2).to_pil().size == (64, 64)


def test_cancel_still_lands_within_one_step_with_previews_on(make_manager: Any, tiny_sd: str) -> None:
    from abstractvision.errors import GenerationCancelledError

    cancel = threading.Event()
    steps: list[int] = []

    def on_progress(event: Any) -> None:
        if event.phase == "step":
            steps.append(event.step)

    def on_preview(event: Any) -> None:
        if event.step == 3:
            cancel.set()

    vm = make_manager(tiny_sd, device="cpu")
    with pytest.raises(GenerationCancelledError):
        vm.generate_image(
            "a cat",
            width=64,
            height=64,
            steps=40,
            on_preview=on_preview,
            on_progress=on_progress,
            cancel=cancel,
        )
    assert steps == [1, 2, 3, 4]  # the step after the cancel was the last


def test_no_previews_without_a_listener(
    make_manager: Any, tiny_sd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is decoded or fitted when the request has no ``on_preview``: the previews module
    is never asked for a previewer of its own."""
    from abstractvision.backends._diffusers import previews

    made: list[Any] = []
    real = previews.Previewer.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(previews.Previewer, "__init__", counting)
    vm = make_manager(tiny_sd, device="cpu")
    vm.generate_image("a cat", width=64, height=64, steps=2)
    assert made == []
    vm.generate_image("a cat", width=64, height=64, steps=2, on_preview=lambda e: None)
    assert made == [1]


def test_preview_decoder_is_validated() -> None:
    from abstractvision.backends import HuggingFaceDiffusersBackendConfig
    from abstractvision.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="preview_decoder must be one of auto"):
        HuggingFaceDiffusersBackendConfig(model_id=os.getcwd(), preview_decoder="taesd")
