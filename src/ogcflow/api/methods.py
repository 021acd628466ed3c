"""HEAD and OPTIONS on every resource, and a right ``Allow`` header.

- ``HEAD`` is answered as ``GET`` without the body (same status and headers, ``Content-Length`` included);
  the endpoint sees a ``GET`` (:func:`is_head` tells it when it may skip reading a large body).
- ``OPTIONS`` on a path that the application routes is ``204`` with ``Allow``: the methods of every route of
  that path (``HEAD`` with ``GET``, and ``OPTIONS``); an unknown path stays a 404.
- A ``405`` carries the same ``Allow`` (:func:`allowed_methods`, in the error handler: the router's names only
  the methods of the first route it found).
CORS preflight requests are answered before they get here (:mod:`ogcflow.api.cors`).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: set in the scope of a HEAD request passed on as GET
HEAD = "ogcflow.head"
_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")


def is_head(scope: Any) -> bool:
    """True when the request is a HEAD passed on as GET (its body will not be sent)."""
    return bool(scope.get(HEAD))


def allowed_methods(scope: Scope) -> list[str]:
    """The methods the application's routes answer on the scope's path (empty: no route has the path): each
    method is probed against the routes as the router would match it (routers included in the app are routes
    of their own, whose matches look into theirs)."""
    methods: set[str] = set()
    for route in scope["app"].router.routes:
        if isinstance(route, Mount):  # static files
            if route.matches(scope)[0] is not Match.NONE:
                methods.add("GET")
            continue
        for method in _PROBED:
            if method not in methods and route.matches({**scope, "method": method})[0] is Match.FULL:
                methods.add(method)
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return [m for m in _ORDER if m in methods]


class MethodsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method == "OPTIONS":
                allow = allowed_methods(scope)
                if allow:
                    await send({"type": "http.response.start", "status": 204,
                                "headers": [(b"allow", ", ".join(allow).encode())]})
                    await send({"type": "http.response.body", "body": b""})
                    return
            elif method == "HEAD":
                await self.app({**scope, "method": "GET", HEAD: True}, receive, _headers_only(send))
                return
        await self.app(scope, receive, send)


def _headers_only(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] != "http.response.body":
            await send(message)
        elif not message.get("more_body", False):
            await send({"type": "http.response.body", "body": b""})

    return wrapped
