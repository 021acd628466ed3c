"""A CWL document as an OGC process: validation, choice of the entry workflow, and the process description
derived from it (id, title, description, version, inputs and outputs with their JSON Schemas).

Validation is cwl-utils' parser (the same schema cwltool enforces); the mapping reads its typed objects,
whatever the CWL version (v1.0, v1.1, v1.2).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ogcflow import models
from ogcflow.errors import ExceptionType, OGCError
from ogcflow.models import JobControlOption

SCHEMA_ORG = ("s:", "https://schema.org/", "http://schema.org/")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class InvalidPackage(OGCError):
    """The application package is not a usable CWL document; the detail says why."""

    status = 400
    type = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/invalid-package"
    title = "Invalid application package"


@dataclass
class CWLPackage:
    text: str
    document: dict[str, Any]
    entry: str
    description: models.Process
    #: input/output id -> "File", "Directory", "File[]" or "Directory[]" for the ones that need staging
    inputs_kind: dict[str, str]
    outputs_kind: dict[str, str]


def _kind(t: Any) -> str | None:
    """File/Directory (or arrays of them) in a CWL type, for staging; None for plain values."""
    if isinstance(t, list):
        kinds = {_kind(x) for x in t if x != "null"}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(t, str):
        name = _short(t) if "#" in t else t
        if name in ("stdout", "stderr"):
            return "File"
        return name if name in ("File", "Directory") else None
    if (getattr(t, "type_", None) or getattr(t, "type", None)) == "array":
        inner = _kind(t.items)
        return inner + "[]" if inner in ("File", "Directory") else None
    return None


def _short(identifier: str) -> str:
    """``file:///x.cwl#wf/input`` -> ``input``; ``#wf`` -> ``wf``."""
    frag = identifier.rsplit("#", 1)[-1]
    return frag.rsplit("/", 1)[-1]


def _schema_org(doc: dict[str, Any], name: str) -> Any:
    for prefix in SCHEMA_ORG:
        if prefix + name in doc:
            return doc[prefix + name]
    return None


def _load_yaml(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError as exc:
        raise InvalidPackage(f"the package is not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise InvalidPackage("the package is nested too deeply to be a CWL document") from None
    if not isinstance(data, dict) or "cwlVersion" not in data:
        raise InvalidPackage("the package is not a CWL document (a mapping with 'cwlVersion')")
    return data


#: schema-salad directives that read another document; a deployed package may only refer to itself ('#id')
_READS = ("$include", "$import", "$mixin")


def _check_self_contained(node: Any, depth: int = 0) -> None:
    """Refuse ``$include``/``$import``/``$mixin`` of anything but the package itself, before anything reads
    them; the message names the directive only (nothing of the target: it may be a server file)."""
    if depth > 200:
        raise InvalidPackage("the package is nested too deeply to be a CWL document")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _READS and not (isinstance(value, str) and value.startswith("#")):
                raise InvalidPackage(f"the package uses {key} of another document: a deployed package must be "
                                     "self-contained (inline the content, or use a $graph and '#id' references)")
            _check_self_contained(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            _check_self_contained(item, depth + 1)


def _objects(doc: dict[str, Any]) -> list[dict[str, Any]]:
    graph = doc.get("$graph")
    if graph is None:
        return [doc]
    if not isinstance(graph, list) or not all(isinstance(o, dict) for o in graph):
        raise InvalidPackage("'$graph' must be a list of CWL objects")
    return graph


def _raw_id(obj: dict[str, Any]) -> str:
    return str(obj.get("id", "")).lstrip("#")


def _check_runs(objects: list[dict[str, Any]]) -> set[str]:
    """Every ``run: '#x'`` names an object of the graph; returns the ids run by a step."""
    ids = {_raw_id(o) for o in objects}
    used: set[str] = set()
    for obj in objects:
        steps = obj.get("steps") or []
        items = steps.items() if isinstance(steps, dict) else [(s.get("id"), s) for s in steps if isinstance(s, dict)]
        for step_id, step in items:
            run = step.get("run") if isinstance(step, dict) else None
            if isinstance(run, str):
                target = run.lstrip("#")
                if run.startswith("#") and target not in ids:
                    raise InvalidPackage(f"step '{step_id}' of '{_raw_id(obj)}' runs '{run}', which is not in "
                                         f"the package (it has: {', '.join(sorted(ids))})")
                if not run.startswith("#"):
                    raise InvalidPackage(f"step '{step_id}' runs '{run}': a deployed package must be "
                                         "self-contained (use a $graph and '#id' references)")
                used.add(target)
    return used


def _entry(objects: list[dict[str, Any]], used: set[str], w: str | None) -> str:
    runnable = [o for o in objects if o.get("class") in ("Workflow", "CommandLineTool", "ExpressionTool")]
    ids = [_raw_id(o) for o in runnable]
    if w is not None:
        w = w.lstrip("#")
        if w not in ids:
            raise OGCError(f"there is no workflow or tool '{w}' in the package (it has: {', '.join(ids)})",
                           status=400, type=ExceptionType.WORKFLOW_NOT_FOUND, title="Workflow not found")
        return w
    if "main" in ids:
        return "main"
    roots = [i for i in ids if i not in used]
    workflows = [_raw_id(o) for o in runnable if o.get("class") == "Workflow" and _raw_id(o) in roots]
    if len(workflows) == 1:
        return workflows[0]
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise InvalidPackage("the package has no entry point (no workflow or tool that no step runs)")
    raise InvalidPackage(f"the package has several entry points ({', '.join(roots)}): choose one with ?w=")


def _validate(text: str) -> list[Any]:
    """Parse with cwl-utils from a file (its string loader mishandles map-form fields inside a $graph)."""
    import tempfile
    from pathlib import Path

    from cwl_utils.parser import load_document_by_uri

    with tempfile.TemporaryDirectory(prefix="ogcflow-cwl-") as tmp:
        path = Path(tmp) / "package.cwl"
        path.write_text(text, encoding="utf-8")
        try:
            parsed = load_document_by_uri(path, load_all=True)
        except Exception as exc:  # schema-salad's ValidationException and friends: the message is the point
            message = str(exc).replace(str(path), "package.cwl").replace(path.as_uri(), "package.cwl")
            raise InvalidPackage(f"the package is not valid CWL: {message}") from None
    return parsed if isinstance(parsed, list) else [parsed]


# -- types ----------------------------------------------------------------------------------------------

_SCALARS = {"string": {"type": "string"}, "int": {"type": "integer"}, "long": {"type": "integer"},
            "float": {"type": "number"}, "double": {"type": "number"}, "boolean": {"type": "boolean"}}


def _type_schema(t: Any, where: str) -> tuple[dict[str, Any], bool]:
    """JSON Schema of a CWL type, and whether null is allowed."""
    if isinstance(t, list):
        nullable = "null" in t
        alts = [x for x in t if x != "null"]
        if not alts:
            return {}, True
        schemas = [_type_schema(a, where)[0] for a in alts]
        return (schemas[0] if len(schemas) == 1 else {"oneOf": schemas}), nullable
    if isinstance(t, str):
        name = str(_short(t) if "#" in t else t)
        if name in _SCALARS:
            return dict(_SCALARS[name]), False
        if name in ("File", "Directory", "stdout", "stderr"):
            kind = "directory" if name == "Directory" else "file"
            return {"type": "string", "format": "uri", "description": f"a reference (URL) to a {kind}"}, False
        if name == "Any":
            return {}, False
        if name == "null":
            return {}, True
        raise InvalidPackage(f"{where}: the CWL type '{name}' is not supported")
    composite = getattr(t, "type_", None) or getattr(t, "type", None)
    if composite == "array":
        items, _ = _type_schema(t.items, where + "[]")
        return {"type": "array", "items": items}, False
    if composite == "enum":
        return {"type": "string", "enum": [_short(s) for s in t.symbols]}, False
    if composite == "record":
        props, required = {}, []
        for f in t.fields or []:
            fs, nullable = _type_schema(f.type_, f"{where}.{_short(f.name)}")
            props[_short(f.name)] = fs
            if not nullable:
                required.append(_short(f.name))
        schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            schema["required"] = required
        return schema, False
    raise InvalidPackage(f"{where}: the CWL type {t!r} is not supported")


def _format(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    return None


def _input(param: Any, raw: dict[str, Any]) -> tuple[str, models.InputDescription]:
    name = _short(param.id)
    schema, nullable = _type_schema(param.type_, f"input '{name}'")
    default = getattr(param, "default", None)
    if default is not None:
        schema = {**schema, "default": default}
    example = _schema_org(raw, "example")  # ``s:example``: what the execute form and /api start with
    if example is not None:
        schema = {**schema, "example": example}  # OpenAPI 3.0's keyword: the OGC schemas of descriptions
    fmt = _format(getattr(param, "format", None))
    if fmt and schema.get("format") == "uri":
        schema["contentMediaType"] = fmt
    desc = models.InputDescription(
        title=getattr(param, "label", None) or name, description=getattr(param, "doc", None) or None,
        schema=schema, minOccurs=0 if (nullable or default is not None) else 1, maxOccurs=1,
    )
    return name, desc


#: a Directory output: a STAC catalog in it becomes a FeatureCollection of its items, anything else a zip file
DIRECTORY_OUTPUT = {"oneOf": [
    {"type": "object", "contentMediaType": "application/geo+json",
     "description": "when the directory holds a STAC catalog: its items (a FeatureCollection), their assets "
                    "staged out to the results storage"},
    {"type": "string", "contentEncoding": "binary", "contentMediaType": "application/zip",
     "description": "any other directory: a zip file of its content"},
]}


def _output(param: Any) -> tuple[str, models.OutputDescription]:
    name = _short(param.id)
    schema, _ = _type_schema(param.type_, f"output '{name}'")
    if isinstance(param.type_, str) and _short(param.type_) == "Directory":
        schema = dict(DIRECTORY_OUTPUT)
    fmt = _format(getattr(param, "format", None))
    if fmt and schema.get("format") == "uri":
        schema["contentMediaType"] = fmt
    return name, models.OutputDescription(title=getattr(param, "label", None) or name,
                                          description=getattr(param, "doc", None) or None, schema=schema)


def _raw_inputs(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entry's inputs as written (a map or a list of objects with ``id``), for the annotations that the
    parsed document drops."""
    found = raw.get("inputs")
    if isinstance(found, dict):
        return {str(k): v for k, v in found.items() if isinstance(v, dict)}
    if isinstance(found, list):
        return {_short(str(v["id"])): v for v in found if isinstance(v, dict) and "id" in v}
    return {}


#: the namespace of ogcflow's own CWL hints (``$namespaces: {ogcflow: "https://ogcflow.dev/cwl#"}``)
OGCFLOW_NS = "https://ogcflow.dev/cwl#"


def _hint(doc: dict[str, Any], obj: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The body of ogcflow's hint ``name`` (``ogcflow:<name>``) on ``obj`` or the document, if given."""
    prefixes = {p for p, iri in (doc.get("$namespaces") or {}).items() if iri == OGCFLOW_NS} | {"ogcflow"}
    wanted = {f"{p}:{name}" for p in prefixes} | {OGCFLOW_NS + name}
    for holder in (obj, doc):
        hints = holder.get("hints") or []
        items = ([{"class": k, **(v if isinstance(v, dict) else {})} for k, v in hints.items()]
                 if isinstance(hints, dict) else [h for h in hints if isinstance(h, dict)])
        for hint in items:
            if hint.get("class") in wanted:
                return hint
    return None


def lost_reruns(text: str, entry: str) -> int:
    """How many times a job of this package whose run was lost is run again: 0 unless the package declares
    itself idempotent with the hint ``ogcflow:Idempotent`` (``reruns``: how many times, 1 by default, 5 at
    most)."""
    try:
        doc = _load_yaml(text)
        obj = next((o for o in _objects(doc) if _raw_id(o) == entry), doc)
    except InvalidPackage:
        return 0
    hint = _hint(doc, obj, "Idempotent")
    if hint is None:
        return 0
    reruns = hint.get("reruns", 1)
    return max(0, min(5, reruns)) if isinstance(reruns, int) and not isinstance(reruns, bool) else 1


def parse_package(text: str, w: str | None = None) -> CWLPackage:
    """Check a CWL document and describe its entry workflow (or ``w``) as an OGC process."""
    doc = _load_yaml(text)
    _check_self_contained(doc)
    objects = _objects(doc)
    used = _check_runs(objects)
    validated = _validate(text)
    entry = _entry(objects, used, w)
    if not entry:
        raise InvalidPackage("the workflow has no 'id': it is the process id, so the package must give one")
    if not _ID.match(entry):
        raise InvalidPackage(f"'{entry}' cannot be a process id (letters, digits, '.', '_', '-'; 128 at most)")
    parsed = {_short(o.id): o for o in validated}
    target = parsed.get(entry)
    if target is None:
        raise InvalidPackage(f"the entry '{entry}' was not found after parsing")
    raw = next(o for o in objects if _raw_id(o) == entry)
    version = _schema_org(raw, "softwareVersion") or _schema_org(doc, "softwareVersion") or "1.0.0"
    keywords = _schema_org(raw, "keywords") or _schema_org(doc, "keywords")
    raw_inputs = _raw_inputs(raw)
    inputs = dict(_input(p, raw_inputs.get(_short(p.id), {})) for p in target.inputs)
    outputs = dict(_output(p) for p in target.outputs)
    description = models.Process(
        id=entry, version=str(version), title=target.label or entry, description=target.doc or None,
        keywords=[keywords] if isinstance(keywords, str) else (list(keywords) if keywords else None),
        jobControlOptions=[JobControlOption.async_execute, JobControlOption.sync_execute, JobControlOption.dismiss],
        inputs=inputs, outputs=outputs,
    )
    inputs_kind = {_short(p.id): k for p in target.inputs if (k := _kind(p.type_))}
    outputs_kind = {_short(p.id): k for p in target.outputs if (k := _kind(p.type_))}
    return CWLPackage(text=text, document=doc, entry=entry, description=description, inputs_kind=inputs_kind,
                      outputs_kind=outputs_kind)
