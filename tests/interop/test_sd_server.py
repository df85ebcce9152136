"""The OpenAI-compatible backend against a server nobody here wrote: stable-diffusion.cpp's sd-server.

sd-server (built from the stable-diffusion-cpp-python sdist by scripts/build-sd-server.sh)
runs a tiny random Flux on 127.0.0.1. Its outputs are near-black noise, so the checks are
about pixels *changing* (or not) with a parameter, never about content. Every test runs
through VisionManager and AsyncVisionManager (the ``surface`` fixture).
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from abstractvision.errors import ProviderBadRequestError

APPLYING = ["sdcpp", "a1111"]  # the profiles that pass every parameter on
GEN = {"width": 64, "height": 64}
SIZE = 128
SQUARE = (32, 32, 96, 96)


def pixels(asset: Any) -> bytes:
    return asset.to_pil().convert("RGB").tobytes()


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def gradient() -> bytes:
    from PIL import Image

    image = Image.new("RGB", (SIZE, SIZE))
    image.putdata([(x * 2, y * 2, 128) for y in range(SIZE) for x in range(SIZE)])
    return _png(image)


def square_mask(painted: bool) -> bytes:
    from PIL import Image

    mask = Image.new("L", (SIZE, SIZE), 0)
    if painted:
        mask.paste(255, SQUARE)
    return _png(mask)


def inside_outside(a: Any, b: Any, margin: int = 8) -> tuple[float, float]:
    """Mean absolute pixel difference inside the square, and outside it beyond ``margin``
    pixels (the decoder's receptive field smears a little across the border)."""
    from PIL import ImageChops

    diff = ImageChops.difference(a.to_pil().convert("RGB"), b.to_pil().convert("RGB")).convert("L")
    x0, y0, x1, y1 = SQUARE
    inside: list[int] = []
    outside: list[int] = []
    for y in range(SIZE):
        for x in range(SIZE):
            if x0 <= x < x1 and y0 <= y < y1:
                inside.append(diff.getpixel((x, y)))  # type: ignore[arg-type]
            elif not (x0 - margin <= x < x1 + margin and y0 - margin <= y < y1 + margin):
                outside.append(diff.getpixel((x, y)))  # type: ignore[arg-type]
    return sum(inside) / len(inside), sum(outside) / len(outside)


@pytest.mark.parametrize("profile", APPLYING)
def test_seed_is_applied(surface, profile):
    vm = surface.manager(profile)
    a = vm.generate_image("a red fox", seed=7, **GEN)
    b = vm.generate_image("a red fox", seed=7, **GEN)
    c = vm.generate_image("a red fox", seed=8, **GEN)
    assert a.to_pil().size == (64, 64)
    assert pixels(a) == pixels(b)
    assert pixels(a) != pixels(c)
    # the engine's own record (the PNG's parameters text) says which seed ran
    assert (a.metadata["seed"], a.metadata["seed_source"]) == (7, "engine")
    assert (c.metadata["seed"], c.metadata["seed_source"]) == (8, "engine")
    assert "ignored_parameters" not in a.metadata
    assert a.metadata["profile"] == profile


@pytest.mark.parametrize("profile", APPLYING)
def test_steps_are_applied(surface, profile):
    vm = surface.manager(profile)
    two = vm.generate_image("a red fox", seed=7, steps=2, **GEN)
    four = vm.generate_image("a red fox", seed=7, steps=4, **GEN)
    assert pixels(two) != pixels(four)
    assert "ignored_parameters" not in four.metadata  # the engine reports Steps: 4


@pytest.mark.parametrize("profile", [*APPLYING, "generic"])
def test_a_white_square_mask_repaints_the_square(surface, profile):
    """Against the same edit with an empty mask (nothing repainted): pixels change inside the
    square far more than outside. With ``generic`` too: the mask is white *and* transparent
    where to repaint, so sd-server (which reads it as greyscale) sees the same area."""
    vm = surface.manager(profile)
    image = gradient()
    params = {"seed": 7, "steps": 2} if profile != "generic" else {}
    masked = vm.edit_image("a red fox", image, mask=square_mask(True), **params)
    untouched = vm.edit_image("a red fox", image, mask=square_mask(False), **params)
    assert masked.to_pil().size == (SIZE, SIZE)
    inside, outside = inside_outside(masked, untouched)
    assert inside > 0.5, (inside, outside)
    assert inside > 5 * outside, (inside, outside)


@pytest.mark.parametrize("profile", APPLYING)
def test_a_batch_of_9_returns_9(surface, profile):
    vm = surface.manager(profile)
    assets = vm.generate_image_batch("a red fox", count=9, seed=7, **GEN)
    assert len(assets) == 9
    assert [a.metadata["seed"] for a in assets] == list(range(7, 16))
    assert {a.metadata["seed_source"] for a in assets} == {"engine"}
    assert len({pixels(a) for a in assets}) == 9
    assert all("warnings" not in a.metadata for a in assets)  # split at the known limit of 8


def test_generic_profile_lists_the_parameters_sd_server_ignored(surface):
    """sd-server's /v1/images routes read no top-level seed, steps, cfg or negative prompt;
    the image's parameters text shows what ran, and the metadata says so."""
    vm = surface.manager("generic")
    asset = vm.generate_image(
        "a red fox", seed=7, steps=3, guidance_scale=2.0, negative_prompt="blurry", **GEN
    )
    ignored = asset.metadata["ignored_parameters"]
    assert set(ignored) >= {"seed", "steps", "guidance_scale", "negative_prompt"}
    assert "sent seed=7" in ignored["seed"] and "profile='auto'" in ignored["seed"]
    assert asset.metadata["seed"] != 7 and asset.metadata["seed_source"] == "engine"
    assert asset.metadata["profile"] == "generic"


@pytest.mark.parametrize(("profile", "expected"), [("sdcpp", "sdcpp"), ("a1111", "a1111")])
def test_auto_detects_sd_server(surface, profile, expected):
    """At its /v1 base sd-server is the sdcpp dialect; at its root, the A1111 API."""
    base = surface.server.openai_base_url if profile == "sdcpp" else surface.server.origin
    backend = surface.backend("auto", base_url=base)
    assert surface.call(backend, "detect_profile") == expected


@pytest.mark.parametrize(("profile", "model_id"), [("sdcpp", "sd-cpp-local"), ("a1111", "flux-tiny-s0")])
def test_catalog(surface, profile, model_id):
    backend = surface.backend(profile)
    [model] = surface.call(backend, "list_provider_models", task="text_to_image")
    assert model.id == model_id and "image_to_image" in model.capabilities


@pytest.mark.parametrize(
    ("profile", "extra", "message"),
    [
        ("sdcpp", {"cache_mode": "bogus"}, "HTTP 400: invalid params"),
        ("a1111", {"width": 0}, "HTTP 400: width and height must be positive"),
    ],
)
def test_sd_server_errors_keep_their_message(surface, profile, extra, message):
    vm = surface.manager(profile, max_retries=0)
    with pytest.raises(ProviderBadRequestError, match=message):
        vm.generate_image("a red fox", seed=1, extra=extra)
