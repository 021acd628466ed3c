"""What the store knows of all jobs at once, for the metrics (read at scrape time, so every API process and
every worker on any host is counted once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, case, delete, func, insert, select, update

from ogcflow.domain import utcnow
from ogcflow.models import StatusCode
from ogcflow.store.db import naive
from ogcflow.store.schema import jobs, workers

#: upper bounds (seconds) of the job duration histogram
DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
                                       7200.0, 21600.0, 86400.0)


@dataclass(frozen=True, slots=True)
class JobGroup:
    """The jobs of one process in one status (in one namespace)."""

    namespace: str
    process_id: str
    status: StatusCode
    count: int
    #: of ended jobs with a duration: how many, their sum, and how many took at most each bucket's bound
    timed: int = 0
    duration_sum: float = 0.0
    buckets: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class JobStats:
    groups: list[JobGroup] = field(default_factory=list)
    #: workers that heartbeat a running job (host:pid), within ``fresh`` seconds
    busy_workers: int = 0
    #: worker daemons alive (a heartbeat within ``fresh`` seconds), by engine: (workers, slots, jobs running)
    workers: dict[str, tuple[int, int, int]] = field(default_factory=dict)


class StatsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def jobs(self, fresh: float) -> JobStats:
        """Every (namespace, process, status) group with its count and duration histogram, and the workers
        busy now (a running job heartbeaten within ``fresh`` seconds)."""
        d = jobs.c.duration
        bucket_cols = [func.sum(case((d <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
        stmt = (select(jobs.c.namespace, jobs.c.process_id, jobs.c.status, func.count(), func.count(d),
                       func.coalesce(func.sum(d), 0.0), *bucket_cols)
                .group_by(jobs.c.namespace, jobs.c.process_id, jobs.c.status))
        cutoff = naive(utcnow() - timedelta(seconds=fresh))
        busy = (select(jobs.c.worker).where(jobs.c.status == StatusCode.running.value, jobs.c.heartbeat >= cutoff,
                                            jobs.c.worker.is_not(None)).distinct())
        known = {s.value for s in StatusCode}
        alive = (select(workers.c.engine, func.count(), func.sum(workers.c.slots), func.sum(workers.c.busy))
                 .where(workers.c.heartbeat >= cutoff).group_by(workers.c.engine))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            busy_ids = {str(w).split("/", 1)[0] for (w,) in conn.execute(busy)}
            daemons = {str(r[0]): (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in conn.execute(alive)}
        groups = [JobGroup(namespace=r[0], process_id=r[1], status=StatusCode(r[2]), count=int(r[3]),
                           timed=int(r[4] or 0), duration_sum=float(r[5] or 0.0),
                           buckets=tuple(int(v or 0) for v in r[6:]))
                  for r in rows if r[2] in known]
        return JobStats(groups=groups, busy_workers=len(busy_ids), workers=daemons)

    # -- the workers' own rows ------------------------------------------------------------------------

    def worker_beat(self, identity: str, engine: str, slots: int, busy: int) -> None:
        """A worker daemon is alive (its row made on its first beat)."""
        now = naive(utcnow())
        with self.engine.begin() as conn:
            done = conn.execute(update(workers).where(workers.c.id == identity)
                                .values(heartbeat=now, slots=slots, busy=busy)).rowcount
            if not done:
                conn.execute(insert(workers).values(id=identity, engine=engine, slots=slots, busy=busy, started=now,
                                                    heartbeat=now))

    def worker_gone(self, identity: str, older_than: float = 86400.0) -> None:
        """A worker daemon stopped; rows of workers silent for a day are removed too."""
        cutoff = naive(utcnow() - timedelta(seconds=older_than))
        with self.engine.begin() as conn:
            conn.execute(delete(workers).where((workers.c.id == identity) | (workers.c.heartbeat < cutoff)))
