"""Shared pieces of the reliability suites: run mode, hypothesis settings and figures.

Mode: ``ABSTRACTVISION_FUZZ=long`` (or ``--hypothesis-profile=long``) selects the long run;
anything else is the CI run (a reduced example count, bounded time). The suites record what
they did (examples per property, outcomes, faults injected, writes, processes) in
:data:`STATS`; ``tests/reliability/conftest.py`` writes it as JSON at the end of the session
when ``ABSTRACTVISION_RELIABILITY_STATS`` names a file, and ``scripts/reliability_report.py``
turns that into ``docs/reliability.md``.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from typing import Any, Optional

from hypothesis import HealthCheck, settings

MODE_ENV_VAR = "ABSTRACTVISION_FUZZ"
STATS_ENV_VAR = "ABSTRACTVISION_RELIABILITY_STATS"

#: examples per property: (CI, long)
_EXAMPLES = {"ci": 100, "long": 2000}

settings.register_profile("ci", max_examples=_EXAMPLES["ci"], deadline=None)
settings.register_profile("long", max_examples=_EXAMPLES["long"], deadline=None)


_mode: list[str] = []


def decide_mode(profile: Optional[str] = None) -> str:
    """Fix the run mode: long when ``ABSTRACTVISION_FUZZ=long`` or the hypothesis profile is ``long``.

    Called once by the conftest at configuration time: the test suite's autouse fixture
    clears ``ABSTRACTVISION_*`` variables while each test runs.
    """
    if not _mode:
        long = os.environ.get(MODE_ENV_VAR, "").strip().lower() == "long" or profile == "long"
        _mode.append("long" if long else "ci")
    return _mode[0]


def mode() -> str:
    return _mode[0] if _mode else decide_mode()


def is_long() -> bool:
    return mode() == "long"


def fuzz_settings(*, scale: float = 1.0, **overrides: Any) -> settings:
    """Settings for one property: the mode's example count times ``scale``.

    No per-example deadline (shared CI machines are noisy): hangs are caught by the
    ``pytest.mark.timeout`` every property carries.
    """
    base: dict[str, Any] = dict(
        max_examples=max(10, int(_EXAMPLES[mode()] * scale)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
        print_blob=True,
    )
    base.update(overrides)
    return settings(**base)


class Stats:
    """Thread-safe counters and figures collected during a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.examples: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.figures: dict[str, dict[str, Any]] = {}
        self.max_call_s: dict[str, float] = {}

    def outcome(self, prop: str, outcome: str) -> None:
        with self._lock:
            self.examples[prop][outcome] += 1

    def figure(self, name: str, **values: Any) -> None:
        with self._lock:
            entry = self.figures.setdefault(name, {})
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key in entry:
                    entry[key] += value
                else:
                    entry[key] = value

    def slowest(self, name: str, seconds: float) -> None:
        """Keep the longest single call seen for ``name``."""
        with self._lock:
            self.max_call_s[name] = max(self.max_call_s.get(name, 0.0), seconds)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": mode(),
                "examples": {k: dict(v) for k, v in sorted(self.examples.items())},
                "figures": dict(sorted(self.figures.items())),
                "slowest_call_s": {k: round(v, 3) for k, v in sorted(self.max_call_s.items())},
            }

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, sort_keys=True, default=str)


STATS = Stats()
