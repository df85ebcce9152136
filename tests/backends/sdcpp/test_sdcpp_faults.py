"""Faults of the native engine become typed errors; the host survives and the backend recovers.

Crashes are real: a worker killed by a signal (the engine's own SIGSEGV on a component set
it cannot run, an injected SIGABRT at a sampling step, a kill from outside), a worker that
exits while loading, and a worker that stops making progress.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("stable_diffusion_cpp")

from abstractvision.backends import StableDiffusionCppVisionBackend
from abstractvision.backends._sdcpp.worker import FAULT_ENV
from abstractvision.errors import (
    BackendError,
    EngineCrashedError,
    GenerationCancelledError,
    GenerationTimeoutError,
    ModelLoadError,
    OptionalDependencyMissingError,
)
from abstractvision.types import ProgressEvent

pytestmark = pytest.mark.sdcpp

GEN = {"width": 64, "height": 64, "steps": 2, "guidance_scale": 1.0, "seed": 1}
HOST = os.getpid()


def works(vm: Any) -> None:
    asset = vm.generate_image("after recovery", **GEN)
    assert asset.to_pil().size == (64, 64)
    assert os.getpid() == HOST


def test_corrupt_model_file_is_refused_before_the_engine_sees_it(
    make_manager: Any, tmp_path: Any, tiny_flux: Any
) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    vm = make_manager(diffusion_model=str(bad))
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        vm.generate_image("x", **GEN)
    assert vm.backend.worker_pid is None  # no worker was started for it
    shutil.copyfile(tiny_flux.diffusion_model, bad)  # fixed on disk: the same backend recovers
    works(vm)


def test_truncated_model_file_is_refused(make_manager: Any, tmp_path: Any, tiny_flux: Any) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(Path(tiny_flux.diffusion_model_gguf).read_bytes()[:100_000])
    vm = make_manager(diffusion_model=str(cut))
    with pytest.raises(ModelLoadError, match="truncated"):
        vm.preload()


def test_engine_load_failure_is_a_model_load_error(make_manager: Any, tiny_flux: Any) -> None:
    # a valid file of the wrong kind: the engine returns a NULL context (no crash)
    vm = make_manager(taesd=tiny_flux.upscaler)
    with pytest.raises(ModelLoadError, match="could not load the model") as info:
        vm.generate_image("x", **GEN)
    assert "not in model file" in str(info.value)  # the engine's own reason is kept
    assert vm.backend.worker_pid is None
    vm.backend.config.taesd = tiny_flux.taesd
    works(vm)


def test_missing_component_file(make_manager: Any, tmp_path: Any, tiny_flux: Any) -> None:
    path = tmp_path / "clip_l.safetensors"
    vm = make_manager(clip_l=str(path))
    with pytest.raises(ModelLoadError, match="no such file"):
        vm.generate_image("x", **GEN)
    os.symlink(tiny_flux.clip_l, path)
    works(vm)


def test_omitted_component_is_refused_at_construction(make_config: Any) -> None:
    with pytest.raises(ModelLoadError, match="text encoder"):
        StableDiffusionCppVisionBackend(make_config(clip_l=None))
    with pytest.raises(ModelLoadError, match="VAE"):
        StableDiffusionCppVisionBackend(make_config(taesd=None))


def test_engine_segfault_on_a_missing_component_is_contained(make_manager: Any) -> None:
    # without a text encoder sd.cpp itself dies with SIGSEGV in generate_image
    vm = make_manager(clip_l=None, check_components=False)
    with pytest.raises(EngineCrashedError, match=r"SIG|exited") as info:
        vm.generate_image("x", **GEN)
    assert "restarted on the next call" in str(info.value)
    assert os.getpid() == HOST
    assert vm.backend.worker_pid is None


def test_crash_mid_generation_then_recovery(make_manager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    vm = make_manager()
    works(vm)
    first = vm.backend.worker_pid
    vm.unload()
    monkeypatch.setenv(FAULT_ENV, "abort@step=1")
    events: list[ProgressEvent] = []
    with pytest.raises(EngineCrashedError, match="SIGABRT" if hasattr(signal, "SIGABRT") else "") as info:
        vm.generate_image("x", on_progress=events.append, **GEN)
    assert "injected fault" in str(info.value)  # the worker's last stderr lines are reported
    assert [e.step for e in events if e.phase == "step"] == [1]  # it died after step 1
    monkeypatch.delenv(FAULT_ENV)
    asset = vm.generate_image("after recovery", **GEN)
    assert asset.metadata["worker"]["pid"] not in (first, None)
    assert asset.metadata["worker"]["restarts"] == 1


def test_worker_killed_from_outside_during_generation(make_manager: Any) -> None:
    vm = make_manager()
    vm.preload()

    def kill_on_first_step(event: ProgressEvent) -> None:
        if event.phase == "step":
            os.kill(vm.backend.worker_pid, signal.SIGKILL)

    with pytest.raises(EngineCrashedError, match="SIGKILL"):
        vm.generate_image("x", on_progress=kill_on_first_step, **{**GEN, "steps": 30})
    works(vm)


def test_crash_while_loading_is_a_model_load_error(
    make_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "exit@load")
    vm = make_manager()
    with pytest.raises(ModelLoadError, match="exited with code 70 while loading"):
        vm.generate_image("x", **GEN)
    monkeypatch.delenv(FAULT_ENV)
    works(vm)


def test_hang_is_detected_and_the_worker_replaced(make_manager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "hang@step=1")
    vm = make_manager(hang_timeout_s=1.0)
    with pytest.raises(EngineCrashedError, match="no progress for 1s"):
        vm.generate_image("x", **GEN)
    monkeypatch.delenv(FAULT_ENV)
    vm.backend.config.hang_timeout_s = 60.0  # a busy machine can be silent for 1s while loading
    works(vm)


def test_deadline_is_a_timeout_error(make_manager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "hang@step=1")
    vm = make_manager(timeout_s=3.0)
    with pytest.raises(GenerationTimeoutError):
        vm.generate_image("x", **GEN)
    monkeypatch.delenv(FAULT_ENV)
    vm.backend.config.timeout_s = None  # the deadline covers loading too; keep recovery unhurried
    works(vm)


def test_cancel_at_a_step_boundary(make_manager: Any) -> None:
    vm = make_manager()
    cancel = threading.Event()
    seen: list[int] = []

    def on_progress(event: ProgressEvent) -> None:
        if event.phase == "step":
            seen.append(event.step or 0)
            cancel.set()

    with pytest.raises(GenerationCancelledError):
        vm.generate_image("x", on_progress=on_progress, cancel=cancel, **{**GEN, "steps": 30})
    assert seen and max(seen) < 30
    assert vm.backend.worker_pid is None
    works(vm)


def test_a_raising_progress_callback_does_not_leave_a_busy_worker(make_manager: Any) -> None:
    vm = make_manager()

    def boom(event: ProgressEvent) -> None:
        if event.phase == "step":
            raise RuntimeError("callback failed")

    with pytest.raises(BackendError, match="callback failed"):  # the manager wraps foreign errors
        vm.generate_image("x", on_progress=boom, **GEN)
    works(vm)


def test_missing_binding_names_the_extra(monkeypatch: pytest.MonkeyPatch, make_config: Any) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "stable_diffusion_cpp" else real(name, *a),
    )
    with pytest.raises(OptionalDependencyMissingError, match=r"abstractvision\[sdcpp\]"):
        StableDiffusionCppVisionBackend(make_config())


def test_worker_that_cannot_start_is_an_engine_error(
    make_manager: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import abstractvision.backends._sdcpp.process as proc

    vm = make_manager()
    with monkeypatch.context() as patch:
        patch.setattr(proc.sys, "executable", "/nonexistent/python")
        with pytest.raises(EngineCrashedError, match="Could not start"):
            vm.generate_image("x", **GEN)
    works(vm)
