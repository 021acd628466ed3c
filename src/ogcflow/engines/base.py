"""The engine interface the job service uses, and the behaviour engines share (the store is the truth;
waiting polls it). Engines are built by :func:`ogcflow.wiring.make_engine`."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ogcflow.domain import Job
from ogcflow.runtime import Runtime


class Engine(Protocol):
    """Where jobs run, as the API sees it."""

    name: str
    #: whether cheap synchronous executions may run inside the API process
    inline_sync: bool

    async def submit(self, job: Job) -> None:
        """Hand over a job already stored as accepted (raise ServiceUnavailable if the engine is down)."""
        ...

    async def dismiss(self, job: Job) -> None:
        """Stop the work of a job the store has just marked dismissed."""
        ...

    async def refresh(self, job: Job) -> Job:
        """The job with what the engine knows of it that the store may not yet (an active job)."""
        ...

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once it has ended, or as it is when ``timeout`` seconds have passed."""
        ...

    def run_url(self, job: Job) -> str | None:
        """Where the engine shows the job's run, if anywhere."""
        ...

    async def check(self) -> None:
        """Raise if the engine cannot be reached (readiness probes)."""
        ...


class StoreEngine:
    """What engines share: nothing to do by default, and waiting polls the store."""

    name = "base"
    inline_sync = True

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def submit(self, job: Job) -> None:
        return None

    async def dismiss(self, job: Job) -> None:
        return None

    async def refresh(self, job: Job) -> Job:
        return job

    def run_url(self, job: Job) -> str | None:
        return None

    async def check(self) -> None:
        """The store is the queue: reachable when the store is."""
        return None

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """Poll the store until the job ends or ``timeout`` passes; the job as last seen."""
        started = time.monotonic()
        deadline = started + timeout
        delay = 0.005
        while True:
            job = await asyncio.to_thread(self.rt.store.jobs.for_engine, job_id)
            if job is None or job.status.finished or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            # every 20 ms for the first seconds (short jobs answer fast), then every 100 ms
            delay = min(delay * 1.5, 0.02 if time.monotonic() - started < 5 else 0.1)
