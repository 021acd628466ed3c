"""Jobs from submission to their end: creating the record, running the process, recording the outcome.

Engines call :func:`run_job` wherever they run a job (a forked child of the local worker, a Prefect flow
run, the API process for cheap synchronous work): the steps and the records are the same everywhere.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogcflow import models
from ogcflow.errors import ExceptionType, InputFetchError, ProcessError, ServiceUnavailable
from ogcflow.jobs.results import results_document, store_outputs
from ogcflow.jobs.store import Job, JobStore, utcnow
from ogcflow.models import StatusCode, TransmissionMode
from ogcflow.netpolicy import fetch
from ogcflow.processes.base import JobContext, default_registry
from ogcflow.processes.catalog import ProcessCatalog
from ogcflow.processes.inputs import requested_outputs, resolve_inputs
from ogcflow.settings import Settings
from ogcflow.storage import ResultStorage, make_storage

log = logging.getLogger("ogcflow.jobs")

LOG_NAME = "job.log"  # a job's log in results storage


@dataclass
class Runtime:
    """What the API and the workers share: settings, job store, results storage, processes."""

    settings: Settings
    store: JobStore
    storage: ResultStorage
    registry: ProcessCatalog

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.db_url)
        return cls(settings=settings, store=store, storage=make_storage(settings),
                   registry=ProcessCatalog(default_registry(), store, settings))


def new_job(process: models.Process, execute: models.Execute, *, mode: str, namespace: str, engine: str,
            base_url: str) -> Job:
    now = utcnow()
    request: dict[str, Any] = {
        "inputs": execute.inputs,
        "outputs": {k: v.value for k, v in requested_outputs(process, execute).items()},
        "response": execute.response.value,
        "base_url": base_url,
    }
    if execute.subscriber is not None:
        request["subscriber"] = execute.subscriber.dump()
    return Job(id=str(uuid.uuid4()), process_id=process.id, status=StatusCode.accepted.value, created=now,
               updated=now, request=request, namespace=namespace, mode=mode, engine=engine,
               message="accepted", progress=0)


def status_info(job: Job, base_url: str, run_url: str | None = None) -> models.StatusInfo:
    url = f"{base_url}/jobs/{job.id}"
    links = [
        models.Link(href=url, rel="self", type="application/json", title="this status"),
        models.Link(href=url, rel="monitor", type="application/json", title="monitor this job"),
        models.Link(href=url + "?f=html", rel="alternate", type="text/html", title="this status as HTML"),
    ]
    if job.status == StatusCode.successful.value:
        links.append(models.Link(href=url + "/results", rel="http://www.opengis.net/def/rel/ogc/1.0/results",
                                 type="application/json", title="results of this job"))
    elif job.status == StatusCode.failed.value:
        links.append(models.Link(href=url + "/results", rel="http://www.opengis.net/def/rel/ogc/1.0/exceptions",
                                 type="application/json", title="why this job failed"))
    if run_url:
        links.append(models.Link(href=run_url, rel="related", type="text/html",
                                 title=f"this job's run in {job.engine.capitalize()}"))
    if job.log and job.status != StatusCode.dismissed.value:
        links.append(models.Link(href=url + "/logs", rel="describedby", type="text/plain",
                                 title="the job's log"))
    return models.StatusInfo(processID=job.process_id, jobID=job.id, status=StatusCode(job.status),
                             message=job.message, created=job.created, started=job.started,
                             finished=job.finished, updated=job.updated, progress=job.progress, links=links)


def _failure(detail: str) -> dict[str, Any]:
    return {"type": ExceptionType.JOB_FAILED, "title": "Job failed", "status": 500, "detail": detail}


def execute_process(rt: Runtime, job: Job, ctx: JobContext) -> tuple[StatusCode, dict[str, Any] | None,
                                                                      dict[str, Any] | None, str]:
    """Run the job's process; return (status, results manifest, error document, message). Never raises."""
    try:
        process = rt.registry.get(job.process_id, job.namespace)
        inputs = resolve_inputs(process.description, job.request.get("inputs", {}),
                                lambda href: fetch(href, rt.settings))
        outputs = process.execute(inputs, ctx)
        modes = {k: TransmissionMode(v) for k, v in job.request.get("outputs", {}).items()}
        manifest = store_outputs(job.id, outputs, modes, rt.storage)
        return StatusCode.successful, manifest, None, "successful"
    except InputFetchError as exc:
        msg = f"an input could not be fetched: {exc}"
    except ServiceUnavailable as exc:  # e.g. the results storage
        msg = exc.detail
    except ProcessError as exc:
        msg = str(exc)
    except Exception as exc:  # a bug in the process: say what, keep the traceback in the log
        log.exception("job %s: process %s raised", job.id, job.process_id)
        msg = f"the process raised {exc.__class__.__name__}: {exc}"
    return StatusCode.failed, None, _failure(msg), msg


def run_job(rt: Runtime, job: Job, cancelled: threading.Event | None = None) -> StatusCode:
    """Execute a job that is marked running and record how it ended (unless it was dismissed meanwhile)."""
    _notify(rt, job, "inProgressUri")

    def report(percent: int | None, message: str | None) -> None:
        rt.store.progress(job.id, percent, message)

    with tempfile.TemporaryDirectory(prefix=f"ogcflow-{job.id}-") as tmp:
        ctx = JobContext(job_id=job.id, workdir=Path(tmp), report=report, cancel_event=cancelled,
                         storage=rt.storage)
        status, manifest, error, message = execute_process(rt, job, ctx)
        if status is StatusCode.failed:
            rt.storage.delete_job(job.id)  # what a failed process had written already (e.g. half a catalog)
        log_key = None
        if ctx.log_path is not None and ctx.log_path.is_file():
            log_key = rt.storage.put_file(job.id, LOG_NAME, ctx.log_path)
    if rt.store.finish(job.id, status, message=message, results=manifest, error=error, log=log_key):
        job = rt.store.get(job.id) or job
        _notify(rt, job, "successUri" if status is StatusCode.successful else "failedUri")
    else:
        rt.storage.delete_job(job.id)  # dismissed while running: keep nothing
    return status


def _notify(rt: Runtime, job: Job, which: str) -> None:
    """Queue a callback delivery (done by the dispatcher, with retries)."""
    url = (job.request.get("subscriber") or {}).get(which)
    if not url:
        return
    base = job.request.get("base_url", "")
    if which == "successUri":
        payload = results_document(job.id, job.results or {}, job.request.get("outputs", {}), base,
                                   rt.storage)
    elif which == "failedUri":
        payload = {**(job.error or _failure(job.message or "failed")), "jobID": job.id}
    else:
        payload = status_info(job, base).dump()
        payload["status"] = StatusCode.running.value
    rt.store.queue_callback(job.id, url, payload)
