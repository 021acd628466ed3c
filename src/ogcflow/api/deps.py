"""What every route receives: the services, the base URL clients see and the request's namespace.

:func:`get_ctx` is the one way in: the routed endpoints (as a dependency) and the fast synchronous path
both call it, so whatever it checks (the namespace; soon the caller's credentials) holds for every request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ogcflow.domain import DEFAULT_NAMESPACE
from ogcflow.services.jobs import JobService
from ogcflow.services.processes import ProcessService
from ogcflow.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    """The application's services, built once (app.state.services)."""

    settings: Settings
    jobs: JobService
    processes: ProcessService
    #: OGCFLOW_PUBLIC_URL without its trailing slash, if set
    public_url: str | None


@dataclass(frozen=True, slots=True)
class Ctx:
    jobs: JobService
    processes: ProcessService
    settings: Settings
    base_url: str
    namespace: str = DEFAULT_NAMESPACE


_bases: dict[tuple[str, str, str], str] = {}


def base_url(request: Request, public: str | None) -> str:
    """The URL clients reach the API at: OGCFLOW_PUBLIC_URL, else scheme and host of the request."""
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


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found


async def get_ctx(request: Request) -> Ctx:
    s = services(request)
    return Ctx(jobs=s.jobs, processes=s.processes, settings=s.settings, base_url=base_url(request, s.public_url))
