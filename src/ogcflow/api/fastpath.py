"""A direct route for ``POST /processes/{id}/execution``, the hot path of synchronous work.

It answers exactly as the routed endpoint does (same function, same error handling) but skips the
framework's middleware stack and route matching, which cost more than the execution of a small process.
Every other request goes to the FastAPI application unchanged.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.types import Receive, Scope, Send

_PREFIX = "/processes/"
_SUFFIX = "/execution"


class ExecutionFastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state

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
        from ogcflow.api.app import handle_error
        from ogcflow.api.routes.processes import execute

        scope = {**scope, "app": self.app, "path_params": {"processId": process_id}}
        request = Request(scope, receive)
        try:
            response: Any = await execute(request)
        except Exception as exc:  # same mapping as the application's exception handlers
            response = await handle_error(request, exc)
        await response(scope, receive, send)
