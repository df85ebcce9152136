"""A small JSON Schema validator for the subset the registry schema uses (stdlib only).

Supported keywords: ``type``, ``enum``, ``const``, ``required``, ``properties``,
``additionalProperties``, ``propertyNames``, ``minProperties``, ``items``, ``minItems``,
``minLength``, ``pattern``, ``minimum``, ``maximum`` and local ``$ref`` (``#/$defs/...``).
The test suite checks that the full ``jsonschema`` package agrees with it on the packaged
registry and on broken documents.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _where(path: list[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f"[{part!r}]"
    return out


def validate(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Return every validation error as ``"<json path>: <message>"`` (empty when valid)."""
    errors: list[str] = []
    _validate(instance, schema, schema, [], errors)
    return errors


def _validate(value: Any, schema: Any, root: dict[str, Any], path: list[Any], errors: list[str]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        errors.append(f"{_where(path)}: no value is allowed here")
        return
    ref = schema.get("$ref")
    if ref is not None:
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        _validate(value, target, root, path, errors)
        return
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{_where(path)}: expected {' or '.join(names)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{_where(path)}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{_where(path)}: expected {schema['const']!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{_where(path)}: string is too short (min {schema['minLength']})")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{_where(path)}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{_where(path)}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{_where(path)}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{_where(path)}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(value):
                _validate(item, schema["items"], root, [*path, i], errors)
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{_where(path)}: missing required key {key!r}")
        if len(value) < schema.get("minProperties", 0):
            errors.append(f"{_where(path)}: needs at least {schema['minProperties']} entr(y/ies)")
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key, item in value.items():
            if names is not None:
                _validate(key, {"type": "string", **names}, root, [*path, key], errors)
            if key in props:
                _validate(item, props[key], root, [*path, key], errors)
            elif additional is False:
                errors.append(f"{_where(path)}: unknown key {key!r} (allowed: {', '.join(sorted(props))})")
            elif isinstance(additional, dict):
                _validate(item, additional, root, [*path, key], errors)
