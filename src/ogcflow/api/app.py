"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ogcflow import __version__
from ogcflow.api.fastpath import ExecutionFastPath
from ogcflow.api.negotiation import JSONResp, render_html, wants_html
from ogcflow.api.routes import deploy, jobs, landing, processes
from ogcflow.engines import get_engine
from ogcflow.errors import ExceptionType, InvalidParameter, OGCError
from ogcflow.jobs.recorder import JobRecorder
from ogcflow.jobs.service import Runtime
from ogcflow.settings import Settings, get_settings

log = logging.getLogger("ogcflow.api")

_STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


def _error_response(request: Request, err: OGCError) -> Response:
    doc = err.document()
    try:
        html = wants_html(request)
    except OGCError:
        html = False
    if html:
        resp: Response = render_html("error.html", err.status, error=doc, title=err.title,
                                     base=request.app.state.public_url or str(request.base_url).rstrip("/"))
    else:
        resp = JSONResp(doc, status_code=err.status)
    resp.headers.update(err.headers)
    return resp


async def _ogc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OGCError)
    return _error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    name = ".".join(loc) or "request"
    return _error_response(request, InvalidParameter(f"{name}: {first.get('msg')}"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = OGCError(f"{request.url.path} is not a resource of this API", status=404,
                       type=ExceptionType.NOT_FOUND, title="Not found")
    elif exc.status_code == 405:
        err = OGCError(f"{request.method} is not allowed on {request.url.path}", status=405,
                       type=ExceptionType.METHOD_NOT_ALLOWED, title="Method not allowed",
                       headers=dict(exc.headers or {}))
    else:
        err = OGCError(str(exc.detail), status=exc.status_code, title="HTTP error")
    return _error_response(request, err)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResp(OGCError("an unexpected error occurred; it has been logged").document(), status_code=500)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Map any exception to its response, as the application's exception handlers do."""
    if isinstance(exc, OGCError):
        return _error_response(request, exc)
    if isinstance(exc, RequestValidationError):
        return await _validation_error(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await _http_error(request, exc)
    return await _server_error(request, exc)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    rt = runtime or Runtime.from_settings(settings)
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.recorder.flush()

    app = FastAPI(title=settings.title, description=settings.description, version=__version__,
                  openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.rt = rt
    app.state.engine = get_engine(rt)
    app.state.public_url = settings.public_url.rstrip("/") if settings.public_url else None
    app.state.registry_version = rt.registry.version
    app.state.recorder = JobRecorder(rt.store)
    app.add_exception_handler(OGCError, _ogc_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
    app.include_router(landing.router)
    app.include_router(deploy.router)
    app.include_router(processes.router)
    app.include_router(jobs.router)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    try:
        from swagger_ui_bundle import swagger_ui_path

        app.mount("/swagger-ui", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    except ImportError:  # pragma: no cover - a dependency of the package
        log.warning("swagger-ui-bundle is missing: /api?f=html will not render")
    return app


def app_factory() -> ExecutionFastPath:
    """Entry point for ASGI servers: ``uvicorn --factory ogcflow.api.app:app_factory``."""
    return ExecutionFastPath(create_app())
