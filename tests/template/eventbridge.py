"""EventBridge pattern matching for the template tests: moto's matcher, made faithful where the
template needs it, and the resolution of the intrinsics the SAM translator leaves in patterns.

Two gaps of moto's matcher (moto 5.2) matter here:

* EventBridge matches a pattern field against every object of an array of objects
  (``{"detail": {"resources": {"type": [...]}}}`` matches ``"resources": [{"type": ...}]``,
  as in Inspector2 Finding events); moto does not look inside arrays of objects, so such a
  pattern would never fire locally. :func:`eventbridge_matches` flattens them first, as
  EventBridge does, and the tests compare it with moto's on every recorded event.
* moto treats a filter it does not know as matching anything, so a pattern that still holds
  ``{"Ref": "PolicyBucket"}`` matches every bucket. :func:`eventbridge_matches` refuses such
  a pattern; :func:`resolve` substitutes the values CloudFormation would.
"""

from __future__ import annotations

from typing import Any

from gatekeeper_tools.local.stack import matches


def intrinsics(node: Any) -> list[dict[str, Any]]:
    """Every CloudFormation intrinsic ({"Ref": ...}, {"Fn::...": ...}) left in ``node``."""
    if isinstance(node, dict):
        if len(node) == 1 and (("Ref" in node) or next(iter(node)).startswith("Fn::")):
            return [node]
        return [found for value in node.values() for found in intrinsics(value)]
    if isinstance(node, list):
        return [found for value in node for found in intrinsics(value)]
    return []


def resolve(node: Any, refs: dict[str, Any]) -> Any:
    """``node`` with each {"Ref": name} replaced by ``refs[name]`` (KeyError for an unknown
    name, so that a pattern gaining a new reference cannot be matched unresolved)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            return refs[node["Ref"]]
        return {key: resolve(value, refs) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, refs) for value in node]
    return node


def _flatten_arrays_of_objects(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _flatten_arrays_of_objects(value) for key, value in node.items()}
    if isinstance(node, list):
        items = [_flatten_arrays_of_objects(value) for value in node]
        if items and all(isinstance(item, dict) for item in items):
            merged: dict[str, list[Any]] = {}
            for item in items:
                for key, value in item.items():
                    merged.setdefault(key, []).append(value)
            return {key: _merge(values) for key, values in merged.items()}
        return items
    return node


def _merge(values: list[Any]) -> Any:
    """One field across the objects of an array: nested objects merge again, leaves pool."""
    if all(isinstance(value, dict) for value in values):
        return _flatten_arrays_of_objects(values)
    pooled: list[Any] = []
    for value in values:
        pooled.extend(value if isinstance(value, list) else [value])
    return pooled


def eventbridge_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether EventBridge delivers ``event`` to a rule of ``pattern`` (moto's matcher on the
    event with its arrays of objects flattened; the pattern must be free of intrinsics)."""
    left = intrinsics(pattern)
    if left:
        raise ValueError(f"resolve the pattern's intrinsics first: {left}")
    return matches(pattern, _flatten_arrays_of_objects(event))
