"""The local engine, API side: the store is the queue; worker daemons (engines/worker.py) claim its jobs and
run each in a forked process of its own."""

from __future__ import annotations

from ogcflow.domain import Job
from ogcflow.engines.base import StoreEngine
from ogcflow.engines.worker import wake_workers


class LocalEngine(StoreEngine):
    name = "local"

    async def submit(self, job: Job) -> None:
        wake_workers(self.rt.settings.store.data_dir)

    # dismiss: nothing to do here, the worker running the job sees the status and kills its process group
