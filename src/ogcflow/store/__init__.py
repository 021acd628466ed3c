"""All persistence: jobs, deployed processes, callback deliveries, API keys, on one SQLAlchemy engine (SQLite or
PostgreSQL). Every read a request can reach takes the namespace as a required argument."""

from __future__ import annotations

from ogcflow.store.apikeys import ApiKeyRecord, ApiKeyStore
from ogcflow.store.callbacks import CallbackStore
from ogcflow.store.db import make_engine, migrate
from ogcflow.store.idempotency import IdempotencyStore, KeyUse
from ogcflow.store.jobs import JobStore, worker_identity
from ogcflow.store.processes import ProcessRecord, ProcessStore
from ogcflow.store.stats import JobStats, StatsStore

__all__ = ["ApiKeyRecord", "ApiKeyStore", "CallbackStore", "IdempotencyStore", "JobStats", "JobStore", "KeyUse",
           "ProcessRecord", "ProcessStore", "StatsStore", "Store", "make_engine", "migrate", "worker_identity"]


class Store:
    """The store of one server: its tables, behind one connection pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.jobs = JobStore(self.engine)
        self.processes = ProcessStore(self.engine)
        self.callbacks = CallbackStore(self.engine)
        self.apikeys = ApiKeyStore(self.engine)
        self.idempotency = IdempotencyStore(self.engine)
        self.stats = StatsStore(self.engine)

    def ping(self) -> None:
        """One round trip to the database (readiness probes); raises if it cannot be reached."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

    def after_fork(self) -> None:
        """Call in a forked child: never reuse the parent's connections."""
        self.engine.dispose(close=False)
