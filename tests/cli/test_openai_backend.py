"""The CLI against the real OpenAI-compatible backend and a loopback server."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from cli_helpers import png_file, run_in_pty, run_subprocess, send_sigint_once

FAST = ["-O", "poll_interval_s=0.01", "-O", "backoff_base_s=0.01", "-O", "max_retries=0"]


def _backend(server) -> list[str]:
    return ["--base-url", server.base_url, "--api-key", "sk-test-key", *FAST]


def test_generate_over_http(cli, openai_server, tmp_path) -> None:
    out = tmp_path / "cat.png"
    result = cli(
        "generate", "a cat", *_backend(openai_server), "--model", "tiny-sd", "-o", str(out), "--json", "-q"
    )
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["backend"] == "openai" and doc["task"] == "text_to_image"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (call,) = openai_server.calls("POST", "/images/generations")
    assert call.json()["prompt"] == "a cat"
    assert call.headers["authorization"] == "Bearer sk-test-key"


def test_backend_settings_from_the_environment(cli, openai_server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ABSTRACTVISION_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("ABSTRACTVISION_API_KEY", "sk-from-env")
    monkeypatch.setenv("ABSTRACTVISION_OPT_MAX_RETRIES", "0")
    result = cli("generate", "a dog", "-o", str(tmp_path / "d.png"), "-q")
    assert result.code == 0, result.err
    (call,) = openai_server.calls("POST", "/images/generations")
    assert call.headers["authorization"] == "Bearer sk-from-env"


def test_profile_flag_selects_the_server_dialect(cli, openai_server, tmp_path, monkeypatch) -> None:
    result = cli(
        "generate", "a cat", *_backend(openai_server), "--profile", "sdcpp", "--seed", "7",
        "-o", str(tmp_path / "c.png"), "--json", "-q",
    )  # fmt: skip
    assert result.code == 0, result.err
    (call,) = openai_server.calls("POST", "/images/generations")
    assert call.json()["prompt"] == 'a cat<sd_cpp_extra_args>{"seed":7}</sd_cpp_extra_args>'
    monkeypatch.setenv("ABSTRACTVISION_OPT_PROFILE", "sdcpp")  # the same through the environment
    again = cli("generate", "a dog", *_backend(openai_server), "--seed", "3", "-o", str(tmp_path / "d.png"), "-q")
    assert again.code == 0, again.err
    second = openai_server.calls("POST", "/images/generations")[1].json()["prompt"]
    assert second == 'a dog<sd_cpp_extra_args>{"seed":3}</sd_cpp_extra_args>'
    bad = cli("generate", "a cat", *_backend(openai_server), "--profile", "forge", "-q")
    assert bad.code == 2 and "profile must be one of generic, openai, sdcpp, a1111, auto" in bad.err


def test_count_over_http(cli, openai_server, tmp_path) -> None:
    result = cli(
        "generate", "a cat", *_backend(openai_server), "-c", "2", "-o", str(tmp_path), "--json", "-q"
    )
    assert result.code == 0, result.err
    assert len(result.json()["outputs"]) == 2
    assert len({o["sha256"] for o in result.json()["outputs"]}) == 2


def test_edit_with_mask_over_http(cli, openai_server, tmp_path) -> None:
    image = png_file(tmp_path / "in.png", (8, 8))
    mask = png_file(tmp_path / "mask.png", (8, 8), color=(255, 255, 255, 0), mode="RGBA")
    result = cli(
        "edit",
        "add a hat",
        *_backend(openai_server),
        "-i",
        image,
        "--mask",
        mask,
        "-o",
        str(tmp_path / "e.png"),
        "-q",
    )
    assert result.code == 0, result.err
    (call,) = openai_server.calls("POST", "/images/edits")
    fields, files = call.form()
    assert fields["prompt"] == ["add a hat"]
    assert {f.name for f in files} >= {"mask"}


def test_provider_models(cli, openai_server) -> None:
    result = cli("provider-models", *_backend(openai_server))
    assert result.code == 0, result.err
    header, *rows = result.out.splitlines()
    assert header.split() == ["MODEL", "TASKS", "OWNED", "BY"]
    ids = [line.split()[0] for line in rows]
    assert "gpt-image-1" in ids and "tiny-wan" in ids
    wan = next(r.split() for r in rows if r.startswith("tiny-wan "))
    assert "text_to_video" in wan[1].split(",")  # full task names, as --task takes them
    as_json = cli("provider-models", *_backend(openai_server), "--task", "text_to_video", "--json")
    assert as_json.code == 0, as_json.err
    assert "tiny-wan" in [m["id"] for m in as_json.json()]
    short = cli("provider-models", *_backend(openai_server), "--task", "t2v", "--json")
    assert short.code == 0 and short.json() == as_json.json()


def test_video_job_with_progress(cli, openai_server, tmp_path, monkeypatch) -> None:
    from cli_helpers import TTYStringIO

    tty = TTYStringIO()
    monkeypatch.setattr(sys, "stderr", tty)
    result = cli(
        "video", "waves", *_backend(openai_server), "--model", "sora-2", "-o", str(tmp_path / "w.mp4")
    )
    assert result.code == 0, tty.getvalue()
    assert (tmp_path / "w.mp4").read_bytes()[4:8] == b"ftyp"
    assert "\r" in tty.getvalue()


def test_provider_error_is_one_line(cli, openai_server, tmp_path) -> None:
    from openai_fake_server import Reply

    openai_server.script(
        "POST", "/images/generations", Reply(401, json={"error": {"message": "bad key", "type": "auth"}})
    )
    result = cli("generate", "x", *_backend(openai_server), "-o", str(tmp_path / "x.png"))
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("abstractvision: error: ") and len(lines) == 2
    assert "--api-key" in lines[1]
    assert "sk-test-key" not in result.err


def test_connection_refused_hint(cli, tmp_path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = cli(
        "generate", "x", "--base-url", f"http://127.0.0.1:{port}/v1", *FAST, "-o", str(tmp_path / "x.png")
    )
    assert result.code == 1
    assert "--base-url" in result.err
    assert "Traceback" not in result.err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_cancels_a_remote_video_job_in_a_real_process(openai_server, tmp_path) -> None:
    """A real `abstractvision video` process polling a job: SIGINT -> exit 130, the job is deleted."""
    openai_server.video_plan = [("queued", 0)] + [("in_progress", i % 100) for i in range(2000)]
    run = run_in_pty(
        ["video", "waves", *_backend(openai_server), "--model", "sora-2", "-o", str(tmp_path / "w.mp4")],
        timeout=60,
        on_output=send_sigint_once("running"),
    )
    assert run.code == 130, run.tty
    assert "cancelled." in run.tty and "Traceback" not in run.tty
    assert not (tmp_path / "w.mp4").exists()
    assert any(r.method == "DELETE" for r in openai_server.requests)


def test_generate_as_a_real_subprocess(openai_server, tmp_path) -> None:
    result = run_subprocess(
        ["generate", "a cat", *_backend(openai_server), "-o", str(tmp_path / "c.png"), "--json"], timeout=60
    )
    assert result.code == 0, result.err
    assert os.path.isfile(result.json()["outputs"][0]["path"])


def test_concurrent_cli_runs_share_nothing(cli, openai_server, tmp_path) -> None:
    # two sequential runs in one process leave no state behind (the SIGINT handler, env)
    before = threading.active_count()
    for i in range(2):
        assert (
            cli("generate", f"cat {i}", *_backend(openai_server), "-o", str(tmp_path / f"{i}.png"), "-q").code
            == 0
        )
    assert threading.active_count() <= before + 1
