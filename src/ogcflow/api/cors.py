"""Cross-origin reads from browser pages (CORS), for STAC Browser, map viewers and web clients.

Origins (``OGCFLOW_CORS_ORIGINS``, default ``["*"]``) may use the methods of ``OGCFLOW_CORS_METHODS`` (default
``GET`` and ``HEAD``: reading; ``OPTIONS`` always): responses to those requests carry
``Access-Control-Allow-Origin`` (``*``, or the origin itself with ``Vary: Origin`` when origins are listed)
and expose the headers clients read (``Location``, ``Link``, ``Preference-Applied``...). A preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) for one of those methods is answered here with ``204``;
any other preflight gets the plain ``OPTIONS`` answer, without CORS headers, which browsers take as a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXPOSED = b"Content-Length, Content-Type, Link, Location, Preference-Applied, Retry-After, WWW-Authenticate"
MAX_AGE = b"600"


class CORSMiddleware:
    def __init__(self, app: ASGIApp, origins: Sequence[str], methods: Sequence[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = {o.rstrip("/") for o in origins if o != "*"}
        self.methods = {m.upper() for m in methods} | {"OPTIONS"}
        if "GET" in self.methods:
            self.methods.add("HEAD")
        self.allow_methods = ", ".join(sorted(self.methods)).encode()

    def _allow_origin(self, origin: str) -> bytes | None:
        if self.any_origin:
            return b"*"
        return origin.encode("latin-1") if origin in self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = requested = requested_headers = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                requested = value.decode("latin-1").upper()
            elif name == b"access-control-request-headers":
                requested_headers = value
        allow = self._allow_origin(origin) if origin is not None else None
        method = scope["method"]
        preflight = method == "OPTIONS" and requested is not None
        if allow is None or not preflight and method not in self.methods:
            await self.app(scope, receive, send)
            return
        vary = [] if self.any_origin else [(b"vary", b"Origin")]
        if preflight:
            if requested not in self.methods:
                await self.app(scope, receive, send)
                return
            headers = [(b"access-control-allow-origin", allow), (b"access-control-allow-methods", self.allow_methods),
                       (b"access-control-max-age", MAX_AGE), *vary]
            if requested_headers:
                headers.append((b"access-control-allow-headers", requested_headers))
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        extra = [(b"access-control-allow-origin", allow), (b"access-control-expose-headers", EXPOSED), *vary]

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)
