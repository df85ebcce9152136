"""generate / edit / upscale / video / i2v / angles through the real manager, on the fake backend."""

from __future__ import annotations

import hashlib
import os

import pytest
from cli_helpers import png_file


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def test_generate_writes_the_file_named_by_output(cli, fake, tmp_path) -> None:
    out = tmp_path / "cat.png"
    result = cli(
        "generate", "a cat", "-W", "32", "-H", "24", "--steps", "3", "--seed", "7", "-o", str(out), "-q"
    )
    assert result.code == 0, result.err
    assert result.out.strip() == str(out)
    assert result.err == ""
    assert _image_size(str(out)) == (32, 24)
    ((call, request),) = fake.backend.calls
    assert call == "generate_image"
    assert (request.prompt, request.width, request.height, request.steps, request.seed) == (
        "a cat",
        32,
        24,
        3,
        7,
    )


def test_generate_json_result(cli, fake, tmp_path) -> None:
    result = cli("generate", "a cat", "--seed", "5", "-o", str(tmp_path / "x.png"), "--json", "-q")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["ok"] is True
    assert doc["command"] == "generate"
    assert doc["task"] == "text_to_image"
    assert doc["backend"] == "fake"
    assert doc["seeds"] == [5]
    (output,) = doc["outputs"]
    assert output["path"] == str(tmp_path / "x.png")
    assert output["mime_type"] == "image/png"
    assert output["seed"] == 5
    data = (tmp_path / "x.png").read_bytes()
    assert output["sha256"] == hashlib.sha256(data).hexdigest()
    assert output["bytes"] == len(data)
    assert "total_s" in output["timings"]
    assert output["metadata"]["parameters"]["seed"] == 5
    assert doc["elapsed_s"] >= 0


def test_generate_default_output_is_the_current_directory(cli, fake, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("generate", "a cat", "-q")
    assert result.code == 0, result.err
    path = result.out.strip()
    assert os.path.dirname(path) == str(tmp_path)
    assert os.path.basename(path).startswith("abstractvision-generate-")
    assert path.endswith(".png")


def test_count_writes_numbered_files_with_planned_seeds(cli, fake, tmp_path) -> None:
    result = cli(
        "generate", "a cat", "--count", "3", "--seed", "10", "-o", str(tmp_path / "cat.png"), "--json"
    )
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["seeds"] == [10, 11, 12]
    assert [o["path"] for o in doc["outputs"]] == [str(tmp_path / f"cat-{i}.png") for i in (1, 2, 3)]
    assert fake.backend.calls[0][0] == "generate_image_batch"
    assert "generate: 3 images in" in result.err and "seeds 10, 11, 12" in result.err


def test_output_directory_forms(cli, fake, tmp_path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    for target in (str(existing), str(tmp_path / "new") + "/", str(tmp_path / "noext")):
        result = cli("generate", "a cat", "--count", "2", "-o", target, "-q")
        assert result.code == 0, result.err
        paths = result.out.split()
        assert len(paths) == 2
        for path in paths:
            assert os.path.dirname(path) == target.rstrip("/")
            assert os.path.isfile(path)


def test_output_extension_converts_the_image_format(cli, fake, tmp_path) -> None:
    out = tmp_path / "cat.jpg"
    result = cli("generate", "a cat", "-o", str(out), "--json", "-q")
    assert result.code == 0, result.err
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert result.json()["outputs"][0]["converted_from"] == "image/png"


def test_output_under_a_file_fails_before_generating(cli, fake, tmp_path) -> None:
    (tmp_path / "afile").write_text("x")
    result = cli("generate", "a cat", "-o", str(tmp_path / "afile" / "out.png"))
    assert result.code == 2
    assert "is not a directory" in result.err
    assert fake.backend.calls == []


def test_extra_and_negative_prompt_reach_the_backend(cli, fake, tmp_path) -> None:
    result = cli(
        "generate",
        "a cat",
        "--negative-prompt",
        "dogs",
        "-x",
        "clip_skip=2",
        "-x",
        "tags=[1, 2]",
        "-x",
        "flag=true",
        "-x",
        "name=plain",
        "-o",
        str(tmp_path / "a.png"),
        "-q",
    )
    assert result.code == 0, result.err
    request = fake.backend.calls[0][1]
    assert request.negative_prompt == "dogs"
    assert request.extra == {"clip_skip": 2, "tags": [1, 2], "flag": True, "name": "plain"}


def test_lora_flags(cli, fake, tmp_path) -> None:
    result = cli(
        "generate",
        "a cat",
        "--lora",
        "org/style-lora:0.7",
        "--lora",
        "/loras/x.safetensors",
        "-o",
        str(tmp_path / "a.png"),
    )
    assert result.code == 0, result.err
    adapters = fake.backend.calls[0][1].lora_adapters
    assert [(a.source, a.scale) for a in adapters] == [("org/style-lora", 0.7), ("/loras/x.safetensors", 1.0)]


def test_edit_with_mask_and_strength(cli, fake, tmp_path) -> None:
    image = png_file(tmp_path / "in.png", (24, 16))
    mask = png_file(tmp_path / "mask.png", (24, 16), color=255, mode="L")
    out = tmp_path / "edited.png"
    result = cli(
        "edit", "make it blue", "--image", image, "--mask", mask, "--strength", "0.6", "-o", str(out), "-q"
    )
    assert result.code == 0, result.err
    name, request = fake.backend.calls[0]
    assert name == "edit_image"
    assert request.mask is not None and request.strength == 0.6
    assert _image_size(str(out)) == (24, 16)


def test_edit_reads_the_image_from_stdin(cli, fake, tmp_path) -> None:
    from fakes import png_bytes

    result = cli("edit", "blue", "-i", "-", "-o", str(tmp_path / "o.png"), "-q", stdin=png_bytes(8, 8))
    assert result.code == 0, result.err
    assert _image_size(str(tmp_path / "o.png")) == (8, 8)


def test_edit_missing_image_file_is_a_usage_error(cli, fake, tmp_path) -> None:
    result = cli("edit", "blue", "-i", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o.png"))
    assert result.code == 2
    assert "no such file" in result.err
    assert "Traceback" not in result.err


def test_edit_mask_of_another_size_is_rejected(cli, fake, tmp_path) -> None:
    image = png_file(tmp_path / "in.png", (24, 16))
    mask = png_file(tmp_path / "mask.png", (8, 8), color=255, mode="L")
    result = cli("edit", "blue", "-i", image, "--mask", mask)
    assert result.code == 2
    assert "mask is 8x8 but image is 24x16" in result.err


def test_edit_strength_out_of_range(cli, fake, tmp_path) -> None:
    image = png_file(tmp_path / "in.png")
    result = cli("edit", "blue", "-i", image, "--strength", "1.5")
    assert result.code == 2
    assert "strength" in result.err


def test_upscale(cli, fake, tmp_path) -> None:
    image = png_file(tmp_path / "small.png", (10, 12))
    result = cli("upscale", image, "--scale", "4", "-o", str(tmp_path / "big.png"), "--json", "-q")
    assert result.code == 0, result.err
    assert result.json()["task"] == "image_upscale"
    assert _image_size(str(tmp_path / "big.png")) == (40, 48)


def test_video_and_i2v(cli, fake, tmp_path) -> None:
    result = cli(
        "video", "waves", "--frames", "4", "--fps", "8", "-W", "8", "-H", "8", "-o", str(tmp_path), "-q"
    )
    assert result.code == 0, result.err
    assert result.out.strip().endswith(".gif")
    request = fake.backend.calls[-1][1]
    assert (request.num_frames, request.fps) == (4, 8)

    image = png_file(tmp_path / "still.png", (8, 8))
    result = cli("i2v", "-i", image, "--frames", "3", "-o", str(tmp_path / "anim.gif"), "--json", "-q")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["task"] == "image_to_video"
    assert doc["outputs"][0]["mime_type"] == "image/gif"
    assert fake.backend.calls[-1][1].prompt is None


def test_video_extension_mismatch_warns_and_keeps_the_bytes(cli, fake, tmp_path) -> None:
    result = cli("video", "waves", "--frames", "2", "-o", str(tmp_path / "clip.mp4"))
    assert result.code == 0, result.err
    assert "warning:" in result.err and "image/gif" in result.err
    assert (tmp_path / "clip.mp4").read_bytes()[:3] == b"GIF"


def test_angles_names_files_after_the_angles(cli, fake, tmp_path) -> None:
    ref = png_file(tmp_path / "ref.png")
    result = cli(
        "angles",
        "a teapot",
        "-i",
        ref,
        "--angles",
        "front,side,30",
        "-o",
        str(tmp_path / "pot.png"),
        "--json",
    )
    assert result.code == 0, result.err
    doc = result.json()
    angles = [o["angle"] for o in doc["outputs"]]
    assert angles[:2] == ["front", "side"] and "30" in angles[2]  # the core normalises degrees
    assert [os.path.basename(o["path"]) for o in doc["outputs"]] == [f"pot-{a}.png" for a in angles]


def test_store_keeps_artifacts_and_reports_refs(cli, fake, tmp_path) -> None:
    store_dir = tmp_path / "store"
    result = cli(
        "generate", "a cat", "--count", "2", "--store", "--store-dir", str(store_dir), "--json", "-q"
    )
    assert result.code == 0, result.err
    doc = result.json()
    from abstractvision import LocalAssetStore

    store = LocalAssetStore(store_dir)
    for output in doc["outputs"]:
        aid = output["artifact_id"]
        assert output["ref"]["$artifact"] == aid
        assert output["path"] == str(store.get_content_path(aid))
        assert store.get_metadata(aid)["tags"]["task"] == "text_to_image"


def test_store_and_output_together(cli, fake, tmp_path) -> None:
    result = cli(
        "generate", "a cat", "--store", "--store-dir", str(tmp_path / "s"), "-o", str(tmp_path / "c.png")
    )
    assert result.code == 0, result.err
    path, artifact = result.out.strip().split("\t")
    assert path == str(tmp_path / "c.png")
    assert artifact.startswith("artifact:")


def test_image_input_from_the_store(cli, fake, tmp_path) -> None:
    from abstractvision import LocalAssetStore
    from fakes import png_bytes

    store_dir = tmp_path / "store"
    ref = LocalAssetStore(store_dir).store_bytes(png_bytes(12, 12), content_type="image/png")
    prefix = ref["$artifact"][:10]
    result = cli(
        "upscale", f"artifact:{prefix}", "--store-dir", str(store_dir), "-o", str(tmp_path / "u.png")
    )
    assert result.code == 0, result.err
    assert _image_size(str(tmp_path / "u.png")) == (24, 24)


def test_settings_come_from_flags_env_and_config_file(cli, fake, tmp_path, monkeypatch) -> None:
    config = tmp_path / "av.json"
    config.write_text(
        '{"backend": "diffusers", "model": "from-file", "device": "cpu", "options": {"offload": "model"}}'
    )
    monkeypatch.setenv("ABSTRACTVISION_MODEL", "from-env")
    result = cli(
        "generate", "a cat", "--config", str(config), "--dtype", "float16", "-o", str(tmp_path / "a.png")
    )
    assert result.code == 0, result.err
    settings = fake.settings[-1]
    assert (settings.backend, settings.model, settings.device, settings.dtype) == (
        "diffusers",
        "from-env",
        "cpu",
        "float16",
    )
    assert settings.options == {"offload": "model"}
    assert settings.sources["model"] == "environment" and settings.sources["dtype"] == "explicit"


def test_sdcpp_component_flags_become_options(cli, fake, tmp_path) -> None:
    result = cli(
        "generate", "x", "--backend", "sdcpp", "--diffusion-model", "/m/flux.gguf", "--clip-l", "/m/clip.safetensors",
        "--t5xxl", "/m/t5.gguf", "-O", "threads=2", "-o", str(tmp_path / "a.png"),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert fake.settings[-1].options == {
        "diffusion_model": "/m/flux.gguf",
        "clip_l": "/m/clip.safetensors",
        "t5xxl": "/m/t5.gguf",
        "threads": 2,
    }


def test_registry_check_rejects_out_of_range_parameters(cli, fake, tmp_path) -> None:
    argv = [
        "generate",
        "x",
        "--model",
        "black-forest-labs/FLUX.1-schnell",
        "--steps",
        "400",
        "-o",
        str(tmp_path / "a.png"),
    ]
    result = cli(*argv)
    assert result.code == 2
    assert "steps" in result.err and "FLUX.1-schnell" in result.err
    assert fake.backend.calls == []
    assert cli(*argv, "--skip-registry-check", "-q").code == 0


def test_registry_check_rejects_unsupported_tasks(cli, fake, tmp_path) -> None:
    result = cli("video", "x", "--model", "runwayml/stable-diffusion-v1-5")
    assert result.code == 2
    assert "does not support task 'text_to_video'" in result.err
    assert "hint:" in result.err


@pytest.mark.parametrize(
    ("error", "code", "hint"),
    [
        ("OptionalDependencyMissingError", 3, None),
        # the message itself names cause and fix; the hint never repeats a fix (issue 20)
        ("ModelLoadError", 1, "hint: rerun with --debug for the loader's traceback."),
        ("OutOfMemoryError", 1, "offload"),
        ("ProviderAuthenticationError", 1, "--api-key"),
        ("BackendError", 1, None),
        ("RuntimeError", 1, "--debug"),
    ],
)
def test_backend_failures_map_to_exit_codes(cli, fake, monkeypatch, tmp_path, error, code, hint) -> None:
    from abstractvision import errors

    def boom(request):
        if error == "OptionalDependencyMissingError":
            raise errors.OptionalDependencyMissingError("torch", "diffusers")
        if error == "RuntimeError":
            raise RuntimeError("kaput")
        raise getattr(errors, error)("it failed")

    monkeypatch.setattr(fake.backend, "generate_image", boom)
    result = cli("generate", "x", "-o", str(tmp_path / "a.png"), "--json")
    assert result.code == code
    assert "Traceback" not in result.err
    first = result.err.splitlines()[0]
    assert first.startswith("abstractvision: error: ")
    if hint:
        assert hint in result.err
    if code == 3:
        assert 'pip install "abstractvision[diffusers]"' in result.err
    doc = result.json()
    assert doc["ok"] is False and doc["error"]["exit_code"] == code


def test_debug_prints_the_traceback(cli, fake, monkeypatch, tmp_path) -> None:
    def boom(request):
        raise RuntimeError("kaput")

    monkeypatch.setattr(fake.backend, "generate_image", boom)
    result = cli("generate", "x", "--debug", "-o", str(tmp_path / "a.png"))
    assert result.code == 1
    assert "Traceback" in result.err and "RuntimeError: kaput" in result.err
