"""AbstractCore capability plugin: ``llm.vision`` on abstractvision.

AbstractCore discovers plugins through the entry point group
``abstractcore.capabilities_plugins`` (``abstractcore.capabilities.registry``): its
``CapabilityRegistry`` loads each entry point on first use and calls it with itself. Declare::

    [project.entry-points."abstractcore.capabilities_plugins"]
    abstractvision = "abstractvision.integrations.abstractcore_plugin:register"

:func:`register` registers vision backends with ``registry.register_vision_backend(...)``;
each factory receives the host (``owner``) and returns an
:class:`~abstractvision.integrations.capability.AbstractVisionCapability`:

==============================  ============================================================
backend id                      engine
==============================  ============================================================
``abstractvision``              from the settings (owner config > env > config file); default
``abstractvision:openai``       OpenAI-compatible HTTP (``vision_base_url``; OpenAI by default)
``abstractvision:diffusers``    local Diffusers
``abstractvision:sdcpp``        local stable-diffusion.cpp
==============================  ============================================================

A host picks another one with ``CapabilityRegistry(owner, preferred_backends={"vision":
"abstractvision:diffusers"})``. When the registry supports it, the agent tools of
:mod:`abstractvision.integrations.tools` are contributed with
``register_capability_tools("vision", ...)`` (no approval policy is registered, so hosts
ask before running them).

Importing this module imports neither AbstractCore nor torch nor diffusers; backends are
created on their first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

__all__ = ["BACKEND_IDS", "register"]

#: backend id -> (forced engine or None, priority, description)
BACKEND_IDS: dict[str, tuple[Optional[str], int, str]] = {
    "abstractvision": (
        None,
        10,
        "AbstractVision: image and video generation on the engine chosen by the settings "
        "(OpenAI-compatible HTTP, Diffusers or stable-diffusion.cpp).",
    ),
    "abstractvision:openai": ("openai", 0, "AbstractVision over an OpenAI-compatible HTTP API."),
    "abstractvision:diffusers": ("diffusers", 0, "AbstractVision on local Hugging Face Diffusers pipelines."),
    "abstractvision:sdcpp": ("sdcpp", 0, "AbstractVision on local stable-diffusion.cpp (GGUF) models."),
}
_INSTALL_HINTS = {
    "abstractvision": "pip install abstractvision",
    "abstractvision:openai": "pip install abstractvision",
    "abstractvision:diffusers": 'pip install "abstractvision[diffusers]" (install a torch build for your machine first)',
    "abstractvision:sdcpp": 'pip install "abstractvision[sdcpp]"',
}
_CONFIG_HINT = (
    "Owner config: vision_backend (openai | diffusers | sdcpp), vision_model_id, vision_base_url, "
    "vision_api_key, vision_device, vision_options {...}; or ABSTRACTVISION_BACKEND / _MODEL / "
    "_BASE_URL / _API_KEY, or ~/.config/abstractvision/config.toml."
)


def _factory(backend_id: str) -> Callable[[Any], Any]:
    def factory(owner: Any) -> Any:
        from .capability import AbstractVisionCapability

        return AbstractVisionCapability(owner, backend_id=backend_id, backend=BACKEND_IDS[backend_id][0])

    factory.__name__ = f"abstractvision_factory[{backend_id}]"
    return factory


def register(registry: Any) -> None:
    """Register the AbstractVision vision backends (and agent tools) with an AbstractCore registry.

    ``registry`` is an ``abstractcore.capabilities.CapabilityRegistry``; only its
    ``register_vision_backend`` is required. ``register_capability_tools`` is used when present.
    """
    for backend_id, (_, priority, description) in BACKEND_IDS.items():
        registry.register_vision_backend(
            backend_id=backend_id,
            factory=_factory(backend_id),
            priority=priority,
            description=description,
            install_hint=_INSTALL_HINTS[backend_id],
            config_hint=_CONFIG_HINT,
        )
    register_tools = getattr(registry, "register_capability_tools", None)
    get_vision = getattr(registry, "get_vision", None)
    if callable(register_tools) and callable(get_vision):
        from .tools import make_vision_tools

        tools = make_vision_tools(get_vision)
        try:
            definitions = [tool.to_abstractcore() for tool in tools]
        except ImportError:  # a registry look-alike without AbstractCore installed
            definitions = list(tools)
        register_tools("vision", definitions)
