"""Cheap-to-define dataclasses for the modules on the import path of first real use.

``@dataclass`` of the standard library imports :mod:`inspect` and compiles six functions per
frozen class with one ``exec`` each: the public request types alone cost ~10 ms to define.
:func:`dataclass` here generates the same methods (``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and the frozen ``__setattr__``/``__delattr__``) with one ``exec`` per class and
without importing :mod:`dataclasses`. The classes stay real dataclasses:
``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work, because
``__dataclass_fields__`` is built on first access by the standard decorator applied to a
shadow class with the same fields (so its ``Field`` objects are the genuine ones).

Supported: ``frozen``, ``field(default=..., default_factory=..., repr=..., compare=...)``,
string annotations (``from __future__ import annotations``). Not supported (use the
standard decorator): ``__post_init__``, ``InitVar``/``ClassVar`` fields, ``init=False``
fields, ``order``, ``slots``, ``kw_only``, inheritance between dataclasses. Type checkers
see :func:`dataclasses.dataclass` (the modules import it under ``TYPE_CHECKING``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any

__all__ = ["dataclass", "field"]

_MISSING: Any = object()


class _FieldSpec:
    __slots__ = ("compare", "default", "default_factory", "repr")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool) -> None:
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Any = _MISSING,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """The subset of :func:`dataclasses.field` that the package's own classes use."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _FieldSpec(default, default_factory, repr, compare)


class _LazyFields:
    """``__dataclass_fields__`` (and ``__dataclass_params__``), built on first access."""

    def __init__(self, attr: str, build: Callable[[], Any]) -> None:
        self.attr = attr
        self.build = build

    def __get__(self, obj: Any, owner: type) -> Any:
        shadow = self.build()
        for attr in ("__dataclass_fields__", "__dataclass_params__"):
            setattr(owner, attr, getattr(shadow, attr))
        return getattr(owner, self.attr)


def _frozen_error(name: str) -> BaseException:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(f"cannot assign to field {name!r}")


def dataclass(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Like ``dataclasses.dataclass(cls, frozen=...)``, with the limits in the module docstring."""
    if cls is None:
        return lambda c: _process(c, frozen)
    return _process(cls, frozen)


def _process(cls: Any, frozen: bool) -> Any:
    # not inspect.get_annotations: importing inspect is what this module avoids; the
    # annotations are strings (from __future__ import annotations) and only their names count
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    names: list[str] = []
    specs: dict[str, _FieldSpec] = {}
    ns: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []
    for name in annotations:
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, _FieldSpec) else _FieldSpec(value, _MISSING, True, True)
        names.append(name)
        specs[name] = spec
        if spec.default_factory is not _MISSING:
            ns[f"__factory_{name}"] = spec.default_factory
            params.append(f"{name}=__factory_marker")
            body.append(f"  __d[{name!r}] = __factory_{name}() if {name} is __factory_marker else {name}")
        else:
            if spec.default is not _MISSING:
                ns[f"__default_{name}"] = spec.default
                params.append(f"{name}=__default_{name}")
            elif any(s.default is not _MISSING or s.default_factory is not _MISSING for s in specs.values()):
                raise TypeError(f"non-default argument {name!r} follows default argument")
            else:
                params.append(name)
            body.append(f"  __d[{name!r}] = {name}")
        if isinstance(value, _FieldSpec):  # what the standard decorator leaves on the class
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
    ns["__factory_marker"] = _FACTORY
    src = [f"def __init__(self, {', '.join(params)}) -> None:", "  __d = self.__dict__", *body]
    if not names:
        src = ["def __init__(self) -> None:", "  pass"]
    exec("\n".join(src), ns)  # generated from the class's own field names
    methods = {"__init__": ns["__init__"], **_methods(cls, names, specs, frozen)}
    for meth, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{meth}"
        fn.__module__ = cls.__module__
        if meth in ("__setattr__", "__delattr__") and meth in cls.__dict__:
            raise TypeError(f"Cannot overwrite attribute {meth} in class {cls.__name__}")
        if meth not in cls.__dict__ or (meth == "__hash__" and cls.__dict__[meth] is None):
            setattr(cls, meth, fn)
    if not frozen and "__hash__" not in cls.__dict__:
        cls.__hash__ = None  # eq without frozen: unhashable, as with the standard decorator
    if "__match_args__" not in cls.__dict__:
        setattr(cls, "__match_args__", tuple(names))  # noqa: B010 - mypy refuses the plain assignment

    def build() -> Any:
        import dataclasses

        shadow_ns: dict[str, Any] = {"__annotations__": dict(annotations), "__module__": cls.__module__}
        for name, spec in specs.items():
            kwargs: dict[str, Any] = {"repr": spec.repr, "compare": spec.compare}
            if spec.default is not _MISSING:
                kwargs["default"] = spec.default
            if spec.default_factory is not _MISSING:
                kwargs["default_factory"] = spec.default_factory
            shadow_ns[name] = dataclasses.field(**kwargs)
        shadow = type(cls.__name__, (), shadow_ns)
        return dataclasses.dataclass(frozen=frozen)(shadow)

    cls.__dataclass_fields__ = _LazyFields("__dataclass_fields__", build)
    cls.__dataclass_params__ = _LazyFields("__dataclass_params__", build)
    return cls


def _methods(cls: Any, names: list[str], specs: dict[str, _FieldSpec], frozen: bool) -> dict[str, Any]:
    """``__repr__``, ``__eq__`` and, when frozen, ``__hash__``/``__setattr__``/``__delattr__``."""
    from operator import attrgetter

    shown = tuple((n, attrgetter(n)) for n in names if specs[n].repr)
    compared = [n for n in names if specs[n].compare]
    key = attrgetter(*compared) if len(compared) > 1 else None  # attrgetter of 2+ names: a tuple
    one = compared[0] if len(compared) == 1 else None

    def values(obj: Any) -> tuple[Any, ...]:
        if key is not None:
            return key(obj)
        return (getattr(obj, one),) if one is not None else ()

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{n}={get(self)!r}" for n, get in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    out: dict[str, Any] = {"__repr__": __repr__, "__eq__": __eq__}
    if frozen:
        fields = frozenset(names)

        def __hash__(self: Any) -> int:
            return hash(values(self))

        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is cls or name in fields:
                raise _frozen_error(name)
            object.__setattr__(self, name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is cls or name in fields:
                raise _frozen_error(name)
            object.__delattr__(self, name)

        out.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    return out


class _HasFactory:
    """Default value standing for "call the field's default_factory" (as in dataclasses)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _HasFactory()
