"""Request-scoped context handed to every route."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ogcflow.engines.base import StoreEngine
from ogcflow.jobs.service import Runtime


@dataclass(slots=True)
class Ctx:
    """The runtime, the engine, the base URL clients see, and the namespace of the request."""

    rt: Runtime
    engine: StoreEngine
    base_url: str
    namespace: str = "default"


_bases: dict[tuple[str, str, str], str] = {}


def base_url(request: Request) -> str:
    """The URL clients reach the API at: OGCFLOW_PUBLIC_URL, else scheme and host of the request."""
    public = request.app.state.public_url
    if public:
        return public
    scope = request.scope
    host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    key = (scope.get("scheme", "http"), host, scope.get("root_path", ""))
    base = _bases.get(key)
    if base is None:
        base = str(request.base_url).rstrip("/")
        if len(_bases) < 256:
            _bases[key] = base
    return base


async def get_ctx(request: Request) -> Ctx:
    state = request.app.state
    return Ctx(rt=state.rt, engine=state.engine, base_url=base_url(request))
