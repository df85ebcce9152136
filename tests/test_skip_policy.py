"""The skip policy: a deliberately skipped suite fails a strict run; allowed reasons do not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(tmp_path: Path, body: str, *, strict: bool) -> tuple[subprocess.CompletedProcess[str], dict]:
    (tmp_path / "test_sample.py").write_text(body)
    report = tmp_path / "skips.json"
    env = {**os.environ, "PYTHONPATH": str(TESTS), "ABSTRACTVISION_SKIP_REPORT": str(report),
           "ABSTRACTVISION_STRICT_SKIPS": "1" if strict else "0"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_skip_policy", "--rootdir",
         str(tmp_path), "-c", os.devnull, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    return result, json.loads(report.read_text())


def test_an_unexpected_skip_fails_a_strict_run(tmp_path: Path) -> None:
    body = "import pytest\npytest.importorskip('a_module_that_is_not_installed')\ndef test_x():\n    pass\n"
    result, report = _run(tmp_path, body, strict=True)
    assert result.returncode == 1, result.stdout
    assert "UNEXPECTED" in result.stdout and "skip report" in result.stdout
    assert report["skips"][0]["allowed"] is False
    relaxed, _ = _run(tmp_path, body, strict=False)
    assert relaxed.returncode == 5  # outside CI a missing extra is only reported (5: nothing ran)


def test_allowed_reasons_pass(tmp_path: Path) -> None:
    body = "import pytest\n@pytest.mark.skipif(True, reason='needs CUDA or MPS')\ndef test_gpu():\n    pass\n"
    result, report = _run(tmp_path, body, strict=True)
    assert result.returncode == 0, result.stdout
    assert report["skips"] == [
        {"test": "test_sample.py::test_gpu", "reason": "needs CUDA or MPS", "allowed": True}
    ]
