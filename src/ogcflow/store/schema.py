"""Tables of the job and process store. Changes go through an Alembic migration (ogcflow/migrations)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("namespace", String(128), nullable=False, default="default"),
    Column("process_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("mode", String(8), nullable=False, default="async"),  # sync | async
    Column("message", Text),
    Column("progress", Integer),
    Column("created", DateTime, nullable=False),
    Column("started", DateTime),
    Column("finished", DateTime),
    Column("updated", DateTime, nullable=False),
    Column("duration", Float),  # seconds from started to finished, set when the job ends
    Column("request", JSON, nullable=False),  # the execute request: inputs, outputs, response, subscriber
    Column("results", JSON),  # output id -> stored result (see domain.OutputEntry)
    Column("error", JSON),  # exception document of a failed job
    Column("engine", String(32), nullable=False, default="local"),
    Column("worker", String(256)),  # who runs it: host:pid of the local worker, or an engine reference
    Column("heartbeat", DateTime),
    Column("run_ref", String(256)),  # the engine's own id of the run (e.g. a Prefect flow run id)
    Column("log", String(512)),  # storage key of the job's log, when it keeps one
    Column("owner", String(256)),  # the subject of the caller who submitted it (None: anonymous)
    Column("attempt", Integer, nullable=False, default=1, server_default="1"),  # which run (lost jobs re-run)
    Index("ix_jobs_ns_created", "namespace", "created"),
    Index("ix_jobs_ns_status_created", "namespace", "status", "created"),
    Index("ix_jobs_ns_process_created", "namespace", "process_id", "created"),
    Index("ix_jobs_engine_status_created", "engine", "status", "created"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(256), primary_key=True),  # host:pid of the worker daemon
    Column("engine", String(32), nullable=False),
    Column("slots", Integer, nullable=False),
    Column("busy", Integer, nullable=False),  # jobs running now
    Column("started", DateTime, nullable=False),
    Column("heartbeat", DateTime, nullable=False),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", DateTime, nullable=False),
    Column("state", String(16), nullable=False, default="pending"),  # pending | delivered | failed
    Column("last_error", Text),
    Index("ix_callbacks_state_next", "state", "next_at"),
)

processes = Table(
    "processes",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("description", JSON, nullable=False),  # the OGC process description
    Column("package", Text, nullable=False),  # the CWL document as deployed
    Column("media_type", String(128), nullable=False),
    Column("entry", String(128), nullable=False),  # the workflow of the document that is the process
    Column("inputs_kind", JSON, nullable=False),  # input id -> File | Directory | File[] ... (staging)
    Column("source", Text),  # the request body as deployed (e.g. an OGC application package), if not the CWL
    Column("source_type", String(128)),  # its media type
    Column("created", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
)

#: shipped application packages once deployed by default (an operator's undeploy is not undone at restart)
seeded_packages = Table(
    "seeded_packages",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("seeded", DateTime, nullable=False),
)

#: API keys (their secret hashed; ``ogcflow apikey create|list|revoke``)
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("namespace", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(256)),
    Column("created", DateTime, nullable=False),
    Column("revoked", DateTime),
)

#: the ``Idempotency-Key`` of execute requests: a retried submission finds the job its first one created
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("caller", String(256), primary_key=True),  # the caller's subject ("" when anonymous)
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),  # SHA-256 of the process id and the request body
    Column("job_id", String(64), nullable=False),
    Column("created", DateTime, nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_idempotency_keys_expires", "expires"),
)
