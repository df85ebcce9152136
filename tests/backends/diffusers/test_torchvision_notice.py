"""transformers' "`XImageProcessor` requires torchvision ... falling back to `XImageProcessorPil`"
notice is dropped at the Diffusers backend boundary, and nothing else is (issue 20, item 7)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from abstractvision.backends._diffusers.runtime import TorchvisionFallbackFilter, silence_torchvision_fallback

NOTICE = (
    "`CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil` "
    "for backward compatibility. Install torchvision to use the default backend, or import "
    "`CLIPImageProcessorPil` directly to silence this warning."
)
LOGGER = "transformers.utils.import_utils"  # where transformers logs it (utils/import_utils.py)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_filter_drops_the_notice_and_nothing_else() -> None:
    logger = logging.getLogger(LOGGER)
    ours = [f for f in logger.filters if isinstance(f, TorchvisionFallbackFilter)]
    for f in ours:  # another test may have used the backend already: start without it
        logger.removeFilter(f)
    collect = Collect()
    logger.addHandler(collect)
    warnings_before = list(warnings.filters)
    root_filters = list(logging.getLogger().filters)
    try:
        logger.warning(NOTICE)
        assert collect.messages == [NOTICE]  # without the filter it is printed (the test can fail)
        silence_torchvision_fallback()
        silence_torchvision_fallback()  # idempotent
        assert sum(isinstance(f, TorchvisionFallbackFilter) for f in logger.filters) == 1
        collect.messages.clear()
        logger.warning(NOTICE)
        logger.warning(NOTICE.replace("CLIP", "Siglip2"))
        logger.warning("`Foo` requires torchvision, which is not installed: install it to run this model.")
        logger.error("Could not import module 'SomethingImportant'.")
        logger.warning("the %s notice, formatted late", "other")
        assert collect.messages == [
            "`Foo` requires torchvision, which is not installed: install it to run this model.",
            "Could not import module 'SomethingImportant'.",
            "the other notice, formatted late",
        ]
        # no global change: the warnings filters and the root logger are as they were
        assert list(warnings.filters) == warnings_before
        assert list(logging.getLogger().filters) == root_filters
    finally:
        logger.removeHandler(collect)


def test_no_notice_on_stderr_when_the_backend_runs(tmp_path) -> None:
    """A fresh process (the notice is logged once per process) generates with the backend."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    script = textwrap.dedent(
        f"""
        import logging
        from abstractvision import VisionManager
        from abstractvision.backends import HuggingFaceDiffusersBackendConfig, HuggingFaceDiffusersVisionBackend
        from abstractvision.testing.tiny_diffusers import build_tiny_sd

        path = build_tiny_sd({str(tmp_path / "tiny-sd")!r})
        backend = HuggingFaceDiffusersVisionBackend(
            config=HuggingFaceDiffusersBackendConfig(model_id=path, device="cpu")
        )
        vm = VisionManager(backend=backend)
        image = vm.generate_image("a cat", width=64, height=64, steps=1, seed=1)
        vm.edit_image("a dog", image.data, steps=2, seed=1)  # derives an img2img pipeline too
        logging.getLogger({LOGGER!r}).warning("an unrelated transformers warning still shows")
        print("generated", image.mime_type)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(os.getcwd(), "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "generated image/png" in done.stdout
    assert "requires torchvision" not in done.stderr
    assert "an unrelated transformers warning still shows" in done.stderr
