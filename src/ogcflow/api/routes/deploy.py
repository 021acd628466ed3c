"""OGC API - Processes - Part 2: POST /processes, PUT and DELETE /processes/{id}, GET /processes/{id}/package.

Deploying runs code on the platform: only the holder of the admin token may do it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import JSONResp
from ogcflow.errors import ExceptionType, NoSuchProcess, OGCError, PayloadTooLarge, UnsupportedMediaType
from ogcflow.netpolicy import fetch
from ogcflow.packages.cwl import CWLPackage, InvalidPackage, parse_package

router = APIRouter(tags=["Deploy, replace, undeploy"])

CWL_TYPES = ("application/cwl+yaml", "application/cwl", "application/cwl+json")
APPPKG = "application/ogcapppkg+json"
_PACKAGE_BODY = {"required": True, "description": "A CWL document, or an OGC application package whose "
                 "executionUnit is CWL", "content": {t: {"schema": {"type": "object" if "json" in t else "string"}}
                                                   for t in (*CWL_TYPES, APPPKG)}}


def require_deployer(request: Request) -> None:
    """The request carries the admin bearer token (401 without a token, 403 with another)."""
    expected = request.app.state.rt.settings.admin_token
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if not given or scheme.lower() != "bearer" or not token:
        raise OGCError("deploying, replacing and undeploying processes need a bearer token",
                       status=401, type=ExceptionType.UNAUTHORIZED, title="Unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="ogcflow"'})
    if not expected or not hmac.compare_digest(token.strip(), expected):
        raise OGCError("this token may not deploy, replace or undeploy processes", status=403,
                       type=ExceptionType.FORBIDDEN, title="Forbidden")


async def _body(request: Request, limit: int) -> tuple[bytes, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in (*CWL_TYPES, APPPKG):
        raise UnsupportedMediaType(f"a package is sent as {', '.join((*CWL_TYPES, APPPKG))}, not "
                                   f"{media or 'no media type'}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the package is larger than the limit of {limit} bytes")
    return bytes(body), media


def _cwl_from_apppkg(data: bytes, ctx: Ctx) -> tuple[str, str]:
    """The CWL text of an OGC application package (executionUnit by value or by reference)."""
    try:
        pkg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPackage(f"the application package is not valid JSON: {exc}") from None
    unit = pkg.get("executionUnit") if isinstance(pkg, dict) else None
    if isinstance(unit, list) and len(unit) == 1:
        unit = unit[0]
    if not isinstance(unit, dict):
        raise InvalidPackage("the application package needs one 'executionUnit' (by value or by href)")
    if "href" in unit:
        text, _media = fetch(str(unit["href"]), ctx.rt.settings)
        return text.decode("utf-8", errors="replace"), unit.get("type") or "application/cwl+yaml"
    value = unit.get("value", unit.get("unit"))
    if isinstance(value, dict):
        return json.dumps(value), "application/cwl+json"
    if isinstance(value, str):
        return value, unit.get("mediaType") or "application/cwl+yaml"
    raise InvalidPackage("the executionUnit holds no CWL ('value' or 'href')")


async def _package(request: Request, ctx: Ctx, w: str | None) -> tuple[CWLPackage, str]:
    data, media = await _body(request, ctx.rt.settings.max_body_bytes)
    if media == APPPKG:
        text, media = await asyncio.to_thread(_cwl_from_apppkg, data, ctx)
    else:
        text = data.decode("utf-8", errors="replace")
    return await asyncio.to_thread(parse_package, text, w), media


def _summary(ctx: Ctx, pkg: CWLPackage) -> dict[str, Any]:
    from ogcflow.api.routes.processes import process_links

    summary = pkg.description.model_copy(update={"links": process_links(ctx.base_url, pkg.entry),
                                                 "mutable": True}).summary()
    return summary.dump()


@router.post("/processes", summary="Deploy a process", operation_id="deploy", status_code=201,
             dependencies=[Depends(require_deployer)], openapi_extra={"requestBody": _PACKAGE_BODY})
async def deploy(request: Request, ctx: Annotated[Ctx, Depends(get_ctx)],
                 w: Annotated[str | None, Query(description="The workflow of a $graph to deploy")] = None) -> Response:
    pkg, media = await _package(request, ctx, w)
    catalog = ctx.rt.registry
    if not await asyncio.to_thread(catalog.deploy, pkg.description, pkg.text, media, pkg.entry, pkg.inputs_kind,
                                   ctx.namespace):
        raise OGCError(f"a process '{pkg.entry}' exists already; replace it with PUT /processes/{pkg.entry}",
                       status=409, type=ExceptionType.DUPLICATED_PROCESS, title="Duplicated process")
    return JSONResp(_summary(ctx, pkg), status_code=201,
                    headers={"Location": f"{ctx.base_url}/processes/{pkg.entry}"})


def _mutable(ctx: Ctx, process_id: str) -> None:
    if ctx.rt.registry.is_builtin(process_id):
        raise OGCError(f"'{process_id}' is a built-in process: it cannot be replaced or undeployed", status=403,
                       type=ExceptionType.IMMUTABLE_PROCESS, title="Immutable process")


@router.put("/processes/{processId}", summary="Replace a process", operation_id="replace", status_code=204,
            dependencies=[Depends(require_deployer)], openapi_extra={"requestBody": _PACKAGE_BODY})
async def replace(request: Request, processId: Annotated[str, Path()], ctx: Annotated[Ctx, Depends(get_ctx)],
                  w: Annotated[str | None, Query(description="The workflow of a $graph")] = None) -> Response:
    _mutable(ctx, processId)
    pkg, media = await _package(request, ctx, w or processId)
    if pkg.entry != processId:
        raise InvalidPackage(f"the package describes '{pkg.entry}', not '{processId}'")
    if not await asyncio.to_thread(ctx.rt.registry.replace, processId, pkg.description, pkg.text, media,
                                   pkg.entry, pkg.inputs_kind, ctx.namespace):
        raise NoSuchProcess(f"There is no process '{processId}' to replace; deploy it with POST /processes.")
    return Response(status_code=204)


@router.delete("/processes/{processId}", summary="Undeploy a process", operation_id="undeploy", status_code=204,
               dependencies=[Depends(require_deployer)])
async def undeploy(processId: Annotated[str, Path()], ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    _mutable(ctx, processId)
    if not await asyncio.to_thread(ctx.rt.registry.undeploy, processId, ctx.namespace):
        raise NoSuchProcess(f"There is no process '{processId}'.")
    return Response(status_code=204)


@router.get("/processes/{processId}/package", summary="The package of a deployed process",
            operation_id="getPackage", responses={200: {"content": {t: {} for t in CWL_TYPES}}})
async def get_package(request: Request, processId: Annotated[str, Path()],
                      ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    if ctx.rt.registry.is_builtin(processId):
        raise NoSuchProcess(f"'{processId}' is a built-in process: it has no application package")
    text, media = await asyncio.to_thread(ctx.rt.registry.package, processId, ctx.namespace)
    accept = request.headers.get("accept", "")
    if "json" in accept and "yaml" not in accept:
        data = yaml.safe_load(text) if media != "application/cwl+json" else json.loads(text)
        return Response(json.dumps(data, indent=2), media_type="application/cwl+json")
    if media == "application/cwl+json":
        return Response(yaml.safe_dump(json.loads(text), sort_keys=False), media_type="application/cwl+yaml")
    return Response(text, media_type="application/cwl+yaml")
