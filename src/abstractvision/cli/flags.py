"""CLI flag types and the generation flags, built from the parameter table (standard library only).

The generation flags (``--steps``, ``--width``, ``--strength``, ``--frames`` ...) take their
type, bounds and help text from :mod:`abstractvision._params` when the parser is built, and
check values against the table when they are parsed; only the spelling (short flags,
metavars) is written here.
"""

from __future__ import annotations

import argparse

from .. import _params

TYPE_CHECKING = False  # not `from typing import ...`: keeps `--help` free of the typing import
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

# -- value types (argparse turns their ValueError/ArgumentTypeError into a usage error) --


def _whole_at_least(text: str, lowest: int) -> int:
    value = _whole(text)
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be {lowest} or more, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_at_least(text, 1)


def seed_int(text: str) -> int:
    return _whole_at_least(text, 0)


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


#: short task names, accepted wherever a task is typed (--task); listings print the full names
TASK_ALIASES = {
    "t2i": "text_to_image",
    "i2i": "image_to_image",
    "upscale": "image_upscale",
    "multi-view": "multi_view_image",
    "t2v": "text_to_video",
    "i2v": "image_to_video",
}


def task_name(text: str) -> str:
    """A task name from its full name (``text_to_video``) or its short one (``t2v``)."""
    from ..types import TASKS

    wanted = text.strip()
    name = TASK_ALIASES.get(wanted.lower(), wanted)
    if name not in TASKS:
        short = ", ".join(f"{k} ({v})" for k, v in TASK_ALIASES.items())
        raise argparse.ArgumentTypeError(
            f"unknown task {text!r}; tasks: {', '.join(TASKS)}; short names: {short}"
        )
    return name


def port_number(text: str) -> int:
    value = seed_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


class Bounded:
    """An argparse type for a numeric row of the table: parses and checks ``[min, max]`` then."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.__name__ = name  # argparse names the type in some messages

    def __call__(self, text: str) -> Any:
        row = _params.PARAMS[self.name]
        value = _whole(text) if row["type"] == "int" else number(text)
        lo, hi = row["min"], row["max"]
        shown = (lo, hi) if row["type"] == "int" else (f"{lo:g}", f"{hi:g}")
        if row.get("min_exclusive") and value <= lo:
            raise argparse.ArgumentTypeError(
                f"must be more than {shown[0]} and at most {shown[1]}, got {value}"
            )
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {shown[0]} and {shown[1]}, got {value}")
        return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def table_help(name: str, text: str = "") -> str:
    """Help for a flag of the table row ``name``: its doc (or ``text``) and its range."""
    row = _params.PARAMS[name]
    words = text or row["doc"][0].lower() + row["doc"][1:].rstrip(".")
    return f"{words} ({_params.range_text(name)})" if "max" in row else words


#: the generation flags: table row -> (flags, metavar, dest); help, type and bounds from the table
_FLAGS = {
    "negative_prompt": (("--negative-prompt",), "TEXT", None),
    "width": (("-W", "--width"), "PX", None),
    "height": (("-H", "--height"), "PX", None),
    "steps": (("-s", "--steps"), "N", None),
    "guidance_scale": (("-g", "--guidance-scale"), "X", None),
    "seed": (("--seed",), "N", None),
    "strength": (("--strength",), "X", None),
    "scale": (("--scale",), "X", None),
    "num_frames": (("-f", "--frames"), "N", "frames"),
    "fps": (("--fps",), "N", None),
    "count": (("-c", "--count"), "N", None),
    "preview_every": (("--preview-every",), "N", None),
    "output_compression": (("--quality",), "Q", None),
}


def add_param(group: Any, name: str, text: str = "", **kwargs: Any) -> None:
    """Add the flag of the table row ``name`` to ``group`` (``text`` rewords its help)."""
    flags, metavar, dest = _FLAGS[name]
    row = _params.PARAMS[name]
    if row["type"] in ("int", "number"):
        kwargs.setdefault("type", Bounded(name))
    if dest is not None:
        kwargs.setdefault("dest", dest)
    group.add_argument(*flags, metavar=metavar, help=table_help(name, text), **kwargs)


def add_sampling(group: Any, *, size: bool = True) -> None:
    add_param(group, "negative_prompt")
    if size:
        add_param(group, "width")
        add_param(group, "height")
    add_param(group, "steps")
    add_param(group, "guidance_scale")
    add_param(group, "seed", "random seed (batches use seed, seed+1, ...)")


def add_extra(group: Any) -> None:
    group.add_argument(
        "-x",
        "--extra",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="backend-specific request parameter, repeatable (numbers, true/false and JSON are parsed)",
    )


def add_lora(group: Any) -> None:
    group.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="SOURCE[:SCALE]",
        help="LoRA adapter (path or hub id), repeatable (diffusers)",
    )


def add_frames(group: Any) -> None:
    add_param(group, "num_frames")
    add_param(group, "fps")


def add_task_flags(group: Any, task: str, reword: Optional[dict[str, str]] = None) -> None:
    """The generation flags of ``task``: the table's rows for it that have a flag, then ``--extra``."""
    takes = _params.task_params(task)
    for name in ("strength", "scale"):
        if name in takes:
            add_param(group, name, (reword or {}).get(name, ""))
    if "num_frames" in takes:
        add_frames(group)
    add_sampling(group, size="width" in takes)
    if task in _params.BATCH_TASKS:
        add_param(group, "count")
        add_lora(group)
    add_extra(group)
