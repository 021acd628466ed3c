"""The job store: SQLAlchemy Core over SQLite (WAL) or PostgreSQL.

Every write that moves a job between states is conditional on the state it leaves, so two actors
(an API process dismissing, a worker finishing) never overwrite each other.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from ogcflow.jobs.schema import callbacks, jobs
from ogcflow.models import StatusCode

ACTIVE = (StatusCode.accepted.value, StatusCode.running.value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _naive(dt: datetime | None) -> datetime | None:
    """Stored datetimes are naive UTC (portable between SQLite and PostgreSQL)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@dataclass(slots=True)
class Job:
    """One job as stored."""

    id: str
    process_id: str
    status: str
    created: datetime
    updated: datetime
    request: dict[str, Any]
    namespace: str = "default"
    mode: str = "async"
    engine: str = "local"
    message: str | None = None
    progress: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    duration: float | None = None
    results: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    worker: str | None = None
    heartbeat: datetime | None = None
    run_ref: str | None = None
    log: str | None = None

    @property
    def status_code(self) -> StatusCode:
        return StatusCode(self.status)

    def row(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        for key in ("created", "updated", "started", "finished", "heartbeat"):
            data[key] = _naive(data[key])
        return data


_JOB_COLUMNS = [c.name for c in jobs.columns]
_LIST_COLUMNS = [jobs.c[name] for name in _JOB_COLUMNS if name not in ("request", "results", "error")]


def _job_from_row(row: Any) -> Job:
    data = dict(row._mapping)
    for key in ("created", "updated", "started", "finished", "heartbeat"):
        data[key] = _aware(data.get(key))
    data.setdefault("request", {})
    return Job(**data)


@dataclass(slots=True)
class JobFilter:
    """The /jobs query, already validated."""

    namespace: str = "default"
    process_ids: Sequence[str] = ()
    statuses: Sequence[str] = ()
    datetime_start: datetime | None = None
    datetime_end: datetime | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    limit: int = 10
    offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(url: str) -> None:
    """Bring the store's schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


def worker_identity() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore:
    """All reads and writes of jobs and callback deliveries."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def dispose(self) -> None:
        self.engine.dispose()

    def after_fork(self) -> None:
        """Call in a forked child: never reuse the parent's connections."""
        self.engine.dispose(close=False)

    # -- writes -------------------------------------------------------------------------------

    def create(self, job: Job) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(jobs).values(**job.row()))

    def create_many(self, batch: Sequence[Job]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(jobs), [job.row() for job in batch])

    def _set(self, conn: Connection, job_id: str, when: Iterable[str] | None, **values: Any) -> bool:
        values.setdefault("updated", _naive(utcnow()))
        stmt = update(jobs).where(jobs.c.id == job_id)
        if when is not None:
            stmt = stmt.where(jobs.c.status.in_(list(when)))
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
            now = _naive(utcnow())
            with self.engine.begin() as conn:
                if self._set(conn, job_id, [StatusCode.accepted.value], status=StatusCode.running.value,
                             started=now, worker=worker, heartbeat=now, progress=0,
                             message="running"):
                    row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
                    return _job_from_row(row)
        return None

    def mark_running(self, job_id: str, worker: str | None = None, run_ref: str | None = None) -> bool:
        now = _naive(utcnow())
        values: dict[str, Any] = {"status": StatusCode.running.value, "started": now, "heartbeat": now,
                                  "message": "running"}
        if worker is not None:
            values["worker"] = worker
        if run_ref is not None:
            values["run_ref"] = run_ref
        with self.engine.begin() as conn:
            return self._set(conn, job_id, [StatusCode.accepted.value], **values)

    def set_worker(self, job_id: str, worker: str) -> None:
        with self.engine.begin() as conn:
            self._set(conn, job_id, None, worker=worker, updated=jobs.c.updated)

    def set_run_ref(self, job_id: str, run_ref: str) -> None:
        with self.engine.begin() as conn:
            self._set(conn, job_id, None, run_ref=run_ref)

    def progress(self, job_id: str, progress: int | None, message: str | None) -> bool:
        values: dict[str, Any] = {"heartbeat": _naive(utcnow())}
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
                .values(heartbeat=_naive(utcnow()))
            )

    def finish(self, job_id: str, status: StatusCode, *, message: str | None = None,
               results: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
               log: str | None = None) -> bool:
        """End an active job. False when it had already ended (for instance dismissed meanwhile)."""
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(jobs.c.started).where(jobs.c.id == job_id)).first()
            started = _aware(row[0]) if row and row[0] else now
            values: dict[str, Any] = {
                "status": status.value, "finished": _naive(now), "updated": _naive(now),
                "duration": (now - started).total_seconds(), "message": message,
                "results": results, "error": error,
            }
            if log is not None:
                values["log"] = log
            if row and row[0] is None:
                values["started"] = _naive(now)
            if status is StatusCode.successful:
                values["progress"] = 100
            return self._set(conn, job_id, ACTIVE, **values)

    def dismiss(self, job_id: str, namespace: str) -> Job | None:
        """Mark a job dismissed. Returns the job as it was before, or None if there is none."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(jobs).where(jobs.c.id == job_id, jobs.c.namespace == namespace)
            ).first()
            if row is None:
                return None
            before = _job_from_row(row)
            if before.status in ACTIVE:
                now = utcnow()
                started = before.started or now
                self._set(conn, job_id, ACTIVE, status=StatusCode.dismissed.value,
                          message="dismissed by the user", finished=_naive(now),
                          duration=(now - started).total_seconds())
            elif before.status != StatusCode.dismissed.value:
                self._set(conn, job_id, None, status=StatusCode.dismissed.value,
                          message="dismissed by the user", results=None, log=None)
            return before

    def stale_running(self, engine: str, older_than: float) -> list[str]:
        """Running jobs whose worker has been silent for ``older_than`` seconds."""
        cutoff = _naive(utcnow() - timedelta(seconds=older_than))
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(jobs.c.id).where(
                    jobs.c.engine == engine, jobs.c.status == StatusCode.running.value,
                    or_(jobs.c.heartbeat.is_(None), jobs.c.heartbeat < cutoff),
                )
            ).scalars().all())

    def delete(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.id == job_id))

    def fail_lost(self, job_id: str, reason: str) -> bool:
        error = {"type": "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/job-failed",
                 "title": "Job failed", "status": 500, "detail": reason}
        return self.finish(job_id, StatusCode.failed, message=reason, error=error)

    def running_on(self, engine: str, worker_prefix: str) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*_LIST_COLUMNS).where(
                    jobs.c.engine == engine, jobs.c.status == StatusCode.running.value,
                    jobs.c.worker.like(worker_prefix + "%"),
                )
            ).all()
        return [_job_from_row(r) for r in rows]

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str, namespace: str | None = None) -> Job | None:
        stmt = select(jobs).where(jobs.c.id == job_id)
        if namespace is not None:
            stmt = stmt.where(jobs.c.namespace == namespace)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _job_from_row(row) if row else None

    def status_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        if not job_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(list(job_ids)))).all()
        return {r[0]: r[1] for r in rows}

    def list(self, flt: JobFilter) -> list[Job]:
        conds = [jobs.c.namespace == flt.namespace]
        if flt.process_ids:
            conds.append(jobs.c.process_id.in_(list(flt.process_ids)))
        if flt.statuses:
            conds.append(jobs.c.status.in_(list(flt.statuses)))
        if flt.datetime_start is not None:
            conds.append(jobs.c.created >= _naive(flt.datetime_start))
        if flt.datetime_end is not None:
            conds.append(jobs.c.created <= _naive(flt.datetime_end))
        now = utcnow()
        if flt.min_duration is not None:
            conds.append(or_(
                and_(jobs.c.finished.is_not(None), jobs.c.duration >= flt.min_duration),
                and_(jobs.c.finished.is_(None), jobs.c.started.is_not(None),
                     jobs.c.started <= _naive(now - timedelta(seconds=flt.min_duration))),
            ))
        if flt.max_duration is not None:
            conds.append(or_(
                and_(jobs.c.finished.is_not(None), jobs.c.duration <= flt.max_duration),
                and_(jobs.c.finished.is_(None), jobs.c.started.is_not(None),
                     jobs.c.started >= _naive(now - timedelta(seconds=flt.max_duration))),
            ))
        stmt = (
            select(*_LIST_COLUMNS).where(*conds)
            .order_by(jobs.c.created.desc(), jobs.c.id.desc())
            .limit(flt.limit + 1).offset(flt.offset)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [_job_from_row(r) for r in rows]

    def count(self, namespace: str = "default") -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(jobs).where(jobs.c.namespace == namespace)
            ).scalar_one()

    # -- callbacks ----------------------------------------------------------------------------

    def queue_callback(self, job_id: str, url: str, payload: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(callbacks).values(job_id=job_id, url=url, payload=payload, attempts=0,
                                                  next_at=_naive(utcnow()), state="pending"))

    def due_callbacks(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(callbacks).where(callbacks.c.state == "pending",
                                        callbacks.c.next_at <= _naive(utcnow()))
                .order_by(callbacks.c.next_at).limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def callback_attempted(self, cb_id: int, *, delivered: bool, error: str | None,
                           retry_in: float | None) -> None:
        values: dict[str, Any] = {"attempts": callbacks.c.attempts + 1, "last_error": error}
        if delivered:
            values["state"] = "delivered"
        elif retry_in is None:
            values["state"] = "failed"
        else:
            values["next_at"] = _naive(utcnow() + timedelta(seconds=retry_in))
        with self.engine.begin() as conn:
            conn.execute(update(callbacks).where(callbacks.c.id == cb_id).values(**values))

    def callbacks_of(self, job_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(callbacks).where(callbacks.c.job_id == job_id)).all()
        return [dict(r._mapping) for r in rows]
