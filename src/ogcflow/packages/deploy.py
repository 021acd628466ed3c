"""What a deployment sends (a CWL document, or an OGC application package whose executionUnit is CWL by
value or by reference) made into a parsed :class:`CWLPackage`."""

from __future__ import annotations

import json

import orjson

from ogcflow.errors import UnsupportedMediaType
from ogcflow.netpolicy import Policy, fetch
from ogcflow.packages.cwl import CWLPackage, InvalidPackage, parse_package

CWL_TYPES = ("application/cwl+yaml", "application/cwl", "application/cwl+json")
APPPKG = "application/ogcapppkg+json"
PACKAGE_TYPES = (*CWL_TYPES, APPPKG)


def check_media_type(media: str) -> None:
    if media not in PACKAGE_TYPES:
        raise UnsupportedMediaType(f"a package is sent as {', '.join(PACKAGE_TYPES)}, not {media or 'no media type'}")


def cwl_from_apppkg(data: bytes, policy: Policy) -> tuple[str, str]:
    """The CWL text of an OGC application package (executionUnit by value or by reference), and its type."""
    try:
        pkg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPackage(f"the application package is not valid JSON: {exc}") from None
    unit = pkg.get("executionUnit") if isinstance(pkg, dict) else None
    if isinstance(unit, list) and len(unit) == 1:
        unit = unit[0]
    if not isinstance(unit, dict):
        raise InvalidPackage("the application package needs one 'executionUnit' (by value or by href)")
    if "href" in unit:
        text, _media = fetch(str(unit["href"]), policy)
        return text.decode("utf-8", errors="replace"), unit.get("type") or "application/cwl+yaml"
    value = unit.get("value", unit.get("unit"))
    if isinstance(value, dict):
        return json.dumps(value), "application/cwl+json"
    if isinstance(value, str):
        return value, unit.get("mediaType") or "application/cwl+yaml"
    raise InvalidPackage("the executionUnit holds no CWL ('value' or 'href')")


def read_package(data: bytes, media: str, w: str | None, policy: Policy) -> tuple[CWLPackage, str]:
    """The parsed package and the media type of its CWL text (blocking: it may fetch and validate)."""
    check_media_type(media)
    if media == APPPKG:
        text, media = cwl_from_apppkg(data, policy)
    else:
        text = data.decode("utf-8", errors="replace")
    return parse_package(text, w), media
