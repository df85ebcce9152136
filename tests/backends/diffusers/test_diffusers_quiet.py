"""Library calls on the Diffusers backend draw no tqdm bars (issue 18).

Progress goes to ``on_progress``; the CLI draws its own. Diffusers' step bars and the
loading bars of diffusers and transformers ("Loading pipeline components...",
"Loading weights") would otherwise print to stderr on every load and call.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")


def test_no_tqdm_bar_on_stderr_during_load_and_calls(tiny_sd: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import diffusers.utils.logging as dlog
        import transformers.utils.logging as tlog
        from abstractvision import VisionManager
        from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend

        backend = HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id={tiny_sd!r}, device="cpu")
        )
        vm = VisionManager(backend=backend)
        events = []
        image = vm.generate_image("a cat", width=64, height=64, steps=2, seed=1, on_progress=events.append)
        vm.edit_image("a dog", image.data, steps=2, seed=1)  # a derived img2img pipeline too
        assert any(e.phase == "step" for e in events), [e.phase for e in events]
        # the global switches are back as they were: the application's own bars still work
        print("bars enabled after:", dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
        """
    )
    src = os.path.join(os.path.dirname(__file__), "..", "..", "..", "src")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.path.abspath(src), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "bars enabled after: True True" in done.stdout
    for mark in ("it/s]", "s/it]", "%|", "Loading pipeline components", "Loading weights"):
        assert mark not in done.stderr, done.stderr
