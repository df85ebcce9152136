"""Run the real CLI in a real process, with tests/fakes.py's FakeBackend as every backend.

Used by the subprocess tests that need a slow, step-reporting engine without torch
(progress on a pseudo-terminal, SIGINT). ``FAKE_STEP_DELAY_S`` slows each step down.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import abstractvision.config as config
from abstractvision.cli import main
from fakes import FakeBackend


def _fake_backend(settings: object) -> FakeBackend:
    return FakeBackend(steps_delay_s=float(os.environ.get("FAKE_STEP_DELAY_S", "0")))


config.create_backend = _fake_backend  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
