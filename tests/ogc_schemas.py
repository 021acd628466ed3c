"""Validation against the official OGC API - Processes 1.0 JSON schemas, read from ../shared/ogc-schemas.

As the OGC test suite does: relative $refs resolved locally, a Draft 4 validator, ``oneOf`` read as ``anyOf``
(the 1.0 schemas are ambiguous) and only the ``date-time`` format asserted.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(os.environ.get("OGC_SCHEMAS_DIR", ROOT.parent / "shared" / "ogc-schemas")) / "part1-1.0"

_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _dt(value: object) -> bool:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None or "T" not in value:
            raise ValueError("not an RFC 3339 date-time")
    return True


def _relax(node: Any, names: bool = False) -> Any:
    """``oneOf`` keywords -> ``anyOf`` (the keys of ``properties`` are names, kept as they are)."""
    if isinstance(node, dict):
        if names:
            return {k: _relax(v) for k, v in node.items()}
        return {("anyOf" if k == "oneOf" else k): _relax(v, names=(k == "properties")) for k, v in node.items()}
    if isinstance(node, list):
        return [_relax(v) for v in node]
    return node


@cache
def _registry() -> Registry:
    if not SCHEMAS.is_dir():
        raise RuntimeError(f"the OGC schemas are not at {SCHEMAS} (set OGC_SCHEMAS_DIR)")
    resources = []
    for path in SCHEMAS.glob("*.yaml"):
        contents = _relax(yaml.safe_load(path.read_text()))
        resources.append((path.name, Resource.from_contents(contents, default_specification=DRAFT4)))
    return Registry().with_resources(resources)


def validate(instance: Any, schema_name: str) -> None:
    """Raise jsonschema.ValidationError unless ``instance`` fits ``<schema_name>.yaml``."""
    registry = _registry()
    schema = registry.contents(f"{schema_name}.yaml")
    Draft4Validator(schema, registry=registry, format_checker=_formats).validate(instance)


def validate_exception(resp: Any, status: int) -> dict[str, Any]:
    """An OGC exception document with the given status; returns it."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers["content-type"]
    doc = resp.json()
    validate(doc, "exception")
    assert doc["status"] == status and doc["title"] and doc["detail"], doc
    assert doc["type"].startswith("http://www.opengis.net/def/exceptions/"), doc["type"]
    return doc
