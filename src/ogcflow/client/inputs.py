"""An execute request from the command line: ``-i name=value`` flags, ``--ref name=URL`` and a JSON/YAML file.

* ``-i name=value``: the value is JSON when it parses as JSON (``3``, ``true``, ``[1, 2]``, ``{"a": 1}``),
  else the text itself; ``-i name=@file.json`` (or ``.yaml``) reads the value from a file.
* ``--ref name=URL``: an input by reference (``{"href": URL}``).
* A name given more than once is an array of its values, in order.
* ``--inputs FILE``: a whole execute request (with ``inputs``) or a mapping of inputs; flags override it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class InputError(ValueError):
    """A flag or file that does not make an execute request."""


def load_document(path: Path) -> Any:
    """A JSON or YAML file (YAML is a superset of JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not JSON or YAML ({exc})") from None


def _split(flag: str, text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InputError(f"{flag} {text!r}: expected name=value")
    return name.strip(), value


def parse_value(text: str) -> Any:
    if text.startswith("@"):
        return load_document(Path(text[1:]).expanduser())
    try:
        return json.loads(text)
    except ValueError:
        return text


def build_request(values: list[str], refs: list[str], file: Path | None, outputs: list[str],
                  response: str | None = None, subscriber: str | None = None) -> dict[str, Any]:
    """The execute request's JSON body."""
    body: dict[str, Any] = {}
    if file is not None:
        doc = load_document(file)
        if not isinstance(doc, dict):
            raise InputError(f"{file}: expected a mapping of inputs or an execute request")
        body = dict(doc) if "inputs" in doc or "outputs" in doc else {"inputs": doc}
        if not isinstance(body.get("inputs", {}), dict):
            raise InputError(f"{file}: 'inputs' must be a mapping")
    given: dict[str, list[Any]] = {}
    for text in values:
        name, value = _split("-i", text)
        given.setdefault(name, []).append(parse_value(value))
    for text in refs:
        name, url = _split("--ref", text)
        given.setdefault(name, []).append({"href": url})
    inputs = dict(body.get("inputs") or {})
    for name, found in given.items():
        inputs[name] = found[0] if len(found) == 1 else found
    body["inputs"] = inputs
    if outputs:
        wanted: dict[str, Any] = dict(body.get("outputs") or {})
        for text in outputs:
            name, _, mode = text.partition("=")
            if mode and mode not in ("value", "reference"):
                raise InputError(f"--output-id {text!r}: the transmission is value or reference")
            wanted[name] = {"transmissionMode": mode} if mode else {}
        body["outputs"] = wanted
    if response:
        body["response"] = response
    if subscriber:
        body["subscriber"] = {"successUri": subscriber, "failedUri": subscriber}
    return body


def prefer_header(mode: str, wait: float | None, extra: str | None) -> str | None:
    """``Prefer`` for ``--async`` (respond-async), ``--sync`` (``wait=N`` if given) and any ``--prefer``."""
    parts: list[str] = []
    if mode == "async":
        parts.append("respond-async")
    if wait is not None:
        parts.append(f"wait={wait:g}")
    if extra:
        parts.append(extra)
    return ", ".join(parts) or None
