"""Prefect deployments as OGC processes: an operator names an existing deployment
(``ogcflow prefect register <flow>/<deployment>``) and it becomes a process of the catalog (a store row of
kind :data:`KIND`), whose inputs are the deployment's parameters (its ``parameter_openapi_schema``) and
whose outputs are what the flow publishes (``ogcflow.flows``: JSON values and files it writes to results
storage).

Executing the process creates a flow run of the deployment, on whatever work pool the deployment uses
(a ``process``, Docker or Kubernetes worker of Prefect runs it, with Prefect's own engine, retries, tasks and
caching), and follows the run until its final state: the job's message follows the run's state, Completed
is the job's success with the flow's outputs, Failed or Crashed its failure with Prefect's message.
Dismissing the job cancels the run (:meth:`DeploymentProcess.dismissed`, from the job service). The job
itself is an OGC job as any other: stored, claimed by an ogcflow worker (of either engine) whose job
process creates and follows the run, with callbacks, status and results through the OGC API.

The run carries the job in its tags (``ogcflow-job:<id>``) and its environment (``OGCFLOW_JOB_ID``,
``OGCFLOW_RESULTS_URL``: flow run job variables, which every Prefect worker type passes to the flow), and is
created once per job (its idempotency key is the job id).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from ogcflow import flows, models
from ogcflow.domain import SHARED_NAMESPACE, JSONObject
from ogcflow.engines.prefect import backoff_of, prefect_target
from ogcflow.engines.prefect_api import (
    FINAL_STATES,
    PrefectSync,
    create_deployment_run,
    read_deployment,
    read_run,
    runs_tagged,
    state_body,
)
from ogcflow.errors import ProcessCancelled, ProcessError, ServiceUnavailable
from ogcflow.models import JobControlOption, TransmissionMode
from ogcflow.processes.base import JobContext, OutputValue, Process
from ogcflow.processes.catalog import ProcessFactory
from ogcflow.settings import PrefectSettings
from ogcflow.storage import LocalStorage, ResultStorage
from ogcflow.store.processes import NewPackage, ProcessRecord, ProcessStore

log = logging.getLogger("ogcflow.prefect")

#: the media type (and so the kind) of a process row that names a Prefect deployment
KIND = "application/vnd.ogcflow.prefect-deployment+json"
#: the output of a deployment registered without named outputs: whatever the flow publishes
DEFAULT_OUTPUT = "result"
JOB_TAG = "ogcflow-job:"
#: the longest pause between two looks at a run (the first are 50 ms apart, growing)
MAX_POLL = 0.5
#: how long a job follows its run while Prefect's API cannot be reached (the flow itself may run on)
UNREACHABLE_FOR = 600.0
#: a dismissal that found no run looks again this much later (the job's process may have been creating it)
LOOK_AGAIN_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class OutputSpec:
    id: str
    #: None: JSON data; a media type: a file the flow writes (``flows.write_file``)
    media_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> OutputSpec:
        """``id`` or ``id=media/type``."""
        out_id, _, media = text.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", out_id):
            raise ValueError(f"not an output id: {out_id!r}")
        return cls(out_id, media.strip() or None)


@dataclass(frozen=True, slots=True)
class DeploymentRef:
    """What a process row of :data:`KIND` holds (its package, as JSON)."""

    deployment_id: str
    name: str
    outputs: tuple[OutputSpec, ...]

    def dumps(self) -> str:
        return json.dumps({"deployment_id": self.deployment_id, "deployment": self.name,
                           "outputs": [{"id": o.id, "media_type": o.media_type} for o in self.outputs]})

    @classmethod
    def loads(cls, text: str) -> DeploymentRef:
        data = json.loads(text)
        return cls(str(data["deployment_id"]), str(data["deployment"]),
                   tuple(OutputSpec(str(o["id"]), o.get("media_type")) for o in data["outputs"]))


def _inline(node: Any, definitions: dict[str, Any], depth: int = 0) -> Any:
    """``node`` with the ``$ref``s to the parameter schema's definitions replaced by the definitions
    themselves (an input's schema stands alone, also in the OpenAPI document); a model that refers to itself
    is cut at depth 8 (any value)."""
    if isinstance(node, list):
        return [_inline(item, definitions, depth) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/definitions/", "#/$defs/")):
        target = definitions.get(ref.rsplit("/", 1)[1])
        rest = {k: _inline(v, definitions, depth) for k, v in node.items() if k != "$ref"}
        if target is None or depth >= 8:
            return rest
        return {**_inline(target, definitions, depth + 1), **rest}
    return {k: _inline(v, definitions, depth) for k, v in node.items()}


def _input(name: str, prop: dict[str, Any], required: bool, definitions: dict[str, Any]) -> JSONObject:
    schema = _inline({k: v for k, v in prop.items() if k not in ("position", "title", "description")},
                     definitions)
    doc: JSONObject = {"title": str(prop.get("title") or name), "schema": schema,
                       "minOccurs": 1 if required else 0, "maxOccurs": 1}
    if prop.get("description"):
        doc["description"] = str(prop["description"])
    return doc


def describe(deployment: dict[str, Any], flow_name: str, process_id: str,
             outputs: tuple[OutputSpec, ...]) -> models.Process:
    """The OGC description of a deployment: its parameters as inputs, the named outputs."""
    params = deployment.get("parameter_openapi_schema") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = set(params.get("required") or [])
    definitions: dict[str, Any] = params.get("definitions") or params.get("$defs") or {}
    name = f"{flow_name}/{deployment['name']}"
    out_docs: dict[str, Any] = {
        o.id: {"title": o.id, "schema": {} if o.media_type is None
               else {"type": "string", "contentMediaType": o.media_type}}
        for o in outputs}
    return models.Process.model_validate({
        "id": process_id,
        "version": str(deployment.get("version") or "1.0.0"),
        "title": deployment.get("description") and str(deployment["description"]).splitlines()[0] or name,
        "description": f"The Prefect deployment {name}: each execution is a flow run of it, on its work pool "
                       f"{deployment.get('work_pool_name') or '(none)'}.",
        "keywords": ["prefect", f"deployment:{name}"],
        "jobControlOptions": [JobControlOption.sync_execute, JobControlOption.async_execute,
                              JobControlOption.dismiss],
        "outputTransmission": [TransmissionMode.value, TransmissionMode.reference],
        "inputs": {key: _input(key, prop, key in required, definitions) for key, prop in props.items()},
        "outputs": out_docs,
    })


def results_root(storage: ResultStorage) -> str:
    """Where a flow writes the job's files (``OGCFLOW_RESULTS_URL`` of the run): the storage's root."""
    if isinstance(storage, LocalStorage):
        return str(storage.root)
    bucket, prefix = getattr(storage, "bucket", None), getattr(storage, "prefix", "")
    if bucket:
        return f"s3://{bucket}/{prefix}".rstrip("/")
    raise ProcessError("this results storage cannot be written by a Prefect flow")


class DeploymentProcess(Process):
    """A Prefect deployment as an OGC process."""

    def __init__(self, description: models.Process, ref: DeploymentRef, settings: PrefectSettings) -> None:
        self.description = description
        self.ref = ref
        self.settings = settings

    def _api(self) -> PrefectSync:
        return PrefectSync(prefect_target(self.settings), backoff=backoff_of(self.settings))

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        storage = ctx.storage
        if storage is None:
            raise ProcessError("a Prefect deployment's process needs results storage")
        target = prefect_target(self.settings)
        ui = (self.settings.ui_url or target.ui_url).rstrip("/")
        api = self._api()
        try:
            try:
                run = create_deployment_run(
                    api, self.ref.deployment_id, name=f"ogc-{ctx.job_id}", parameters=inputs,
                    tags=["ogcflow", f"{JOB_TAG}{ctx.job_id}", f"process:{self.id}"],
                    idempotency_key=f"ogcflow-{ctx.job_id}",
                    job_variables={"env": {flows.JOB_ENV: ctx.job_id, flows.RESULTS_ENV: results_root(storage)}})
            except ValueError as exc:
                raise ProcessError(str(exc)) from None
            run_id = str(run["id"])
            final = self._follow(api, run, f"{ui}/runs/flow-run/{run_id}", ctx)
        finally:
            api.close()
        state = final.get("state") or {}
        kind, label = str(state.get("type") or ""), str(state.get("name") or state.get("type") or "")
        message = state.get("message") or ""
        if kind == "CANCELLED":
            raise ProcessCancelled(f"the Prefect flow run {final.get('name')} was cancelled in Prefect"
                                   + (f": {message}" if message else ""))
        if kind != "COMPLETED":
            raise ProcessError(f"the Prefect flow run {final.get('name')} ended {label}"
                               + (f": {message}" if message else ""))
        return self._outputs(ctx.job_id, storage)

    def _follow(self, api: PrefectSync, run: dict[str, Any], link: str, ctx: JobContext) -> dict[str, Any]:
        """Look at the run until its final state (the job's message says its state, as Prefect names it)."""
        seen = ""
        delay = 0.05
        started = time.monotonic()
        down_since: float | None = None
        while True:
            state = run.get("state") or {}
            label = str(state.get("name") or state.get("type") or "")
            if label != seen:
                seen = label
                ctx.progress(None, f"Prefect flow run {run.get('name')}: {label} ({link})")
            if state.get("type") in FINAL_STATES:
                return run
            time.sleep(delay)
            delay = min(delay * 1.5, MAX_POLL if time.monotonic() - started < 60 else 2.0)
            try:
                found = read_run(api, str(run["id"]))
            except ServiceUnavailable as exc:  # the flow runs on without Prefect's API: wait for it
                if down_since is None:
                    down_since = time.monotonic()
                    ctx.progress(None, f"Prefect flow run {run.get('name')}: {label}; Prefect is unreachable "
                                       f"({exc.detail}), looked at again")
                if time.monotonic() - down_since > UNREACHABLE_FOR:
                    raise
                delay = 2.0
                continue
            down_since = None
            if found is None:
                raise ProcessError(f"the Prefect flow run {run.get('name')} was deleted")
            run = found

    def _outputs(self, job_id: str, storage: ResultStorage) -> dict[str, Any]:
        """What the flow published (``flows.publish``), output by output."""
        try:
            published = json.loads(storage.read(f"{job_id}/{flows.OUTPUTS_NAME}"))["value"]
        except FileNotFoundError:
            return {}  # the flow published nothing: a job without outputs
        except (ValueError, KeyError, TypeError) as exc:
            raise ProcessError(f"the flow's published outputs are not readable: {exc}") from None
        specs = self.ref.outputs
        if len(specs) == 1 and not (isinstance(published, dict) and set(published) == {specs[0].id}):
            return {specs[0].id: self._value(job_id, published, storage)}
        if not isinstance(published, dict):
            raise ProcessError(f"the flow published {type(published).__name__}, not a mapping of its outputs "
                               f"({', '.join(o.id for o in specs)})")
        return {o.id: self._value(job_id, published[o.id], storage) for o in specs if o.id in published}

    @staticmethod
    def _value(job_id: str, value: Any, storage: ResultStorage) -> Any:
        if isinstance(value, dict) and flows.FILE_KEY in value:
            name = str(value[flows.FILE_KEY])
            try:
                data = storage.read(f"{job_id}/{flows.STAGING}/{name}")
            except (FileNotFoundError, ValueError):
                raise ProcessError(f"the flow's file {name!r} is not in results storage") from None
            return OutputValue(value=data, media_type=value.get("type") or "application/octet-stream")
        return value

    def dismissed(self, job_id: str, again: bool = True) -> None:
        """Cancel the job's flow run (Cancelling when a worker has it: Prefect's worker stops it). When there
        is none yet, look again a little later: the job's process may have been creating it as it was
        stopped."""
        api = self._api()
        try:
            runs = runs_tagged(api, f"{JOB_TAG}{job_id}")
            if not runs and again:
                timer = threading.Timer(LOOK_AGAIN_AFTER, self._dismissed_later, args=(job_id,))
                timer.daemon = True
                timer.start()
            for run in runs:
                state = str((run.get("state") or {}).get("type") or "")
                if state in FINAL_STATES or state == "CANCELLING":
                    continue
                target = "CANCELLED" if state in ("SCHEDULED", "") else "CANCELLING"
                api._call("POST", f"flow_runs/{run['id']}/set_state", "cancel a flow run",
                          json={"state": state_body(target, message="dismissed through the OGC API"),
                                "force": True})
        finally:
            api.close()


    def _dismissed_later(self, job_id: str) -> None:
        try:
            self.dismissed(job_id, again=False)
        except ServiceUnavailable as exc:
            log.warning("job %s: its flow run, if any, could not be cancelled: %s", job_id, exc)


def factory(settings: PrefectSettings) -> ProcessFactory:
    def build(record: ProcessRecord) -> Process:
        return DeploymentProcess(models.Process.model_validate(record.description),
                                 DeploymentRef.loads(record.package), settings)

    return build


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:64] or "deployment"


def register(settings: PrefectSettings, rows: ProcessStore, name: str, *, process_id: str | None = None,
             namespace: str = SHARED_NAMESPACE, outputs: tuple[OutputSpec, ...] = ()) -> ProcessRecord:
    """Make the deployment ``<flow>/<deployment>`` a process of ``namespace`` (the shared scope: every
    namespace), replacing the process of that id if it is one; the stored row."""
    api = PrefectSync(prefect_target(settings), backoff=backoff_of(settings))
    try:
        deployment = read_deployment(api, name)
        if deployment is None:
            raise LookupError(f"Prefect has no deployment {name!r} (<flow name>/<deployment name>)")
        flow_name = name.partition("/")[0] if "/" in name else str(deployment.get("flow_id"))
        if "/" not in name:
            resp = api._call("GET", f"flows/{deployment['flow_id']}", "read the flow")
            flow_name = str(resp.json().get("name", flow_name)) if resp.status_code == 200 else flow_name
    finally:
        api.close()
    full = f"{flow_name}/{deployment['name']}"
    ref = DeploymentRef(str(deployment["id"]), full, outputs or (OutputSpec(DEFAULT_OUTPUT),))
    pid = process_id or _slug(f"{flow_name}-{deployment['name']}")
    desc = describe(deployment, flow_name, pid, ref.outputs)
    pkg = NewPackage(id=pid, version=desc.version, description=desc.dump(), package=ref.dumps(), media_type=KIND,
                     entry=full, inputs_kind={})
    existing = rows.get(namespace, pid)
    if existing is not None and existing.kind != KIND:
        raise ValueError(f"process '{pid}' of {namespace} is a {existing.kind} package, not a Prefect deployment")
    if not (rows.update(namespace, pkg) if existing else rows.insert(namespace, pkg)):
        raise ValueError(f"process '{pid}' could not be stored")
    found = rows.get(namespace, pid)
    assert found is not None
    return found
