"""The Prefect engine: every OGC job is a flow run of the ``ogcflow-job`` deployment.

- The API creates the flow run (named after the job, tagged with process and namespace) over Prefect's REST
  API, cancels it on dismissal, and reads its state while the job is active.
- ``ogcflow worker`` with ``OGCFLOW_ENGINE=prefect`` runs a worker (engines/worker.py) whose job source,
  :class:`PrefectRuns`, polls the work pool, claims a run by moving it to
  Pending, and executes the job in a forked child of itself (no fresh interpreter per job), which drives the
  run through Prefect's orchestration: Running, then Completed or Failed with the job's message, and the
  job's log lines sent to the run. Dismissal kills the child's process group and marks the run Cancelled;
  a run cancelled in Prefect dismisses the job; a job lost with its worker marks the run Crashed.

Workers talk to Prefect over its REST API only: Prefect's client-side flow engine (result persistence,
retries, task runs, client events: none used by OGC jobs) cost ~0.09 CPU-s per job on the worker and as
much again on the Prefect server, half of this machine's throughput.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ogcflow.domain import Job
from ogcflow.engines.base import StoreEngine
from ogcflow.engines.prefect_api import STATE_TO_STATUS, PrefectAsync, PrefectSync, PrefectTarget
from ogcflow.engines.worker import End, wake_workers
from ogcflow.errors import ServiceUnavailable
from ogcflow.jobs.execution import run_job
from ogcflow.models import StatusCode
from ogcflow.runtime import Runtime
from ogcflow.settings import PrefectSettings

log = logging.getLogger("ogcflow.prefect")

LogRecord = tuple[float, int, str, str]


def prefect_target(settings: PrefectSettings) -> PrefectTarget:
    url = settings.api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise ServiceUnavailable("the Prefect engine needs PREFECT_API_URL (or OGCFLOW_PREFECT_API_URL)")
    return PrefectTarget(api_url=url, work_pool=settings.work_pool)


class PrefectEngine(StoreEngine):
    """API side of the Prefect engine."""

    name = "prefect"
    inline_sync = False  # every job is a flow run

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.target = prefect_target(rt.settings.prefect)
        self.api = PrefectAsync(self.target)
        self.ui_url = (rt.settings.prefect.ui_url or self.target.ui_url).rstrip("/")
        self._checked: dict[str, float] = {}  # job id -> when Prefect was last asked about it

    async def submit(self, job: Job) -> None:
        run_id = await self.api.create_run(job.id, job.process_id, job.namespace)
        job.run_ref = run_id
        self.rt.store.jobs.set_run_ref(job.id, run_id)
        wake_workers(self.rt.settings.store.data_dir)

    async def dismiss(self, job: Job) -> None:
        if job.run_ref:
            await self.api.cancel(job.run_ref, started=job.status is StatusCode.running)

    async def refresh(self, job: Job) -> Job:
        """Take over what only Prefect knows: a run cancelled, crashed or failed outside the job's code.
        Asked at most once a second per job, however fast clients poll."""
        if not job.run_ref:
            return job
        now = time.monotonic()
        if now - self._checked.get(job.id, 0.0) < 1.0:
            return job
        if len(self._checked) > 10000:
            self._checked.clear()
        found = await self.api.state(job.run_ref)
        self._checked[job.id] = now
        if found is None:
            return job
        state, message = found
        status = STATE_TO_STATUS.get(state)
        if status in ("failed", "dismissed") and job.active:
            reason = f"Prefect reports the flow run {state.capitalize()}" + (f": {message}" if message else "")
            if status == "failed":
                self.rt.store.jobs.fail_lost(job.id, reason)
            else:
                self.rt.store.jobs.dismiss(job.id, job.namespace)
            return self.rt.store.jobs.get(job.id, job.namespace) or job
        return job

    def run_url(self, job: Job) -> str | None:
        return f"{self.ui_url}/runs/flow-run/{job.run_ref}" if job.run_ref else None


class PrefectRuns:
    """The jobs of a worker of the Prefect engine: the flow runs of its work pool, each driven through
    Prefect's orchestration by the job's process."""

    engine = "prefect"

    def __init__(self, rt: Runtime, identity: str, concurrency: int) -> None:
        self.rt = rt
        self.identity = identity
        self.concurrency = concurrency
        self.target = prefect_target(rt.settings.prefect)
        self.api = PrefectSync(self.target)
        self.backlog: list[dict[str, Any]] = []
        self.last_poll = 0.0
        self.last_cancel_check = 0.0
        self.prefect_down_since: float | None = None
        self.api.ensure_deployment()

    # -- claiming ------------------------------------------------------------------------------

    def take(self, woken: bool) -> Job | None:
        try:
            return self._take(woken)
        except ServiceUnavailable as exc:
            if self.prefect_down_since is None:
                self.prefect_down_since = time.monotonic()
                log.error("%s", exc)
            return None

    def _take(self, woken: bool) -> Job | None:
        now = time.monotonic()
        if not self.backlog:
            since = now - self.last_poll
            # a wake-up (a submission on this host) polls at once, but at most every 0.1 s: a burst of
            # submissions is taken in a few polls, not one poll each
            if since < (0.1 if woken else self.rt.settings.prefect.poll_interval):
                return None
            self.last_poll = now
            self.backlog = self.api.scheduled_runs(limit=self.concurrency * 2)
            if self.prefect_down_since is not None:
                log.info("Prefect is reachable again")
                self.prefect_down_since = None
        jobs = self.rt.store.jobs
        while self.backlog:
            run = self.backlog.pop(0)
            run_id = str(run["id"])
            if self.api.set_state(run_id, "PENDING") != "ACCEPT":
                continue  # another worker took it, or it was cancelled
            job_id = (run.get("parameters") or {}).get("job_id", "")
            job = jobs.for_engine(job_id) if job_id else None
            if job is None:
                self.api.set_state(run_id, "FAILED", message=f"ogcflow has no job '{job_id}'", force=True)
                continue
            if job.status is not StatusCode.accepted:
                self.api.set_state(run_id, "CANCELLED", message=f"the job is {job.status.value}", force=True)
                continue
            if not jobs.mark_running(job.id, worker=self.identity, run_ref=run_id):
                self.api.set_state(run_id, "CANCELLED", message="the job was dismissed", force=True)
                continue
            return jobs.for_engine(job.id)
        return None

    # -- in the job's process ------------------------------------------------------------------------
    def execute(self, job: Job) -> None:
        """The job's flow run, from Running to its end, around the same ``run_job`` as every engine. The run's
        logs in Prefect: the job's start and end, warnings and errors of ogcflow, and the job's own log (a CWL
        run's) when it keeps one."""
        api = PrefectSync(self.target)  # a client of this process: never the worker's connections
        run_id = job.run_ref or ""
        records: list[LogRecord] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append((record.created, record.levelno, record.name, self.format(record)))

        handler = Collect(logging.WARNING)
        root = logging.getLogger("ogcflow")
        root.addHandler(handler)
        try:
            try:
                answer: str | None = api.set_state(run_id, "RUNNING")
            except ServiceUnavailable as exc:  # the work matters more than Prefect's view of it: go on
                answer = None
                log.warning("job %s: %s; the job runs, its flow run is updated when Prefect is back", job.id, exc)
            if answer is not None and answer != "ACCEPT":
                state = api.states([run_id]).get(run_id, "")
                if state in ("CANCELLING", "CANCELLED"):
                    self.rt.store.jobs.dismiss(job.id, job.namespace)
                else:
                    self.rt.store.jobs.fail_lost(job.id, f"Prefect did not let the flow run start ({answer}, {state})")
                return
            records.append((time.time(), logging.INFO, "ogcflow.jobs", f"job {job.id}: process {job.process_id}"))
            status = run_job(self.rt, job)
            ended = self.rt.store.jobs.for_engine(job.id)
            message = (ended.message if ended else None) or status.value
            records.extend(self._job_log(ended))
            records.append((time.time(), logging.INFO if status is StatusCode.successful else logging.ERROR,
                            "ogcflow.jobs", f"job {job.id}: {message}"))
            root.removeHandler(handler)
            final = "COMPLETED" if status is StatusCode.successful else "FAILED"
            self._end_run(api, run_id, started=answer is not None, final=final,
                          message=None if status is StatusCode.successful else message, records=records)
        finally:
            root.removeHandler(handler)
            api.close()

    @staticmethod
    def _end_run(api: PrefectSync, run_id: str, *, started: bool, final: str, message: str | None,
                 records: list[LogRecord], patience: float = 60.0) -> None:
        """Bring the flow run to the job's end (and its logs), retrying while Prefect is unreachable: the job
        itself is recorded already."""
        deadline = time.monotonic() + patience
        delay = 0.5
        while True:
            try:
                if not started:
                    api.set_state(run_id, "RUNNING")
                    started = True
                api.post_logs(run_id, records)
                records = []
                api.set_state(run_id, final, message=message)
                return
            except ServiceUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    log.warning("flow run %s left behind (%s would be its state): %s", run_id, final, exc)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _job_log(self, job: Job | None, limit: int = 1000) -> list[LogRecord]:
        """The last lines of the job's own log, as log records of its flow run."""
        if job is None or not job.log:
            return []
        try:
            text = self.rt.storage_for(job.namespace).read(job.log).decode("utf-8", errors="replace")
        except Exception:  # the log is a courtesy to Prefect's UI; the job's outcome is recorded already
            log.warning("job %s: could not read its log", job.id, exc_info=True)
            return []
        now = time.time()
        return [(now, logging.INFO, "ogcflow.job-log", line) for line in text.splitlines()[-limit:] if line]

    # -- what the worker tells -------------------------------------------------------------------------

    def cancelled(self, job_ids: Sequence[str], *, fresh: bool) -> list[str]:
        """Runs cancelled from Prefect (UI, CLI): asked of Prefect at most once a second unless ``fresh``."""
        now = time.monotonic()
        if not fresh:
            if now - self.last_cancel_check < 1.0:
                return []
            self.last_cancel_check = now
        refs: dict[str, str] = {}
        for job_id in job_ids:
            job = self.rt.store.jobs.for_engine(job_id)
            if job and job.run_ref:
                refs[job.run_ref] = job.id
        if not refs:
            return []
        try:
            states = self.api.states(list(refs))
        except ServiceUnavailable:
            return []
        return [refs[run_id] for run_id, state in states.items() if state in ("CANCELLING", "CANCELLED")]

    def ended(self, job_id: str, how: End, reason: str) -> None:
        """Bring the job's flow run to the end the worker gave the job."""
        job = self.rt.store.jobs.for_engine(job_id)
        if job and job.run_ref:
            self._quietly(job.run_ref, "CRASHED" if how is End.lost else "CANCELLED", reason)

    def _quietly(self, run_id: str, state: str, message: str) -> None:
        try:
            self.api.set_state(run_id, state, message=message, force=True)
        except ServiceUnavailable as exc:
            log.warning("could not mark flow run %s %s: %s", run_id, state, exc)
