"""A direct route for ``POST /processes/{id}/execution``, the hot path of synchronous work.

It is the innermost middleware of the application: every middleware added to the app (CORS, access logs,
authentication...) wraps it, and it calls the same endpoint with the same :func:`ogcflow.api.deps.get_ctx`
and the same error mapping as the routed one. What it skips is the router's matching and FastAPI's
dependency solving, which cost more than the execution of a small process.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ogcflow.api.errors import handle_error
from ogcflow.api.routes.processes import execute

_PREFIX = "/processes/"
_SUFFIX = "/execution"
#: where every namespace's API is (the root is the default namespace's)
NAMESPACE_PREFIX = "/{namespace}/ogc-api"
_NS_MARK = "/ogc-api/processes/"
#: the route the fast path stands for (the metrics' and access log's label)
ROUTE = _PREFIX + "{processId}" + _SUFFIX


class ExecutionFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.endswith(_SUFFIX):
                params: dict[str, str] | None = None
                if path.startswith(_PREFIX):
                    params = {"processId": path[len(_PREFIX): -len(_SUFFIX)]}
                else:  # /{namespace}/ogc-api/processes/{id}/execution
                    head, mark, rest = path[1:].partition(_NS_MARK)
                    if mark and head and "/" not in head:
                        params = {"namespace": head, "processId": rest[: -len(_SUFFIX)]}
                if params is not None and params["processId"] and "/" not in params["processId"]:
                    scope["ogcflow.route"] = NAMESPACE_PREFIX + ROUTE if "namespace" in params else ROUTE
                    await self._execute(scope, receive, send, params)
                    return
        await self.app(scope, receive, send)

    async def _execute(self, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> None:
        scope = {**scope, "path_params": params}
        request = Request(scope, receive)
        try:
            response: Any = await execute(request)
        except Exception as exc:  # same mapping as the application's exception handlers
            response = await handle_error(request, exc)
        await response(scope, receive, send)
