"""Helpers shared by the commands: settings from flags, inputs, Ctrl-C handling, terminal checks."""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Optional

from ..config import BackendSettings, coerce_option, resolve_settings
from ..errors import InvalidRequestError

#: sd.cpp component flags -> backend option names
SDCPP_COMPONENTS = ("diffusion_model", "vae", "taesd", "clip_l", "clip_g", "t5xxl", "llm")


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``[("steps", "4"), ("x", "[1,2]")]`` -> ``{"steps": 4, "x": [1, 2]}`` (numbers, booleans, JSON)."""
    return {key: coerce_option(value) for key, value in pairs}


def settings_from_args(args: argparse.Namespace) -> BackendSettings:
    """Resolve backend settings: these flags > ``ABSTRACTVISION_*`` > config file (see :mod:`abstractvision.config`)."""
    options: dict[str, Any] = {}
    for name in SDCPP_COMPONENTS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    options.update(parse_pairs(getattr(args, "option", None) or ()))
    if getattr(args, "profile", None) is not None:
        options["profile"] = args.profile  # an OpenAI-compatible backend option, given its own flag
    model = getattr(args, "model", None)
    explicit = {
        "backend": getattr(args, "backend", None),
        "model": None if isinstance(model, list) else model,  # serve's repeatable --model: its own
        "base_url": getattr(args, "base_url", None),
        "api_key": getattr(args, "api_key", None),
        "device": getattr(args, "device", None),
        "dtype": getattr(args, "dtype", None),
        "allow_download": getattr(args, "allow_download", None),
        "timeout_s": getattr(args, "timeout", None),
        "store_dir": _store_location(args),
        "models_dir": getattr(args, "models_dir", None),
        "options": options,
    }
    return resolve_settings(explicit, config_path=getattr(args, "config", None))


def _store_location(args: argparse.Namespace) -> Optional[str]:
    """``--store URL`` names the store; else ``--store-dir`` (both may be folders or URLs)."""
    store = getattr(args, "store", None)
    if isinstance(store, str):
        store_dir = getattr(args, "store_dir", None)
        if store_dir and store_dir != store:
            raise InvalidRequestError("Give the store once: --store URL or --store-dir DIR.", param="store")
        return store
    return getattr(args, "store_dir", None)


def open_store(store_dir: Optional[str]) -> Any:
    """The store at a folder or URL (:func:`abstractvision.stores.open_store`)."""
    from ..stores import open_store as open_location

    return open_location(store_dir)


def resolve_artifact_id(store: Any, text: str) -> str:
    """A full artifact id from an id, a unique prefix (6+ characters) or ``artifact:ID``."""
    wanted = text.strip().lower()
    if wanted.startswith("artifact:"):
        wanted = wanted[len("artifact:") :]
    if len(wanted) == 64:
        return wanted
    if len(wanted) < 6 or any(c not in "0123456789abcdef" for c in wanted):
        raise InvalidRequestError(
            f"{text!r} is not an artifact id: use the 64-character id or a unique prefix of 6+ hex characters.",
            param="artifact_id",
        )
    matches = sorted(
        {m["artifact_id"] for m in store.list() if str(m.get("artifact_id", "")).startswith(wanted)}
    )
    if not matches:
        from ..errors import ArtifactNotFoundError

        raise ArtifactNotFoundError(f"No artifact starting with {wanted} in {store.base_dir}.")
    if len(matches) > 1:
        raise InvalidRequestError(
            f"Artifact prefix {wanted} is ambiguous ({len(matches)} matches); give more characters.",
            param="artifact_id",
        )
    return str(matches[0])


def image_input(value: Optional[str], *, name: str, store_dir: Optional[str]) -> Any:
    """What to hand the manager for an image flag: a path, stdin bytes (``-``) or stored bytes (``artifact:ID``)."""
    if value is None:
        return None
    if value == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise InvalidRequestError(f"{name}: nothing was read from stdin.", param=name)
        _check_image(data, name=name, source="the data read from stdin")
        return data
    if value.startswith("artifact:"):
        store = open_store(store_dir)
        data = store.load_bytes(resolve_artifact_id(store, value))
        _check_image(data, name=name, source=f"the stored artifact {value}")
        return data
    from .._media import coerce_image_input

    _check_image(coerce_image_input(value, name=name), name=name, source=f"the file {value!r}")
    return value


def _check_image(data: bytes, *, name: str, source: str) -> None:
    """Refuse, naming ``source`` (the file, stdin, the artifact), bytes that are not a usable image."""
    from .._media import inspect_image

    try:
        inspect_image(data, name=name)
    except InvalidRequestError as exc:
        reason = str(exc).removeprefix(f"{name}: ").rstrip(".").replace(" (PNG, JPEG, WebP, GIF, BMP, TIFF)", "")
        raise InvalidRequestError(
            f"{name}: {source} is not a usable image: {reason}. Give a PNG, JPEG, WebP, GIF, BMP or TIFF image.",
            param=name,
        ) from None


def wants_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def cancel_on_sigint(cancel: threading.Event, notify: Callable[[str], None]) -> Iterator[threading.Event]:
    """While active, the first Ctrl-C sets ``cancel`` (the engine stops at its next step); the second aborts.

    Only the main thread can own signal handlers; elsewhere this does nothing. The handler
    does no I/O and takes no lock (it may interrupt the main thread while it holds the
    progress lock or is inside a write to the terminal): ``notify`` must only queue the text.
    """
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        notify("Cancelling at the next step... (press Ctrl-C again to stop immediately)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}
_NO_BARS_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def quiet_libraries(*, enabled: bool = True, download_bars: bool = False) -> Iterator[None]:
    """Keep third-party logs and tqdm bars (transformers, diffusers, huggingface_hub) off stderr.

    Our own progress line replaces them. This only sets environment defaults (where the user
    has not set them), which those libraries read when they are first imported, so nothing
    heavy is imported here; libraries already imported are switched through their APIs.
    ``download_bars`` keeps tqdm (Hugging Face download progress) on. Everything is restored
    on exit, so in-process callers are left as they were.
    """
    if not enabled:
        yield
        return
    import os

    wanted = dict(_QUIET_ENV) if download_bars else {**_QUIET_ENV, **_NO_BARS_ENV}
    saved_env = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    restore: list[Callable[[], None]] = []
    for name in ("transformers", "diffusers"):
        lib_logging: Any = sys.modules.get(f"{name}.utils.logging")
        if lib_logging is None:
            continue
        level = lib_logging.get_verbosity()
        lib_logging.set_verbosity_error()
        restore.append(functools.partial(lib_logging.set_verbosity, level))
        if not download_bars and lib_logging.is_progress_bar_enabled():
            lib_logging.disable_progress_bar()
            restore.append(lib_logging.enable_progress_bar)
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
