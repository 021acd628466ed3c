"""The FastAPI application: routers, error handlers, the fast execution path, static files; the services
come from :mod:`ogcflow.wiring`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ogcflow import __version__
from ogcflow.api import errors
from ogcflow.api.cors import CORSMiddleware
from ogcflow.api.deps import Services
from ogcflow.api.fastpath import NAMESPACE_PREFIX, ExecutionFastPath
from ogcflow.api.methods import MethodsMiddleware
from ogcflow.api.negotiation import JSONResp
from ogcflow.api.observe import Observe, flush_forever
from ogcflow.api.routes import deploy, jobs, landing, ops, processes
from ogcflow.jobs.recorder import JobRecorder
from ogcflow.services.jobs import JobService
from ogcflow.services.ops import OpsService
from ogcflow.settings import Settings, get_settings
from ogcflow.wiring import Server, build, make_engine

log = logging.getLogger("ogcflow.api")

_STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def create_app(settings: Settings | None = None, server: Server | None = None) -> FastAPI:
    settings = settings or get_settings()
    server = server or build(settings)
    rt = server.rt
    recorder = JobRecorder(rt.store.jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = asyncio.create_task(flush_forever())  # request metrics for the other API processes
        yield
        publisher.cancel()
        await recorder.flush()

    # FastAPI's native OpenTelemetry looks for providers on every request: off (no provider is configured)
    app = FastAPI(title=settings.server.title, description=settings.server.description, version=__version__,
                  openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    public = settings.server.public_url.rstrip("/") if settings.server.public_url else None
    engine = make_engine(rt)
    app.state.services = Services(settings=settings, jobs=JobService(rt, engine, recorder),
                                  processes=server.processes(), auth=server.authenticator(),
                                  ops=OpsService(rt, engine), public_url=public,
                                  trusted_hosts=frozenset(settings.server.trusted_hosts))
    errors.install(app)
    app.add_middleware(ExecutionFastPath)  # first added: innermost, inside every middleware added later
    app.add_middleware(MethodsMiddleware)  # HEAD, OPTIONS, Allow
    app.add_middleware(CORSMiddleware, origins=settings.server.cors_origins, methods=settings.server.cors_methods)
    app.add_middleware(Observe, access_log=settings.server.access_log)  # counts, times and logs all of them
    routers = [module.router for module in (landing, deploy, processes, jobs)]
    for prefix in ("", NAMESPACE_PREFIX):  # the default namespace at the root; every namespace under its own
        for router in routers:
            app.include_router(router, prefix=prefix)
    app.state.api_routes = [route for router in routers for route in router.routes]  # for /api
    @app.get("/health", include_in_schema=False)
    def health() -> JSONResp:
        """Liveness, for load balancers and orchestrators: no credentials, no store access."""
        return JSONResp({"status": "ok", "version": __version__})

    app.include_router(ops.router)  # /readyz, /metrics: at the root only

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    try:
        from swagger_ui_bundle import swagger_ui_path

        app.mount("/swagger-ui", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    except ImportError:  # pragma: no cover - a dependency of the package
        log.warning("swagger-ui-bundle is missing: /api?f=html will not render")
    return app


def app_factory() -> FastAPI:
    """Entry point for ASGI servers: ``uvicorn --factory ogcflow.api.app:app_factory``."""
    return create_app()
