"""OGC API - Processes - Part 2: POST /processes, PUT and DELETE /processes/{id}, GET /processes/{id}/package.

Deploying runs code on the platform: only callers with the deployer role (or admins) may do it, in their
own namespace (ProcessService enforces it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import JSONResp
from ogcflow.api.routes.processes import process_links
from ogcflow.errors import PayloadTooLarge
from ogcflow.packages.deploy import CWL_TYPES, PACKAGE_TYPES, check_media_type

router = APIRouter(tags=["Deploy, replace, undeploy"])

_PACKAGE_BODY = {"required": True, "description": "A CWL document, or an OGC application package whose "
                 "executionUnit is CWL", "content": {t: {"schema": {"type": "object" if "json" in t else "string"}}
                                                   for t in PACKAGE_TYPES}}


async def _body(request: Request, limit: int) -> tuple[bytes, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    check_media_type(media)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the package is larger than the limit of {limit} bytes")
    return bytes(body), media


@router.post("/processes", summary="Deploy a process", operation_id="deploy", status_code=201,
             openapi_extra={"requestBody": _PACKAGE_BODY})
async def deploy(request: Request, ctx: Annotated[Ctx, Depends(get_ctx)],
                 w: Annotated[str | None, Query(description="The workflow of a $graph to deploy")] = None) -> Response:
    data, media = await _body(request, ctx.settings.server.max_body_bytes)
    described = await ctx.processes.deploy(ctx.caller, data, media, w)
    summary = described.model_copy(update={"links": process_links(ctx.base_url, described.id),
                                           "mutable": True}).summary()
    return JSONResp(summary.dump(), status_code=201, headers={"Location": f"{ctx.base_url}/processes/{described.id}"})


@router.put("/processes/{processId}", summary="Replace a process", operation_id="replace", status_code=204,
            openapi_extra={"requestBody": _PACKAGE_BODY})
async def replace(request: Request, processId: Annotated[str, Path()], ctx: Annotated[Ctx, Depends(get_ctx)],
                  w: Annotated[str | None, Query(description="The workflow of a $graph")] = None) -> Response:
    ctx.processes.check_mutable(ctx.caller, processId)  # 403 before the body is read
    data, media = await _body(request, ctx.settings.server.max_body_bytes)
    await ctx.processes.replace(ctx.caller, processId, data, media, w)
    return Response(status_code=204)


@router.delete("/processes/{processId}", summary="Undeploy a process", operation_id="undeploy", status_code=204,
)
async def undeploy(processId: Annotated[str, Path()], ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    await ctx.processes.undeploy(ctx.caller, processId)
    return Response(status_code=204)


@router.get("/processes/{processId}/package", summary="The package of a deployed process",
            operation_id="getPackage", responses={200: {"content": {t: {} for t in CWL_TYPES}}})
async def get_package(request: Request, processId: Annotated[str, Path()],
                      ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    text, media = await ctx.processes.package(ctx.caller, processId, request.headers.get("accept", ""))
    return Response(text, media_type=media)
