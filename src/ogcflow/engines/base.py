"""The engine interface seen by the API."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from ogcflow.jobs.service import Runtime
from ogcflow.jobs.store import Job


class Engine(Protocol):
    name: str

    def submit(self, job: Job) -> None:
        """Hand over a job already stored as accepted."""

    def dismiss(self, job: Job) -> None:
        """Stop the work of a job the store has just marked dismissed."""

    def check(self) -> None:
        """Raise ServiceUnavailable when the engine cannot take or report jobs."""


class StoreEngine:
    """Shared behaviour: the store is the truth; waiting polls it."""

    name = "base"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def check(self) -> None:
        return None

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """Poll the store until the job ends or ``timeout`` passes; the job as last seen."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        job = None
        while True:
            job = await asyncio.to_thread(self.rt.store.get, job_id)
            if job is None or job.status_code.finished or time.monotonic() >= deadline:
                return job
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.1)


def get_engine(rt: Runtime) -> StoreEngine:
    if rt.settings.engine == "local":
        from ogcflow.engines.local import LocalEngine

        return LocalEngine(rt)
    raise NotImplementedError(f"engine '{rt.settings.engine}' is not available yet")
