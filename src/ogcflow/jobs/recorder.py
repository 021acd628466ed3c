"""Job records written after the response: inline synchronous jobs are batched into one transaction
every few milliseconds instead of a write (and a thread hop) per request."""

from __future__ import annotations

import asyncio
import logging

from ogcflow.domain import Job
from ogcflow.store import JobStore

log = logging.getLogger("ogcflow.jobs")


class JobRecorder:
    """Collects finished jobs and inserts them in batches from a background task."""

    def __init__(self, store: JobStore, interval: float = 0.02) -> None:
        self.store = store
        self.interval = interval
        self.pending: list[Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, job: Job) -> None:
        self.pending.append(job)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.interval)
            await self.flush()
            if not self.pending:
                return

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.store.create_many, batch)
        except Exception:
            log.exception("could not record %d synchronous job(s)", len(batch))
