"""Parameter validation at the API edge: types, ranges and names, with messages that say what to fix.

Every check raises :class:`~abstractvision.errors.InvalidRequestError` naming the parameter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from . import _params
from .errors import InvalidRequestError
from .types import LoRAAdapterSpec

#: First-class parameters of each task (besides the positional prompt/image arguments), from
#: the parameter table (:mod:`abstractvision._params`).
TASK_PARAMS: dict[str, tuple[str, ...]] = {task: _params.task_params(task) for task in _params.ALL_TASKS}
_RUNTIME = tuple(n for n, r in _params.PARAMS.items() if r.get("runtime"))
#: How the result is written and checked (handled by the manager, never sent to a backend).
IMAGE_OUTPUT_OPTIONS = tuple(n for n, r in _params.PARAMS.items() if r.get("output"))
VIDEO_OUTPUT_OPTIONS = tuple(
    n for n in IMAGE_OUTPUT_OPTIONS if _params.VIDEO_TASKS[0] in _params.PARAMS[n]["tasks"]
)

#: The generation parameters a backend may honour or ignore (see
#: :attr:`~abstractvision.types.VisionBackendCapabilities.honoured_parameters`): everything
#: a task takes except its required inputs (the prompt where it is required, the input
#: image), the multi-view plan and the manager's own options.
_NOT_GENERATION = {"image", "reference_image", "angles", "strategy", *_RUNTIME, *IMAGE_OUTPUT_OPTIONS}
_PROMPT_REQUIRED = _params.PROMPT_REQUIRED
GENERATION_PARAMS: dict[str, tuple[str, ...]] = {
    task: tuple(
        p for p in names if p not in _NOT_GENERATION and not (p == "prompt" and task in _PROMPT_REQUIRED)
    )
    for task, names in TASK_PARAMS.items()
}

#: Names users often reach for, mapped to ours (used for "did you mean" hints only).
_ALIASES = {
    "num_inference_steps": "steps",
    "cfg_scale": "guidance_scale",
    "cfg": "guidance_scale",
    "frames": "num_frames",
    "negative": "negative_prompt",
    "init_image": "image",
    "mask_image": "mask",
    "loras": "lora_adapters",
    "size": "width/height",
}


def check_param_names(task: str, params: Mapping[str, Any], *, batch: bool = False) -> None:
    allowed = set(TASK_PARAMS[task])
    for name in params:
        if name in allowed:
            continue
        if name in ("n", "count"):
            raise InvalidRequestError(
                f"'{name}' is not accepted by the single-output method; use the *_batch method "
                f"(for example generate_image_batch(prompt, count=4)) to get several outputs.",
                param=name,
            )
        hint = _ALIASES.get(name)
        if hint is None:
            import difflib

            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = close[0] if close else None
        suggestion = f" Did you mean '{hint}'?" if hint else ""
        raise InvalidRequestError(
            f"Unknown parameter '{name}' for {task}.{suggestion} Pass backend-specific options in "
            f"extra={{'{name}': ...}}. Accepted: {', '.join(sorted(allowed))}.",
            param=name,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_prompt(value: Any, *, name: str = "prompt", required: bool = True) -> Optional[str]:
    if value is None:
        if required:
            raise InvalidRequestError(f"'{name}' is required: describe what to generate.", param=name)
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{name}' must be a string, got {type(value).__name__}.", param=name)
    if required and not value.strip():
        raise InvalidRequestError(f"'{name}' is empty: describe what to generate.", param=name)
    limit = _params.PARAMS[name]["max_length"]
    if len(value) > limit:
        raise InvalidRequestError(
            f"'{name}' is {len(value)} characters long; the limit is {limit}.", param=name
        )
    if "\x00" in value:
        raise InvalidRequestError(f"'{name}' contains a NUL character (\\x00); remove it.", param=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: no backend, file or wire format can carry them
        raise InvalidRequestError(
            f"'{name}' is not valid Unicode text: it has a lone surrogate {value[exc.start]!r} at "
            f"position {exc.start} (often a badly decoded emoji); fix the text encoding.",
            param=name,
        ) from None
    return value


def check_int(value: Any, name: str, *, lo: int, hi: int) -> Optional[int]:
    if value is None:
        return None
    if not _is_int(value):
        raise InvalidRequestError(
            f"'{name}' must be an integer, got {type(value).__name__} {value!r}.", param=name
        )
    if not lo <= value <= hi:
        raise InvalidRequestError(f"'{name}' must be between {lo} and {hi}, got {value}.", param=name)
    return int(value)


def check_float(value: Any, name: str, *, lo: float, hi: float, lo_open: bool = False) -> Optional[float]:
    if value is None:
        return None
    if not _is_number(value):
        raise InvalidRequestError(
            f"'{name}' must be a number, got {type(value).__name__} {value!r}.", param=name
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidRequestError(f"'{name}' must be a finite number, got {value!r}.", param=name)
    if number < lo or number > hi or (lo_open and number == lo):
        left = "(" if lo_open else "["
        raise InvalidRequestError(f"'{name}' must be in {left}{lo:g}, {hi:g}], got {value!r}.", param=name)
    return number


def check_extra(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"'extra' must be a dict, got {type(value).__name__}.", param="extra")
    for key in value:
        if not isinstance(key, str):
            raise InvalidRequestError(f"'extra' keys must be strings, got {key!r}.", param="extra")
    return dict(value)


def check_callback(value: Any) -> Any:
    if value is not None and not callable(value):
        raise InvalidRequestError(
            "'on_progress' must be a callable taking a ProgressEvent.", param="on_progress"
        )
    return value


def check_cancel(value: Any) -> Any:
    if isinstance(value, type):  # threading.Event (the class): is_set() would need an instance
        raise InvalidRequestError(
            f"'cancel' must be an instance such as threading.Event(), not the class {value.__name__}.",
            param="cancel",
        )
    if value is not None and not callable(getattr(value, "is_set", None)):
        raise InvalidRequestError(
            "'cancel' must have an is_set() method (for example threading.Event()).", param="cancel"
        )
    return value


def check_lora_adapters(value: Any) -> tuple[LoRAAdapterSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, LoRAAdapterSpec, Mapping)):
        value = [value]
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Sequence):
        raise InvalidRequestError(
            "'lora_adapters' must be a list of LoRAAdapterSpec, dicts or paths.", param="lora_adapters"
        )
    out = []
    for item in value:
        if isinstance(item, LoRAAdapterSpec):
            spec = item
        elif isinstance(item, str):
            spec = LoRAAdapterSpec(source=item)
        elif isinstance(item, Mapping):
            unknown = set(item) - {"source", "scale", "weight_name", "adapter_name"}
            if "source" not in item or unknown:
                raise InvalidRequestError(
                    "'lora_adapters': each LoRA dict needs 'source' and may have 'scale', 'weight_name', "
                    "'adapter_name'" + (f" (unknown: {sorted(map(repr, unknown))})" if unknown else "") + ".",
                    param="lora_adapters",
                )
            spec = LoRAAdapterSpec(**dict(item))
        else:
            raise InvalidRequestError(
                f"'lora_adapters': invalid LoRA adapter {item!r}.", param="lora_adapters"
            )
        if not isinstance(spec.source, str) or not spec.source.strip():
            raise InvalidRequestError(
                "'lora_adapters': a LoRA 'source' must be a non-empty string.", param="lora_adapters"
            )
        row = _params.PARAMS["lora_adapters"]
        check_float(spec.scale, "lora_adapters.scale", lo=row["scale_min"], hi=row["scale_max"])
        out.append(spec)
    return tuple(out)


def check_ranged(value: Any, name: str) -> Any:
    """``value`` checked against the table row ``name`` (an ``int`` or ``number`` row)."""
    row = _params.PARAMS[name]
    if row["type"] == "int":
        return check_int(value, name, lo=row["min"], hi=row["max"])
    return check_float(value, name, lo=row["min"], hi=row["max"], lo_open=bool(row.get("min_exclusive")))


_SPECIAL_CHECKS = {
    "negative_prompt": lambda v: check_prompt(v, name="negative_prompt", required=False),
    "extra": check_extra,
    "on_progress": check_callback,
    "cancel": check_cancel,
    "lora_adapters": check_lora_adapters,
}
#: the runtime and output rows with bounds are checked where they are taken apart
_CHECKED_ELSEWHERE = {n for n, r in _params.PARAMS.items() if r.get("runtime") or r.get("output")}


def check_common(params: dict[str, Any]) -> dict[str, Any]:
    """Validate the typed scalar parameters in place (returns ``params``), by the table's bounds."""
    for name in list(params):
        row = _params.PARAMS.get(name)
        if name in _SPECIAL_CHECKS:
            params[name] = _SPECIAL_CHECKS[name](params[name])
        elif row is not None and row["type"] in ("int", "number") and name not in _CHECKED_ELSEWHERE:
            params[name] = check_ranged(params[name], name)
    return params


def plan_seeds(
    count: Any, *, seed: Any = None, seeds: Any = None, count_name: str = "count"
) -> tuple[int, ...]:
    """Seeds for a batch: ``seeds`` as given, else ``seed, seed+1, ...``, else random ones.

    Every output of a batch gets a known seed so any image can be reproduced alone.
    ``count_name`` is the parameter the caller used (``count`` or ``n``), for messages.
    """
    batch, seed_max = _params.PARAMS["count"], _params.PARAMS["seed"]["max"]
    n = check_int(count, count_name, lo=batch["min"], hi=batch["max"])
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
            raise InvalidRequestError("'seeds' must be a list of integers.", param="seeds")
        planned = tuple(check_int(s, "seeds[]", lo=0, hi=seed_max) for s in seeds)
        if not planned:
            raise InvalidRequestError("'seeds' is empty.", param="seeds")
        if count is not None and n != len(planned):
            raise InvalidRequestError(
                f"count={n} does not match the {len(planned)} explicit seeds; give one seed per output.",
                param="seeds",
            )
        return planned  # type: ignore[return-value]
    if n is None:
        n = 1
    base = check_ranged(seed, "seed")
    if base is not None:
        if base + n - 1 > seed_max:
            raise InvalidRequestError(f"seed + count exceeds the largest seed {seed_max}.", param="seed")
        return tuple(base + i for i in range(n))
    # a random base with consecutive seeds: still one known seed per output, and HTTP
    # backends can send the whole batch as one request (`seed`, numbered seed+i by servers)
    start = random.SystemRandom().randrange(0, 2**32)
    return tuple(start + i for i in range(n))


def check_task(task: Any) -> Optional[str]:
    """``None`` or a known task name (raises :class:`InvalidRequestError` listing the tasks)."""
    from .types import TASKS

    if task is not None and task not in TASKS:
        raise InvalidRequestError(f"Unknown task {task!r}. Known tasks: {', '.join(TASKS)}.", param="task")
    return task


EMBED_POLICIES: tuple[str, ...] = _params.PARAMS["embed_metadata"]["choices"]
OUTPUT_FORMATS: tuple[str, ...] = _params.PARAMS["output_format"]["choices"]
SIZE_MISMATCH_POLICIES: tuple[str, ...] = _params.PARAMS["on_size_mismatch"]["choices"]


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidRequestError(
            f"'{name}' must be one of {', '.join(repr(c) for c in choices)}, got {value!r}.", param=name
        )
    return value


def check_embed_metadata(value: Any) -> str:
    return _check_choice(value, "embed_metadata", EMBED_POLICIES)


def check_on_size_mismatch(value: Any) -> str:
    return _check_choice(value, "on_size_mismatch", SIZE_MISMATCH_POLICIES)


def check_output_format(value: Any) -> Optional[str]:
    """``None`` (keep what the backend returned) or one of png, jpeg, webp (``"jpg"`` is jpeg)."""
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("jpg", "jpeg", "png", "webp"):
        return "jpeg" if value.lower() == "jpg" else value.lower()
    return _check_choice(value, "output_format", OUTPUT_FORMATS)


def check_output_compression(value: Any, output_format: Optional[str]) -> Optional[int]:
    """Encoder quality 0-100 (100 = best quality, OpenAI's default); only for jpeg and webp."""
    quality = check_ranged(value, "output_compression")
    if quality is not None and output_format not in ("jpeg", "webp"):
        shown = f"output_format={output_format!r}" if output_format else "no output_format"
        raise InvalidRequestError(
            f"'output_compression' applies to JPEG and WebP; with {shown} it would do nothing. "
            "Set output_format='jpeg' or 'webp', or drop output_compression (PNG is lossless).",
            param="output_compression",
        )
    return quality


#: What a file carries when the caller does not say (see docs/reproducibility.md): nothing.
#: Prompts leak through shared images; the full provenance stays in the returned metadata
#: and the store's sidecar, and ``embed_metadata="parameters"`` or ``"full"`` opts in.
DEFAULT_EMBED_METADATA: str = _params.PARAMS["embed_metadata"]["default"]


@dataclass(frozen=True)
class OutputOptions:
    """How a call's results are written and checked (the manager's job, never the backend's)."""

    embed_metadata: str = DEFAULT_EMBED_METADATA
    on_size_mismatch: str = _params.PARAMS["on_size_mismatch"]["default"]
    output_format: Optional[str] = None
    output_compression: Optional[int] = None
    #: what the caller's own surface accepted without applying (a server's OpenAI fields such
    #: as ``style``): name -> why; merged into ``metadata["ignored_parameters"]``
    ignored_parameters: Mapping[str, str] = field(default_factory=dict)


def check_ignored_parameters(value: Any) -> dict[str, str]:
    """``{name: why}`` with string keys and values (``None``: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidRequestError(
            "'ignored_parameters' must map parameter names to the reason each was not applied "
            "(dict[str, str]).",
            param="ignored_parameters",
        )
    return dict(value)


def output_options(params: dict[str, Any], *, embed_metadata: str, on_size_mismatch: str) -> OutputOptions:
    """Take the output options out of ``params``, checked; the manager's defaults fill the rest."""
    embed = params.pop("embed_metadata", None)
    strict = params.pop("on_size_mismatch", None)
    fmt = check_output_format(params.pop("output_format", None))
    quality = check_output_compression(params.pop("output_compression", None), fmt)
    return OutputOptions(
        embed_metadata=embed_metadata if embed is None else check_embed_metadata(embed),
        on_size_mismatch=on_size_mismatch if strict is None else check_on_size_mismatch(strict),
        output_format=fmt,
        output_compression=quality,
        ignored_parameters=check_ignored_parameters(params.pop("ignored_parameters", None)),
    )
