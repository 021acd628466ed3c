"""Jobs from their record to their end: creating the record, running the process, recording the outcome.

Engines call :func:`run_job` wherever they run a job (a forked child of the local worker, a Prefect flow
run); the job service calls :func:`execute_process` for cheap synchronous work in the API process. The
steps and the records are the same everywhere.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ogcflow import models
from ogcflow.cgroups import out_of_memory_message, own_group
from ogcflow.domain import Failure, Job, JobRequest, Manifest, RunOptions, Subscriber, job_failed, new_job_id, utcnow
from ogcflow.errors import InputFetchError, InvalidParameter, ProcessCancelled, ProcessError, ServiceUnavailable
from ogcflow.jobs.results import results_document, store_outputs
from ogcflow.jobs.status import status_info
from ogcflow.models import StatusCode
from ogcflow.netpolicy import fetch
from ogcflow.processes.base import JobContext, Process
from ogcflow.processes.inputs import requested_outputs, resolve_inputs
from ogcflow.runtime import Runtime

log = logging.getLogger("ogcflow.jobs")

LOG_NAME = "job.log"  # a job's log in results storage
LOG_EVERY = 1.0  # seconds between two copies of a running job's log to results storage


#: the execute request's member that says how the orchestrator runs the job (see :class:`RunOptions`)
RUN_MEMBER = "prefect"
_BANNED_IN_NAMES = set('/%&<>')


def run_options(execute: models.Execute) -> RunOptions | None:
    """The execute request's ``prefect`` member (``retries``, ``retryDelaySeconds``, ``workQueue``), checked:
    a 400 naming what is wrong."""
    raw = (execute.model_extra or {}).get(RUN_MEMBER)
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"retries", "retryDelaySeconds", "workQueue"}:
        raise InvalidParameter(f"'{RUN_MEMBER}' must be an object with 'retries', 'retryDelaySeconds' and/or "
                               "'workQueue'")
    retries, delay, queue = raw.get("retries"), raw.get("retryDelaySeconds"), raw.get("workQueue")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                or not 0 <= retries <= 100):
        raise InvalidParameter(f"'{RUN_MEMBER}.retries' must be an integer from 0 to 100")
    if delay is not None and (not isinstance(delay, int | float) or isinstance(delay, bool)
                              or not 0 <= delay <= 86400):
        raise InvalidParameter(f"'{RUN_MEMBER}.retryDelaySeconds' must be a number of seconds from 0 to 86400")
    if queue is not None and (not isinstance(queue, str) or not 0 < len(queue) <= 100
                              or _BANNED_IN_NAMES & set(queue)):
        raise InvalidParameter(f"'{RUN_MEMBER}.workQueue' must be a work queue name (1-100 characters, "
                               "none of / % & < >)")
    return RunOptions(retries=retries, retry_delay_seconds=None if delay is None else float(delay), work_queue=queue)


def new_job(process: models.Process, execute: models.Execute, *, mode: str, namespace: str, engine: str,
            base_url: str, owner: str | None = None, job_id: str | None = None) -> Job:
    now = utcnow()
    sub = execute.subscriber
    request = JobRequest(
        inputs=execute.inputs, outputs=requested_outputs(process, execute), response=execute.response,
        base_url=base_url,
        subscriber=None if sub is None else Subscriber(success_uri=sub.successUri, in_progress_uri=sub.inProgressUri,
                                                       failed_uri=sub.failedUri),
        run=run_options(execute),
    )
    return Job(id=job_id or new_job_id(), process_id=process.id, status=StatusCode.accepted, created=now,
               updated=now, request=request, namespace=namespace, mode=mode, engine=engine,
               message="accepted", progress=0, owner=owner)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a process run ended."""

    status: StatusCode
    message: str
    manifest: Manifest | None = None
    failure: Failure | None = None


def execute_process(rt: Runtime, job: Job, ctx: JobContext, process: Process | None = None) -> Outcome:
    """Run the job's process (``process``, or the catalog's) and keep its outputs. Never raises: a failure is an
    outcome too."""
    try:
        if process is None:
            process = rt.catalog.get(job.process_id, job.namespace)
        inputs = resolve_inputs(process.description, job.request.inputs,
                                lambda href: fetch(href, rt.settings.network))
        outputs = process.execute(inputs, ctx)
        manifest = store_outputs(job.id, outputs, job.request.outputs, rt.storage_for(job.namespace))
        return Outcome(StatusCode.successful, "successful", manifest=manifest)
    except ProcessCancelled as exc:
        return Outcome(StatusCode.dismissed, str(exc))
    except InputFetchError as exc:
        msg = f"an input could not be fetched: {exc}"
    except ServiceUnavailable as exc:  # e.g. the results storage
        msg = exc.detail
    except ProcessError as exc:
        msg = str(exc)
    except Exception as exc:  # a bug in the process: say what, keep the traceback in the log
        log.exception("job %s: process %s raised", job.id, job.process_id)
        msg = f"the process raised {exc.__class__.__name__}: {exc}"
    return Outcome(StatusCode.failed, msg, failure=job_failed(msg))


#: asked before a job's end is recorded: ``(outcome, log key) -> record it``; False: the engine runs the job
#: again (a retry), and the job stays running
BeforeEnd = Callable[[Outcome, str | None], bool]


def run_job(rt: Runtime, job: Job, cancelled: threading.Event | None = None, *,
            before_end: BeforeEnd | None = None, attempt: int = 1,
            started: Callable[[JobContext], None] | None = None) -> StatusCode | None:
    """Execute a job that is marked running and record how it ended (unless it was dismissed meanwhile).

    ``before_end`` may keep the end from being recorded (the engine retries the job: then None is
    returned); ``attempt`` > 1 is such a retry (subscribers heard of the job's start already); ``started``
    is given the job's context before the process runs (an engine that watches its progress and log)."""
    if attempt == 1:
        _notify(rt, job, "inProgressUri")

    again = f" (attempt {job.attempt})" if job.attempt > 1 else ""  # a re-run of a lost job says so
    storage = rt.storage_for(job.namespace)
    running: list[JobContext] = []
    published = [0.0]

    def report(percent: int | None, message: str | None) -> None:
        # the log so far goes to results storage with the news (at most every LOG_EVERY seconds), so that
        # GET /jobs/{id}/logs (and the job page) shows it while the job runs, from any host
        log_key = None
        path = running[0].log_path if running else None
        now = time.monotonic()
        if path is not None and message is not None and now - published[0] >= LOG_EVERY and path.is_file():
            published[0] = now
            try:
                log_key = storage.put_file(job.id, LOG_NAME, path)
            except Exception:  # a storage hiccup costs the live log, never the job
                log.warning("job %s: the log so far could not be stored", job.id, exc_info=True)
        message = None if message is None else message + again
        if not rt.store.jobs.progress(job.id, percent, message, log=log_key) and log_key is not None:
            storage.delete_job(job.id)  # dismissed meanwhile: keep nothing (its files were deleted already)

    with tempfile.TemporaryDirectory(prefix=f"ogcflow-{job.id}-") as tmp:
        ctx = JobContext(job_id=job.id, workdir=Path(tmp), report=report, cancel_event=cancelled,
                         storage=storage, base_url=job.request.base_url)
        running.append(ctx)
        if started is not None:
            started(ctx)
        outcome = execute_process(rt, job, ctx)
        if outcome.status is StatusCode.failed and (oom := out_of_memory_message(own_group())):
            msg = f"{oom}; {outcome.message}"  # a tool was killed for the job's memory limit: that is why
            outcome = Outcome(StatusCode.failed, msg, failure=job_failed(msg))
        log_key = None
        try:
            if outcome.status is not StatusCode.successful and not _superseded(rt, job):
                storage.delete_job(job.id)  # what a failed process had written already (e.g. half a catalog)
            if ctx.log_path is not None and ctx.log_path.is_file():
                log_key = storage.put_file(job.id, LOG_NAME, ctx.log_path)
        except ServiceUnavailable as exc:  # the storage is down: the job's end is recorded all the same
            log.warning("job %s: %s", job.id, exc.detail)
    if before_end is not None and not before_end(outcome, log_key):
        return None
    if rt.store.jobs.finish(job.id, outcome.status, message=outcome.message + again, results=outcome.manifest,
                            error=outcome.failure, log=log_key, attempt=job.attempt):
        # a dismissal has no callback (as through the API); the callback tells the job as recorded
        if outcome.status is not StatusCode.dismissed and job.request.subscriber is not None:
            job = rt.store.jobs.for_engine(job.id) or job
            _notify(rt, job, "successUri" if outcome.status is StatusCode.successful else "failedUri")
    elif not _superseded(rt, job):
        storage.delete_job(job.id)  # dismissed while running: keep nothing
    return outcome.status


def _superseded(rt: Runtime, job: Job) -> bool:
    """Whether another attempt of the job runs (or ran) since this one was given up as lost: its files are
    that attempt's."""
    now = rt.store.jobs.for_engine(job.id)
    return now is not None and now.attempt != job.attempt


def _notify(rt: Runtime, job: Job, which: str) -> None:
    """Queue a callback delivery (done by the dispatcher, with retries)."""
    sub = job.request.subscriber
    if sub is None:
        return
    url = {"successUri": sub.success_uri, "failedUri": sub.failed_uri, "inProgressUri": sub.in_progress_uri}[which]
    if not url:
        return
    base = job.request.base_url
    if which == "successUri":
        payload = results_document(job.id, job.results or {}, job.request.outputs, base, rt.storage_for(job.namespace))
    elif which == "failedUri":
        payload = {**(job.error or job_failed(job.message or "failed")).to_json(), "jobID": job.id}
    else:
        payload = status_info(job, base).dump()
        payload["status"] = StatusCode.running.value
    rt.store.callbacks.queue(job.id, url, payload)
