"""The only reasons a test may be skipped in CI, and the check that enforces them.

With ``ABSTRACTVISION_STRICT_SKIPS=1`` (``.ci/run`` sets it), a skipped test whose reason is not
in :data:`ALLOWED_SKIPS` fails the run: a broken extra, a missing Chromium or Redis, an entry
point that is not declared... all show up as skips first, and a green run must not hide them.
``ABSTRACTVISION_SKIP_REPORT=FILE`` also writes every skip (node id, reason, allowed) as JSON;
the report itself is the last section of pytest's output.

Imported by ``tests/conftest.py`` (its hooks become the conftest's); usable alone with
``-p _skip_policy`` and ``tests`` on the path.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

#: skip reason -> why it is acceptable (only machine facts: no GPU here, root ignores file modes)
ALLOWED_SKIPS: dict[str, str] = {
    "needs CUDA or MPS": "GPU-only check; CI machines have no GPU",
    "offload needs CUDA": "GPU-only check; CI machines have no GPU",
    "measures CUDA memory": "GPU-only check; CI machines have no GPU",
    "root can read anything": "file permissions cannot deny root, and CI runs as root",
    "mounting a tmpfs needs root": "the disk-full test mounts a tiny tmpfs; a normal user cannot",
}

_SKIPS: list[dict[str, Any]] = []


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def pytest_runtest_logreport(report: Any) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        _SKIPS.append({"test": report.nodeid, "reason": reason, "allowed": reason in ALLOWED_SKIPS})


def pytest_collectreport(report: Any) -> None:
    if report.skipped:  # a whole module skipped at import (importorskip at module level)
        reason = _reason(report)
        _SKIPS.append({"test": report.nodeid, "reason": reason, "allowed": reason in ALLOWED_SKIPS})


def _strict() -> bool:
    return os.environ.get("ABSTRACTVISION_STRICT_SKIPS", "") not in ("", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get("ABSTRACTVISION_SKIP_REPORT")
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"strict": _strict(), "skips": _SKIPS}, fh, indent=2)
    passed = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if _strict() and any(not s["allowed"] for s in _SKIPS) and exitstatus in passed:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Any:
    yield  # the outermost wrapper: the report comes after pytest's own summaries
    unexpected = [s for s in _SKIPS if not s["allowed"]]
    terminalreporter.section("skip report")
    if not _SKIPS:
        terminalreporter.write_line("no test was skipped")
    for skip in _SKIPS:
        mark = "allowed  " if skip["allowed"] else "UNEXPECTED"
        terminalreporter.write_line(f"{mark} {skip['test']}: {skip['reason']}")
    if unexpected and _strict():
        terminalreporter.write_line(
            f"{len(unexpected)} unexpected skip(s): the run fails (ABSTRACTVISION_STRICT_SKIPS=1). Install what "
            "they need, or add the reason to tests/_skip_policy.py ALLOWED_SKIPS if it is a machine fact."
        )
