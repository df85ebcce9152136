"""Fast start (--help imports nothing heavy), every command's help, usage errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import run_subprocess, subprocess_env

HEAVY = ("torch", "diffusers", "transformers", "PIL", "httpx", "numpy", "starlette", "uvicorn")
COMMANDS = (
    "generate",
    "edit",
    "upscale",
    "video",
    "i2v",
    "angles",
    "models",
    "provider-models",
    "store",
    "serve",
    "doctor",
    "demo",
)


def _loaded_after(argv: list[str]) -> dict[str, object]:
    code = (
        "import json, sys\n"
        "from abstractvision.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print(json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["demo", "--help"], ["--version"]])
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    result = _loaded_after(argv)
    assert result == {"rc": 0, "heavy": []}


def test_models_and_store_listing_stay_light() -> None:
    assert _loaded_after(["models", "--task", "text_to_image"])["heavy"] == []
    assert _loaded_after(["store", "list"])["heavy"] == []


def test_top_level_help_lists_commands_and_exit_codes(cli) -> None:
    from abstractvision.cli import EXIT_CODES

    result = cli("--help")
    assert result.code == 0
    for name in COMMANDS:
        assert name in result.out
    for code in EXIT_CODES:
        assert f"\n  {code} " in result.out
    assert "ABSTRACTVISION_BACKEND" in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: abstractvision {command}")


def test_store_actions_have_help(cli) -> None:
    for action in ("list", "show", "export", "delete"):
        assert cli("store", action, "--help").code == 0


def test_version(cli) -> None:
    from abstractvision import __version__

    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"abstractvision {__version__}"


def test_no_command_prints_help_and_exits_2(cli) -> None:
    result = cli()
    assert result.code == 2
    assert "usage: abstractvision" in result.err


@pytest.mark.parametrize(
    ("argv", "message", "hint"),
    [
        (["generat", "x"], "invalid choice: 'generat'", "did you mean 'generate'?"),
        (["generate", "x", "--stepz", "3"], "unrecognized arguments: --stepz", "Did you mean '--steps'?"),
        (
            ["generate", "x", "--steps", "many"],
            "expected a whole number, got 'many'",
            "abstractvision generate --help",
        ),
        (["generate", "x", "--width", "0"], "must be between 1 and 16384", "abstractvision generate --help"),
        (["generate", "x", "--seed", "-1"], "must be between 0 and", None),
        (["generate", "x", "--guidance-scale", "nan"], "finite number", None),
        (["generate", "x", "--extra", "novalue"], "expected KEY=VALUE", None),
        (
            ["generate", "x", "--frames", "9"],
            "unrecognized arguments: --frames",
            "--frames is an option of 'abstractvision video' and 'abstractvision i2v', not of "
            "'abstractvision generate'. Or see 'abstractvision generate --help'.",
        ),
        (
            ["video", "x", "--strenght", "0.5"],
            "unrecognized arguments: --strenght",
            "Did you mean '--strength'? It is an option of 'abstractvision edit' and 'abstractvision angles'.",
        ),
        (["generate", "x", "--zzz"], "unrecognized arguments: --zzz", "See 'abstractvision generate --help'."),
        (["models", "--task", "t2x"], "unknown task 't2x'", "abstractvision models --help"),
        (["generate"], "the following arguments are required: prompt", None),
        (["edit", "make it blue"], "the following arguments are required: -i/--image", None),
        (["store", "list", "--limt", "3"], "unrecognized arguments: --limt", "Did you mean '--limit'?"),
        (["store"], "required: ACTION", None),
    ],
)
def test_bad_flags_are_rejected_with_one_line_and_a_hint(cli, argv, message, hint) -> None:
    result = cli(*argv)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, result.err
    assert "error:" in lines[0] and message in lines[0]
    assert lines[1].startswith("hint: ")
    if hint:
        assert hint in lines[1]
    # only close spellings are offered: '--frames' is not a misspelt '--taesd' (issue 20)
    assert "--taesd" not in lines[1]
    assert "Traceback" not in result.err
    assert result.out == ""


def test_no_backend_selected_is_a_usage_error(cli) -> None:
    result = cli("generate", "a cat")
    assert result.code == 2
    assert result.err.startswith("abstractvision: error: No backend selected.")
    assert "hint:" in result.err
    assert "Traceback" not in result.err


def test_unknown_backend_is_a_usage_error(cli) -> None:
    result = cli("generate", "a cat", "--backend", "dalle")
    assert result.code == 2
    assert "Unknown backend 'dalle'" in result.err


def test_unknown_backend_option_is_a_usage_error(cli) -> None:
    result = cli("generate", "a cat", "--backend", "openai", "-O", "no_such_option=1")
    assert result.code == 2
    assert "Unknown openai backend option 'no_such_option'" in result.err


def test_module_entry_point_runs_as_a_subprocess() -> None:
    result = run_subprocess(["--version"])
    assert result.code == 0
    assert result.out.startswith("abstractvision ")
    bad = run_subprocess(["generate", "x", "--steps", "zero"])
    assert bad.code == 2
    assert "Traceback" not in bad.err
