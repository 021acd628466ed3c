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


async def get_ctx(request: Request) -> Ctx:
    state = request.app.state
    base = state.public_url or str(request.base_url).rstrip("/")
    return Ctx(rt=state.rt, engine=state.engine, base_url=base)
