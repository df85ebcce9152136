"""The documentation's runnable examples, run as written (issue 20).

A fenced ``python`` block right after ``<!-- test: serve --demo -->`` runs against a real
``abstractvision serve --demo`` process (the only change: the port 8000 of the text becomes the
test server's free port); one after ``<!-- test: offline -->`` runs on its own. Each document's
marked blocks run in order, in one fresh Python process, in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _cli_helpers() -> ModuleType:
    """tests/cli/cli_helpers.py, loaded by path (no sys.path change that other tests would see)."""
    spec = importlib.util.spec_from_file_location("_docs_cli_helpers", REPO / "tests" / "cli" / "cli_helpers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


_helpers = _cli_helpers()
start_demo_server, stop_demo_server, subprocess_env = (
    _helpers.start_demo_server,
    _helpers.stop_demo_server,
    _helpers.subprocess_env,
)

pytestmark = [pytest.mark.diffusers, pytest.mark.server]

_BLOCK = re.compile(r"<!-- test: (?P<kind>[^>]+?) -->\n```python\n(?P<code>.*?)\n```\n", re.S)


def marked_blocks(doc: str, kind: str) -> list[str]:
    text = (REPO / doc).read_text(encoding="utf-8")
    return [m.group("code") for m in _BLOCK.finditer(text) if m.group("kind") == kind]


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "snippet.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=300, env=subprocess_env()
    )


def test_every_marked_block_is_found() -> None:
    """A marker whose block does not parse would silently drop an example: count them."""
    assert len(marked_blocks("docs/server.md", "serve --demo")) == 1
    assert len(marked_blocks("docs/getting-started.md", "offline")) == 1
    for doc in ("docs/server.md", "docs/getting-started.md", "README.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        assert text.count("<!-- test: ") == len(_BLOCK.findall(text)), doc


def test_server_md_against_serve_demo(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    (code,) = marked_blocks("docs/server.md", "serve --demo")
    assert 'base_url="http://127.0.0.1:8000/v1"' in code
    server = start_demo_server("--log-level", "warning")
    try:
        done = run_python(code.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}"), tmp_path)
    finally:
        code_rc, err = stop_demo_server(server)
    assert done.returncode == 0, done.stderr
    assert code_rc == 0, err
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tiny-sd-noise - random-weight demo model: its images are noise")
    assert lines[1].startswith("tiny-wan-noise - random-weight demo model: its videos are noise")
    assert (tmp_path / "lighthouse-noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "waves-noise.mp4").read_bytes()[4:8] == b"ftyp"


def test_getting_started_offline(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    (code,) = marked_blocks("docs/getting-started.md", "offline")
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "image/png", "video/mp4"]
    assert (tmp_path / "noise.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "noise.mp4").read_bytes()[4:8] == b"ftyp"
    assert "requires torchvision" not in done.stderr
