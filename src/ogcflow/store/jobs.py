"""Jobs in the store.

Every write that moves a job between states is conditional on the state it leaves, so two actors (an API
process dismissing, a worker finishing) never overwrite each other. Reads on behalf of a request take the
namespace (required); the engine side reads jobs by id alone with :meth:`JobStore.for_engine`, since a
worker runs the jobs of every namespace.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row

from ogcflow.domain import (
    ACTIVE,
    Failure,
    Job,
    JobFilter,
    JobRequest,
    Manifest,
    manifest_from_json,
    manifest_to_json,
    utcnow,
)
from ogcflow.models import StatusCode
from ogcflow.store.db import aware, naive
from ogcflow.store.schema import jobs

_ACTIVE = [s.value for s in ACTIVE]
#: the message of a job as it starts
RUNNING_MESSAGE = "running"
_TIMES = ("created", "updated", "started", "finished", "heartbeat")
_JOB_COLUMNS = [c.name for c in jobs.columns]
_LIST_COLUMNS = [jobs.c[name] for name in _JOB_COLUMNS if name not in ("request", "results", "error")]
#: durations beyond this are no filter at all (and would overflow a timedelta)
_MAX_SECONDS = 10 ** 9


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _row_of(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(job, name) for name in _JOB_COLUMNS}
    for key in _TIMES:
        data[key] = naive(data[key])
    data["status"] = job.status.value
    data["request"] = job.request.to_json()
    data["results"] = manifest_to_json(job.results)
    data["error"] = job.error.to_json() if job.error else None
    return data


def _job_of(row: Row[Any]) -> Job:
    data = dict(row._mapping)
    for key in _TIMES:
        data[key] = aware(data.get(key))
    data["status"] = StatusCode(data["status"])
    data["request"] = JobRequest.from_json(data.get("request"))
    data["results"] = manifest_from_json(data.get("results"))
    data["error"] = Failure.from_json(data.get("error"))
    return Job(**data)


class JobStore:
    """All reads and writes of jobs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes -------------------------------------------------------------------------------

    def create(self, job: Job) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(**_row_of(job)))

    def create_many(self, batch: Sequence[Job]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(jobs), [_row_of(job) for job in batch])

    def _set(self, conn: Connection, job_id: str, when: Iterable[str] | None, attempt: int | None = None,
             **values: Any) -> bool:
        values.setdefault("updated", naive(utcnow()))
        stmt = update(jobs).where(jobs.c.id == job_id)
        if when is not None:
            stmt = stmt.where(jobs.c.status.in_(list(when)))
        if attempt is not None:
            stmt = stmt.where(jobs.c.attempt == attempt)
        return conn.execute(stmt.values(**values)).rowcount == 1

    def claim(self, engine: str, worker: str) -> Job | None:
        """Take the oldest accepted job of this engine for ``worker``; None when the queue is empty."""
        with self.engine.begin() as conn:
            candidates = conn.execute(
                select(jobs.c.id)
                .where(jobs.c.engine == engine, jobs.c.status == StatusCode.accepted.value)
                .order_by(jobs.c.created)
                .limit(4)
            ).scalars().all()
        for job_id in candidates:
            now = naive(utcnow())
            with self.engine.begin() as conn:
                if self._set(conn, job_id, [StatusCode.accepted.value], status=StatusCode.running.value,
                             started=now, worker=worker, heartbeat=now, progress=0,
                             message=RUNNING_MESSAGE):
                    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
                    job = _job_of(row)
                    if job.attempt > 1:  # a re-run of a lost job says so
                        job.message = f"running (attempt {job.attempt})"
                        self._set(conn, job_id, None, message=job.message)
                    return job
        return None

    def mark_running(self, job_id: str, worker: str | None = None, run_ref: str | None = None) -> bool:
        return self._mark_running(job_id, utcnow(), worker, run_ref)

    def start(self, job: Job, worker: str, run_ref: str) -> Job | None:
        """:meth:`mark_running` of an accepted ``job``, which it returns as marked (not read back); None when
        it is not accepted any more (dismissed meanwhile)."""
        now = utcnow()
        if not self._mark_running(job.id, now, worker, run_ref):
            return None
        return dataclasses.replace(job, status=StatusCode.running, started=now, heartbeat=now, worker=worker,
                                   run_ref=run_ref, message=RUNNING_MESSAGE)

    def _mark_running(self, job_id: str, now: datetime, worker: str | None, run_ref: str | None) -> bool:
        values: dict[str, Any] = {"status": StatusCode.running.value, "started": naive(now),
                                  "heartbeat": naive(now), "message": RUNNING_MESSAGE}
        if worker is not None:
            values["worker"] = worker
        if run_ref is not None:
            values["run_ref"] = run_ref
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.accepted.value], **values)

    def rerun(self, job_id: str, worker: str, run_ref: str, message: str) -> bool:
        """Run an ended job again (successful or failed: its engine was asked to retry it, e.g. from the
        Prefect UI): running, its previous end forgotten. False when it is not so (dismissed, or active)."""
        now = naive(utcnow())
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.successful.value, StatusCode.failed.value],
                             status=StatusCode.running.value, started=now, heartbeat=now, finished=None,
                             duration=None, worker=worker, run_ref=run_ref, progress=0, message=message[:2000],
                             results=None, error=None, log=None)

    def requeue(self, job_id: str, message: str) -> bool:
        """Give a running job back to the queue (its engine starts it again later); False when it is not
        running any more (dismissed meanwhile)."""
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.running.value], status=StatusCode.accepted.value,
                             started=None, worker=None, heartbeat=None, progress=0, message=message[:2000])

    def note(self, job_id: str, message: str) -> bool:
        """Say why an accepted job waits (its status message)."""
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.accepted.value], message=message[:2000])

    def set_worker(self, job_id: str, worker: str) -> None:
        with self.engine.begin() as conn:
            self._set(conn, job_id, None, worker=worker, updated=jobs.c.updated)

    def set_run_ref(self, job_id: str, run_ref: str) -> None:
        with self.engine.begin() as conn:
            self._set(conn, job_id, None, run_ref=run_ref)

    def progress(self, job_id: str, progress: int | None, message: str | None, log: str | None = None) -> bool:
        """A running job's progress and/or message (and the storage key of its log so far, ``log``)."""
        values: dict[str, Any] = {"heartbeat": naive(utcnow())}
        if log is not None:
            values["log"] = log
        if progress is not None:
            values["progress"] = max(0, min(100, int(progress)))
        if message is not None:
            values["message"] = message[:2000]
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.running.value], **values)

    def heartbeat(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.status == StatusCode.running.value)
                .values(heartbeat=naive(utcnow()))
            )

    def finish(self, job_id: str, status: StatusCode, *, message: str | None = None,
               results: Manifest | None = None, error: Failure | None = None, log: str | None = None,
               attempt: int | None = None) -> bool:
        """End an active job (if ``attempt`` is given: only while that is the job's attempt). False when it had
        already ended (for instance dismissed meanwhile), or another attempt of it runs."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(jobs.c.started).where(jobs.c.id == job_id)).first()
            started = aware(row[0]) if row and row[0] else now
            assert started is not None
            values: dict[str, Any] = {
                "status": status.value, "finished": naive(now), "updated": naive(now),
                "duration": (now - started).total_seconds(), "message": message,
                "results": manifest_to_json(results), "error": error.to_json() if error else None,
            }
            if log is not None:
                values["log"] = log
            if row and row[0] is None:
                values["started"] = naive(now)
            if status is StatusCode.successful:
                values["progress"] = 100
            return self._set(conn, job_id, _ACTIVE, attempt, **values)

    def rerun_lost(self, job_id: str, attempt: int, reason: str, attempts: int) -> bool:
        """Queue a running job whose run was lost (its worker or its process died) again as its next attempt,
        if ``attempt`` (the lost one, still the job's) is below ``attempts``; False when nothing changed."""
        if attempt >= attempts:
            return False
        message = f"accepted: attempt {attempt + 1} of {attempts} waits to start (attempt {attempt}: {reason})"
        with self.engine.begin() as conn:
            return conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.status == StatusCode.running.value,
                                   jobs.c.attempt == attempt)
                .values(status=StatusCode.accepted.value, attempt=attempt + 1, started=None, worker=None,
                        heartbeat=None, progress=0, message=message[:2000], updated=naive(utcnow()))
            ).rowcount == 1

    def fail_lost(self, job_id: str, reason: str, attempt: int | None = None) -> bool:
        """Fail an active job whose process ended without recording it (killed, crashed, worker gone); with
        ``attempt``: only while that is its attempt."""
        return self.finish(job_id, StatusCode.failed, message=reason, error=Failure(detail=reason), attempt=attempt)

    def dismiss(self, job_id: str, namespace: str) -> Job | None:
        """Mark a job dismissed. Returns the job as it was before, or None if there is none."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.namespace == namespace)
            ).first()
            if row is None:
                return None
            before = _job_of(row)
            if before.active:
                now = utcnow()
                started = before.started or now
                self._set(conn, job_id, _ACTIVE, status=StatusCode.dismissed.value,
                          message="dismissed by the user", finished=naive(now),
                          duration=(now - started).total_seconds())
            elif before.status is not StatusCode.dismissed:
                self._set(conn, job_id, None, status=StatusCode.dismissed.value,
                          message="dismissed by the user", results=None, log=None)
            return before

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.id == job_id))

    # -- reads on behalf of a request (the namespace is required) ---------------------------------

    def get(self, job_id: str, namespace: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.namespace == namespace)).first()
        return _job_of(row) if row else None

    def find(self, flt: JobFilter) -> list[Job]:
        """One page of the namespace's jobs, newest first, with one row more than ``limit`` when there are
        more."""
        conds = [jobs.c.namespace == flt.namespace]
        if flt.process_ids:
            conds.append(jobs.c.process_id.in_(list(flt.process_ids)))
        if flt.statuses:
            conds.append(jobs.c.status.in_([s.value for s in flt.statuses]))
        if flt.datetime_start is not None:
            conds.append(jobs.c.created >= naive(flt.datetime_start))
        if flt.datetime_end is not None:
            conds.append(jobs.c.created <= naive(flt.datetime_end))
        now = utcnow()
        if flt.min_duration is not None:
            least = min(flt.min_duration, _MAX_SECONDS)
            conds.append(or_(
                and_(jobs.c.finished.is_not(None), jobs.c.duration >= least),
                and_(jobs.c.finished.is_(None), jobs.c.started.is_not(None),
                     jobs.c.started <= naive(now - timedelta(seconds=least))),
            ))
        if flt.max_duration is not None and flt.max_duration < _MAX_SECONDS:
            conds.append(or_(
                and_(jobs.c.finished.is_not(None), jobs.c.duration <= flt.max_duration),
                and_(jobs.c.finished.is_(None), jobs.c.started.is_not(None),
                     jobs.c.started >= naive(now - timedelta(seconds=flt.max_duration))),
            ))
        stmt = (
            select(*_LIST_COLUMNS).where(*conds)
            .order_by(jobs.c.created.desc(), jobs.c.id.desc())
            .limit(flt.limit + 1).offset(flt.offset)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_job_of(r) for r in rows]

    def count(self, namespace: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.namespace == namespace)
            ).scalar_one())

    # -- reads of the engine side (workers run the jobs of every namespace) ------------------------

    def for_engine(self, job_id: str) -> Job | None:
        """The job by id alone: for engines and workers, never on behalf of a request."""
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return _job_of(row) if row else None

    def status_of(self, job_ids: Sequence[str]) -> dict[str, StatusCode]:
        if not job_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(list(job_ids)))).all()
        return {r[0]: StatusCode(r[1]) for r in rows}

    def stale_running(self, engine: str, older_than: float) -> list[str]:
        """Running jobs whose worker has been silent for ``older_than`` seconds."""
        cutoff = naive(utcnow() - timedelta(seconds=older_than))
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(jobs.c.id).where(
                    jobs.c.engine == engine, jobs.c.status == StatusCode.running.value,
                    or_(jobs.c.heartbeat.is_(None), jobs.c.heartbeat < cutoff),
                )
            ).scalars().all())

    def running_on(self, engine: str, worker_prefix: str) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*_LIST_COLUMNS).where(
                    jobs.c.engine == engine, jobs.c.status == StatusCode.running.value,
                    jobs.c.worker.like(worker_prefix + "%"),
                )
            ).all()
        return [_job_of(r) for r in rows]
