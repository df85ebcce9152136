"""Entry point: parse, dispatch to one command, turn every failure into one line and an exit code.

User errors never print a traceback; ``--debug`` (or ``ABSTRACTVISION_DEBUG=1``) does.
This module imports only the standard library: the library's error classes are imported
when an error is being reported.
"""

from __future__ import annotations

import importlib
import os
import sys

TYPE_CHECKING = False  # not `from typing import ...`: keeps `--help` free of the typing import
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence
    from typing import Any, Optional

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_MISSING_DEPENDENCY",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MISSING_DEPENDENCY = 3
EXIT_CANCELLED = 130
EXIT_BROKEN_PIPE = 141

#: exit code -> meaning (also printed by ``--help`` and documented in docs/cli.md)
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "generation or backend error",
    EXIT_USAGE: "usage error or invalid input",
    EXIT_MISSING_DEPENDENCY: "missing optional dependency",
    EXIT_CANCELLED: "cancelled (Ctrl-C)",
    EXIT_BROKEN_PIPE: "output pipe closed early",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    from .parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    if args.handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False)) or os.environ.get("ABSTRACTVISION_DEBUG", "") not in ("", "0")
    try:
        module_name, func_name = args.handler.split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        code = int(getattr(module, func_name)(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        _print_error("cancelled.", None)
        return EXIT_CANCELLED
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        code, message, hint = describe_error(exc)
        if getattr(args, "json", False):
            _print_json_error(exc, code, message, hint)
        _print_error(message, hint)
        return code


def _broken_pipe() -> int:
    """The reader went away (``| head``): stop quietly and keep the interpreter from complaining."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _print_error(message: str, hint: Optional[str]) -> None:
    try:
        text = f"abstractvision: error: {message}\n"
        if hint:
            text += f"hint: {hint}\n"
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _print_json_error(exc: BaseException, code: int, message: str, hint: Optional[str]) -> None:
    import json

    payload: dict[str, Any] = {
        "ok": False,
        "error": {"type": type(exc).__name__, "message": message, "hint": hint, "exit_code": code},
    }
    for attr in ("param", "status_code", "request_id"):
        value = getattr(exc, attr, None)
        if value is not None:
            payload["error"][attr] = value
    try:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "(no message)"


def describe_error(exc: BaseException) -> tuple[int, str, Optional[str]]:
    """``(exit code, one-line message, hint or None)`` for an exception a command raised."""
    from .. import errors as e

    message = _one_line(str(exc))
    if isinstance(exc, e.GenerationCancelledError):
        return EXIT_CANCELLED, "cancelled.", None
    if isinstance(exc, e.OptionalDependencyMissingError):
        return EXIT_MISSING_DEPENDENCY, message, None
    if isinstance(exc, ImportError):  # a heavy dependency failed to import inside a backend
        name = getattr(exc, "name", None) or "a dependency"
        return (
            EXIT_MISSING_DEPENDENCY,
            f"cannot import {name}: {message}",
            'install the extra for your backend, e.g. pip install "abstractvision[diffusers]"',
        )
    hints: list[tuple[type[BaseException], Optional[str], int]] = [
        (e.UnknownModelError, "'abstractvision models' lists the known model ids.", EXIT_USAGE),
        (
            e.CapabilityNotSupportedError,
            "'abstractvision models MODEL' shows what a model supports; "
            "--skip-registry-check skips the registry check.",
            EXIT_USAGE,
        ),
        (e.ArtifactNotFoundError, "'abstractvision store list' shows the stored artifacts.", EXIT_USAGE),
        (
            e.BackendNotConfiguredError,
            "choose a backend with --backend or ABSTRACTVISION_BACKEND.",
            EXIT_USAGE,
        ),
        (e.CapabilityRegistryError, "fix or unset ABSTRACTVISION_CAPABILITIES_PATH.", EXIT_USAGE),
        (e.InvalidRequestError, None, EXIT_USAGE),
        (
            e.ProviderAuthenticationError,
            "pass --api-key or set ABSTRACTVISION_API_KEY (the key is never printed).",
            EXIT_ERROR,
        ),
        (e.ProviderConnectionError, "check --base-url: is the server running and reachable?", EXIT_ERROR),
        (e.ProviderRateLimitError, "the provider is rate limiting: wait and retry.", EXIT_ERROR),
        (e.GenerationTimeoutError, "raise --timeout, or lower --steps / the size.", EXIT_ERROR),
        (e.ProviderTimeoutError, "raise --timeout, or lower --steps / the size.", EXIT_ERROR),
        # the message names the cause and the fix (a missing download, a gated model, a broken folder)
        (e.ModelLoadError, "rerun with --debug for the loader's traceback.", EXIT_ERROR),
        (
            e.OutOfMemoryError,
            "lower --width/--height or --count, or enable offloading with -O offload=model.",
            EXIT_ERROR,
        ),
        (e.BackendError, "rerun with --debug for the engine's traceback.", EXIT_ERROR),
        (e.AbstractVisionError, None, EXIT_ERROR),
    ]
    for cls, hint, code in hints:
        if isinstance(exc, cls):
            if code == EXIT_USAGE and isinstance(exc, e.InvalidRequestError) and exc.param == "backend":
                hint = hint or "'abstractvision doctor' shows where each setting comes from."
            return code, message, hint
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return EXIT_ERROR, _one_line(f"{exc.strerror or exc}{where}"), None
    return (
        EXIT_ERROR,
        f"unexpected {type(exc).__name__}: {message}",
        "this looks like a bug; rerun with --debug for the traceback and report it.",
    )
