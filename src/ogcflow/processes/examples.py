"""An example execute request of a process, from its inputs' schemas: what the HTML execute form starts
with and what /api offers as the request body of "Try it out".

A value comes from the input's schema, first found of: ``examples`` (the first), ``example``, ``default``,
``const``, ``enum`` (the first); otherwise one is made from the type (bounds, formats, required properties,
``minItems``). Optional inputs are in the request only when their schema has an example or a default.
"""

from __future__ import annotations

from typing import Any

from ogcflow import models

_MADE_UP = object()


def schema_example(schema: dict[str, Any]) -> Any:
    """An example value valid against ``schema`` (best effort: the declared one when there is one)."""
    found = _declared(schema)
    if found is not _MADE_UP:
        return found
    return _made_up(schema, 0)


def _declared(schema: dict[str, Any]) -> Any:
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    return _MADE_UP


def _made_up(schema: dict[str, Any], depth: int) -> Any:
    found = _declared(schema)
    if found is not _MADE_UP:
        return found
    if depth > 8:
        return None
    for key in ("oneOf", "anyOf"):
        alts = schema.get(key)
        if isinstance(alts, list) and alts and isinstance(alts[0], dict):
            return _made_up(alts[0], depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of and isinstance(all_of[0], dict):
        return _made_up({k: v for part in all_of if isinstance(part, dict) for k, v in part.items()}, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        return {name: _made_up(props.get(name) or {}, depth + 1) for name in required}
    if kind == "array":
        found_items = schema.get("items")
        items: dict[str, Any] = found_items if isinstance(found_items, dict) else {}
        count = max(1, int(schema.get("minItems", 1)))
        return [_made_up(items, depth + 1) for _ in range(min(count, 16))]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low if isinstance(low, int | float) and not isinstance(low, bool) else 0
        if schema.get("exclusiveMinimum") is True or "exclusiveMinimum" in schema and "minimum" not in schema:
            value += 1
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uri" or fmt == "url":
            return "https://example.org/data"
        if fmt == "date-time":
            return "2024-01-01T00:00:00Z"
        if fmt == "date":
            return "2024-01-01"
        return "x" * max(1, int(schema.get("minLength", 1))) if schema.get("minLength") else "example"
    return None


def example_request(description: models.Process) -> dict[str, Any]:
    """An execute request of the process: its required inputs, and its optional inputs that declare a value."""
    inputs: dict[str, Any] = {}
    for key, desc in description.inputs.items():
        declared = _declared(desc.schema_)
        if declared is not _MADE_UP:
            inputs[key] = declared
        elif desc.minOccurs > 0:
            inputs[key] = _made_up(desc.schema_, 0)
    return {"inputs": inputs}
