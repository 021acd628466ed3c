"""The records every layer shares: a job, its request, its outputs, its failure, a callback delivery.

They are plain typed dataclasses: the store turns them into rows (``to_json``/``from_json`` give the JSON
columns' exact shape, unchanged since the first revision), the services pass them around, the API renders
them. Nothing here does I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from ogcflow.errors import ExceptionType, Forbidden, Unauthorized
from ogcflow.models import ResponseMode, StatusCode, TransmissionMode

#: a JSON value as decoded (inputs, inline outputs): its shape is the process description's business
JSONValue: TypeAlias = Any
JSONObject: TypeAlias = dict[str, JSONValue]

DEFAULT_NAMESPACE = "default"
#: where server-wide packages live (visible in every namespace); not a valid namespace name
SHARED_NAMESPACE = "~shared"
ACTIVE = (StatusCode.accepted, StatusCode.running)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """A random (version 4) UUID as text: ``str(uuid.uuid4())`` without building a UUID object (a third of
    the cost, on the path of every synchronous request)."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Role(StrEnum):
    """What a caller may do; each role may do what the ones before it may."""

    reader = "reader"  # list, describe, status, results
    executor = "executor"  # + execute, dismiss its own jobs
    deployer = "deployer"  # + deploy, replace, undeploy in its namespace; dismiss any job there
    admin = "admin"  # + every namespace

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Role.reader: 0, Role.executor: 1, Role.deployer: 2, Role.admin: 3}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a service acts for: the namespace of the request, the caller's identity and role there."""

    namespace: str = DEFAULT_NAMESPACE
    #: None for an anonymous caller (open namespaces)
    subject: str | None = None
    role: Role = Role.executor

    def may(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    def require(self, role: Role, what: str) -> None:
        """401 for an anonymous caller (credentials would give more), 403 for one whose role is too low."""
        if self.may(role):
            return
        if self.subject is None:
            raise Unauthorized(f"{what} needs credentials with the {role.value} role",
                               headers={"WWW-Authenticate": 'Bearer realm="ogcflow"'})
        raise Forbidden(f"{what} needs the {role.value} role; this caller's role is {self.role.value}")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How the orchestrator runs the job, as the execute request's ``prefect`` member asks (the Prefect
    engine: a flow run's retries, the delay between them, its work queue); None: the process's default."""

    retries: int | None = None
    retry_delay_seconds: float | None = None
    work_queue: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"retries": self.retries, "retryDelaySeconds": self.retry_delay_seconds,
                "workQueue": self.work_queue}
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RunOptions | None:
        if not data:
            return None
        delay = data.get("retryDelaySeconds")
        return cls(retries=data.get("retries"), retry_delay_seconds=None if delay is None else float(delay),
                   work_queue=data.get("workQueue"))


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Where the job's callbacks go (the execute request's ``subscriber``)."""

    success_uri: str | None = None
    in_progress_uri: str | None = None
    failed_uri: str | None = None

    def to_json(self) -> dict[str, str]:
        data = {"successUri": self.success_uri, "inProgressUri": self.in_progress_uri,
                "failedUri": self.failed_uri}
        return {k: v for k, v in data.items() if v}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Subscriber | None:
        if not data:
            return None
        return cls(success_uri=data.get("successUri"), in_progress_uri=data.get("inProgressUri"),
                   failed_uri=data.get("failedUri"))


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What the execute request asked, as kept with the job."""

    inputs: JSONObject = field(default_factory=dict)
    #: requested output id -> how it is transmitted
    outputs: dict[str, TransmissionMode] = field(default_factory=dict)
    #: as asked; None when the request did not say (see :meth:`response_or`)
    response: ResponseMode | None = None
    #: the URL the client reached the API at (links in callbacks)
    base_url: str = ""
    subscriber: Subscriber | None = None
    run: RunOptions | None = None

    def response_or(self, default: ResponseMode) -> ResponseMode:
        """The response mode asked, or ``default`` when the request did not say."""
        return self.response if self.response is not None else default

    @property
    def wants_references(self) -> bool:
        return TransmissionMode.reference in self.outputs.values()

    def to_json(self) -> JSONObject:
        data: JSONObject = {"inputs": self.inputs, "outputs": {k: v.value for k, v in self.outputs.items()},
                            "base_url": self.base_url}
        if self.response is not None:
            data["response"] = self.response.value
        if self.subscriber is not None:
            data["subscriber"] = self.subscriber.to_json()
        if self.run is not None:
            data["run"] = self.run.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobRequest:
        data = data or {}
        return cls(inputs=dict(data.get("inputs") or {}),
                   outputs={k: TransmissionMode(v) for k, v in (data.get("outputs") or {}).items()},
                   response=ResponseMode(data["response"]) if data.get("response") else None,
                   base_url=str(data.get("base_url") or ""), subscriber=Subscriber.from_json(data.get("subscriber")),
                   run=RunOptions.from_json(data.get("run")))


@dataclass(frozen=True, slots=True)
class OutputEntry:
    """One stored output: a JSON value kept in the job row, or a file in results storage (``key``)."""

    media_type: str
    value: JSONValue = None
    key: str | None = None
    size: int | None = None
    binary: bool = False

    @property
    def inline(self) -> bool:
        return self.key is None

    def to_json(self) -> JSONObject:
        if self.key is None:
            return {"mediaType": self.media_type, "value": self.value}
        return {"mediaType": self.media_type, "key": self.key, "size": self.size, "binary": self.binary}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutputEntry:
        media = str(data.get("mediaType") or "application/json")
        if "key" in data:
            return cls(media_type=media, key=str(data["key"]), size=data.get("size"), binary=bool(data.get("binary")))
        return cls(media_type=media, value=data.get("value"))


#: output id -> stored output: what a successful job keeps
Manifest: TypeAlias = dict[str, OutputEntry]


def manifest_to_json(manifest: Manifest | None) -> JSONObject | None:
    return None if manifest is None else {k: v.to_json() for k, v in manifest.items()}


def manifest_from_json(data: Mapping[str, Any] | None) -> Manifest | None:
    return None if data is None else {k: OutputEntry.from_json(v) for k, v in data.items()}


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a job failed: the exception document its results answer with."""

    detail: str
    status: int = 500
    type: str = ExceptionType.JOB_FAILED
    title: str = "Job failed"

    def to_json(self) -> JSONObject:
        return {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Failure | None:
        if not data:
            return None
        return cls(detail=str(data.get("detail") or "the job failed"), status=int(data.get("status") or 500),
                   type=str(data.get("type") or ExceptionType.JOB_FAILED), title=str(data.get("title") or "Job failed"))


def job_failed(detail: str) -> Failure:
    """The one way a failed job's document is made."""
    return Failure(detail=detail)


@dataclass(slots=True)
class Job:
    """One job as stored."""

    id: str
    process_id: str
    status: StatusCode
    created: datetime
    updated: datetime
    request: JobRequest
    namespace: str = DEFAULT_NAMESPACE
    mode: str = "async"  # sync | async
    engine: str = "local"
    message: str | None = None
    progress: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    duration: float | None = None
    results: Manifest | None = None
    error: Failure | None = None
    worker: str | None = None
    heartbeat: datetime | None = None
    run_ref: str | None = None
    log: str | None = None
    #: who submitted it (the caller's subject; None when anonymous)
    owner: str | None = None
    #: which run of the job this is: a job whose worker died is run again up to its process's limit
    attempt: int = 1

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The /jobs query, already validated."""

    namespace: str
    process_ids: Sequence[str] = ()
    statuses: Sequence[StatusCode] = ()
    datetime_start: datetime | None = None
    datetime_end: datetime | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    limit: int = 10
    offset: int = 0


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """A queued callback (the ``subscriber`` of a job): its target, payload and delivery state."""

    id: int
    job_id: str
    url: str
    payload: JSONObject
    attempts: int
    next_at: datetime
    state: str  # pending | delivered | failed
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionPreferences:
    """What the client prefers (the ``Prefer`` header, RFC 7240), as the execution needs it."""

    respond_async: bool = False
    wait: float | None = None
    return_representation: bool = False


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """An execute request's ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header): a retried
    submission with the same key (same namespace, same caller) finds the job the first one created."""

    key: str
    #: SHA-256 of the process id and the request body: the same key with another request is refused
    fingerprint: str
