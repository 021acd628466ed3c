"""Execute requests checked against a process description, and inputs made ready for ``execute``.

Two stages:
- :func:`check_request` (in the API, before a job exists): every input and output named in the request
  is known, occurrences fit minOccurs/maxOccurs, values fit their JSON Schema. Errors name the input.
- :func:`resolve_inputs` (where the job runs): references are fetched, binary values decoded, defaults set.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, FormatChecker

from ogcflow import models
from ogcflow.errors import InputFetchError, InvalidInput, InvalidParameter
from ogcflow.models import TransmissionMode
from ogcflow.netpolicy import Policy, URLRefused, check_url, is_local, local_path

_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value.upper():
        raise ValueError("a date-time needs a 'T' between date and time")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a date-time needs a time zone (Z or an offset)")
    return True


@_formats.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        datetime.strptime(value, "%Y-%m-%d")
    return True


def oas_to_jsonschema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema (draft 4): ``nullable`` becomes a null alternative."""
    if isinstance(schema, list):
        return [oas_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {k: oas_to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = oas_to_jsonschema(value)
        elif key in ("nullable", "contentMediaType", "contentEncoding", "contentSchema", "example",
                     "readOnly", "writeOnly", "deprecated"):
            continue
        else:
            out[key] = value
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@lru_cache(maxsize=2048)
def _validator(schema_json: str) -> Draft4Validator:
    return Draft4Validator(oas_to_jsonschema(json.loads(schema_json)), format_checker=_formats)


_by_identity: dict[int, tuple[dict[str, Any], Draft4Validator]] = {}


def validator_for(schema: dict[str, Any]) -> Draft4Validator:
    """The validator of an input's schema; schemas of described processes are looked up by identity."""
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_by_identity) > 4096:
        _by_identity.clear()
    _by_identity[id(schema)] = (schema, validator)
    return validator


def is_binary(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("contentEncoding") in ("base64", "binary")


def is_bbox(schema: dict[str, Any]) -> bool:
    props = schema.get("properties")
    return schema.get("type") == "object" and isinstance(props, dict) and "bbox" in props \
        and "bbox" in schema.get("required", [])


#: the keywords the quick check knows: those it checks, and annotations that constrain nothing
_SCALAR_KEYS = frozenset({"type", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "minLength", "maxLength", "default", "title", "description", "example", "examples",
                          "$comment", "deprecated", "readOnly", "writeOnly"})
_PY_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "number": (int, float), "integer": (int,),
                                          "boolean": (bool,)}


def _scalar_check(schema: dict[str, Any], value: Any) -> str | None:
    """A quick check of the common scalar schemas: None when the schema needs the full validator, ''
    when the value fits, else the reason it does not (worded as jsonschema words it)."""
    kind = schema.get("type")
    if not isinstance(kind, str) or kind not in _PY_TYPES or not _SCALAR_KEYS.issuperset(schema):
        return None
    if isinstance(value, bool) and kind != "boolean" or not isinstance(value, _PY_TYPES[kind]):
        return f"{value!r} is not of type '{kind}'"
    if "enum" in schema and value not in schema["enum"]:
        return f"{value!r} is not one of {schema['enum']!r}"
    if kind == "string":
        assert isinstance(value, str)
        if len(value) < schema.get("minLength", 0):
            return f"{value!r} is too short"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{value!r} is too long"
    elif kind in ("number", "integer"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
            inclusive = "or equal to " if schema.get("exclusiveMinimum") else ""
            return f"{value!r} is less than {inclusive}the minimum of {lo!r}"
        if hi is not None and (value >= hi if schema.get("exclusiveMaximum") else value > hi):
            inclusive = "or equal to " if schema.get("exclusiveMaximum") else ""
            return f"{value!r} is greater than {inclusive}the maximum of {hi!r}"
    return ""


@dataclass(slots=True)
class Reference:
    """An input given by reference."""

    href: str
    type: str | None = None


def _occurrences(value: Any, desc: models.InputDescription) -> list[Any]:
    """Split a request value into its occurrences: a list is several values, unless the schema is an array
    (then it is one value, or several when every element is itself a list and the input may repeat)."""
    if not isinstance(value, list):
        return [value]
    if desc.schema_.get("type") != "array":
        return list(value)
    repeats = desc.maxOccurs == "unbounded" or desc.maxOccurs > 1
    if repeats and value and all(isinstance(v, list) for v in value):
        return list(value)
    return [value]


def _check_one(input_id: str, value: Any, desc: models.InputDescription, where: str) -> None:
    schema = desc.schema_
    if isinstance(value, dict) and "href" in value and "value" not in value:
        href = value["href"]
        if not isinstance(href, str) or not href.startswith(("http://", "https://")):
            raise InvalidInput(f"input '{input_id}'{where}: 'href' must be an http(s) URL")
        return
    if isinstance(value, dict) and "value" in value and not is_bbox(schema):
        expected = schema.get("contentMediaType")
        media = value.get("mediaType")
        if expected and media and media != expected:
            raise InvalidInput(
                f"input '{input_id}'{where}: media type '{media}' is not accepted, expected '{expected}'")
        value = value["value"]
    if is_binary(schema):
        if not isinstance(value, str):
            raise InvalidInput(f"input '{input_id}'{where}: expected a base64-encoded string")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"input '{input_id}'{where}: the value is not valid base64") from None
        return
    simple = _scalar_check(schema, value)
    if simple is not None:
        if simple:
            raise InvalidInput(f"input '{input_id}'{where}: {simple}")
        return
    errors = sorted(validator_for(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        path = "".join(f"[{p!r}]" for p in err.path)
        raise InvalidInput(f"input '{input_id}'{where}{path}: {err.message}")


def check_request(process: models.Process, execute: models.Execute) -> None:
    """Raise :class:`InvalidInput` naming the first input or output that does not fit the process."""
    unknown = [k for k in execute.inputs if k not in process.inputs]
    if unknown:
        known = ", ".join(process.inputs) or "none"
        raise InvalidInput(f"unknown input '{unknown[0]}' for process '{process.id}' (its inputs: {known})")
    for input_id, desc in process.inputs.items():
        if input_id not in execute.inputs:
            if desc.minOccurs > 0 and "default" not in desc.schema_:
                raise InvalidInput(f"input '{input_id}' is required by process '{process.id}'")
            continue
        occurrences = _occurrences(execute.inputs[input_id], desc)
        max_occurs = desc.maxOccurs
        if len(occurrences) < desc.minOccurs:
            raise InvalidInput(f"input '{input_id}' needs at least {desc.minOccurs} values")
        if max_occurs != "unbounded" and len(occurrences) > max_occurs:
            raise InvalidInput(f"input '{input_id}' takes at most {max_occurs} value(s), "
                               f"got {len(occurrences)}")
        many = len(occurrences) > 1
        for i, occ in enumerate(occurrences):
            _check_one(input_id, occ, desc, f"[{i}]" if many else "")
    if execute.outputs:
        for output_id, req in execute.outputs.items():
            if output_id not in process.outputs:
                known = ", ".join(process.outputs)
                raise InvalidInput(f"unknown output '{output_id}' for process '{process.id}' (its outputs: "
                                   f"{known})")
            if req.transmissionMode not in process.outputTransmission:
                raise InvalidInput(f"output '{output_id}': transmission mode "
                                   f"'{req.transmissionMode.value}' is not offered")


def requested_outputs(process: models.Process, execute: models.Execute) -> dict[str, TransmissionMode]:
    """Output id -> transmission mode: the outputs asked for, or all of them by value."""
    if execute.outputs:
        return {k: v.transmissionMode for k, v in execute.outputs.items()}
    return {k: TransmissionMode.value for k in process.outputs}


def has_references(execute_inputs: dict[str, Any]) -> bool:
    def ref(v: Any) -> bool:
        return isinstance(v, dict) and "href" in v and "value" not in v
    return any(ref(v) or (isinstance(v, list) and any(ref(x) for x in v)) for v in execute_inputs.values())


def resolve_inputs(process: models.Process, raw: dict[str, Any], fetch: Any) -> dict[str, Any]:
    """Inputs as ``execute`` receives them: references fetched, binaries decoded, defaults filled in.

    ``fetch(href) -> (bytes, media_type)`` fetches a reference (with the server's network policy).
    A value is a list when the input may occur more than once.
    """
    out: dict[str, Any] = {}
    for input_id, desc in process.inputs.items():
        many = desc.maxOccurs == "unbounded" or desc.maxOccurs > 1
        if input_id not in raw:
            if "default" in desc.schema_:
                out[input_id] = [desc.schema_["default"]] if many else desc.schema_["default"]
            continue
        values = [_resolve_one(input_id, occ, desc, fetch) for occ in _occurrences(raw[input_id], desc)]
        out[input_id] = values if many else values[0]
    return out


def _resolve_one(input_id: str, value: Any, desc: models.InputDescription, fetch: Any) -> Any:
    schema = desc.schema_
    if isinstance(value, dict) and "href" in value and "value" not in value:
        if schema.get("format") == "uri":  # the input is itself a reference: the process stages it
            return value["href"]
        data, media_type = fetch(value["href"])
        if is_binary(schema) or (schema.get("type") == "string" and schema.get("contentMediaType")
                                 and not schema["contentMediaType"].startswith("text/")):
            return data
        if schema.get("type") == "string":
            return data.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(data)
        except ValueError:
            raise InputFetchError(
                f"input '{input_id}': {value['href']} did not return JSON ({media_type or 'no type'})"
            ) from None
        errors = list(validator_for(schema).iter_errors(parsed))
        if errors:
            raise InputFetchError(f"input '{input_id}': the referenced value does not fit: {errors[0].message}")
        return parsed
    if isinstance(value, dict) and "value" in value and not is_bbox(schema):
        value = value["value"]
    if is_binary(schema):
        return base64.b64decode(value)
    return value


def _outbound(value: Any, desc: models.InputDescription) -> list[str]:
    """The URLs the server would fetch for one input: references (``href``), and URL strings of inputs
    that are themselves references (``format: uri``, e.g. a CWL File), when they are http(s)."""
    urls = []
    for occ in (value if isinstance(value, list) else [value]):
        if isinstance(occ, dict) and "href" in occ and "value" not in occ:
            urls.append(str(occ["href"]))
        elif isinstance(occ, str) and desc.schema_.get("format") == "uri":
            urls.append(occ)  # http(s), or a local path / file:// URL: checked against the local roots
    return urls


def outbound_urls(process: models.Process, execute: models.Execute) -> list[tuple[str, str]]:
    """(where, url) of every URL the server would fetch or call for this request: inputs by reference and
    the subscriber's callbacks. Cheap: no resolution."""
    found: list[tuple[str, str]] = []
    for input_id, value in execute.inputs.items():
        desc = process.inputs.get(input_id)
        if desc is not None:
            found.extend((f"input '{input_id}'", url) for url in _outbound(value, desc))
    sub = execute.subscriber
    if sub is not None:
        for name, target in (("successUri", sub.successUri), ("inProgressUri", sub.inProgressUri),
                             ("failedUri", sub.failedUri)):
            if target:
                found.append((f"subscriber.{name}", target))
    return found


def check_outbound(urls: list[tuple[str, str]], policy: Policy, local_roots: Sequence[Path] = ()) -> None:
    """Refuse at submission (400, with the reason) the inputs by reference and the callback URLs that the
    network policy would refuse later, and local paths outside ``local_roots``: no job is created for them.
    Blocking: it resolves host names."""
    for where, url in urls:
        try:
            if is_local(url) and not where.startswith("subscriber"):
                local_path(url, local_roots, "OGCFLOW_LOCAL_ROOTS")
            else:
                check_url(url, policy)
        except URLRefused as exc:
            error = InvalidParameter if where.startswith("subscriber") else InvalidInput
            raise error(f"{where}: {exc}") from None
