"""Every error as an OGC exception document (HTML when the client asks for it): the application's exception
handlers, and :func:`handle_error` for paths that answer outside FastAPI's routing (the fast path)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ogcflow.api.deps import base_url
from ogcflow.api.methods import allowed_methods
from ogcflow.api.negotiation import JSONResp, render_html, wants_html
from ogcflow.auth.authenticator import NAMESPACE
from ogcflow.errors import ExceptionType, InvalidParameter, OGCError

log = logging.getLogger("ogcflow.api")


def error_response(request: Request, err: OGCError) -> Response:
    doc = err.document()
    try:
        html = wants_html(request)
    except OGCError:
        html = False
    if html:
        public = getattr(request.app.state, "services", None)
        root = getattr(request.state, "root_url", None) or base_url(
            request, public.public_url if public else None, public.trusted_hosts if public else frozenset())
        namespace = request.path_params.get("namespace")
        base = getattr(request.state, "base_url", None) or (
            f"{root}/{namespace}/ogc-api" if namespace and NAMESPACE.match(namespace) else root)
        resp: Response = render_html("error.html", err.status, error=doc, title=err.title, base=base, root=root)
    else:
        resp = JSONResp(doc, status_code=err.status)
    resp.headers.update(err.headers)
    return resp


async def _ogc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OGCError)
    return error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    name = ".".join(loc) or "request"
    return error_response(request, InvalidParameter(f"{name}: {first.get('msg')}"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        err = OGCError(f"{request.url.path} is not a resource of this API", status=404,
                       type=ExceptionType.NOT_FOUND, title="Not found")
    elif exc.status_code == 405:
        allow = allowed_methods(request.scope)  # every route of the path, not only the one the router tried
        err = OGCError(f"{request.method} is not allowed on {request.url.path}", status=405,
                       type=ExceptionType.METHOD_NOT_ALLOWED, title="Method not allowed",
                       headers={**(exc.headers or {}), **({"Allow": ", ".join(allow)} if allow else {})})
    else:
        err = OGCError(str(exc.detail), status=exc.status_code, title="HTTP error")
    return error_response(request, err)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResp(OGCError("an unexpected error occurred; it has been logged").document(), status_code=500)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Map any exception to its response, as the application's exception handlers do."""
    if isinstance(exc, OGCError):
        return error_response(request, exc)
    if isinstance(exc, RequestValidationError):
        return await _validation_error(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await _http_error(request, exc)
    return await _server_error(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(OGCError, _ogc_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
