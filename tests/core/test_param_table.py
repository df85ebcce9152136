"""The parameter table (_params.py) is the only place a parameter's bounds are written."""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import pytest

from abstractvision import VisionManager, _params, _validation
from abstractvision.errors import InvalidRequestError
from abstractvision.types import TASKS
from fakes import FakeBackend

SRC = pathlib.Path(_params.__file__).parent

#: JSON Schema / argparse / check_* spellings of a bound, and the table keys they restate
_SCHEMA_KEYS = {
    "minimum": ("min",),
    "maximum": ("max",),
    "exclusiveMinimum": ("min",),
    "maxLength": ("max_length",),
    "minItems": ("min_items",),
    "maxItems": ("max_items",),
}
_CALL_KEYWORDS = {"lo": ("min",), "hi": ("max",), "min_value": ("min",), "max_value": ("max",)}


def _bounds_of(name: str, keys: tuple[str, ...]) -> set[Any]:
    """Row ``name``'s bounds under ``keys``, leaving out 0 and 1 (they mean 'none' or 'one' everywhere)."""
    row = _params.PARAMS[name]
    return {row[k] for k in keys if isinstance(row.get(k), (int, float)) and abs(row[k]) >= 2}


_ALL_KEYS = ("min", "max", "max_length", "min_items", "max_items", "scale_min", "scale_max")
#: numbers only the table has reason to write: flagged wherever they appear
_UNMISTAKABLE = {2**63 - 1, 16384, 100_000}


def _number(node: ast.AST) -> Any:
    """The value of a numeric literal (also ``-N`` and ``2**63 - 1``), else None."""
    if not isinstance(node, (ast.Constant, ast.UnaryOp, ast.BinOp)):
        return None
    try:
        value = eval(compile(ast.Expression(node), "", "eval"), {"__builtins__": {}})
    except Exception:
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _property_bounds(name: str, value: ast.AST) -> list[tuple[int, str]]:
    """``"name": {... "maximum": N}``, or the same dict or bare numbers passed to a helper."""
    found = []
    schema = value
    if isinstance(value, ast.Call):
        for arg in value.args:
            number = _number(arg)
            if number is not None and number in _bounds_of(name, _ALL_KEYS):
                found.append((arg.lineno, f'"{name}": helper called with {number}'))
        schema = next((a for a in value.args if isinstance(a, ast.Dict)), value)
    if isinstance(schema, ast.Dict):
        for bound_key, bound in zip(schema.keys, schema.values, strict=True):
            if isinstance(bound_key, ast.Constant) and bound_key.value in _SCHEMA_KEYS:
                number = _number(bound)
                if number is not None and number in _bounds_of(name, _SCHEMA_KEYS[bound_key.value]):
                    found.append((bound.lineno, f'"{name}": {{"{bound_key.value}": {number}}}'))
    return found


def _restated_bounds(tree: ast.AST) -> list[tuple[int, str]]:
    """Literals that restate a bound of a named table row, and the table's unmistakable numbers.

    Caught: a schema property named after a row (``"steps": {"maximum": 10000}``), a call
    naming a row with a literal bound (``check_int(v, "steps", lo=1, hi=10000)``), and
    2**63 - 1, 16384 or 100000 anywhere.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in _params.PARAMS:
                    found += _property_bounds(key.value, value)
        elif isinstance(node, ast.Call):
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and a.value in _params.PARAMS]
            for name in names:
                literals = [(kw.arg, kw.value) for kw in node.keywords] + [(None, a) for a in node.args]
                for arg, value in literals:
                    number = _number(value)
                    if number is not None and number in _bounds_of(name, _ALL_KEYS):
                        shown = f"{arg}={number}" if arg else str(number)
                        found.append((value.lineno, f"call naming {name!r} with {shown}"))
        if _number(node) in _UNMISTAKABLE:
            found.append((node.lineno, f"literal {_number(node)}"))
    return found


def test_no_bound_of_the_table_is_written_anywhere_else() -> None:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "_params.py":
            continue
        for line, what in _restated_bounds(ast.parse(path.read_text(encoding="utf-8"))):
            problems.append(f"{path.relative_to(SRC)}:{line}: {what}")
    assert problems == [], "bounds restated outside _params.py:\n" + "\n".join(problems)


def test_the_scan_finds_restated_bounds() -> None:
    """The scan is not vacuous: each way of restating a bound is caught."""
    code = (
        'a = {"steps": {"type": "integer", "maximum": 10_000}, "prompt": {"maxLength": 100_000}}\n'
        "check_int(v, 'fps', lo=1, hi=240)\n"
        'b = {"scale": _nullable({"maximum": 16}), "preview_every": _int(1, 10_000, "N")}\n'
        "MAX_SEED = 2**63 - 1\n"
    )
    found = {what for _, what in _restated_bounds(ast.parse(code))}
    assert {
        '"steps": {"maximum": 10000}',
        "call naming 'fps' with hi=240",
        "literal 9223372036854775807",
    } <= found
    assert {
        '"scale": {"maximum": 16}',
        '"preview_every": helper called with 10000',
        "literal 100000",
    } <= found


def test_rows_are_well_formed() -> None:
    kinds = {
        "text",
        "image",
        "images",
        "angles",
        "int",
        "number",
        "choice",
        "loras",
        "mapping",
        "callable",
        "cancel",
    }
    for name, row in _params.PARAMS.items():
        assert row["type"] in kinds, name
        assert row["doc"] and row["doc"].endswith("."), name
        assert row["tasks"] and set(row["tasks"]) <= set(TASKS), name
        if row["type"] in ("int", "number"):
            assert row["min"] < row["max"], name
        if row["type"] == "choice":
            assert row["choices"] and row.get("default") in (None, *row["choices"]), name
    assert {task: _params.task_params(task) for task in TASKS} == _validation.TASK_PARAMS


@pytest.mark.parametrize(
    ("name", "bound", "inside", "outside"), [("steps", 7, 7, 8), ("guidance_scale", 2.5, 2.5, 2.6)]
)
def test_the_managers_checks_read_the_table(monkeypatch, name, bound, inside, outside) -> None:
    manager = VisionManager(FakeBackend())
    manager.generate_image("x", **{name: outside})  # the library's bound is far above
    monkeypatch.setitem(_params.PARAMS[name], "max", bound)
    manager.generate_image("x", **{name: inside})
    with pytest.raises(InvalidRequestError, match=f"'{name}' must be (between|in)") as info:
        manager.generate_image("x", **{name: outside})
    assert info.value.param == name and str(bound) in str(info.value)
