"""The Prefect engine: every OGC job is a flow run of its process's deployment (``prefect_deploy``).

- The API creates the flow run (named after the job, its parameters the job's inputs, tagged with process
  and namespace) over Prefect's REST API, cancels it on dismissal, and reads its state while the job is
  active.
- ``ogcflow worker`` with ``OGCFLOW_ENGINE=prefect`` runs a worker (engines/worker.py) whose job source,
  :class:`PrefectRuns`, keeps the deployments of the processes, heartbeats, polls the work pool for runs due
  now, claims a run by proposing Pending (a run made in Prefect becomes a new job; a retried run of an ended
  job runs it again), and executes the job in a forked child of itself (no fresh interpreter per job),
  which drives the run through Prefect's orchestration: Running, then Completed or Failed with the job's
  message, its log lines, progress and results sent to the run (``prefect_report``). Dismissal kills the
  child's process group and marks the run Cancelled; a run cancelled in Prefect dismisses the job; a job
  lost with its worker marks the run Crashed.

Every proposed state follows Prefect's answer (``prefect_api.Answer``):

- Pending (the claim, in the worker): ACCEPT claims the job; REJECT into a Scheduled state (a deployment
  concurrency limit: AwaitingConcurrencySlot) leaves the job accepted, its message saying why, until the run
  is due again; REJECT into Cancelled ends the job failed with Prefect's reason; WAIT and ABORT leave the
  run (another worker took it, or it was cancelled). A run not claimed is not proposed again for a while.
- Running (in the job's process): WAIT sleeps the delay Prefect gives (bounded) and proposes again, or,
  when the delay is long, gives the run back (Scheduled at its time) and the job back to the queue (accepted)
  so that its slot serves other jobs; REJECT into a Scheduled state gives the job back the same way; REJECT
  into Cancelled/Cancelling dismisses it; anything else fails it with Prefect's reason.
- Failed (before the failure is recorded): REJECT into AwaitingRetry (the run has retries left) retries the
  job in the same process, as Prefect's own engine retries a flow in process: the OGC job stays running,
  its message saying which attempt failed and when the next starts; Prefect's WAIT tells when (the retry
  delay). ACCEPT records the failure.
- Completed: the job's end is recorded first (the fast path); the run follows.

A job whose end is recorded while Prefect cannot be told (an outage) brings its run to the same end when
Prefect is back, forced if Prefect would retry it: a run is never left Pending, Running or AwaitingRetry
behind an ended job (a worker also looks for such runs every ``RECONCILE_EVERY`` seconds).

Workers talk to Prefect over its REST API only: Prefect's client-side flow engine (result persistence,
retries, task runs, client events: none used by OGC jobs) cost ~0.09 CPU-s per job on the worker and as
much again on the Prefect server, half of this machine's throughput.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ogcflow import models
from ogcflow.domain import Job, utcnow
from ogcflow.engines.base import StoreEngine
from ogcflow.engines.prefect_api import (
    FINAL_STATES,
    STATE_TO_STATUS,
    Answer,
    Backoff,
    PrefectAsync,
    PrefectSync,
    PrefectTarget,
)
from ogcflow.engines.prefect_deploy import (
    DeploymentSpec,
    deployment_of,
    deployment_spec,
    job_ids_of,
    policy_of,
)
from ogcflow.engines.prefect_report import RunReport, base_of
from ogcflow.engines.worker import End, wake_workers
from ogcflow.errors import OGCError, ServiceUnavailable
from ogcflow.jobs.execution import Outcome, new_job, run_job
from ogcflow.models import StatusCode
from ogcflow.processes.inputs import check_request
from ogcflow.runtime import Runtime
from ogcflow.settings import PrefectSettings

log = logging.getLogger("ogcflow.prefect")

#: a WAIT before Running longer than this gives the run back (Scheduled at its time) instead of keeping a
#: job slot asleep
HAND_BACK_AFTER = 5.0
#: the longest sleep between two proposals of the same state (Prefect's next WAIT says how much is left)
MAX_SLEEP = 10.0
#: a run not claimed (rejected, waiting, aborted) is not proposed again for at least this long
NOT_AGAIN_FOR = 1.0
#: how often a worker looks for runs left behind (by workers gone, or by outages) and ends them
RECONCILE_EVERY = 15.0
#: a run is left behind when its job ended, or its claim was made, this long ago
LEFT_BEHIND_AFTER = 90.0
#: how often a worker tells Prefect it is alive (it is offline after 3 intervals of silence)
HEARTBEAT_EVERY = 10.0
HEARTBEAT_INTERVAL = 30
#: the API asks Prefect about an active job at most this often (and not before the job is this old)
REFRESH_EVERY = 1.0

_FINAL_OF = {StatusCode.successful: "COMPLETED", StatusCode.failed: "FAILED", StatusCode.dismissed: "CANCELLED"}


def prefect_target(settings: PrefectSettings) -> PrefectTarget:
    url = settings.api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise ServiceUnavailable("the Prefect engine needs PREFECT_API_URL (or OGCFLOW_PREFECT_API_URL)")
    return PrefectTarget(api_url=url, work_pool=settings.work_pool)


def backoff_of(settings: PrefectSettings) -> Backoff:
    return Backoff(budget=settings.retry_seconds, unreachable=settings.unreachable_seconds)


def _at(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "its scheduled time"


class PrefectEngine(StoreEngine):
    """API side of the Prefect engine."""

    name = "prefect"
    inline_sync = False  # every job is a flow run

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.target = prefect_target(rt.settings.prefect)
        self.api = PrefectAsync(self.target, backoff=backoff_of(rt.settings.prefect))
        self.ui_url = (rt.settings.prefect.ui_url or self.target.ui_url).rstrip("/")
        self._checked: dict[str, float] = {}  # job id -> when Prefect was last asked about it
        self._specs: dict[tuple[str, str], tuple[models.Process, DeploymentSpec]] = {}

    async def _spec(self, job: Job) -> DeploymentSpec:
        """The deployment of the job's process in its namespace (made again only when the process changed)."""
        catalog = self.rt.catalog
        if catalog.is_builtin(job.process_id):
            process = catalog.get(job.process_id, job.namespace)
        else:
            process = await asyncio.to_thread(catalog.get, job.process_id, job.namespace)
        key = (job.namespace, job.process_id)
        hit = self._specs.get(key)
        if hit is not None and hit[0] is process.description:
            return hit[1]
        spec = deployment_spec(process.description, job.namespace, self.rt.settings.prefect)
        if len(self._specs) > 10000:
            self._specs.clear()
        self._specs[key] = (process.description, spec)
        return spec

    async def submit(self, job: Job) -> None:
        spec = await self._spec(job)
        policy = policy_of(job, self.rt.settings.prefect)
        run_id = await self.api.create_run(job.id, spec, job.request.inputs, policy)
        job.run_ref = run_id
        self.rt.store.jobs.set_run_ref(job.id, run_id)
        wake_workers(self.rt.settings.store.data_dir)

    async def check(self) -> None:
        """Prefect's API answers its health check."""
        await self.api.health()

    async def dismiss(self, job: Job) -> None:
        if job.run_ref:
            await self.api.cancel(job.run_ref, started=job.status is StatusCode.running)

    async def refresh(self, job: Job) -> Job:
        """Take over what only Prefect knows: a run cancelled, crashed or failed outside the job's code.
        Asked at most once a second per job, however fast clients poll, and not in the job's first second
        (most short jobs end within it: a burst of them costs Prefect no reads)."""
        if not job.run_ref:
            return job
        now = time.monotonic()
        if now - self._checked.get(job.id, 0.0) < REFRESH_EVERY:
            return job
        if (utcnow() - job.created).total_seconds() < REFRESH_EVERY:
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
    reruns_lost = False  # Prefect retries runs itself (attempts of the same job), and a crashed run is Crashed

    def __init__(self, rt: Runtime, identity: str, concurrency: int) -> None:
        self.rt = rt
        self.identity = identity
        self.concurrency = concurrency
        self.target = prefect_target(rt.settings.prefect)
        self.backoff = backoff_of(rt.settings.prefect)  # job processes: the job waits for Prefect a little
        # the worker's loop watches dismissals and heartbeats: it never waits long for Prefect (it polls again)
        self.api = PrefectSync(self.target, backoff=self.backoff.at_most(1.0))
        self.backlog: list[dict[str, Any]] = []
        self.backlog_at = 0.0
        self.last_poll = 0.0
        self.woken = False  # a submission on this host since the last poll
        self.last_cancel_check = 0.0
        self.last_reconcile = 0.0
        self.last_resend = 0.0
        self.last_heartbeat = 0.0
        self.prefect_down_since: float | None = None
        self.not_before: dict[str, float] = {}  # run id -> not proposed again before (monotonic)
        self.unsent: list[tuple[str, str, str]] = []  # (run id, state, message) Prefect must still be told
        self.claimed: dict[str, dict[str, Any]] = {}  # job id -> its flow run as claimed (read by its process)
        self.run_refs: dict[str, str] = {}  # job id -> flow run id, of the jobs claimed here that may run
        self.deployments: dict[str, tuple[str, str] | None] = {}  # deployment id -> (namespace, process id)
        self.synced: dict[tuple[str, str], str] = {}  # (namespace, process id) -> fingerprint in Prefect
        start = PrefectSync(self.target, backoff=self.backoff)
        try:
            start.ensure_pool()
            self._sync_deployments(start)
            start.heartbeat(self.identity, HEARTBEAT_INTERVAL)
            self.last_heartbeat = time.monotonic()
        finally:
            start.close()

    # -- the deployments of the processes --------------------------------------------------------

    def _sync_deployments(self, api: PrefectSync | None = None) -> None:
        """One deployment per process of the ``default`` namespace, up to date with its description (its
        inputs as parameters): what a Prefect user runs from the UI. Namespaces get theirs at their first job."""
        api = api or self.api
        try:
            processes = self.rt.catalog.all("default")
        except Exception:  # the store may be briefly unreachable: next time
            log.warning("could not list the processes", exc_info=True)
            return
        existing = {(deployment_of(d) or ("", ""))[1]: d for d in api.deployments("namespace:default")}
        for process in processes:
            spec = deployment_spec(process.description, "default", self.rt.settings.prefect)
            fingerprint = spec.fingerprint
            if self.synced.get(spec.key) == fingerprint:
                continue
            try:
                dep_id = api.ensure_deployment(spec, existing.get(spec.process_id))
            except ServiceUnavailable as exc:
                log.warning("deployment of process %s not made: %s", spec.process_id, exc)
                continue
            self.deployments[dep_id] = spec.key
            self.synced[spec.key] = fingerprint

    def _deployment(self, deployment_id: str | None) -> tuple[str, str] | None:
        """(namespace, process id) of an ogcflow deployment; None for another one."""
        if not deployment_id:
            return None
        if deployment_id not in self.deployments:
            found = self.api.deployment(deployment_id)
            self.deployments[deployment_id] = deployment_of(found) if found else None
        return self.deployments[deployment_id]

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
        self.woken = self.woken or woken  # kept until a poll happens (a wake-up within 0.1 s of a poll waits)
        if self.unsent and now - self.last_resend >= 1.0:
            self.last_resend = now
            self._resend()
        if now - self.last_heartbeat >= HEARTBEAT_EVERY:
            self.last_heartbeat = now
            self.api.heartbeat(self.identity, HEARTBEAT_INTERVAL)
        if now - self.last_reconcile >= RECONCILE_EVERY:
            self.last_reconcile = now
            self._reconcile()
            self._sync_deployments()
        interval = self.rt.settings.prefect.poll_interval
        if self.backlog and now - self.backlog_at > max(interval, 0.5):
            self.backlog = []  # an old poll: pools and queues may have been paused or limited since
        if not self.backlog:
            since = now - self.last_poll
            # a wake-up (a submission on this host) polls at once, but at most every 0.1 s: a burst of
            # submissions is taken in a few polls, not one poll each
            if since < (0.1 if self.woken else interval):
                return None
            self.last_poll = self.backlog_at = now
            self.woken = False
            self.not_before = {run_id: t for run_id, t in self.not_before.items() if t > now}
            runs = self.api.scheduled_runs(limit=min(200, self.concurrency * 2 + len(self.not_before)))
            self.backlog = [run for run in runs if str(run["id"]) not in self.not_before]
            if self.prefect_down_since is not None:
                log.info("Prefect is reachable again")
                self.prefect_down_since = None
        while self.backlog:
            job = self._claim(self.backlog.pop(0))
            if job is not None:
                return job
        return None

    def _claim(self, run: dict[str, Any]) -> Job | None:
        """Propose Pending for a run due now; its job, marked running, when Prefect accepts."""
        run_id = str(run["id"])
        answer = self.api.set_state(run_id, "PENDING", message=f"claimed by ogcflow worker {self.identity}")
        if not answer.accepted:
            self._not_claimed(run_id, self._job_of(run), answer)
            return None
        try:
            job = self._start_job(run)
        except Exception:  # the store failed us: give the run back rather than leave it Pending
            self._give_back(run_id, "the worker could not start its job; it is tried again")
            raise
        if job is not None:
            self.claimed = {job.id: run}  # what the job's process (forked next) reads
            self.run_refs[job.id] = run_id
        return job

    def _job_of(self, run: dict[str, Any]) -> Job | None:
        for job_id in job_ids_of(run):
            job = self.rt.store.jobs.for_engine(job_id)
            if job is not None:
                return job
        return None

    def _not_claimed(self, run_id: str, job: Job | None, answer: Answer) -> None:
        wait = NOT_AGAIN_FOR
        if answer.status == "WAIT":
            wait = max(wait, min(answer.delay, 60.0))
        elif answer.status == "REJECT" and answer.state_type == "SCHEDULED":
            # e.g. AwaitingConcurrencySlot: the poll gives the run again when it is due
            if answer.scheduled_time is not None:
                due = (answer.scheduled_time - datetime.now(UTC)).total_seconds()
                wait = max(wait, min(due, 3600.0))
            if job is not None:
                self.rt.store.jobs.note(job.id, f"waiting: {answer.reason or answer.state_name} (Prefect: "
                                                f"{answer.state_name}, tried again at {_at(answer.scheduled_time)})")
        elif answer.status == "REJECT" and answer.state_type in FINAL_STATES and job is not None:
            if job.status is StatusCode.accepted:
                self.rt.store.jobs.fail_lost(job.id, f"Prefect did not start the flow run ({answer.describe()})")
        log.debug("flow run %s not claimed: %s", run_id, answer.describe())
        self.not_before[run_id] = time.monotonic() + wait

    def _start_job(self, run: dict[str, Any]) -> Job | None:
        """The job of a claimed run, marked running: an accepted job; a new job for a run made in Prefect
        (the Run button, a schedule, an automation); an ended job again for a run Prefect retries (the UI's
        Retry)."""
        run_id = str(run["id"])
        jobs = self.rt.store.jobs
        job = self._job_of(run)
        if job is None:
            job = self._adopt(run)
            if job is None:
                return None
        if job.status in (StatusCode.successful, StatusCode.failed):
            self.rt.storage_for(job.namespace).delete_job(job.id)  # the previous attempt's files
            if not jobs.rerun(job.id, self.identity, run_id,
                              f"running (attempt {int(run.get('run_count') or 0) + 1}: retried in Prefect)"):
                self._quietly(run_id, "CANCELLED", "the job was dismissed")
                return None
        elif job.status is not StatusCode.accepted:
            self._quietly(run_id, "CANCELLED", f"the job is {job.status.value}")
            return None
        elif (started := jobs.start(job, worker=self.identity, run_ref=run_id)) is not None:
            job = started
        else:
            self._quietly(run_id, "CANCELLED", "the job was dismissed")
            return None
        policy = policy_of(job, self.rt.settings.prefect)
        if (run.get("empirical_policy") or {}).get("retries") is None and policy.retries:
            self.api.set_policy(run_id, policy)  # a run made in Prefect gets the process's retries
        if job.status is not StatusCode.running:  # run again: the record as rerun() left it
            return jobs.for_engine(job.id)
        return job

    def _adopt(self, run: dict[str, Any]) -> Job | None:
        """A new OGC job (its id: the run's) for a flow run made in Prefect of a process's deployment, its
        inputs the run's parameters; None (the run failed) when it is not a run of an ogcflow process. A job
        whose inputs do not fit the process is recorded failed, saying why."""
        run_id = str(run["id"])
        found = self._deployment(run.get("deployment_id"))
        if found is None:
            self._quietly(run_id, "FAILED", "not a flow run of an ogcflow process's deployment")
            return None
        namespace, process_id = found
        try:
            process = self.rt.catalog.get(process_id, namespace)
        except OGCError as exc:
            self._quietly(run_id, "FAILED", exc.detail)
            return None
        params = {k: v for k, v in (run.get("parameters") or {}).items() if v is not None}
        execute = models.Execute(inputs=params)
        problem: str | None = None
        try:
            check_request(process.description, execute)
        except OGCError as exc:
            problem = exc.detail
        job = new_job(process.description, execute, mode="async", namespace=namespace, engine=self.engine,
                      base_url="", job_id=run_id)
        job.request = dataclasses.replace(job.request, base_url=base_of(self.rt, job))
        self.rt.store.jobs.create(job)
        log.info("flow run %s (made in Prefect) is job %s of process %s", run_id, job.id, process_id)
        if problem is not None:
            self.rt.store.jobs.fail_lost(job.id, problem)
            self._quietly(run_id, "FAILED", problem)
            return None
        return job

    def _give_back(self, run_id: str, message: str) -> None:
        """A claimed run back to Scheduled (due now): another poll takes it."""
        try:
            self.api.set_state(run_id, "SCHEDULED", message=message, scheduled_time=datetime.now(UTC))
        except ServiceUnavailable as exc:
            log.warning("flow run %s left Pending: %s", run_id, exc)

    # -- in the job's process ------------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        """The job's flow run, from Running to its end, around the same ``run_job`` as every engine, each
        retry Prefect asks for included. The run's logs in Prefect (sent about once a second): the job's start
        and end, warnings and errors of ogcflow, and the job's own log (a CWL run's) as it is written; its
        progress and results as artifacts."""
        api = PrefectSync(self.target, backoff=self.backoff)  # a client of this process: never the worker's
        run = _JobRun(self, api, job, self.claimed.get(job.id))
        root = logging.getLogger("ogcflow")
        root.addHandler(run.collect)
        try:
            run.drive()
        finally:
            root.removeHandler(run.collect)
            api.close()

    # -- what the worker tells -------------------------------------------------------------------------

    def cancelled(self, job_ids: Sequence[str], *, fresh: bool) -> list[str]:
        """Runs cancelled from Prefect (UI, CLI): asked of Prefect at most once a second unless ``fresh``."""
        now = time.monotonic()
        if not fresh:
            if now - self.last_cancel_check < 1.0:
                return []
            self.last_cancel_check = now
        if not fresh:  # every running job of this worker: what is not among them ended
            self.run_refs = {job_id: self.run_refs[job_id] for job_id in job_ids if job_id in self.run_refs}
        refs: dict[str, str] = {}
        for job_id in job_ids:
            run_ref = self.run_refs.get(job_id)
            if run_ref is None:
                job = self.rt.store.jobs.for_engine(job_id)
                run_ref = job.run_ref if job else None
            if run_ref:
                refs[run_ref] = job_id
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
        """Force a run's end; kept to be sent again when Prefect cannot be told now."""
        try:
            self.api.set_state(run_id, state, message=message, force=True)
        except ServiceUnavailable as exc:
            log.warning("could not mark flow run %s %s (tried again later): %s", run_id, state, exc)
            if len(self.unsent) < 10000:
                self.unsent.append((run_id, state, message))

    def _resend(self) -> None:
        while self.unsent:
            run_id, state, message = self.unsent[0]
            try:
                self.api.set_state(run_id, state, message=message, force=True)
            except ServiceUnavailable:
                return
            self.unsent.pop(0)

    def _reconcile(self) -> None:
        """End the runs left behind: Pending, Running or AwaitingRetry while their job ended a while ago (its
        process could not tell Prefect, or its worker is gone), and Pending runs whose claim never became a
        running job (given back). A run whose state is newer than its job's end is a retry asked in Prefect:
        the poll takes it."""
        try:
            runs = (self.api.runs_in(["PENDING", "RUNNING"])
                    + self.api.runs_in(["SCHEDULED"], names=["AwaitingRetry"]))
        except ServiceUnavailable:
            return
        now = utcnow()
        for run in runs:
            run_id = str(run["id"])
            job = self._job_of(run)
            if job is None:
                continue
            state = run.get("state") or {}
            since = _parse(state.get("timestamp"))
            old = since is not None and (now - since).total_seconds() > LEFT_BEHIND_AFTER
            newer = since is not None and job.finished is not None and since > job.finished
            if state.get("type") == "PENDING" and (job.status is StatusCode.accepted or newer):
                if old:
                    log.warning("flow run %s was left Pending by its claim: given back", run_id)
                    self._give_back(run_id, "claimed by a worker that did not start it; tried again")
                continue
            if job.active or job.finished is None or (now - job.finished).total_seconds() < LEFT_BEHIND_AFTER:
                continue  # running here or elsewhere, or its process may still be telling Prefect
            if newer:
                continue
            final = _FINAL_OF.get(job.status)
            if final is not None:
                log.warning("flow run %s was left %s behind its %s job: marked %s", run_id,
                            state.get("name") or state.get("type"), job.status.value, final)
                self._quietly(run_id, final, job.message or job.status.value)


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class _JobRun:
    """One job's flow run, driven from its process: every attempt, every answer of Prefect."""

    def __init__(self, source: PrefectRuns, api: PrefectSync, job: Job, run: dict[str, Any] | None = None) -> None:
        self.source = source
        self.rt = source.rt
        self.api = api
        self.job = job
        self.run_id = job.run_ref or ""
        self.report = RunReport(self.rt, api, job, self.run_id)
        # a run Prefect retries (the UI's Retry of an ended run) is its next attempt
        self.attempt = int((run or {}).get("run_count") or 0) + 1
        self.started = False  # Prefect knows the run is Running
        self.told = False  # Prefect was told the job's end (and took it)
        self.retry_at: datetime | None = None
        self.last_failure = ""
        report = self.report

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                report.add(record.levelno, record.name, self.format(record))

        self.collect = Collect(logging.WARNING)

    def drive(self) -> None:
        job = self.job
        if not self.start():
            return
        while True:
            suffix = f" (attempt {self.attempt})" if self.attempt > 1 else ""
            self.report.add(logging.INFO, "ogcflow.jobs", f"job {job.id}: process {job.process_id}{suffix}")
            status = run_job(self.rt, job, before_end=self.before_end, attempt=self.attempt,
                             started=self.report.started)
            if status is not None:
                break
            self.attempt += 1  # Prefect retries the run: AwaitingRetry until self.retry_at
            if not self.start(retrying=True):
                return
            self.rt.store.jobs.progress(job.id, 0, f"running (attempt {self.attempt})")
        if self.told:
            try:
                self._send_logs()
            except ServiceUnavailable as exc:  # the run has its end; only late warnings are lost
                log.warning("job %s: log lines not sent to its flow run: %s", job.id, exc)
            return
        ended = self.rt.store.jobs.for_engine(job.id)
        message = (ended.message if ended else None) or status.value
        ok = status is StatusCode.successful
        if ok and ended is not None:
            self.report.finish(ended)  # the artifacts, before the run is Completed: all there when it is
        self.end_run("COMPLETED" if ok else "FAILED", None if ok else message)

    # -- Running ---------------------------------------------------------------------------------

    def start(self, retrying: bool = False) -> bool:
        """Propose Running until Prefect takes it (or says no): True when the job is to run (also when
        Prefect is unreachable: the work matters more than Prefect's view of it; the run catches up)."""
        job, api = self.job, self.api
        while True:
            try:
                answer = api.set_state(self.run_id, "RUNNING")
            except ServiceUnavailable as exc:
                if retrying:  # Prefect's retry cannot be confirmed: the job ends with the attempt's failure
                    self.rt.store.jobs.fail_lost(job.id, f"{self.last_failure} (not retried: {exc.detail})")
                    self.end_run("FAILED", self.last_failure)
                    return False
                log.warning("job %s: %s; the job runs, its flow run is updated when Prefect is back", job.id, exc)
                self.started = False
                return True
            if answer.accepted:
                self.started = True
                return True
            if answer.status == "WAIT":
                if not retrying and answer.delay > HAND_BACK_AFTER and self._hand_back(answer.delay):
                    return False
                time.sleep(min(max(answer.delay, 0.05), MAX_SLEEP))
                continue
            if answer.status == "REJECT" and answer.state_type == "SCHEDULED" and not retrying:
                # Prefect put the run back in its queue: so goes the job, until the run is due
                self.rt.store.jobs.requeue(job.id, f"waiting: Prefect rescheduled its flow run for "
                                                   f"{_at(answer.scheduled_time)} ({answer.describe()})")
                return False
            self._refused(answer, retrying)
            return False

    def _refused(self, answer: Answer, retrying: bool) -> None:
        """Prefect will not let the run start: the job ends the way the run did."""
        state = answer.state_type if answer.status == "REJECT" else ""
        if not state:
            try:
                state = self.api.states([self.run_id]).get(self.run_id, "")
            except ServiceUnavailable:
                state = ""
        if state in ("CANCELLING", "CANCELLED"):
            self.rt.store.jobs.dismiss(self.job.id, self.job.namespace)
            return
        why = f"Prefect did not let the flow run start ({answer.describe()}, {state or 'state unknown'})"
        if retrying:
            why = f"{self.last_failure} (not retried: {why})"
        self.rt.store.jobs.fail_lost(self.job.id, why)

    def _hand_back(self, delay: float) -> bool:
        """The run back to Scheduled at the time Prefect waits for, the job back to accepted."""
        when = datetime.now(UTC) + timedelta(seconds=delay)
        try:
            answer = self.api.set_state(self.run_id, "SCHEDULED", scheduled_time=when,
                                        message=f"given back by ogcflow: not due before {_at(when)}")
        except ServiceUnavailable:
            return False
        if not answer.accepted:
            return False
        self.rt.store.jobs.requeue(self.job.id, f"waiting: its flow run is not due before {_at(when)}")
        return True

    # -- the end ----------------------------------------------------------------------------------

    def before_end(self, outcome: Outcome, log_key: str | None) -> bool:
        """Before the job's end is recorded: a failure is proposed to Prefect first, which may retry it."""
        job = self.job
        ok = outcome.status is StatusCode.successful
        self.report.ended(log_key, ok)
        suffix = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        self.report.add(logging.INFO if ok else logging.ERROR, "ogcflow.jobs",
                        f"job {job.id}: {outcome.message}{suffix}")
        if ok or not self.started:
            return True  # a success is recorded first (the fast path); the run follows
        try:
            self._send_logs()
            answer = self.api.set_state(self.run_id, "FAILED", message=outcome.message)
        except ServiceUnavailable:
            return True  # the run is brought to the end when Prefect is back (never AwaitingRetry)
        if answer.status == "REJECT" and answer.state_type == "SCHEDULED":
            self.retry_at = answer.scheduled_time
            self.last_failure = outcome.message
            self.rt.store.jobs.progress(job.id, None, f"attempt {self.attempt} failed: {outcome.message}; Prefect "
                                                      f"retries the flow run at {_at(self.retry_at)}")
            return False
        self.told = answer.accepted or answer.status == "ABORT"  # ABORT: the run ended elsewhere (cancelled)
        return True

    def _send_logs(self) -> None:
        self.report.send()

    def end_run(self, final: str, message: str | None, patience: float = 60.0) -> None:
        """Bring the flow run to the job's end (and its logs), retrying while Prefect is unreachable: the job
        itself is recorded already, so the run ends the same, forced if Prefect would rather retry it."""
        deadline = time.monotonic() + patience
        delay = 0.5
        api, run_id = self.api, self.run_id
        while True:
            try:
                if not self.started:
                    api.set_state(run_id, "RUNNING")
                    self.started = True
                self._send_logs()
                answer = api.set_state(run_id, final, message=message)
                if answer.status in ("REJECT", "WAIT"):
                    log.info("flow run %s: Prefect answered %s to %s after the job ended: forced", run_id,
                             answer.describe(), final)
                    api.set_state(run_id, final, message=message, force=True)
                return
            except ServiceUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    log.warning("flow run %s left behind (%s would be its state; a worker marks it later): %s",
                                run_id, final, exc)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
