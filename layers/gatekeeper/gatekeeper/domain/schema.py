"""A small JSON Schema validator for the policy, with messages people can act on.

It implements the keywords ``policy.schema.json`` uses (type, const, enum, properties,
additionalProperties, required, propertyNames, items, minItems, minLength, minimum, maximum,
pattern, anyOf, $ref) and reports every problem with its path, so the published schema is
the one source of truth for editors, CI and the Lambda alike, without a dependency.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

Path = tuple[Any, ...]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
          "integer": "a whole number", "number": "a number", "boolean": "true or false"}


@cache
def policy_schema() -> dict[str, Any]:
    text = resources.files("gatekeeper").joinpath("policy.schema.json").read_text("utf-8")
    return dict(json.loads(text))


def kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    for name, types in _TYPES.items():
        if isinstance(value, types) and name not in ("boolean", "number"):
            return _NAMES[name]
    if isinstance(value, float):
        return "a number"
    return type(value).__name__


def _is(value: Any, type_name: str) -> bool:
    if isinstance(value, bool):
        return type_name == "boolean"
    if type_name == "integer" and isinstance(value, float):
        return value.is_integer()  # JSON Schema: 1.0 is an integer
    return isinstance(value, _TYPES[type_name])


def _shown(value: Any) -> str:
    """Scalars as they were written; containers by their kind."""
    if isinstance(value, dict | list) or value is None:
        return kind(value)
    return f"{value!r:.80}"


def _choices(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


class Validator:
    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.root = schema

    def _resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen: set[str] = set()
        while "$ref" in schema:
            if schema["$ref"] in seen:
                raise ValueError(f"$ref cycle at {schema['$ref']}")
            seen.add(schema["$ref"])
            node: Any = self.root
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema

    def errors(self, value: Any, schema: Mapping[str, Any] | None = None,
               path: Path = ()) -> Iterator[tuple[Path, str]]:
        schema = self._resolve(schema if schema is not None else self.root)
        if "anyOf" in schema:
            branches = [list(self.errors(value, branch, path)) for branch in schema["anyOf"]]
            if all(branches):
                yield path, f"expected {schema.get('title', 'another value')}, got {value!r:.80}"
            return
        if "const" in schema and (value != schema["const"] or isinstance(value, bool)):
            yield path, f"expected {schema['const']!r}, got {value!r:.80}"
            return
        if "enum" in schema and (not isinstance(value, str | int) or isinstance(value, bool)
                                 or value not in schema["enum"]):
            yield path, f"expected one of: {_choices(schema['enum'])}; got {value!r:.80}"
            return
        expected = schema.get("type")
        if expected and not _is(value, expected):
            yield path, f"expected {self._expectation(schema)}, got {_shown(value)}"
            return
        if isinstance(value, dict):
            yield from self._object(value, schema, path)
        elif isinstance(value, list):
            if len(value) < schema.get("minItems", 0):
                yield path, f"expected at least {schema['minItems']} item(s)"
            if "items" in schema:
                for index, item in enumerate(value):
                    yield from self.errors(item, schema["items"], (*path, index))
        elif isinstance(value, str):
            if len(value) < schema.get("minLength", 0) or (
                    schema.get("pattern") == r"\S" and not value.strip()):
                yield path, "expected a non-empty string"
            elif "pattern" in schema and not re.search(schema["pattern"], value):
                yield path, (f"{value!r:.80} is not in the expected format: "
                             f"{schema.get('title', schema['pattern'])}")
        elif _is(value, "number"):
            if value != value:  # NaN passes every bound check silently: refuse it here
                yield path, f"expected {self._expectation(schema)}, got {value!r}"
                return
            low, high = schema.get("minimum"), schema.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                yield path, f"expected {self._expectation(schema)}, got {value!r}"

    def _expectation(self, schema: Mapping[str, Any]) -> str:
        name = _NAMES.get(schema.get("type", ""), "a value")
        required = schema.get("required")
        if required:
            return f"{name} with " + " and ".join(f"'{r}'" for r in required)
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"{name} between {low} and {high}"
        if low is not None:
            return f"{name} >= {low}"
        return name

    def _object(self, value: dict[Any, Any], schema: Mapping[str, Any],
                path: Path) -> Iterator[tuple[Path, str]]:
        properties = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                yield (*path, name), "missing; this key is required"
        names = self._resolve(schema["propertyNames"]) if "propertyNames" in schema else None
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                yield from self.errors(item, properties[key], (*path, key))
                continue
            if names is not None and "enum" not in names:  # a pattern names the keys
                if not isinstance(key, str) or not re.search(names["pattern"], key):
                    yield (*path, key), f"{key!r:.80} is not {names.get('title', 'a valid key')}"
                    continue
            elif names is not None and (not isinstance(key, str) or key not in names["enum"]):
                title = names.get("title", "key")
                yield (*path, key), f"unknown {title}; expected one of: {_choices(names['enum'])}"
                continue
            if extra is False:
                yield (*path, key), f"unknown key; expected one of: {_choices(sorted(properties))}"
            elif isinstance(extra, Mapping):
                yield from self.errors(item, extra, (*path, key))
