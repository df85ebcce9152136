"""The plugin module is import-light and registers through ``register_vision_backend`` alone."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from abstractvision.integrations import abstractcore_plugin
from abstractvision.integrations.capability import AbstractVisionCapability

_PROBE = """
import json, sys
import abstractvision.integrations.abstractcore_plugin as plugin
import abstractvision.integrations.capability, abstractvision.integrations.tools

class Owner:
    config = {"vision_backend": "diffusers", "vision_model_id": "/nowhere/model"}

seen = []
class MinimalRegistry:  # the shape other packages (abstract3d) call register() with
    def register_vision_backend(self, **kw):
        seen.append(kw)

plugin.register(MinimalRegistry())
caps = [kw["factory"](Owner()) for kw in seen]
heavy = sorted(m for m in ("abstractcore", "torch", "diffusers", "transformers", "numpy") if m in sys.modules)
print(json.dumps({"ids": [kw["backend_id"] for kw in seen], "heavy": heavy,
                  "backends": [c.settings.backend for c in caps]}))
"""


def test_import_and_registration_stay_light() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert out["ids"] == list(abstractcore_plugin.BACKEND_IDS)
    assert out["backends"] == ["diffusers", "openai", "diffusers", "sdcpp"]


class RecordingRegistry:
    def __init__(self) -> None:
        self.backends: dict[str, dict[str, Any]] = {}

    def register_vision_backend(self, **kwargs: Any) -> None:
        self.backends[kwargs["backend_id"]] = kwargs


def test_registered_backends_and_factories(make_owner: Any, monkeypatch: Any) -> None:
    registry = RecordingRegistry()
    abstractcore_plugin.register(registry)
    assert set(registry.backends) == {
        "abstractvision",
        "abstractvision:openai",
        "abstractvision:diffusers",
        "abstractvision:sdcpp",
    }
    default = registry.backends["abstractvision"]
    assert default["priority"] > max(
        b["priority"] for k, b in registry.backends.items() if k != "abstractvision"
    )
    assert all(
        b["description"] and b["config_hint"] and b["install_hint"] for b in registry.backends.values()
    )

    owner = make_owner(vision_backend="sdcpp", vision_model_id="flux")
    cap = default["factory"](owner)
    assert isinstance(cap, AbstractVisionCapability)
    assert (cap.backend_id, cap.settings.backend, cap.settings.model) == ("abstractvision", "sdcpp", "flux")
    # an engine-specific id forces its engine over the owner's choice
    forced = registry.backends["abstractvision:openai"]["factory"](owner)
    assert (forced.backend_id, forced.settings.backend) == ("abstractvision:openai", "openai")
    # environment settings reach the factory through the shared resolver
    monkeypatch.setenv("ABSTRACTVISION_BACKEND", "diffusers")
    monkeypatch.setenv("ABSTRACTVISION_MODEL", "/models/sd15")
    from_env = default["factory"](make_owner())
    assert (from_env.settings.backend, from_env.settings.model) == ("diffusers", "/models/sd15")


def test_the_package_declares_the_entry_point() -> None:
    """pyproject.toml declares the entry point, and the installed metadata carries it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"].get("entry-points", {})
    group = declared.get("abstractcore.capabilities_plugins")
    if group is None:
        pytest.skip(
            "pyproject.toml does not declare [project.entry-points.'abstractcore.capabilities_plugins'] yet"
        )
    assert group == {"abstractvision": "abstractvision.integrations.abstractcore_plugin:register"}
    installed = {
        ep.name: ep.value
        for ep in metadata.distribution("abstractvision").entry_points
        if ep.group == "abstractcore.capabilities_plugins"
    }
    assert installed == group, "stale install: run `pip install -e . --no-deps` to refresh the metadata"
    assert metadata.entry_points(group="abstractcore.capabilities_plugins")["abstractvision"].load() is (
        abstractcore_plugin.register
    )
