"""Modules imported on first use, for the modules on the import path of first real use.

``_media = lazy_module("abstractvision._media", globals())`` binds a placeholder that imports
the module on its first attribute access and then replaces itself in the importing
module's namespace, so later accesses are plain global lookups (no per-call cost). Type
checkers see the real module (the callers import it under ``TYPE_CHECKING``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["lazy_module"]


class _LazyModule:
    __slots__ = ("_alias", "_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any], alias: str) -> None:
        self._name = name
        self._namespace = namespace
        self._alias = alias

    def __getattr__(self, attr: str) -> Any:
        import importlib

        module = importlib.import_module(self._name)
        if self._namespace.get(self._alias) is self:
            self._namespace[self._alias] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str, namespace: dict[str, Any], alias: str = "") -> Any:
    """A placeholder for module ``name`` bound as ``alias`` (default: its last dotted part)."""
    return _LazyModule(name, namespace, alias or name.rpartition(".")[2])
