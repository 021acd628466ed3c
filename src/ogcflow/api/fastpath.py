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


class ExecutionFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX) and not scope.get("root_path"):
                process_id = path[len(_PREFIX): -len(_SUFFIX)]
                if process_id and "/" not in process_id:
                    await self._execute(scope, receive, send, process_id)
                    return
        await self.app(scope, receive, send)

    async def _execute(self, scope: Scope, receive: Receive, send: Send, process_id: str) -> None:
        scope = {**scope, "path_params": {"processId": process_id}}
        request = Request(scope, receive)
        try:
            response: Any = await execute(request)
        except Exception as exc:  # same mapping as the application's exception handlers
            response = await handle_error(request, exc)
        await response(scope, receive, send)
