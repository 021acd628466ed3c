"""/jobs, /jobs/{id}, DELETE /jobs/{id}, /jobs/{id}/results."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from ogcflow import models
from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.methods import is_head
from ogcflow.api.negotiation import conditional, respond, wants_html
from ogcflow.api.results import results_response
from ogcflow.domain import Job, JobFilter
from ogcflow.errors import InvalidParameter
from ogcflow.jobs.results import file_href
from ogcflow.jobs.status import status_info
from ogcflow.models import ResponseMode, StatusCode
from ogcflow.services.jobs import JobFile, job_failure

router = APIRouter(tags=["Jobs"])
log = logging.getLogger("ogcflow.api")

_STATUSES = {s.value for s in StatusCode}
#: bounds of the numeric query parameters (larger values are a 400, not an overflow in the store)
MAX_SECONDS = 10 ** 12
MAX_COUNT = 10 ** 15


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


@router.get("/jobs", summary="The jobs", operation_id="getJobs", response_model=models.JobList)
async def list_jobs(
    request: Request, ctx: Annotated[Ctx, Depends(get_ctx)],
    type: Annotated[list[str] | None, Query(description="Only 'process' is known")] = None,
    processID: Annotated[list[str] | None, Query(description="Process ids (comma-separated or repeated)")] = None,
    status: Annotated[list[str] | None, Query(description="Job statuses (comma-separated or repeated)")] = None,
    datetime: Annotated[str | None, Query(description="Created at, or within an interval (RFC 3339)")] = None,
    minDuration: Annotated[int | None, Query(ge=0, le=MAX_SECONDS, description="Seconds running, at least")] = None,
    maxDuration: Annotated[int | None, Query(ge=0, le=MAX_SECONDS, description="Seconds running, at most")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_COUNT, description="Most jobs in one page")] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_COUNT, description="Jobs to skip")] = 0,
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
    limit = min(limit, ctx.settings.server.job_list_max)
    flt = JobFilter(namespace=ctx.caller.namespace, process_ids=_split(processID),
                    statuses=[StatusCode(s) for s in statuses], datetime_start=start, datetime_end=end,
                    min_duration=minDuration, max_duration=maxDuration, limit=limit, offset=offset)
    found = await ctx.jobs.find(ctx.caller, flt)
    more, rows = found.more, found.jobs
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
    run_url = ctx.jobs.run_url
    body = models.JobList(jobs=[status_info(j, b, run_url(j)) for j in rows], links=links).dump()
    return respond(request, body, "jobs.html", base=b, title="Jobs")


def _file_rows(ctx: Ctx, job: Job, files: list[JobFile]) -> list[dict[str, str]]:
    return [{"name": f.name, "href": file_href(ctx.base_url, job.id, f.name), **({"url": f.url} if f.url else {})}
            for f in files]


def area_of_interest(inputs: dict[str, Any]) -> list[float] | None:
    """The job's area of interest for its map: the first bounding box among its inputs (an OGC bbox object, or
    a "minx,miny,maxx,maxy" string of an input named like one); None when it has none."""
    for key, value in inputs.items():
        box: Any = None
        if isinstance(value, dict) and isinstance(value.get("bbox"), list):
            box = value["bbox"]
        elif isinstance(value, str) and any(w in key.lower() for w in ("aoi", "bbox", "extent")):
            box = value.split(",")
        if isinstance(box, list) and len(box) in (4, 6):
            try:
                nums = [float(x) for x in box]
            except (TypeError, ValueError):
                continue
            return nums if len(nums) == 4 else [nums[0], nums[1], nums[3], nums[4]]
    return None


def _status(request: Request, ctx: Ctx, job: Job, files: list[dict[str, str]] | None = None,
            etag: bool = False) -> Response:
    inputs = job.request.inputs
    return respond(request, status_info(job, ctx.base_url, ctx.jobs.run_url(job)).dump(), "job.html",
                   base=ctx.base_url, title=f"Job {job.id}", job=job, files=files, etag=etag, inputs=inputs,
                   aoi=area_of_interest(inputs))


@router.get("/jobs/{jobId}", summary="The status of a job", operation_id="getStatus",
            response_model=models.StatusInfo)
async def get_status(request: Request, jobId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await ctx.jobs.get(ctx.caller, jobId)
    files = None
    if job.status is StatusCode.successful and wants_html(request):
        _job, found = await ctx.jobs.files(ctx.caller, jobId)
        files = _file_rows(ctx, job, found)
    return _status(request, ctx, job, files, etag=True)


@router.get("/jobs/{jobId}/files", summary="The files a job wrote to results storage",
            operation_id="getJobFiles")
async def list_files(request: Request, jobId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    """Every file of a successful job (STAC catalogs, their assets, outputs by reference, the log), each with
    a link to download it through the API and, for S3 storage, its ``s3://`` URL (never a server path)."""
    job, found = await ctx.jobs.files(ctx.caller, jobId)
    return respond(request, {"files": _file_rows(ctx, job, found)}, "files.html", base=ctx.base_url,
                   title=f"Files of {job.id}", job=job)


@router.get("/jobs/{jobId}/files/{name:path}", summary="One file a job wrote to results storage",
            operation_id="getJobFile")
async def get_file(request: Request, jobId: Annotated[str, Path()], name: Annotated[str, Path()],
                   ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    key, path = await ctx.jobs.file(ctx.caller, jobId, name)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".json"):
        media = "application/json"
    if is_head(request.scope):  # the headers of the file, without reading it
        size = await ctx.jobs.size(ctx.caller, key)
        return Response(media_type=media, headers={"content-length": str(size)})
    if path is not None:
        return FileResponse(path, media_type=media)
    return StreamingResponse(iterate_in_threadpool(ctx.jobs.stream(ctx.caller, key)), media_type=media)


@router.delete("/jobs/{jobId}", summary="Dismiss a job", operation_id="dismiss",
               response_model=models.StatusInfo)
async def dismiss(request: Request, jobId: Annotated[str, Path()],
                  ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    return _status(request, ctx, await ctx.jobs.dismiss(ctx.caller, jobId))


@router.get("/jobs/{jobId}/results", summary="The results of a job", operation_id="getResult")
async def get_results(request: Request, jobId: Annotated[str, Path()],
                      ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    job = await ctx.jobs.finished(ctx.caller, jobId)
    if wants_html(request):
        if job.status is StatusCode.failed:
            raise job_failure(job)
        doc = await asyncio.to_thread(ctx.jobs.document, job, ctx.base_url)
        _job, found = await ctx.jobs.files(ctx.caller, jobId)
        return respond(request, doc, "results.html", base=ctx.base_url, title=f"Results of {job.id}", job=job,
                       aoi=area_of_interest(job.request.inputs), files=_file_rows(ctx, job, found))
    return await asyncio.to_thread(results_response, job, ctx.base_url, ctx.jobs, ResponseMode.document)


@router.get("/jobs/{jobId}/results/{outputId}", summary="One output of a job, as its own media type",
            operation_id="getResultOutput")
async def get_output(jobId: Annotated[str, Path()], outputId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    body, media = await ctx.jobs.output(ctx.caller, jobId, outputId)
    return Response(body, media_type=media)


@router.get("/jobs/{jobId}/logs", summary="The log of a job (the CWL run's, for packages)",
            operation_id="getLogs", responses={200: {"content": {"text/plain": {}}}})
async def get_logs(request: Request, jobId: Annotated[str, Path()],
                   ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    data = await ctx.jobs.log(ctx.caller, jobId)
    return conditional(request, data, "text/plain; charset=utf-8")
