"""Claims in the docs that drift when the code changes: CLI flags, server routes, env vars, defaults.

Every ``--flag`` the docs show on an ``abstractvision COMMAND`` line exists in that command's
``--help``, and every flag the CLI reference names in backticks exists in some command; every
``GET|POST|DELETE /v1/...`` route the docs name is a route of the server; every
``ABSTRACTVISION_*`` variable the docs name is read by the code; the defaults the docs state are
the code's defaults (issue 19, item 4).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"```(?:bash|sh|console|shell)?\n(.*?)```", re.S)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def _help(command: str) -> str:
    args = [sys.executable, "-m", "abstractvision", *([command] if command else []), "--help"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _commands() -> dict[str, str]:
    """Every command and alias of the CLI, mapped to its command name (from the real --help)."""
    names: dict[str, str] = {}
    for m in re.finditer(r"^    ([a-z0-9-]+)(?: \(([a-z0-9-]+)\))?", _help(""), re.M):
        names[m.group(1)] = m.group(1)
        if m.group(2):
            names[m.group(2)] = m.group(1)
    return names


def _flags_in(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


def _command_lines() -> list[tuple[str, str, str]]:
    """(file, command, line) for each ``abstractvision COMMAND ...`` line of a shell block."""
    found = []
    for path in DOCS:
        for block in FENCE.findall(_text(path)):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                m = re.match(r"\s*(?:\$ )?abstractvision ([a-z0-9-]+)\b(.*)", line)
                if m:
                    found.append((path.relative_to(REPO).as_posix(), m.group(1), m.group(2)))
    return found


def test_shell_examples_use_flags_their_command_has() -> None:
    commands = _commands()
    lines = _command_lines()
    assert len(lines) > 10, "the docs' abstractvision examples were not found"
    wrong = []
    for where, command, rest in lines:
        assert command in commands, f"{where}: 'abstractvision {command}' is not a command"
        rest = rest.split("#", 1)[0]
        known = _flags_in(_help(commands[command]))
        for flag in set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest)) - known:
            wrong.append(f"{where}: abstractvision {command} has no {flag}")
    assert not wrong, "\n".join(sorted(wrong))


def test_cli_reference_names_only_real_flags() -> None:
    every = set().union(*(_flags_in(_help(c)) for c in set(_commands().values())), _flags_in(_help("")))
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", _text(REPO / "docs" / "cli.md")))
    assert len(named) > 30
    assert named - every == set(), f"docs/cli.md names flags no command has: {sorted(named - every)}"


def _server_routes() -> set[tuple[str, str]]:
    from abstractvision.server.app import ROUTES

    routes = set()
    for route in ROUTES:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                routes.add((method, re.sub(r"\{[^}]+\}", "{}", route.path)))
    return routes


def test_documented_routes_exist() -> None:
    served = _server_routes()
    named = set()
    for path in DOCS:
        for method, route in re.findall(r"\b(GET|POST|DELETE|PUT|PATCH) (/[^\s`\"')?,]*)", _text(path)):
            if route.startswith("/v1/") or route in ("/", "/healthz", "/openapi.json"):
                named.add((path.relative_to(REPO).as_posix(), method, re.sub(r"\{[^}]+\}", "{}", route)))
    assert len(named) > 15
    missing = sorted(f"{where}: {m} {r}" for where, m, r in named if (m, r) not in served)
    assert not missing, "routes the docs name that the server does not have:\n" + "\n".join(missing)


def test_documented_environment_variables_are_read() -> None:
    from abstractvision import config

    source = "\n".join(_text(p) for p in (REPO / "src").rglob("*.py"))
    # the settings resolver reads ABSTRACTVISION_<SETTING> for each of its scalar settings
    source += "\n".join(f"ABSTRACTVISION_{k.upper()}" for k in config._SCALARS)
    tests = "\n".join(_text(p) for p in (REPO / "tests").rglob("*.py") if p.name != Path(__file__).name)
    named = {v for p in DOCS for v in re.findall(r"\bABSTRACTVISION_[A-Z0-9_]*[A-Z0-9]_?", _text(p))}
    assert "ABSTRACTVISION_STORE_DIR" in named
    unread = sorted(v for v in named if v not in source and v not in tests)
    assert not unread, f"the docs name variables nothing reads: {unread}"


@pytest.mark.parametrize(
    ("doc", "claim", "actual"),
    [
        ("docs/cli.md", "`none` (default)", lambda: __import__("abstractvision._validation", fromlist=["x"]).DEFAULT_EMBED_METADATA == "none"),
        ("docs/cli.md", "default `~/.abstractvision/assets`", lambda: "~/.abstractvision/assets" in _help("store") or _store_default()),
        ("README.md", "http://127.0.0.1:8000/", lambda: "127.0.0.1" in _help("serve") and "8000" in _help("serve")),
    ],
    ids=["embed_metadata", "store_dir", "serve_address"],
)
def test_documented_defaults_are_the_code_defaults(doc: str, claim: str, actual) -> None:  # type: ignore[no-untyped-def]
    assert claim in _text(REPO / doc), f"{doc} no longer says {claim!r}: update this test with the docs"
    assert actual(), f"{doc} says {claim!r}, the code's default differs"


def _store_default() -> bool:
    import os

    from abstractvision import LocalAssetStore

    env = os.environ.pop("ABSTRACTVISION_STORE_DIR", None)
    try:
        return Path(LocalAssetStore().base_dir) == Path("~/.abstractvision/assets").expanduser()
    finally:
        if env is not None:
            os.environ["ABSTRACTVISION_STORE_DIR"] = env
