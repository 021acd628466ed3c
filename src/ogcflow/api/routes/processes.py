"""/processes, /processes/{id} and /processes/{id}/execution."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.routing import Route

from ogcflow import models
from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import JSONResp, respond
from ogcflow.api.prefer import parse_prefer
from ogcflow.api.results import results_response
from ogcflow.domain import IdempotencyKey
from ogcflow.errors import InvalidInput, InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from ogcflow.jobs.status import status_info
from ogcflow.models import ResponseMode
from ogcflow.processes.base import Process
from ogcflow.processes.examples import example_request
from ogcflow.services.jobs import job_failure

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
    limit: Annotated[int, Query(ge=1, le=10 ** 15, description="Most processes in one page")] = 100,
    offset: Annotated[int, Query(ge=0, le=10 ** 15, description="Processes to skip")] = 0,
) -> Response:
    limit = min(limit, ctx.settings.server.job_list_max)
    found = ctx.processes.page(ctx.caller, limit, offset)
    b = ctx.base_url
    summaries = [describe(o.process, b, o.mutable).summary() for o in found.processes]
    links = [
        models.Link(href=f"{b}/processes?limit={limit}&offset={offset}", rel="self", type="application/json",
                    title="this list"),
        models.Link(href=f"{b}/processes?limit={limit}&offset={offset}&f=html", rel="alternate",
                    type="text/html", title="this list as HTML"),
    ]
    if found.more:
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
    offered = ctx.processes.get(ctx.caller, processId)
    process = offered.process
    body = describe(process, ctx.base_url, offered.mutable).dump()
    return respond(request, body, "process.html", base=ctx.base_url, title=process.description.title or
                   process.id, example=example_request(process.description), auth_required=ctx.auth_required)


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
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    # a body cannot nest deeper than it has opening brackets (counted in C): most are never walked
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and too_deep(data, MAX_DEPTH):
        raise InvalidInput(f"the request body is nested more than {MAX_DEPTH} levels deep")
    return data


#: how deeply a request body may nest (deeper is a 400: schema checks and processes recurse)
MAX_DEPTH = 64


def too_deep(data: Any, limit: int) -> bool:
    """Whether ``data`` nests more than ``limit`` levels of arrays and objects (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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


#: an Idempotency-Key (draft-ietf-httpapi-idempotency-key-header: a Structured Fields string; a bare token is
#: taken too): 1 to 255 visible ASCII characters
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')


def idempotency_key(request: Request, process_id: str, data: Any) -> IdempotencyKey | None:
    """The request's ``Idempotency-Key`` with the fingerprint of what it is sent with (the process and the
    body, its keys sorted); None without one."""
    values = request.headers.getlist("idempotency-key")
    if not values:
        return None
    match = _KEY.match(values[0].strip()) if len(values) == 1 else None
    if match is None:
        raise InvalidParameter("Idempotency-Key: one string of 1 to 255 visible ASCII characters, e.g. "
                               '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    fingerprint = hashlib.sha256(process_id.encode() + b"\n" + body).hexdigest()
    return IdempotencyKey(key=match.group(1), fingerprint=fingerprint)


async def execute(request: Request) -> Response:
    """POST /processes/{processId}/execution. A plain Starlette endpoint: it is the hot path, so it skips
    FastAPI's dependency solving (it calls the same :func:`get_ctx`); /api documents it (api/openapi.py)."""
    ctx = await get_ctx(request)
    process = ctx.processes.get(ctx.caller, request.path_params["processId"]).process  # 404 before the body
    data = await read_json_body(request, ctx.settings.server.max_body_bytes)
    req = parse_execute(data)
    key = idempotency_key(request, process.id, data)
    prefs = parse_prefer(request.headers.getlist("prefer")).for_execution()
    run = await ctx.jobs.execute(ctx.caller, process, req, prefs, ctx.base_url, key)
    headers = {"Preference-Applied": ", ".join(run.applied)} if run.applied else {}
    job = run.job
    if run.done:
        if job.error is not None:
            err = job_failure(job)
            resp: Response = JSONResp(err.document(), status_code=err.status)
        else:
            resp = results_response(job, ctx.base_url, ctx.jobs, ResponseMode.raw)
            if job.engine != "inline":
                monitor = f'<{run.location}>; rel="monitor"'
                resp.headers["Link"] = f"{resp.headers['Link']}, {monitor}" if "Link" in resp.headers else monitor
        resp.headers.update(headers)
        return resp
    headers["Location"] = run.location
    return JSONResp(status_info(job, ctx.base_url, ctx.jobs.run_url(job)).dump(), status_code=201, headers=headers)


router.routes.append(Route("/processes/{processId}/execution", execute, methods=["POST"]))
