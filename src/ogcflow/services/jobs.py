"""The job service: every job operation the API offers (execute, get, list, dismiss, results, outputs, files,
logs, wait), for one namespace at a time. Routes and the fast synchronous path parse the request, call one
method and render what it returns; the job lifecycle (store, engine, timing, results) is here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ogcflow import models
from ogcflow.domain import (
    Caller,
    ExecutionPreferences,
    IdempotencyKey,
    Job,
    JobFilter,
    JSONObject,
    OutputEntry,
    Role,
    utcnow,
)
from ogcflow.engines.base import Engine
from ogcflow.errors import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidParameter,
    NoSuchJob,
    NoSuchOutput,
    NoSuchProcess,
    NotFound,
    OGCError,
    ResultNotReady,
    ServiceUnavailable,
)
from ogcflow.jobs.execution import execute_process, new_job
from ogcflow.jobs.recorder import JobRecorder
from ogcflow.jobs.results import raw_body, results_document
from ogcflow.jobs.status import job_url
from ogcflow.models import JobControlOption, StatusCode
from ogcflow.processes.base import JobContext, Process
from ogcflow.processes.inputs import check_outbound, check_request, has_references, outbound_urls
from ogcflow.runtime import Runtime
from ogcflow.storage import make_key

log = logging.getLogger("ogcflow.jobs")

Mode = Literal["sync", "async"]


def job_failure(job: Job) -> OGCError:
    """A failed job's exception document, as an error to answer with."""
    err = job.error
    if err is None:
        return OGCError(job.message or "the job failed", status=500, title="Job failed", jobID=job.id)
    return OGCError(err.detail, status=err.status, type=err.type, title=err.title, jobID=job.id)


def choose_mode(process: Process, prefs: ExecutionPreferences) -> tuple[Mode, list[str]]:
    """``sync`` or ``async`` and the preferences applied (OGC 18-062r2, 7.11.2.3)."""
    options = process.description.jobControlOptions
    can_sync = JobControlOption.sync_execute in options
    can_async = JobControlOption.async_execute in options
    if can_async and (prefs.respond_async or not can_sync):
        applied = ["respond-async"] if prefs.respond_async else []
        if prefs.return_representation:
            applied.append("return=representation")
        return "async", applied
    if not can_sync:
        raise InvalidParameter(f"process '{process.id}' cannot be executed")
    return "sync", ([f"wait={prefs.wait:g}"] if prefs.wait is not None else [])


@dataclass(slots=True)
class Execution:
    """What an execute request led to."""

    job: Job
    mode: Mode
    #: the preferences honoured (``Preference-Applied``)
    applied: list[str] = field(default_factory=list)
    #: the job has ended (synchronous execution): answer with its results (or its failure); otherwise it
    #: runs on: answer 201 with its status and ``Location``
    done: bool = False
    #: the job of an earlier request with the same ``Idempotency-Key``
    replayed: bool = False

    @property
    def location(self) -> str:
        return job_url(self.job.request.base_url, self.job.id)


def _public(url: str) -> str | None:
    """A storage URL clients may see: not a ``file://`` URL, which would show the server's paths."""
    return None if url.startswith("file:") else url


@dataclass(frozen=True, slots=True)
class JobFile:
    """A file a job wrote to results storage."""

    name: str
    key: str
    #: where it is in the results storage (``s3://``); None for local storage (its path is the server's own)
    url: str | None


@dataclass(slots=True)
class JobPage:
    jobs: list[Job]
    more: bool


class JobService:
    def __init__(self, rt: Runtime, engine: Engine, recorder: JobRecorder) -> None:
        self.rt = rt
        self.engine = engine
        self.recorder = recorder

    # -- execute ------------------------------------------------------------------------------------

    async def execute(self, caller: Caller, process: Process, request: models.Execute,
                      prefs: ExecutionPreferences, base_url: str, key: IdempotencyKey | None = None) -> Execution:
        """Check the request against the process (one of the caller's namespace, as the process service gave
        it) and the network policy, then run it inline (cheap synchronous work), or store the job, hand it
        to the engine and, when synchronous, wait for its end (bounded by the sync timeout).

        With an idempotency ``key`` the job is stored with it, and a request that sends the key again (same
        namespace, same caller, while the key is kept) gets the first request's job (a 422 if it is
        another request)."""
        caller.require(Role.executor, "executing a process")
        rt = self.rt
        namespace = caller.namespace
        if key is not None:
            earlier = await self._replay(caller, key, prefs)
            if earlier is not None:
                return earlier
        check_request(process.description, request)
        urls = outbound_urls(process.description, request)
        if urls:
            await asyncio.to_thread(check_outbound, urls, rt.settings.network, rt.settings.network.local_roots)
        mode, applied = choose_mode(process, prefs)
        if (mode == "sync" and process.inline and self.engine.inline_sync and request.subscriber is None
                and not has_references(request.inputs)):
            job = await self._inline(process, request, caller, base_url, key)
            if job is None:  # a request with the same key was recorded first: its job is the answer
                return await self._replay(caller, key, prefs) or await self.execute(caller, process, request,
                                                                                     prefs, base_url, key)
            return Execution(job, "sync", applied, done=True)
        job = new_job(process.description, request, mode=mode, namespace=namespace, engine=self.engine.name,
                      base_url=base_url, owner=caller.subject)
        if not await self._create(job, caller, key):
            return await self._replay(caller, key, prefs) or await self.execute(caller, process, request, prefs,
                                                                                 base_url, key)
        try:
            await self.engine.submit(job)
        except Exception:
            await asyncio.to_thread(rt.store.jobs.delete, job.id)  # not accepted after all: keep no trace
            if key is not None:
                await asyncio.to_thread(rt.store.idempotency.forget, namespace, caller.subject or "", key.key)
            raise
        if mode == "sync":
            limit = rt.settings.server.sync_timeout
            done = await self.engine.wait(job.id, limit if prefs.wait is None else min(prefs.wait, limit))
            if done is not None and done.status.finished and done.status is not StatusCode.dismissed:
                return Execution(done, "sync", applied, done=True)
            job = done or job
        return Execution(job, mode, applied)

    async def _create(self, job: Job, caller: Caller, key: IdempotencyKey | None) -> bool:
        """Store a new job (with its idempotency key); False when the key was taken meanwhile."""
        if key is None:
            await asyncio.to_thread(self.rt.store.jobs.create, job)
            return True
        earlier = await asyncio.to_thread(self.rt.store.idempotency.create_job, job, caller.subject or "", key,
                                          self.rt.settings.server.idempotency_ttl)
        return earlier is None

    async def _replay(self, caller: Caller, key: IdempotencyKey | None, prefs: ExecutionPreferences
                      ) -> Execution | None:
        """The execution a request with ``key`` led to, if the key was sent before (and its job is kept)."""
        if key is None:
            return None
        rt = self.rt
        use = await asyncio.to_thread(rt.store.idempotency.find, caller.namespace, caller.subject or "", key.key)
        if use is None:
            return None
        if use.fingerprint != key.fingerprint:
            raise IdempotencyKeyReused(f"the Idempotency-Key '{key.key}' was sent with another request (job "
                                       f"{use.job_id}); a new request needs a new key")
        job = await asyncio.to_thread(rt.store.jobs.get, use.job_id, caller.namespace)
        if job is None:  # its job is gone: the key means nothing any more
            await asyncio.to_thread(rt.store.idempotency.forget, caller.namespace, caller.subject or "", key.key)
            return None
        mode: Mode = "sync" if job.mode == "sync" else "async"
        if mode == "sync" and job.active:  # as the first request did, wait for its end
            limit = rt.settings.server.sync_timeout
            job = await self.engine.wait(job.id, limit if prefs.wait is None else min(prefs.wait, limit)) or job
        done = mode == "sync" and job.status.finished and job.status is not StatusCode.dismissed
        return Execution(job, mode, done=done, replayed=True)

    async def _inline(self, process: Process, request: models.Execute, caller: Caller, base_url: str,
                      key: IdempotencyKey | None) -> Job | None:
        """Run in this process; the record is written after the response (batched), or before it when the
        response links to outputs kept by reference, when the settings say so (``sync_record``) or with an
        idempotency key (then None when a request with the same key was recorded first)."""
        job = new_job(process.description, request, mode="sync", namespace=caller.namespace, engine="inline",
                      base_url=base_url, owner=caller.subject)
        job.started = utcnow()
        outcome = execute_process(self.rt, job, JobContext(job_id=job.id, workdir=self.rt.settings.store.data_dir),
                                  process)
        job.status, job.results, job.error, job.message = (outcome.status, outcome.manifest, outcome.failure,
                                                           outcome.message)
        job.finished = job.updated = utcnow()
        job.duration = (job.finished - job.started).total_seconds()
        if outcome.status is StatusCode.successful:
            job.progress = 100
        if key is not None or job.request.wants_references:
            return job if await self._create(job, caller, key) else None
        if self.rt.settings.server.sync_record == "durable":
            await self.recorder.record(job)
        else:
            self.recorder.add(job)
        return job

    def run_url(self, job: Job) -> str | None:
        return self.engine.run_url(job)

    def document(self, job: Job, base_url: str) -> JSONObject:
        """The results document of a successful job (blocking: values may be read from storage)."""
        return results_document(job.id, job.results or {}, job.request.outputs, base_url,
                                self.rt.storage_for(job.namespace))

    def raw(self, job: Job, entry: OutputEntry) -> tuple[bytes, str]:
        """One stored output of ``job`` as a body of its own media type (blocking)."""
        return raw_body(entry, self.rt.storage_for(job.namespace))

    # -- reading ------------------------------------------------------------------------------------

    async def get(self, caller: Caller, job_id: str) -> Job:
        """The job as the store and, while it is active, its engine know it."""
        job = await asyncio.to_thread(self.rt.store.jobs.get, job_id, caller.namespace)
        if job is None:
            raise NoSuchJob(f"There is no job '{job_id}'. See /jobs.")
        if job.active:
            job = await self.engine.refresh(job)
        return job

    async def find(self, caller: Caller, flt: JobFilter) -> JobPage:
        """A page of the caller's namespace's jobs, newest first."""
        flt = replace(flt, namespace=caller.namespace, limit=min(flt.limit, self.rt.settings.server.job_list_max))
        rows = await asyncio.to_thread(self.rt.store.jobs.find, flt)
        return JobPage(jobs=rows[:flt.limit], more=len(rows) > flt.limit)

    async def wait(self, caller: Caller, job_id: str, timeout: float) -> Job:
        """The job once it has ended, or as it is after ``timeout`` seconds."""
        job = await self.get(caller, job_id)
        if job.status.finished:
            return job
        return await self.engine.wait(job_id, timeout) or job

    async def finished(self, caller: Caller, job_id: str) -> Job:
        """The job if it has ended (successfully or not); dismissed and active jobs have no results."""
        job = await self.get(caller, job_id)
        if job.status is StatusCode.dismissed:
            raise NoSuchJob(f"Job '{job_id}' was dismissed; its results are gone.")
        if job.active:
            raise ResultNotReady(f"Job '{job_id}' is {job.status.value}; its results are not ready yet.")
        return job

    async def successful(self, caller: Caller, job_id: str) -> Job:
        """The job, if it ended successfully (its exception document if it failed)."""
        job = await self.finished(caller, job_id)
        if job.status is StatusCode.failed:
            raise job_failure(job)
        return job

    async def output(self, caller: Caller, job_id: str, output_id: str) -> tuple[bytes, str]:
        """One output of a successful job as a body of its own media type."""
        job = await self.successful(caller, job_id)
        entry: OutputEntry | None = (job.results or {}).get(output_id)
        if entry is None:
            raise NoSuchOutput(f"Job '{job_id}' has no output '{output_id}'")
        return await asyncio.to_thread(raw_body, entry, self.rt.storage_for(job.namespace))

    async def files(self, caller: Caller, job_id: str) -> tuple[Job, list[JobFile]]:
        job = await self.successful(caller, job_id)
        storage = self.rt.storage_for(caller.namespace)

        def listing() -> list[JobFile]:
            return [JobFile(name=key.split("/", 1)[1], key=key, url=_public(storage.url(key)))
                    for key in storage.list_job(job.id)]

        return job, await asyncio.to_thread(listing)

    async def file(self, caller: Caller, job_id: str, name: str) -> tuple[str, Path | None]:
        """The storage key of one file of a successful job, and its local path when it has one."""
        job = await self.successful(caller, job_id)
        storage = self.rt.storage_for(caller.namespace)
        try:
            key = make_key(job.id, name)
        except ValueError:
            raise NotFound(f"Job '{job_id}' has no file '{name}'") from None
        if not await asyncio.to_thread(storage.exists, key):
            raise NotFound(f"Job '{job_id}' has no file '{name}'")
        return key, storage.local_path(key)

    async def size(self, caller: Caller, key: str) -> int:
        """The size of a file that :meth:`file` found."""
        return await asyncio.to_thread(self.rt.storage_for(caller.namespace).size, key)

    def stream(self, caller: Caller, key: str) -> Iterator[bytes]:
        return self.rt.storage_for(caller.namespace).iter_bytes(key)

    async def log(self, caller: Caller, job_id: str) -> bytes:
        job = await self.get(caller, job_id)
        if job.active and not job.log:
            raise ResultNotReady(f"Job '{job_id}' is {job.status.value}; its log is shown once its first step "
                                 "ends.")
        if not job.log or job.status is StatusCode.dismissed:
            raise NotFound(f"Job '{job_id}' has no log (application packages keep one).")
        return await asyncio.to_thread(self.rt.storage_for(caller.namespace).read, job.log)

    # -- dismiss ------------------------------------------------------------------------------------

    async def dismiss(self, caller: Caller, job_id: str) -> Job:
        """Stop the job's work and remove its results; the job as it is afterwards."""
        caller.require(Role.executor, "dismissing a job")
        rt = self.rt
        if not caller.may(Role.deployer) and caller.subject is not None:
            job = await self.get(caller, job_id)
            if job.owner != caller.subject:
                raise Forbidden(f"job '{job_id}' was submitted by another caller: an executor dismisses its own "
                                "jobs")
        before = await asyncio.to_thread(rt.store.jobs.dismiss, job_id, caller.namespace)
        if before is None:
            raise NoSuchJob(f"There is no job '{job_id}'. See /jobs.")
        if before.active:
            try:
                await self.engine.dismiss(before)
            except ServiceUnavailable as exc:  # the work is stopped anyway: workers act on the store's status
                log.warning("job %s dismissed, but its engine could not be told: %s", job_id, exc)
            try:
                process = await asyncio.to_thread(rt.catalog.get, before.process_id, before.namespace)
                await asyncio.to_thread(process.dismissed, job_id)
            except (NoSuchProcess, ServiceUnavailable) as exc:  # the job is dismissed; its work may run on
                log.warning("job %s dismissed, but its process could not stop its work: %s", job_id, exc)
        try:
            await asyncio.to_thread(rt.storage_for(caller.namespace).delete_job, job_id)
        except ServiceUnavailable as exc:  # the job is dismissed; its worker deletes the files again when it stops
            log.warning("job %s dismissed, but its files could not be deleted yet: %s", job_id, exc)
        return await asyncio.to_thread(rt.store.jobs.get, job_id, caller.namespace) or before
