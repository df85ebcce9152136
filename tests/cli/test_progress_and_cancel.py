"""Progress on a terminal only, and Ctrl-C (SIGINT) cancelling a generation with exit code 130."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest
from cli_helpers import TTYStringIO, run_in_pty, run_subprocess, send_sigint_once

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals and signals")


def test_progress_bar_on_a_terminal(cli, fake, tmp_path, monkeypatch) -> None:
    tty = TTYStringIO()
    monkeypatch.setattr(sys, "stderr", tty)
    result = cli("generate", "a cat", "--steps", "4", "-o", str(tmp_path / "a.png"))
    assert result.code == 0
    drawn = tty.getvalue()
    assert "\r" in drawn
    assert "4/4 steps" in drawn
    assert "generate: 1 image in" in drawn  # the summary follows the erased bar


def test_no_progress_when_quiet_on_a_terminal(cli, fake, tmp_path, monkeypatch) -> None:
    tty = TTYStringIO()
    monkeypatch.setattr(sys, "stderr", tty)
    assert cli("generate", "a cat", "-q", "-o", str(tmp_path / "a.png")).code == 0
    assert tty.getvalue() == ""


def test_no_progress_when_stderr_is_not_a_terminal(cli, fake, tmp_path) -> None:
    result = cli("generate", "a cat", "--steps", "4", "-o", str(tmp_path / "a.png"))
    assert result.code == 0
    assert "\r" not in result.err
    assert "steps" not in result.err
    assert result.err.startswith("generate: 1 image in")


def test_progress_renderer_draws_steps_fractions_and_phases() -> None:
    from abstractvision.cli.progress import ProgressRenderer
    from abstractvision.types import ProgressEvent

    stream = TTYStringIO()
    bar = ProgressRenderer(stream, label="video", enabled=True, tick_s=0)
    bar(ProgressEvent(task="text_to_video", phase="loading", message="loading tiny-wan"))
    assert "loading tiny-wan" in bar.render_line()
    bar(ProgressEvent(task="text_to_video", phase="in_progress", progress=0.5))
    assert " 50%" in bar.render_line()
    bar(ProgressEvent(task="text_to_video", phase="step", step=3, total_steps=10))
    assert "3/10 steps" in bar.render_line()
    bar.note("a message")
    bar.close()
    text = stream.getvalue()
    assert "a message\n" in text
    assert text.endswith("\r")  # the bar is erased at the end
    off = ProgressRenderer(stream, label="x", enabled=False)
    off(ProgressEvent(task="text_to_image", phase="step", step=1, total_steps=2))
    off.close()
    assert off.events == 0


def test_sigint_cancels_in_process(cli, fake, tmp_path) -> None:
    """SIGINT delivered to this process while the fake engine steps: cancelled at the next step."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers belong to the main thread")
    fake.backend.steps_delay_s = 0.05

    def interrupt() -> None:
        fake.backend.started.wait(10)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    killer = threading.Thread(target=interrupt)
    killer.start()
    result = cli("generate", "a cat", "--steps", "200", "-o", str(tmp_path / "a.png"), "--json")
    killer.join()
    assert result.code == 130
    assert "Cancelling at the next step" in result.err
    assert "abstractvision: error: cancelled." in result.err
    assert result.json()["error"]["type"] == "GenerationCancelledError"
    assert not (tmp_path / "a.png").exists()
    assert signal.getsignal(signal.SIGINT) is previous  # the handler was restored
    assert fake.backend.closed


def test_sigint_in_a_real_process_on_a_terminal(tmp_path) -> None:
    """Progress shows on the pty; one SIGINT after the first steps ends the run with 130."""
    run = run_in_pty(
        ["generate", "a cat", "--steps", "400", "-o", str(tmp_path / "never.png")],
        fake=True,
        timeout=60,
        on_output=send_sigint_once("/400 steps"),
        FAKE_STEP_DELAY_S="0.05",
    )
    assert run.code == 130, run.tty
    assert "/400 steps" in run.tty
    assert "Cancelling at the next step" in run.tty
    assert "abstractvision: error: cancelled." in run.tty
    assert "Traceback" not in run.tty
    assert run.stdout == ""
    assert not (tmp_path / "never.png").exists()


def test_piped_stderr_has_no_progress_in_a_real_process(tmp_path) -> None:
    result = run_subprocess(["generate", "a cat", "--steps", "5", "-o", str(tmp_path / "a.png")], fake=True)
    assert result.code == 0, result.err
    assert "\r" not in result.err and "steps" not in result.err
    assert result.out.strip() == str(tmp_path / "a.png")
