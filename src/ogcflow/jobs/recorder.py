"""Job records of inline synchronous jobs, written in batches: one transaction for all the jobs that ended
within a few milliseconds instead of a write (and a thread hop) per request.

``add`` records after the response (the batch is written within ``interval``; a crash in that window loses
the record, never a response already sent); ``record`` waits until the job's batch is committed, so the
record is durable before the response (group commit: no wait for the interval, the jobs that ended while one
batch was being written make the next one)."""

from __future__ import annotations

import asyncio
import logging

from ogcflow.domain import Job
from ogcflow.errors import ServiceUnavailable
from ogcflow.store import JobStore

log = logging.getLogger("ogcflow.jobs")


class JobRecorder:
    """Collects finished jobs and inserts them in batches from a background task."""

    def __init__(self, store: JobStore, interval: float = 0.02) -> None:
        self.store = store
        self.interval = interval
        self.pending: list[tuple[Job, asyncio.Future[None] | None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, job: Job) -> None:
        """Record ``job`` soon (after the response)."""
        self._queue(job, None)

    async def record(self, job: Job) -> None:
        """Record ``job`` now, with whatever else ends meanwhile; a 503 if the store cannot take it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(job, done)
        await done

    def _queue(self, job: Job, done: asyncio.Future[None] | None) -> None:
        self.pending.append((job, done))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if all(done is None for _, done in self.pending):  # nobody waits: let a batch gather
                await asyncio.sleep(self.interval)
            await self.flush()
            if not self.pending:
                return

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.store.create_many, [job for job, _ in batch])
        except Exception:
            log.exception("could not record %d synchronous job(s)", len(batch))
            failure: BaseException | None = ServiceUnavailable("the job ran, but its record could not be stored")
        else:
            failure = None
        for _, done in batch:
            if done is not None and not done.done():
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)
