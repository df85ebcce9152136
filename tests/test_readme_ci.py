"""CI runs the README's Development block as written (issue 20): the block holds every step a
fresh clone needs, scripts/readme-block.sh prints exactly that block, and .ci/run runs what it
prints and adds no step of its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- ci: test-steps "


def readme_block(text: str) -> list[str]:
    """The fenced block after the marker, read independently of the shell script."""
    after = text[text.index(MARKER) :].split("\n", 1)[1]
    match = re.match(r"```bash\n(.*?)\n```\n", after, re.S)
    assert match, "the marker must be followed by a ```bash block"
    return match.group(1).splitlines()


def test_the_block_holds_every_step_of_a_fresh_clone() -> None:
    lines = readme_block((REPO / "README.md").read_text(encoding="utf-8"))
    assert lines == [
        "python3 -m venv .venv && . .venv/bin/activate",
        'pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu',
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y cmake g++ chromium redis-server",
        'pip install -e ".[all]"',
        "bash scripts/build-sd-server.sh",
        "bash scripts/install-abstractcore.sh",
        "ruff check src tests bench && mypy",
        "python -m pytest",
    ]


def test_the_script_prints_exactly_the_readme_block() -> None:
    printed = subprocess.run(
        ["bash", str(REPO / "scripts" / "readme-block.sh"), "test-steps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.splitlines() == readme_block((REPO / "README.md").read_text(encoding="utf-8"))


def test_the_script_refuses_a_missing_or_open_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- ci: test-steps -->\n```bash\npython -m pytest\n")  # no closing fence
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "readme-block.sh"), "test-steps", str(readme)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "no complete block" in done.stderr
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "readme-block.sh"), "other", str(readme)], capture_output=True, text=True
    )
    assert done.returncode == 1


def test_ci_runs_the_block_and_nothing_else() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    code = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert 'steps=$(bash scripts/readme-block.sh test-steps)' in code
    assert any(line.startswith("bash -euxo pipefail -c ") and line.endswith('"$steps"') for line in code)
    for own_step in ("pip ", "pytest", "apt-get", "ruff", "mypy", "build-sd-server", "install-abstractcore"):
        assert not any(own_step in line for line in code), f".ci/run runs {own_step!r} itself"
