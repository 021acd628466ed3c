"""What the Prefect engine makes of a process: its deployment (one per process and namespace, in the work pool),
the deployment's parameter schema (the process's inputs, so the Prefect UI shows and edits them), and how a
job's flow run is run (retries, retry delay, work queue).

- The flow of a process is ``ogcflow:<process id>``; its deployment in work pool P is named ``P`` (namespace
  ``default``) or ``P@<namespace>``, tagged ``ogcflow``, ``process:<id>``, ``namespace:<ns>``: a run of it
  made in Prefect (the Run button, a schedule, an automation) is a job of that process in that namespace.
- A flow run's parameters are the job's inputs, as the execute request gave them (values, qualified values,
  references ``{"href": ...}``).
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from ogcflow import models
from ogcflow.domain import Job, RunOptions
from ogcflow.settings import PrefectSettings, ProcessRuns

FLOW_PREFIX = "ogcflow:"
#: tags of every ogcflow deployment (and so of every run made from one)
TAG = "ogcflow"
PROCESS_TAG = "process:"
NAMESPACE_TAG = "namespace:"

_LINK = {"type": "object", "title": "reference", "description": "a URL the server fetches the value from",
         "properties": {"href": {"type": "string", "format": "uri"}}, "required": ["href"]}


def _literal(schema: dict[str, Any]) -> bool:
    """A value typed in a form field (a number, a word, a choice), not a document or a file."""
    return (schema.get("type") in ("string", "number", "integer", "boolean") and "contentMediaType" not in schema
            and "contentEncoding" not in schema and schema.get("format") not in ("binary", "byte"))


def input_schema(desc: models.InputDescription, position: int) -> dict[str, Any]:
    """The JSON Schema of one input as a Prefect parameter: the input's schema, a reference to a value
    (``{"href": ...}``) where the value is a document, and a list of occurrences where it may repeat."""
    schema = dict(desc.schema_)
    one: dict[str, Any] = schema if _literal(schema) else {"anyOf": [schema, _LINK]}
    repeats = desc.maxOccurs == "unbounded" or desc.maxOccurs > 1
    if repeats:
        many: dict[str, Any] = {"type": "array", "items": one, "minItems": max(1, desc.minOccurs)}
        if desc.maxOccurs != "unbounded":
            many["maxItems"] = desc.maxOccurs
        one = {"anyOf": [one, many]} if desc.minOccurs <= 1 else many
    out = dict(one)
    out["title"] = desc.title or schema.get("title") or ""
    if desc.description:
        out["description"] = desc.description
    if "default" in schema and "default" not in out:
        out["default"] = schema["default"]
    out["position"] = position
    return out


def parameter_schema(process: models.Process) -> dict[str, Any]:
    """The deployment's ``parameter_openapi_schema``: one parameter per input, in the description's order,
    required as the input is."""
    properties = {input_id: input_schema(desc, n) for n, (input_id, desc) in enumerate(process.inputs.items())}
    for input_id, prop in properties.items():
        if not prop["title"]:
            prop["title"] = input_id
    required = [input_id for input_id, desc in process.inputs.items()
                if desc.minOccurs > 0 and "default" not in desc.schema_]
    return {"title": "Parameters", "type": "object", "properties": properties, "required": required,
            "definitions": {}}


@dataclass(frozen=True)
class DeploymentSpec:
    """The deployment of one process in one namespace and work pool, as ogcflow wants it in Prefect."""

    process_id: str
    namespace: str
    pool: str
    description: str
    schema: dict[str, Any]
    work_queue: str | None = None

    @property
    def flow(self) -> str:
        return FLOW_PREFIX + self.process_id

    @property
    def name(self) -> str:
        return self.pool if self.namespace == "default" else f"{self.pool}@{self.namespace}"

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.process_id

    @property
    def tags(self) -> list[str]:
        return [TAG, PROCESS_TAG + self.process_id, NAMESPACE_TAG + self.namespace]

    @functools.cached_property
    def fingerprint(self) -> str:
        """What an existing deployment is compared on (a process replaced changes it); made once per spec
        (the API asks at every submission)."""
        return json.dumps([self.description, self.schema, self.work_queue, self.tags], sort_keys=True)

    def body(self, flow_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name, "flow_id": flow_id, "work_pool_name": self.pool, "description": self.description,
            "tags": self.tags, "parameter_openapi_schema": self.schema, "enforce_parameter_schema": False,
            "entrypoint": "ogcflow.engines.prefect:PrefectRuns", "parameters": {}}
        if self.work_queue:
            body["work_queue_name"] = self.work_queue
        return body

    def update(self) -> dict[str, Any]:
        """The PATCH that brings an existing deployment up to date."""
        body = {"description": self.description, "tags": self.tags, "parameter_openapi_schema": self.schema}
        if self.work_queue:
            body["work_queue_name"] = self.work_queue
        return body


def deployment_spec(process: models.Process, namespace: str, settings: PrefectSettings) -> DeploymentSpec:
    runs = settings.processes.get(process.id)
    text = process.title or process.id
    if process.description:
        text += f": {process.description}"
    text += f" (the OGC process '{process.id}' of ogcflow, namespace '{namespace}')"
    return DeploymentSpec(process_id=process.id, namespace=namespace, pool=settings.work_pool, description=text,
                          schema=parameter_schema(process), work_queue=runs.work_queue if runs else None)


@dataclass(frozen=True)
class RunPolicy:
    """How one job's flow run is run."""

    retries: int = 0
    retry_delay_seconds: float = 0.0
    work_queue: str | None = None

    def empirical_policy(self) -> dict[str, Any]:
        return {"retries": self.retries, "retry_delay": int(round(self.retry_delay_seconds))}


def run_policy(asked: RunOptions | None, default: ProcessRuns | None) -> RunPolicy:
    """The request's options, else the process's (``OGCFLOW_PREFECT_PROCESSES``), else none."""
    asked = asked or RunOptions()
    base = default or ProcessRuns()
    return RunPolicy(retries=asked.retries if asked.retries is not None else base.retries,
                     retry_delay_seconds=(asked.retry_delay_seconds if asked.retry_delay_seconds is not None
                                          else base.retry_delay_seconds),
                     work_queue=asked.work_queue or base.work_queue)


def policy_of(job: Job, settings: PrefectSettings) -> RunPolicy:
    return run_policy(job.request.run, settings.processes.get(job.process_id))


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def job_ids_of(run: dict[str, Any]) -> list[str]:
    """The ids the job of a flow run may have, most likely first: the job id ogcflow gave the run as its
    idempotency key (or, before, as its ``job_id`` parameter), then the run's own id (the job of a run made in
    Prefect has the run's id)."""
    ids = []
    key = run.get("idempotency_key")
    if key and _is_uuid(key):
        ids.append(str(key))
    old = (run.get("parameters") or {}).get("job_id")
    if isinstance(old, str) and _is_uuid(old):
        ids.append(old)
    ids.append(str(run["id"]))
    return ids


def deployment_of(deployment: dict[str, Any]) -> tuple[str, str] | None:
    """(namespace, process id) of an ogcflow deployment, from its tags; None for another deployment."""
    tags = deployment.get("tags") or []
    process = next((t[len(PROCESS_TAG):] for t in tags if t.startswith(PROCESS_TAG)), None)
    namespace = next((t[len(NAMESPACE_TAG):] for t in tags if t.startswith(NAMESPACE_TAG)), "default")
    if TAG not in tags or not process:
        return None
    return namespace, process
