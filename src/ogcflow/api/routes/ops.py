"""The server's own routes, at the root only: /readyz (readiness) and /metrics (Prometheus). /health
(liveness) is in :mod:`ogcflow.api.app`. They read nothing of any namespace and take no credentials, except
/metrics, which names every namespace: see :func:`_may_read_metrics`."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ogcflow import __version__
from ogcflow.api.deps import services
from ogcflow.api.negotiation import JSONResp
from ogcflow.api.observe import CONTENT_TYPE, REQUESTS, exposition
from ogcflow.domain import Role
from ogcflow.errors import Forbidden, Unauthorized

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when the store, the engine and the results storage all answer; 503 naming what failed."""
    found = await services(request).ops.ready()
    body: dict[str, object] = {"status": "ready" if found.ready else "not ready", "version": __version__,
            "checks": {c.name: {"ok": c.ok, **({"error": c.error} if c.error else {})} for c in found.checks}}
    if not found.ready:
        body["failed"] = [c.name for c in found.checks if not c.ok]
    return JSONResp(body, status_code=200 if found.ready else 503, headers={"Cache-Control": "no-store"})


def _may_read_metrics(request: Request) -> None:
    """The metrics name every namespace and process: with OGCFLOW_METRICS_TOKEN, that token (or an admin's
    credentials); on a server that needs credentials, an admin's; on an open server, anybody."""
    s = services(request)
    authorization = request.headers.get("authorization")
    token = s.settings.server.metrics_token
    if token and hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
        return
    if not token and not s.auth.required:
        return
    identity = s.auth.identify(authorization, request.headers.get("x-api-key"))
    if identity is None:
        raise Unauthorized("/metrics needs the metrics token (Authorization: Bearer <OGCFLOW_METRICS_TOKEN>) or "
                           "an admin's credentials", headers={"WWW-Authenticate": 'Bearer realm="ogcflow"'})
    if identity.role is not Role.admin:
        raise Forbidden("/metrics needs the metrics token or the admin role")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus' text format: requests, latencies, jobs, queue depth, job durations, workers."""
    _may_read_metrics(request)
    stats = await services(request).ops.job_stats()
    own = REQUESTS.snapshot()  # taken on the event loop, where requests are counted
    return Response(await asyncio.to_thread(exposition, own, stats), media_type=CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
