"""The peer for side-by-side benches: abstractvision 0.3.34 from PyPI, in its own venv.

``peer_python()`` creates ``~/.cache/abstractvision-bench/peer-0.3.34`` on first use
(``python -m venv`` + ``pip install abstractvision==0.3.34``, the package alone: its
OpenAI-compatible backend needs nothing else) and reuses it afterwards.
``ours_env()`` is the environment that runs this checkout's ``src`` with the current
interpreter. Both sides run with bytecode caches, as an installed package does.
"""

from __future__ import annotations

import os
import subprocess
import sys

PEER_VERSION = "0.3.34"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")


def peer_dir() -> str:
    return os.path.join(os.path.expanduser("~/.cache/abstractvision-bench"), f"peer-{PEER_VERSION}")


def peer_python() -> str:
    """The peer venv's interpreter, creating the venv when it is missing or broken."""
    venv = peer_dir()
    python = os.path.join(venv, "bin", "python")
    check = [python, "-c", f"import abstractvision as a; assert a.__version__ == {PEER_VERSION!r}"]
    if os.path.exists(python) and subprocess.run(check, capture_output=True, env=peer_env()).returncode == 0:
        return python
    print(
        f"creating the peer venv {venv} (abstractvision=={PEER_VERSION} from the package index)...",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            f"abstractvision=={PEER_VERSION}",
        ],
        check=True,
    )
    subprocess.run(check, check=True, env=peer_env())
    return python


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.pop("ABSTRACTVISION_CAPABILITIES_PATH", None)
    return env


def peer_env() -> dict[str, str]:
    return _clean_env()


def ours_env() -> dict[str, str]:
    """This checkout's ``src`` first on the path, with its bytecode compiled (as installed code is)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", SRC], check=True, capture_output=True)
    env = _clean_env()
    env["PYTHONPATH"] = SRC
    return env
