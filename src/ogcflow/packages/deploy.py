"""What a deployment sends (a CWL document, or an OGC application package whose executionUnit is CWL by
value or by reference) made into a parsed :class:`CWLPackage`."""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import ValidationError

from ogcflow.errors import ExceptionType, InputFetchError, UnsupportedMediaType
from ogcflow.models.ogc import DescriptionType
from ogcflow.netpolicy import Policy, fetch
from ogcflow.packages.cwl import CWLPackage, InvalidPackage, parse_package

CWL_TYPES = ("application/cwl+yaml", "application/cwl", "application/cwl+json")
APPPKG = "application/ogcapppkg+json"
PACKAGE_TYPES = (*CWL_TYPES, APPPKG)


#: what an application package's processDescription may say over what its CWL says
DESCRIBED = ("title", "description", "keywords", "metadata")


def check_media_type(media: str) -> None:
    if media not in PACKAGE_TYPES:
        raise UnsupportedMediaType(f"a package is sent as {', '.join(PACKAGE_TYPES)}, not {media or 'no media type'}",
                                   type=ExceptionType.UNSUPPORTED_PACKAGE_TYPE)


def _apppkg(data: bytes) -> dict[str, Any]:
    try:
        pkg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPackage(f"the application package is not valid JSON: {exc}") from None
    if not isinstance(pkg, dict):
        raise InvalidPackage("an application package is a JSON object with an 'executionUnit'")
    return pkg


def described(pkg: dict[str, Any]) -> dict[str, Any]:
    """What the package's processDescription says of the process (title, description, keywords, metadata),
    checked against the process description schema. ``processDescription`` is ``{"process": {...}}`` (the
    draft's form) or the process description itself."""
    found = pkg.get("processDescription")
    if found is None:
        return {}
    if isinstance(found, dict) and isinstance(found.get("process"), dict):
        found = found["process"]
    if not isinstance(found, dict):
        raise InvalidPackage("processDescription is an object (with a 'process' description)")
    values = {k: found[k] for k in DESCRIBED if found.get(k) is not None}
    try:
        checked = DescriptionType.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidPackage(f"processDescription.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    return {k: getattr(checked, k) for k in values}


def cwl_from_apppkg(data: bytes, policy: Policy) -> tuple[str, str]:
    """The CWL text of an OGC application package (executionUnit by value or by reference), and its type."""
    pkg = _apppkg(data)
    unit = pkg.get("executionUnit")
    if isinstance(unit, list) and len(unit) == 1:
        unit = unit[0]
    if not isinstance(unit, dict):
        raise InvalidPackage("the application package needs one 'executionUnit' (by value or by href)")
    if "href" in unit:
        try:
            text, _media = fetch(str(unit["href"]), policy)
        except InputFetchError as exc:
            raise InvalidPackage(f"the executionUnit's href cannot be read: {exc}") from None
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
    try:
        return _read_package(data, media, w, policy)
    except RecursionError:
        raise InvalidPackage("the package is nested too deeply to be a CWL document") from None


def _read_package(data: bytes, media: str, w: str | None, policy: Policy) -> tuple[CWLPackage, str]:
    if media != APPPKG:
        return parse_package(data.decode("utf-8", errors="replace"), w), media
    over = described(_apppkg(data))  # checked before anything is fetched or parsed
    text, cwl_media = cwl_from_apppkg(data, policy)
    pkg = parse_package(text, w)
    if over:  # the application package's processDescription wins over what the CWL says
        pkg.description = pkg.description.model_copy(update=over)
    return pkg, cwl_media
