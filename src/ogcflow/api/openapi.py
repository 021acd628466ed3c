"""The OpenAPI 3.0 document at /api: generated from the routes, made 3.0-valid, and extended with every
offered process's execute request and results schemas."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ogcflow import __version__
from ogcflow.domain import Caller
from ogcflow.processes.base import Process
from ogcflow.processes.examples import example_request
from ogcflow.services.processes import ProcessService


def to_oas30(node: Any) -> Any:
    """Rewrite JSON Schema 2020-12 idioms that pydantic emits into their OpenAPI 3.0 forms."""
    if isinstance(node, list):
        return [to_oas30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_oas30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and any(a == {"type": "null"} for a in alts):
            rest = [a for a in alts if a != {"type": "null"}]
            del node[key]
            if len(rest) == 1:
                node.update({k: v for k, v in rest[0].items() if k not in node})
            else:
                node[key] = rest
            node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if "examples" in node and isinstance(node["examples"], list):
        examples = node.pop("examples")
        if examples and "example" not in node:
            node["example"] = examples[0]
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        if len(types) != len(node["type"]):
            node["nullable"] = True
        node["type"] = types[0] if len(types) == 1 else "string"
    node.pop("$schema", None)
    if node.get("required") == []:
        del node["required"]
    for key in ("contentMediaType", "contentEncoding", "contentSchema"):
        if key in node:  # JSON Schema keywords OpenAPI 3.0 lacks: kept as extensions
            value = node.pop(key)
            node[f"x-{key}"] = value
            if key == "contentEncoding" and value == "base64" and "format" not in node:
                node["format"] = "byte"
    return node


def _input_schema(process: Process) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for key, desc in process.description.inputs.items():
        one = copy.deepcopy(desc.schema_)
        value: dict[str, Any] = {"oneOf": [one, {"type": "object", "required": ["href"],
                                 "properties": {"href": {"type": "string", "format": "uri"},
                                                "type": {"type": "string"}}},
                           {"type": "object", "required": ["value"],
                            "properties": {"value": one, "mediaType": {"description": "a media type"},
                                           "encoding": {"description": "e.g. base64"}}}]}
        if desc.maxOccurs == "unbounded" or desc.maxOccurs > 1:
            value = {"oneOf": [value, {"type": "array", "items": value}]}
        if desc.title or desc.description:
            value = {**value, "description": desc.description or desc.title}
        props[key] = value
        if desc.minOccurs > 0 and "default" not in desc.schema_:
            required.append(key)
    inputs: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        inputs["required"] = required
    outputs = {"type": "object", "additionalProperties": False, "properties": {
        key: {"type": "object", "properties": {
            "transmissionMode": {"type": "string", "enum": ["value", "reference"]},
            "format": {"type": "object", "nullable": True}}} for key in process.description.outputs}}
    return {"type": "object", "required": ["inputs"] if required else [],
            "properties": {"inputs": inputs, "outputs": {**outputs, "nullable": True},
                           "response": {"type": "string", "enum": ["raw", "document", None], "default": "raw",
                                        "nullable": True},
                           "subscriber": {"type": "object", "nullable": True, "properties": {
                               "successUri": {"type": "string", "format": "uri"},
                               "inProgressUri": {"type": "string", "format": "uri"},
                               "failedUri": {"type": "string", "format": "uri"}}}}}


def _results_schema(process: Process) -> dict[str, Any]:
    props = {}
    for key, desc in process.description.outputs.items():
        props[key] = {"anyOf": [copy.deepcopy(desc.schema_),
                                {"type": "object", "required": ["href"], "properties": {
                                    "href": {"type": "string"}, "type": {"type": "string"}}},
                                {"type": "object", "required": ["value"], "properties": {
                                    "value": {}, "mediaType": {"type": "string"}}}]}
    return {"type": "object", "properties": props}


def _exception_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Exception"}},
                        "text/html": {"schema": {"type": "string"}}}}


#: what any operation may answer besides its own responses (exception documents, JSON or HTML)
COMMON = {
    "400": "Bad request: a parameter, a header or the body is invalid",
    "401": "Credentials are needed (the operation needs a role, or the server requires credentials)",
    "403": "The credentials' role is too low for this operation",
    "404": "Not found",
    "406": "None of the media types the client accepts (Accept, f=) can be given",
    "500": "Server error",
    "503": "A service the server depends on (store, results storage, Prefect) is unavailable",
}
#: what operations with a request body may answer besides
BODY = {"413": "The request body is larger than the server accepts (OGCFLOW_MAX_BODY_BYTES)",
        "415": "The request body's media type is not one the operation accepts"}
ANY: dict[str, Any] = {"*/*": {"schema": {}}}
#: operations whose 200 answer is a file or an output as its own media type
RAW_200 = {("/jobs/{jobId}/files/{name}", "get"), ("/jobs/{jobId}/results/{outputId}", "get")}
PACKAGE_BODY = {"required": True, "content": {
    "application/cwl+yaml": {"schema": {"type": "string"}}, "application/cwl": {"schema": {"type": "string"}},
    "application/cwl+json": {"schema": {"type": "object"}},
    "application/ogcapppkg+json": {"schema": {"type": "object", "required": ["executionUnit"],
                                              "properties": {"executionUnit": {}, "processDescription": {}}}}}}
NO_CONTENT_LINK = {"description": "No content: the process returned nothing, or its one output is by reference "
                                  "(the Link header points to it)",
                   "headers": {"Link": {"schema": {"type": "string"}, "required": False}}}


def _raw_media(process: Process) -> dict[str, Any]:
    """The media types of a synchronous raw answer: an output as its own media type, which the process
    decides when it runs (the description's contentMediaType when it gives one, else any: ``*/*``), and
    multipart/related for several outputs."""
    types: dict[str, Any] = {}
    outputs = process.description.outputs
    for desc in outputs.values():
        media = desc.schema_.get("contentMediaType")
        if isinstance(media, str):
            types[media] = {"schema": {}}
    types["*/*"] = {"schema": {}}
    if len(outputs) > 1:
        types["multipart/related"] = {"schema": {}}
    return types


def build(app: FastAPI, processes: list[Process], base_url: str,
          security: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document of the root routes (a namespace's API has the same paths under its own server URL),
    with the processes' execute requests, and the security schemes when credentials are accepted."""
    routes = app.state.api_routes  # the routers' own routes: the paths without a namespace prefix
    doc = get_openapi(title=app.title, version=__version__, description=app.description, routes=routes)
    doc = dict(to_oas30(doc))
    doc["openapi"] = "3.0.3"
    doc["servers"] = [{"url": base_url}]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    if security:
        schemes, optional = security["schemes"], security["optional"]
        doc["components"]["securitySchemes"] = schemes
        doc["security"] = [{name: []} for name in schemes] + ([{}] if optional else [])
    schemas["Exception"] = {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}}, "additionalProperties": True}
    for key, path in doc.get("paths", {}).items():
        for method, op in path.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            if key == "/processes" and method == "post" or key == "/processes/{processId}" and method == "put":
                op["requestBody"] = copy.deepcopy(PACKAGE_BODY)
            for code, text in {**COMMON, **(BODY if "requestBody" in op else {})}.items():
                responses.setdefault(code, _exception_response(text))
            if (key, method) in RAW_200:
                responses["200"]["content"] = copy.deepcopy(ANY)
            if key == "/jobs/{jobId}/results" and method == "get":  # raw when the execute request said so
                responses["200"]["content"] = {"application/json": {"schema": {}}, **copy.deepcopy(ANY)}
                responses["204"] = copy.deepcopy(NO_CONTENT_LINK)
    for process in processes:
        pid = process.id
        schemas[f"execute-{pid}"] = to_oas30(_input_schema(process))
        schemas[f"results-{pid}"] = to_oas30(_results_schema(process))
        # raw, one output (the only one, or the one asked for) is its own JSON value
        raw_json = [to_oas30(copy.deepcopy(d.schema_)) for d in process.description.outputs.values()]
        results = {"anyOf": [{"$ref": f"#/components/schemas/results-{pid}"}, *raw_json]}
        answers: dict[str, Any] = {
            "200": {"description": "Results of a synchronous execution: a results document (response=document) "
                                   "or, raw, the one output as its own media type (several: multipart/related)",
                    "content": {"application/json": {"schema": results}, **_raw_media(process)}},
            "201": {"description": "Job created (asynchronous, or synchronous past OGCFLOW_SYNC_TIMEOUT)",
                    "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatusInfo"}}}},
            "204": copy.deepcopy(NO_CONTENT_LINK)}
        for code, text in {**COMMON, **BODY, "400": "Invalid inputs", "404": "No such process"}.items():
            answers[code] = _exception_response(text)
        doc["paths"][f"/processes/{pid}/execution"] = {"post": {
            "tags": ["Processes"], "summary": f"Execute '{pid}'",
            "description": process.description.description or "", "operationId": f"execute-{pid}",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/execute-{pid}"},
                "example": example_request(process.description)}}},
            "parameters": [{"name": "Prefer", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "respond-async for an asynchronous job"},
                           {"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "maxLength": 257},
                            "description": "a retried request with the same key gets the first one's job "
                                           "(draft-ietf-httpapi-idempotency-key-header)"}],
            "responses": {**answers,
                          "422": _exception_response("Idempotency-Key sent again with another request")}}}
    return doc


_cache: dict[tuple[str, tuple[int, str], str, bool], dict[str, Any]] = {}


def openapi_document(app: FastAPI, service: ProcessService, caller: Caller, base_url: str,
                     security: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document of one namespace (its processes), cached until a deployment there changes them."""
    key = (caller.namespace, service.version(caller), base_url, bool(security and security["optional"]))
    doc = _cache.get(key)
    if doc is None:
        if len(_cache) > 64:
            _cache.clear()
        doc = _cache[key] = build(app, service.all(caller), base_url, security)
    return doc
