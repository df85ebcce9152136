"""Reliability suites: fuzzing, store stress and fault injection.

``ABSTRACTVISION_FUZZ=long`` (or ``--hypothesis-profile=long``) runs the long variant.
``ABSTRACTVISION_RELIABILITY_STATS=<file.json>`` makes the session write the figures that
``scripts/reliability_report.py`` renders into ``docs/reliability.md``.
"""

from __future__ import annotations

import os

import pytest

from reliability._support import STATS, STATS_ENV_VAR, decide_mode

_STATS_PATH = os.environ.get(STATS_ENV_VAR)  # read now: tests run with ABSTRACTVISION_* cleared


def pytest_configure(config: pytest.Config) -> None:
    # before any test module is collected (their settings depend on it) or clears the environment
    decide_mode(config.getoption("hypothesis_profile", None))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _STATS_PATH:
        STATS.dump(_STATS_PATH)
