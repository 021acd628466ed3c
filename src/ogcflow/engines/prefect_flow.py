"""The Prefect flow that runs one OGC job: ``ogcflow-job(job_id)``.

Imported only by workers of the Prefect engine. The flow is async (Prefect's sync flows wait about a second
on a heartbeat thread) and runs the job with the same ``run_job`` as every engine, in a thread.
"""

from __future__ import annotations

import asyncio
import logging

from prefect import flow

from ogcflow.engines.prefect_api import FLOW_NAME
from ogcflow.errors import ProcessError
from ogcflow.jobs.service import Runtime, run_job
from ogcflow.models import StatusCode

#: The worker's runtime, inherited by the forked job process.
RUNTIME: Runtime | None = None

log = logging.getLogger("ogcflow.jobs")


class JobFailed(ProcessError):
    """The job failed: the message is the job's."""


@flow(name=FLOW_NAME, persist_result=False, validate_parameters=False, log_prints=False)
async def ogcflow_job(job_id: str) -> str:
    rt = RUNTIME
    if rt is None:
        from ogcflow.settings import get_settings

        rt = Runtime.from_settings(get_settings())
    job = await asyncio.to_thread(rt.store.get, job_id)
    if job is None:
        raise JobFailed(f"job {job_id} is not in the store")
    log.info("job %s: process %s", job.id, job.process_id)
    status = await asyncio.to_thread(run_job, rt, job)
    if status is not StatusCode.successful:
        ended = await asyncio.to_thread(rt.store.get, job_id)
        raise JobFailed((ended.message if ended else None) or "the job failed")
    log.info("job %s: successful", job.id)
    return status.value
