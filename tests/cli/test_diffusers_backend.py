"""The CLI on the real Diffusers backend with tiny random-weight models (no download), and `demo`."""

from __future__ import annotations

import importlib.util
import os

import pytest
from cli_helpers import png_file, run_subprocess

pytestmark = pytest.mark.diffusers

SMALL = ["-W", "32", "-H", "32", "--steps", "2"]


def _size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as img:
        return img.size


def _pixels(path: str) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        return img.tobytes()


def test_generate_with_a_local_pipeline_folder(cli, tiny_sd_dir, tmp_path) -> None:
    argv = [
        "generate",
        "a lighthouse",
        "--backend",
        "diffusers",
        "--model",
        tiny_sd_dir,
        "--device",
        "cpu",
        *SMALL,
    ]
    first = cli(*argv, "--seed", "3", "-o", str(tmp_path / "a.png"), "--json")
    assert first.code == 0, first.err
    doc = first.json()
    assert doc["backend"] == "diffusers" and doc["seeds"] == [3]
    assert _size(str(tmp_path / "a.png")) == (32, 32)
    timings = doc["outputs"][0]["timings"]
    assert {"load_s", "inference_s"} <= set(timings)
    again = cli(*argv, "--seed", "3", "-o", str(tmp_path / "b.png"), "-q")
    assert again.code == 0, again.err
    assert _pixels(str(tmp_path / "a.png")) == _pixels(str(tmp_path / "b.png"))  # same seed, same image


def test_inpaint_and_store_with_a_local_pipeline(cli, tiny_sd_dir, tmp_path) -> None:
    image = png_file(tmp_path / "in.png", (32, 32))
    mask = png_file(tmp_path / "mask.png", (32, 32), color=255, mode="L")
    store_dir = tmp_path / "store"
    result = cli(
        "edit", "a red door", "--backend", "diffusers", "--model", tiny_sd_dir, "--device", "cpu",
        "-i", image, "--mask", mask, "--strength", "0.9", "--steps", "2", "--seed", "1",
        "--store", "--store-dir", str(store_dir), "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    (output,) = result.json()["outputs"]
    assert output["metadata"]["task"] == "image_to_image"
    listed = cli("store", "list", "--store-dir", str(store_dir), "--json")
    assert [a["artifact_id"] for a in listed.json()] == [output["artifact_id"]]


def test_missing_local_weights_without_download(cli, tmp_path) -> None:
    result = cli(
        "generate", "x", "--backend", "diffusers", "--model", "someone/not-downloaded-model", "--device", "cpu",
        "--skip-registry-check", "-o", str(tmp_path / "x.png"),
    )  # fmt: skip
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "--allow-download" in result.err


def test_demo_in_process(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("demo", "--size", "32", "--steps", "2")
    assert result.code == 0, result.err
    assert result.out.strip() == "abstractvision-demo.png"
    assert _size(str(tmp_path / "abstractvision-demo.png")) == (32, 32)
    assert "random noise from a smoke-test model" in result.err
    assert "--allow-download" in result.err  # what to run next, with real weights


def test_demo_as_a_real_subprocess_with_json(tmp_path) -> None:
    out = tmp_path / "demo" / "noise.png"
    result = run_subprocess(["demo", "-o", str(out), "--size", "32", "--steps", "2", "--json"], timeout=180)
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["smoke_test"] is True
    assert "random noise" in doc["notice"]
    assert doc["outputs"][0]["path"] == str(out)
    assert out.is_file()
    # the model's temporary folder is deleted at exit: the result names the model, not that path
    assert doc["model"] == "tiny-sd-noise" and doc["outputs"][0]["metadata"]["model"] == "tiny-sd-noise"
    assert "deleted when the demo exits" in doc["model_note"]
    assert "abstractvision-demo-" not in result.out
    assert b"abstractvision-demo-" not in out.read_bytes()  # nor in the PNG's embedded metadata
    # third-party progress bars and warnings stay off our stderr
    assert "Loading pipeline components" not in result.err
    assert "it/s" not in result.err


def test_demo_without_the_diffusers_extra(cli, monkeypatch, tmp_path) -> None:
    real = importlib.util.find_spec

    def no_diffusers(name, *args, **kwargs):
        return None if name == "diffusers" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_diffusers)
    result = cli("demo", "-o", str(tmp_path / "x.png"))
    assert result.code == 3
    assert 'pip install "abstractvision[diffusers]"' in result.err
    assert not os.path.exists(tmp_path / "x.png")


def test_sigint_stops_the_diffusion_loop(cli, tiny_sd_dir, tmp_path, monkeypatch) -> None:
    """Ctrl-C during denoising: the engine stops at its next step and the command exits 130."""
    import signal
    import sys
    import threading
    import time

    from cli_helpers import TTYStringIO

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers belong to the main thread")
    tty = TTYStringIO()
    monkeypatch.setattr(sys, "stderr", tty)

    def interrupt_after_first_step() -> None:
        deadline = time.monotonic() + 120
        while "/500 steps" not in tty.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_after_first_step)
    killer.start()
    result = cli(
        "generate", "x", "--backend", "diffusers", "--model", tiny_sd_dir, "--device", "cpu",
        "-W", "32", "-H", "32", "--steps", "500", "-o", str(tmp_path / "never.png"),
    )  # fmt: skip
    killer.join()
    assert result.code == 130
    assert "cancelled." in tty.getvalue()
    assert "500/500 steps" not in tty.getvalue()
    assert not (tmp_path / "never.png").exists()


def test_previews_written_to_a_folder_while_generating(cli, tiny_sd_dir, tmp_path) -> None:
    """``--previews DIR`` writes each preview (and latest.jpg) as the engine works; the output is unchanged."""
    base = ["generate", "a lighthouse", "--backend", "diffusers", "--model", tiny_sd_dir, "--device", "cpu"]
    base += ["-W", "32", "-H", "32", "--steps", "4", "--seed", "5", "-q"]
    folder = tmp_path / "previews"
    result = cli(*base, "-o", str(tmp_path / "a.png"), "--previews", str(folder), "--preview-every", "2")
    assert result.code == 0, result.err
    assert sorted(os.listdir(folder)) == ["latest.jpg", "step-0002.jpg", "step-0004.jpg"]
    assert _size(str(folder / "step-0002.jpg")) == (32, 32)
    assert (folder / "latest.jpg").read_bytes() == (folder / "step-0004.jpg").read_bytes()
    plain = cli(*base, "-o", str(tmp_path / "b.png"))
    assert plain.code == 0 and _pixels(str(tmp_path / "a.png")) == _pixels(str(tmp_path / "b.png"))
    lonely = cli(*base, "-o", str(tmp_path / "c.png"), "--preview-every", "2")
    assert lonely.code != 0 and "--preview-every needs --previews" in lonely.err
