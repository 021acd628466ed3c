"""/processes, /processes/{id} and /processes/{id}/execution."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.routing import Route

from ogcflow import models
from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import JSONResp, respond
from ogcflow.api.prefer import Preferences, parse_prefer
from ogcflow.api.results import failure, results_response
from ogcflow.errors import InvalidInput, InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from ogcflow.jobs.service import execute_process, new_job, status_info
from ogcflow.jobs.store import utcnow
from ogcflow.models import JobControlOption, StatusCode
from ogcflow.processes.base import JobContext, Process
from ogcflow.processes.inputs import check_request, has_references

router = APIRouter(tags=["Processes"])


def process_links(base: str, process_id: str) -> list[models.Link]:
    url = f"{base}/processes/{process_id}"
    return [
        models.Link(href=url, rel="self", type="application/json", title="process description"),
        models.Link(href=url + "?f=html", rel="alternate", type="text/html", title="process description as HTML"),
        models.Link(href=url + "/execution", rel="http://www.opengis.net/def/rel/ogc/1.0/execute",
                    type="application/json", title="execute this process"),
    ]


def describe(process: Process, base: str, mutable: bool) -> models.Process:
    return process.description.model_copy(update={"links": process_links(base, process.id),
                                                  "mutable": mutable})


@router.get("/processes", summary="The processes offered", operation_id="getProcesses",
            response_model=models.ProcessList)
def list_processes(
    request: Request, ctx: Annotated[Ctx, Depends(get_ctx)],
    limit: Annotated[int, Query(ge=1, description="Most processes in one page")] = 100,
    offset: Annotated[int, Query(ge=0, description="Processes to skip")] = 0,
) -> Response:
    limit = min(limit, ctx.rt.settings.job_list_max)
    catalog = ctx.rt.registry
    everything = catalog.all(ctx.namespace)
    page = everything[offset: offset + limit]
    b = ctx.base_url
    summaries = [describe(p, b, not catalog.is_builtin(p.id)).summary() for p in page]
    links = [
        models.Link(href=f"{b}/processes?limit={limit}&offset={offset}", rel="self", type="application/json",
                    title="this list"),
        models.Link(href=f"{b}/processes?limit={limit}&offset={offset}&f=html", rel="alternate",
                    type="text/html", title="this list as HTML"),
    ]
    if offset + limit < len(everything):
        links.append(models.Link(href=f"{b}/processes?limit={limit}&offset={offset + limit}", rel="next",
                                 type="application/json", title="next page"))
    if offset > 0:
        links.append(models.Link(href=f"{b}/processes?limit={limit}&offset={max(0, offset - limit)}",
                                 rel="prev", type="application/json", title="previous page"))
    body = models.ProcessList(processes=summaries, links=links).dump()
    return respond(request, body, "processes.html", base=b, title="Processes")


@router.get("/processes/{processId}", summary="Describe a process", operation_id="getProcessDescription",
            response_model=models.Process)
def describe_process(request: Request, processId: Annotated[str, Path()],
                     ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    process = ctx.rt.registry.get(processId, ctx.namespace)
    body = describe(process, ctx.base_url, not ctx.rt.registry.is_builtin(processId)).dump()
    return respond(request, body, "process.html", base=ctx.base_url, title=process.description.title or
                   process.id)


async def read_json_body(request: Request, max_bytes: int) -> Any:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"the request body must be application/json, not {ctype}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {max_bytes}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than the limit of {max_bytes} bytes")
    if not body:
        raise InvalidInput("the request body is empty; send an execute request (JSON)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


def parse_execute(data: Any) -> models.Execute:
    if not isinstance(data, dict):
        raise InvalidInput("an execute request is a JSON object with 'inputs' (and optional 'outputs', "
                           "'response', 'subscriber')")
    try:
        return models.Execute.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"execute request: {where}: {err['msg']}") from None


def choose_mode(process: Process, prefs: Preferences) -> tuple[str, list[str]]:
    """``sync`` or ``async`` and the preferences applied (OGC 18-062r2, 7.11.2.3)."""
    options = process.description.jobControlOptions
    can_sync = JobControlOption.sync_execute in options
    can_async = JobControlOption.async_execute in options
    if can_async and (prefs.respond_async or not can_sync):
        applied = ["respond-async"] if prefs.respond_async else []
        if prefs.return_ == "representation":
            applied.append("return=representation")
        return "async", applied
    if not can_sync:
        raise InvalidParameter(f"process '{process.id}' cannot be executed")
    return "sync", ([f"wait={prefs.wait:g}"] if prefs.wait is not None else [])


async def execute(request: Request) -> Response:
    """POST /processes/{processId}/execution. A plain Starlette endpoint: it is the hot path, so it skips
    FastAPI's dependency solving; /api documents it (api/openapi.py)."""
    ctx = await get_ctx(request)
    process = ctx.rt.registry.get(request.path_params["processId"], ctx.namespace)
    req = parse_execute(await read_json_body(request, ctx.rt.settings.max_body_bytes))
    check_request(process.description, req)
    prefs = parse_prefer(request.headers.getlist("prefer"))
    mode, applied = choose_mode(process, prefs)
    rt = ctx.rt
    headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
    engine_name = ctx.engine.name
    if (mode == "sync" and process.inline and ctx.engine.inline_sync and req.subscriber is None
            and not has_references(req.inputs)):
        job = new_job(process.description, req, mode="sync", namespace=ctx.namespace, engine="inline",
                      base_url=ctx.base_url)
        job.started = utcnow()
        status, manifest, error, message = execute_process(rt, job, JobContext(job_id=job.id,
                                                                               workdir=rt.settings.data_dir))
        job.status, job.results, job.error, job.message = status.value, manifest, error, message
        job.finished = job.updated = utcnow()
        job.duration = (job.finished - job.started).total_seconds()
        job.progress = 100 if status is StatusCode.successful else job.progress
        resp = results_response(job, ctx.base_url, rt.storage) if status is StatusCode.successful else None
        if "reference" in job.request["outputs"].values():
            await asyncio.to_thread(rt.store.create, job)  # the response links to the job's outputs
        else:
            request.app.state.recorder.add(job)
        if resp is None:
            err = failure(job)
            resp = JSONResp(err.document(), status_code=err.status)
        resp.headers.update(headers)
        return resp
    job = new_job(process.description, req, mode=mode, namespace=ctx.namespace, engine=engine_name,
                  base_url=ctx.base_url)
    await asyncio.to_thread(rt.store.create, job)
    try:
        await ctx.engine.submit(job)
    except Exception:
        await asyncio.to_thread(rt.store.delete, job.id)  # not accepted after all: keep no trace
        raise
    location = f"{ctx.base_url}/jobs/{job.id}"
    if mode == "sync":
        timeout = rt.settings.sync_timeout if prefs.wait is None else min(prefs.wait, rt.settings.sync_timeout)
        done = await ctx.engine.wait(job.id, timeout)
        if done is not None and done.status_code.finished and done.status != StatusCode.dismissed.value:
            resp = results_response(done, ctx.base_url, rt.storage)
            resp.headers.update(headers)
            monitor = f'<{location}>; rel="monitor"'
            resp.headers["Link"] = f"{resp.headers['Link']}, {monitor}" if "Link" in resp.headers else monitor
            return resp
        job = done or job
    headers["Location"] = location
    return JSONResp(status_info(job, ctx.base_url, ctx.engine.run_url(job)).dump(), status_code=201,
                    headers=headers)


router.routes.append(Route("/processes/{processId}/execution", execute, methods=["POST"]))
