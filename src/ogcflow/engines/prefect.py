"""The Prefect engine: every OGC job is a flow run of the ``ogcflow-job`` deployment.

- The API creates the flow run (named after the job, tagged with process and namespace) over Prefect's REST
  API, cancels it on dismissal, and reads its state while the job is active.
- ``ogcflow worker`` with ``OGCFLOW_ENGINE=prefect`` polls the work pool, claims a run by moving it to
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

from ogcflow.engines.base import StoreEngine
from ogcflow.engines.local import Worker, wake_workers
from ogcflow.engines.prefect_api import STATE_TO_STATUS, PrefectAsync, PrefectSync, PrefectTarget
from ogcflow.errors import ServiceUnavailable
from ogcflow.jobs.service import Runtime, run_job
from ogcflow.jobs.store import Job
from ogcflow.models import StatusCode
from ogcflow.settings import Settings

log = logging.getLogger("ogcflow.prefect")


def prefect_target(settings: Settings) -> PrefectTarget:
    url = settings.prefect_api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise ServiceUnavailable("the Prefect engine needs PREFECT_API_URL (or OGCFLOW_PREFECT_API_URL)")
    return PrefectTarget(api_url=url, work_pool=settings.prefect_work_pool)


class PrefectEngine(StoreEngine):
    """API side of the Prefect engine."""

    name = "prefect"
    inline_sync = False  # every job is a flow run

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.target = prefect_target(rt.settings)
        self.api = PrefectAsync(self.target)
        self.ui_url = (rt.settings.prefect_ui_url or self.target.ui_url).rstrip("/")
        self._checked: dict[str, float] = {}  # job id -> when Prefect was last asked about it

    async def submit(self, job: Job) -> None:
        run_id = await self.api.create_run(job.id, job.process_id, job.namespace)
        job.run_ref = run_id
        self.rt.store.set_run_ref(job.id, run_id)
        wake_workers(self.rt.settings.data_dir)

    async def dismiss(self, job: Job) -> None:
        if job.run_ref:
            await self.api.cancel(job.run_ref, started=job.status == StatusCode.running.value)

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
        if status in ("failed", "dismissed") and job.status in ("accepted", "running"):
            reason = f"Prefect reports the flow run {state.capitalize()}" + (f": {message}" if message else "")
            if status == "failed":
                self.rt.store.fail_lost(job.id, reason)
            else:
                self.rt.store.dismiss(job.id, job.namespace)
            return self.rt.store.get(job.id) or job
        return job

    def run_url(self, job: Job) -> str | None:
        return f"{self.ui_url}/runs/flow-run/{job.run_ref}" if job.run_ref else None


class PrefectWorker(Worker):
    """Executes the flow runs of the ogcflow work pool."""

    engine = "prefect"

    def __init__(self, rt: Runtime, concurrency: int = 2, callbacks: bool = True,
                 parent_pid: int | None = None) -> None:
        super().__init__(rt, concurrency=concurrency, callbacks=callbacks, parent_pid=parent_pid)
        self.target = prefect_target(rt.settings)
        self.api = PrefectSync(self.target)
        self.backlog: list[dict] = []
        self.last_poll = 0.0
        self.last_cancel_check = 0.0
        self.prefect_down_since: float | None = None
        self.api.ensure_deployment()

    def next_job(self) -> Job | None:
        try:
            return self._next_job()
        except ServiceUnavailable as exc:
            if self.prefect_down_since is None:
                self.prefect_down_since = time.monotonic()
                log.error("%s", exc)
            return None

    def _next_job(self) -> Job | None:
        now = time.monotonic()
        if not self.backlog:
            since = now - self.last_poll
            # a wake-up (a submission on this host) polls at once, but at most every 0.1 s: a burst of
            # submissions is taken in a few polls, not one poll each
            if since < (0.1 if self.woken else self.rt.settings.prefect_poll_interval):
                return None
            self.woken = False
            self.last_poll = now
            self.backlog = self.api.scheduled_runs(limit=self.concurrency * 2)
            if self.prefect_down_since is not None:
                log.info("Prefect is reachable again")
                self.prefect_down_since = None
        while self.backlog:
            run = self.backlog.pop(0)
            run_id = str(run["id"])
            if self.api.set_state(run_id, "PENDING") != "ACCEPT":
                continue  # another worker took it, or it was cancelled
            job_id = (run.get("parameters") or {}).get("job_id", "")
            job = self.rt.store.get(job_id) if job_id else None
            if job is None:
                self.api.set_state(run_id, "FAILED", message=f"ogcflow has no job '{job_id}'", force=True)
                continue
            if job.status != StatusCode.accepted.value:
                self.api.set_state(run_id, "CANCELLED", message=f"the job is {job.status}", force=True)
                continue
            if not self.rt.store.mark_running(job.id, worker=self.identity, run_ref=run_id):
                self.api.set_state(run_id, "CANCELLED", message="the job was dismissed", force=True)
                continue
            return self.rt.store.get(job.id)
        return None

    def run_in_child(self, job: Job) -> None:
        """The job's flow run, from Running to its end, around the same ``run_job`` as every engine. The run's
        logs in Prefect: the job's start and end, warnings and errors of ogcflow, and the job's own log (a CWL
        run's) when it keeps one."""
        api = PrefectSync(self.target)  # a client of this process: never the worker's connections
        run_id = job.run_ref or ""
        records: list[tuple[float, int, str, str]] = []

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
                    self.rt.store.dismiss(job.id, job.namespace)
                else:
                    self.rt.store.fail_lost(job.id, f"Prefect did not let the flow run start ({answer}, {state})")
                return
            records.append((time.time(), logging.INFO, "ogcflow.jobs", f"job {job.id}: process {job.process_id}"))
            status = run_job(self.rt, job)
            ended = self.rt.store.get(job.id)
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
                 records: list[tuple[float, int, str, str]], patience: float = 60.0) -> None:
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

    def _job_log(self, job: Job | None, limit: int = 1000) -> list[tuple[float, int, str, str]]:
        """The last lines of the job's own log, as log records of its flow run."""
        if job is None or not job.log:
            return []
        try:
            text = self.rt.storage.read(job.log).decode("utf-8", errors="replace")
        except Exception:  # the log is a courtesy to Prefect's UI; the job's outcome is recorded already
            log.warning("job %s: could not read its log", job.id, exc_info=True)
            return []
        now = time.time()
        return [(now, logging.INFO, "ogcflow.job-log", line) for line in text.splitlines()[-limit:] if line]

    def unfinished(self, job_id: str) -> None:
        """A job process that ended without recording an end: cancelled from Prefect, or lost."""
        job = self.rt.store.get(job_id)
        try:
            state = self.api.states([job.run_ref]).get(job.run_ref, "") if job and job.run_ref else ""
        except ServiceUnavailable:
            state = ""
        if job and state in ("CANCELLING", "CANCELLED"):
            self.rt.store.dismiss(job.id, job.namespace)
            self.stopped(job.id)
        else:
            super().unfinished(job_id)

    def lost(self, job_id: str, reason: str) -> None:
        super().lost(job_id, reason)
        job = self.rt.store.get(job_id)
        if job and job.run_ref:
            self._quietly(job.run_ref, "CRASHED", reason)

    def stopped(self, job_id: str) -> None:
        super().stopped(job_id)
        job = self.rt.store.get(job_id)
        if job and job.run_ref:
            self._quietly(job.run_ref, "CANCELLED", "dismissed; the job's processes were stopped")

    def poll_engine(self, now: float) -> None:
        """Runs cancelled from Prefect (UI, CLI) are dismissed here too."""
        if now - self.last_cancel_check < 1.0:
            return
        self.last_cancel_check = now
        refs = {}
        for child in self.children.values():
            job = self.rt.store.get(child.job_id)
            if job and job.run_ref:
                refs[job.run_ref] = job
        try:
            states = self.api.states(list(refs))
        except ServiceUnavailable:
            return
        for run_id, state in states.items():
            if state in ("CANCELLING", "CANCELLED"):
                job = refs[run_id]
                self.rt.store.dismiss(job.id, job.namespace)  # the watch loop then kills its processes

    def _quietly(self, run_id: str, state: str, message: str) -> None:
        try:
            self.api.set_state(run_id, state, message=message, force=True)
        except ServiceUnavailable as exc:
            log.warning("could not mark flow run %s %s: %s", run_id, state, exc)
