"""/jobs, /jobs/{id}, DELETE /jobs/{id}, /jobs/{id}/results."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from ogcflow import models
from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import respond, wants_html
from ogcflow.api.results import failure, results_response
from ogcflow.errors import (
    InvalidParameter,
    NoSuchJob,
    NoSuchOutput,
    NotFound,
    ResultNotReady,
    ServiceUnavailable,
)
from ogcflow.jobs.results import raw_body, results_document
from ogcflow.jobs.service import status_info
from ogcflow.jobs.store import Job, JobFilter
from ogcflow.models import StatusCode
from ogcflow.storage import make_key

router = APIRouter(tags=["Jobs"])
log = logging.getLogger("ogcflow.api")

_STATUSES = {s.value for s in StatusCode}


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _instant(text: str, name: str) -> datetime | None:
    if text in ("..", ""):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"datetime: {text!r} is not an RFC 3339 date-time") from None
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


def parse_datetime(value: str) -> tuple[datetime | None, datetime | None]:
    """An instant, or an interval ``start/end`` whose ends may be open (``..`` or empty)."""
    if "/" in value:
        start_s, _, end_s = value.partition("/")
        start, end = _instant(start_s, "start"), _instant(end_s, "end")
        if start and end and start > end:
            raise InvalidParameter("datetime: the interval's start is after its end")
        return start, end
    instant = _instant(value, "instant")
    if instant is None:
        raise InvalidParameter("datetime: '..' alone is not an instant")
    return instant, instant


async def get_job(ctx: Ctx, job_id: str) -> Job:
    """The job as the store and, while it is active, its engine know it."""
    job = await asyncio.to_thread(ctx.rt.store.get, job_id, ctx.namespace)
    if job is None:
        raise NoSuchJob(f"There is no job '{job_id}'. See /jobs.")
    if job.status in (StatusCode.accepted.value, StatusCode.running.value):
        job = await ctx.engine.refresh(job)
    return job


@router.get("/jobs", summary="The jobs", operation_id="getJobs", response_model=models.JobList)
def list_jobs(
    request: Request, ctx: Annotated[Ctx, Depends(get_ctx)],
    type: Annotated[list[str] | None, Query(description="Only 'process' is known")] = None,
    processID: Annotated[list[str] | None, Query(description="Process ids (comma-separated or repeated)")] = None,
    status: Annotated[list[str] | None, Query(description="Job statuses (comma-separated or repeated)")] = None,
    datetime: Annotated[str | None, Query(description="Created at, or within an interval (RFC 3339)")] = None,
    minDuration: Annotated[int | None, Query(ge=0, description="Seconds running, at least")] = None,
    maxDuration: Annotated[int | None, Query(ge=0, description="Seconds running, at most")] = None,
    limit: Annotated[int, Query(ge=1, description="Most jobs in one page")] = 10,
    offset: Annotated[int, Query(ge=0, description="Jobs to skip")] = 0,
) -> Response:
    types = _split(type)
    bad = [t for t in types if t != "process"]
    if bad:
        raise InvalidParameter(f"type={bad[0]!r} is not known; the only job type is 'process'")
    statuses = _split(status)
    unknown = [s for s in statuses if s not in _STATUSES]
    if unknown:
        raise InvalidParameter(f"status={unknown[0]!r} is not a job status ({', '.join(sorted(_STATUSES))})")
    if minDuration is not None and maxDuration is not None and minDuration > maxDuration:
        raise InvalidParameter("minDuration is larger than maxDuration")
    start, end = parse_datetime(datetime) if datetime else (None, None)
    limit = min(limit, ctx.rt.settings.job_list_max)
    flt = JobFilter(namespace=ctx.namespace, process_ids=_split(processID), statuses=statuses,
                    datetime_start=start, datetime_end=end, min_duration=minDuration,
                    max_duration=maxDuration, limit=limit, offset=offset)
    rows = ctx.rt.store.list(flt)
    more = len(rows) > limit
    rows = rows[:limit]
    b = ctx.base_url
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "f")]

    def page(off: int, fmt: str | None = None) -> str:
        q = params + [("offset", str(off))] + ([("f", fmt)] if fmt else [])
        return f"{b}/jobs?{urlencode(q)}"

    links = [models.Link(href=page(offset), rel="self", type="application/json", title="this list"),
             models.Link(href=page(offset, "html"), rel="alternate", type="text/html", title="as HTML")]
    if more:
        links.append(models.Link(href=page(offset + limit), rel="next", type="application/json",
                                 title="next page"))
    if offset > 0:
        links.append(models.Link(href=page(max(0, offset - limit)), rel="prev", type="application/json",
                                 title="previous page"))
    run_url = ctx.engine.run_url
    body = models.JobList(jobs=[status_info(j, b, run_url(j)) for j in rows], links=links).dump()
    return respond(request, body, "jobs.html", base=b, title="Jobs")


@router.get("/jobs/{jobId}", summary="The status of a job", operation_id="getStatus",
            response_model=models.StatusInfo)
async def get_status(request: Request, jobId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await get_job(ctx, jobId)
    files = None
    if wants_html(request) and job.status == StatusCode.successful.value:
        files = await asyncio.to_thread(_files, ctx, job)
    return respond(request, status_info(job, ctx.base_url, ctx.engine.run_url(job)).dump(), "job.html",
                   base=ctx.base_url, title=f"Job {job.id}", job=job, files=files)


def _files(ctx: Ctx, job: Job) -> list[dict[str, object]]:
    base = f"{ctx.base_url}/jobs/{job.id}/files/"
    storage = ctx.rt.storage
    return [{"name": key.split("/", 1)[1], "href": base + key.split("/", 1)[1], "url": storage.url(key)}
            for key in storage.list_job(job.id)]


@router.get("/jobs/{jobId}/files", summary="The files a job wrote to results storage",
            operation_id="getJobFiles")
async def list_files(request: Request, jobId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    """Every file of a successful job (STAC catalogs, their assets, outputs by reference, the log), each with
    a link to download it through the API and its URL in the results storage (``s3://`` or ``file://``)."""
    job = await _successful(ctx, jobId)
    files = await asyncio.to_thread(_files, ctx, job)
    return respond(request, {"files": files}, "files.html", base=ctx.base_url, title=f"Files of {job.id}",
                   job=job)


@router.get("/jobs/{jobId}/files/{name:path}", summary="One file a job wrote to results storage",
            operation_id="getJobFile")
async def get_file(jobId: Annotated[str, Path()], name: Annotated[str, Path()],
                   ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await _successful(ctx, jobId)
    storage = ctx.rt.storage
    try:
        key = make_key(job.id, name)
    except ValueError:
        raise NotFound(f"Job '{jobId}' has no file '{name}'") from None
    if not await asyncio.to_thread(storage.exists, key):
        raise NotFound(f"Job '{jobId}' has no file '{name}'")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".json"):
        media = "application/json"
    path = storage.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=media)
    return StreamingResponse(iterate_in_threadpool(storage.iter_bytes(key)), media_type=media)


@router.delete("/jobs/{jobId}", summary="Dismiss a job", operation_id="dismiss",
               response_model=models.StatusInfo)
async def dismiss(request: Request, jobId: Annotated[str, Path()],
                  ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    before = await asyncio.to_thread(ctx.rt.store.dismiss, jobId, ctx.namespace)
    if before is None:
        raise NoSuchJob(f"There is no job '{jobId}'. See /jobs.")
    if before.status in (StatusCode.accepted.value, StatusCode.running.value):
        try:
            await ctx.engine.dismiss(before)
        except ServiceUnavailable as exc:  # the work is stopped anyway: workers act on the store's status
            log.warning("job %s dismissed, but its engine could not be told: %s", jobId, exc)
    try:
        await asyncio.to_thread(ctx.rt.storage.delete_job, jobId)
    except ServiceUnavailable as exc:  # the job is dismissed; its worker deletes the files again when it stops
        log.warning("job %s dismissed, but its files could not be deleted yet: %s", jobId, exc)
    job = await asyncio.to_thread(ctx.rt.store.get, jobId, ctx.namespace) or before
    return respond(request, status_info(job, ctx.base_url, ctx.engine.run_url(job)).dump(), "job.html",
                   base=ctx.base_url, title=f"Job {job.id}", job=job)


async def _finished(ctx: Ctx, job_id: str) -> Job:
    job = await get_job(ctx, job_id)
    if job.status == StatusCode.dismissed.value:
        raise NoSuchJob(f"Job '{job_id}' was dismissed; its results are gone.")
    if job.status in (StatusCode.accepted.value, StatusCode.running.value):
        raise ResultNotReady(f"Job '{job_id}' is {job.status}; its results are not ready yet.")
    return job


async def _successful(ctx: Ctx, job_id: str) -> Job:
    """The job, if it ended successfully (its exception document if it failed)."""
    job = await _finished(ctx, job_id)
    if job.status == StatusCode.failed.value:
        raise failure(job)
    return job


@router.get("/jobs/{jobId}/results", summary="The results of a job", operation_id="getResult")
async def get_results(request: Request, jobId: Annotated[str, Path()],
                      ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await _finished(ctx, jobId)
    if wants_html(request):
        if job.status == StatusCode.failed.value:
            raise failure(job)
        doc = results_document(job.id, job.results or {}, job.request.get("outputs", {}), ctx.base_url,
                               ctx.rt.storage)
        return respond(request, doc, "results.html", base=ctx.base_url, title=f"Results of {job.id}", job=job)
    return results_response(job, ctx.base_url, ctx.rt.storage)


@router.get("/jobs/{jobId}/results/{outputId}", summary="One output of a job, as its own media type",
            operation_id="getResultOutput")
async def get_output(jobId: Annotated[str, Path()], outputId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await _successful(ctx, jobId)
    entry = (job.results or {}).get(outputId)
    if entry is None:
        raise NoSuchOutput(f"Job '{jobId}' has no output '{outputId}'")
    body, media = raw_body(entry, ctx.rt.storage)
    return Response(body, media_type=media)


@router.get("/jobs/{jobId}/logs", summary="The log of a job (the CWL run's, for packages)",
            operation_id="getLogs", responses={200: {"content": {"text/plain": {}}}})
async def get_logs(jobId: Annotated[str, Path()], ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await get_job(ctx, jobId)
    if job.status in (StatusCode.accepted.value, StatusCode.running.value):
        raise ResultNotReady(f"Job '{jobId}' is {job.status}; its log is kept when it ends.")
    if not job.log or job.status == StatusCode.dismissed.value:
        raise NotFound(f"Job '{jobId}' has no log (application packages keep one).")
    data = await asyncio.to_thread(ctx.rt.storage.read, job.log)
    return Response(data, media_type="text/plain; charset=utf-8")
