"""Files written by the CLI: same seed => same bytes, --embed-metadata, --format/--quality, -o modes."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from embedded import open_image, parse_infotext, user_comment, xmp_provenance


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- -o file mode ------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o022, 0o077], ids=lambda m: f"umask{m:03o}")
def test_output_file_mode_follows_the_umask(cli, fake, tmp_path, mask) -> None:
    with umask(mask):
        named = cli("generate", "x", "-o", str(tmp_path / "one.png"), "-q")
        several = cli("generate", "x", "-c", "2", "-o", str(tmp_path / "many.webp"), "-q")
        folder = cli("generate", "x", "-o", str(tmp_path / "out") + "/", "-q")
    assert named.code == several.code == folder.code == 0, named.err + several.err + folder.err
    files = [tmp_path / "one.png", tmp_path / "many-1.webp", tmp_path / "many-2.webp"]
    files += list((tmp_path / "out").iterdir())
    assert len(files) == 4
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_stored_files_are_private_and_exports_follow_the_umask(cli, fake, tmp_path) -> None:
    store_dir = tmp_path / "store"
    with umask(0o022):
        result = cli("generate", "x", "--store", "--store-dir", str(store_dir), "--json", "-q")
        assert result.code == 0, result.err
        (record,) = result.json()["outputs"]
        exported = cli(
            "store",
            "export",
            record["artifact_id"],
            "-o",
            str(tmp_path / "shared.png"),
            "--store-dir",
            str(store_dir),
        )
    assert exported.code == 0, exported.err
    assert stat.S_IMODE(os.stat(record["path"]).st_mode) == 0o600  # the store's own file
    assert stat.S_IMODE((tmp_path / "shared.png").stat().st_mode) == 0o644


# -- formats and policies (fake engine: fast, exact) ---------------------------------------


def test_extension_asks_for_the_format_and_the_metadata_goes_with_it(cli, fake, tmp_path) -> None:
    out = tmp_path / "cat.jpg"
    result = cli(
        "generate", "a cat", "--seed", "4", "-o", str(out), "--embed-metadata", "full", "--json", "-q"
    )
    assert result.code == 0, result.err
    img = open_image(out.read_bytes())
    assert img.format == "JPEG"
    prompt, _, fields = parse_infotext(user_comment(img) or "")
    assert prompt == "a cat" and fields["Seed"] == "4"
    assert xmp_provenance(img)["encoding"]["format"] == "jpeg"
    record = result.json()["outputs"][0]
    assert record["mime_type"] == "image/jpeg" and record["converted_from"] == "image/png"
    assert record["metadata"]["embedded_metadata"] == {"policy": "full"}


def test_format_and_quality_flags(cli, fake, tmp_path) -> None:
    result = cli(
        "generate", "x", "--format", "webp", "--quality", "60", "-o", str(tmp_path) + "/", "--json", "-q"
    )
    assert result.code == 0, result.err
    (record,) = result.json()["outputs"]
    img = open_image(Path(record["path"]).read_bytes())
    assert record["path"].endswith(".webp") and img.format == "WEBP"
    assert record["metadata"]["encoding"]["compression"] == 60
    assert img.info.get("exif") is None and img.info.get("xmp") is None  # default: no metadata


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "png", "-o", "x.jpg"], "--format png does not match"),
        (["--quality", "80", "-o", "x.png"], "output_compression"),
        (["--quality", "101"], "must be between 0 and 100"),
        (["--embed-metadata", "all"], "invalid choice"),
    ],
)
def test_contradictory_or_bad_file_flags_are_usage_errors(
    cli, fake, tmp_path, monkeypatch, argv, message
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("generate", "x", *argv)
    assert result.code == 2 and message in result.err, result.err
    assert fake.backend.calls == []  # refused before anything ran
    assert not list(tmp_path.iterdir())


def test_video_commands_take_the_policy_not_the_image_format(cli, fake, tmp_path) -> None:
    assert cli("video", "waves", "--format", "png").code == 2
    assert cli("video", "waves", "--embed-metadata", "parameters", "-o", str(tmp_path) + "/", "-q").code == 0


# -- real engines ------------------------------------------------------------------------

SD_ARGS = ["--backend", "diffusers", "--device", "cpu", "-W", "32", "-H", "32", "--steps", "2"]


@pytest.mark.diffusers
@pytest.mark.parametrize("policy", ["none", "full"])
def test_diffusers_same_seed_same_file_through_the_cli(cli, tiny_sd_dir, tmp_path, policy) -> None:
    base = ["generate", "a lighthouse", "--model", tiny_sd_dir, *SD_ARGS, "--embed-metadata", policy, "-q"]
    for name, seed in (("a.png", "7"), ("b.png", "7"), ("c.png", "8")):
        result = cli(*base, "--seed", seed, "-o", str(tmp_path / name))
        assert result.code == 0, result.err
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.png", "b.png", "c.png"))
    assert a == b and a != c
    assert set(open_image(a).text) == (set() if policy == "none" else {"parameters", "abstractvision"})


@pytest.fixture(scope="module")
def tiny_flux_files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("stable_diffusion_cpp")
    from abstractvision.testing.tiny_sdcpp import build_tiny_flux_sdcpp

    return build_tiny_flux_sdcpp(tmp_path_factory.mktemp("cli-sdcpp"), gguf=False)


@pytest.mark.sdcpp
def test_sdcpp_same_seed_same_file_through_the_cli(cli, tiny_flux_files, tmp_path) -> None:
    base = [
        "generate", "a lighthouse", "--backend", "sdcpp",
        "--diffusion-model", tiny_flux_files.diffusion_model, "--taesd", tiny_flux_files.taesd,
        "--clip-l", tiny_flux_files.clip_l, "-O", "n_threads=1",
        "-W", "64", "-H", "64", "--steps", "2", "--embed-metadata", "parameters", "-q",
    ]  # fmt: skip
    for name, seed in (("a.png", "3"), ("b.png", "3"), ("c.png", "4")):
        result = cli(*base, "--seed", seed, "-o", str(tmp_path / name))
        assert result.code == 0, result.err
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.png", "b.png", "c.png"))
    assert a == b and a != c
    _, _, fields = parse_infotext(open_image(a).text["parameters"])
    assert fields["Seed"] == "3" and fields["Model"] == "flux-tiny-s0" and fields["Size"] == "64x64"


# -- serve --embed-metadata ---------------------------------------------------------------


@pytest.mark.server
def test_serve_embed_metadata_flag_over_an_openai_upstream(openai_server, tmp_path) -> None:
    """`abstractvision serve --embed-metadata parameters` in a real process, over an HTTP upstream:
    the upstream's pixels come back as they are, the file carries the operator's policy."""
    pytest.importorskip("starlette")
    import socket
    import subprocess
    import sys

    import httpx
    from cli_helpers import subprocess_env, wait_healthy

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "abstractvision", "serve", "--base-url", openai_server.base_url,
            "-O", "max_retries=0", "--port", str(port), "--store-dir", str(tmp_path / "jobs"),
            "--log-level", "warning", "--embed-metadata", "parameters", "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, timeout=60)
        bodies = [{"prompt": "a cat, sitting", "response_format": "b64_json"}] * 2
        files = []
        for body in bodies:
            reply = httpx.post(f"{base}/v1/images/generations", json=body, timeout=30)
            assert reply.status_code == 200, reply.text
            files.append(base64.b64decode(reply.json()["data"][0]["b64_json"]))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert files[0] == files[1]
    text = open_image(files[0]).text
    assert set(text) == {"parameters"}
    prompt, _, fields = parse_infotext(text["parameters"])
    assert prompt == "a cat, sitting" and "Seed" not in fields  # no seed was asked for or reported
