"""Step presets for OpenAI's ``quality`` levels, from the capability registry.

The OpenAI Images API lets a client ask for ``quality="low" | "medium" | "high" | "auto"``; a
diffusion engine has no such knob, its cost/quality trade-off is the number of denoising
steps. A model's task spec in the registry may list the presets itself (``quality_steps``:
distilled models such as SD-Turbo, where the rule below makes no sense); otherwise the rule
is, from the task's default ``steps`` D (the model card's recommendation):

========  =========================================  =================
level     steps                                      D = 50 / 28 / 4
========  =========================================  =================
low       a quarter of D, rounded up (at least min)  13 / 7 / 1
medium    half of D, rounded up (at least min)       25 / 14 / 2
high      D                                          50 / 28 / 4
auto      the engine's own default (nothing is set)  -
========  =========================================  =================

A model without a registry entry (or whose task has no default ``steps``) has no presets:
callers report ``quality`` as ignored (see :mod:`abstractvision.server.openai_fields`).
Standard library only.
"""

from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["QUALITY_ALIASES", "QUALITY_LEVELS", "quality_steps"]

QUALITY_LEVELS = ("low", "medium", "high")
#: DALL-E 3's names (deprecated by OpenAI, still sent by older clients)
QUALITY_ALIASES = {"standard": "medium", "hd": "high"}


def quality_steps(registry: Any, model_id: Optional[str], task: str) -> Optional[dict[str, int]]:
    """``{"low": n, "medium": n, "high": n}`` for ``model_id``'s ``task``, or ``None`` when unknown."""
    if registry is None or model_id is None or not registry.supports(model_id, task):
        return None
    spec = registry.task_spec(model_id, task)
    if spec.quality_steps:
        return {level: int(spec.quality_steps[level]) for level in QUALITY_LEVELS}
    steps = spec.params.get("steps")
    if steps is None or not steps.supported or not steps.has_default:
        return None
    default = steps.default
    if not isinstance(default, int) or isinstance(default, bool) or default < 1:
        return None
    low = int(steps.min) if isinstance(steps.min, (int, float)) and steps.min >= 1 else 1
    return {
        "low": max(low, math.ceil(default / 4)),
        "medium": max(low, math.ceil(default / 2)),
        "high": default,
    }
