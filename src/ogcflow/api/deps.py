"""What every route receives: the services, the caller (namespace, identity, role) and the URLs clients see.

:func:`get_ctx` is the one way in: the routed endpoints (as a dependency) and the fast synchronous path
both call it, so what it checks holds for every request: the namespace of the path (``/{namespace}/ogc-api``;
the root is the ``default`` namespace), the credentials, and that the caller may act in that namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ogcflow.auth.authenticator import Authenticator, check_namespace
from ogcflow.domain import DEFAULT_NAMESPACE, Caller
from ogcflow.services.jobs import JobService
from ogcflow.services.ops import OpsService
from ogcflow.services.processes import ProcessService
from ogcflow.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    """The application's services, built once (app.state.services)."""

    settings: Settings
    jobs: JobService
    processes: ProcessService
    auth: Authenticator
    ops: OpsService
    #: OGCFLOW_PUBLIC_URL without its trailing slash, if set
    public_url: str | None
    #: OGCFLOW_TRUSTED_HOSTS: Host header values that links may be built from when there is no public URL
    trusted_hosts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Ctx:
    jobs: JobService
    processes: ProcessService
    settings: Settings
    #: where this namespace's API is (links, Location, monitor): the root, or <root>/<namespace>/ogc-api
    base_url: str
    caller: Caller
    #: the server's root (static files)
    root_url: str
    auth_required: bool = False


_bases: dict[tuple[Any, ...], str] = {}


def base_url(request: Request, public: str | None, trusted: frozenset[str] = frozenset()) -> str:
    """The URL clients reach the API at: OGCFLOW_PUBLIC_URL; else the request's scheme and Host header when
    that host is trusted (OGCFLOW_TRUSTED_HOSTS, ``*`` for any); else the address the request reached (the
    server's own socket): an arbitrary Host header is never reflected into links and ``Location``."""
    if public:
        return public
    scope = request.scope
    host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
    key = (scope.get("scheme", "http"), host, scope.get("root_path", ""), scope.get("server"), trusted)
    base = _bases.get(key)
    if base is None:
        name = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]
        if host and ("*" in trusted or host in trusted or name in trusted):
            base = str(request.base_url).rstrip("/")
        else:
            scheme = scope.get("scheme", "http")
            server = scope.get("server") or ("localhost", None)
            address = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
            default = {"http": 80, "https": 443}.get(scheme)
            port = f":{server[1]}" if server[1] not in (None, default) else ""
            base = f"{scheme}://{address}{port}{scope.get('root_path', '')}"
        if len(_bases) < 256:
            _bases[key] = base
    return base


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found


async def get_ctx(request: Request) -> Ctx:
    s = services(request)
    in_path = request.path_params.get("namespace")
    namespace = DEFAULT_NAMESPACE if in_path is None else check_namespace(in_path)
    authorization = api_key = None
    for name, value in request.scope["headers"]:  # one pass over the raw headers
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1")
    identity = s.auth.identify(authorization, api_key)
    required = s.auth.required
    caller = s.auth.caller(identity, namespace, required)
    root = base_url(request, s.public_url, s.trusted_hosts)
    base = root if in_path is None else f"{root}/{namespace}/ogc-api"
    state = request.state
    state.root_url, state.base_url = root, base
    return Ctx(jobs=s.jobs, processes=s.processes, settings=s.settings, base_url=base, caller=caller,
               root_url=root, auth_required=required)
