"""The process service: the processes of a namespace (list, describe) and their deployment (OGC API -
Processes - Part 2: deploy, replace, undeploy, the package as deployed, the shipped packages seeded)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from ogcflow import models
from ogcflow.domain import SHARED_NAMESPACE, Caller, Role
from ogcflow.errors import ExceptionType, NoSuchProcess, OGCError
from ogcflow.packages.cwl import CWLPackage, InvalidPackage, parse_package
from ogcflow.packages.deploy import APPPKG, read_package
from ogcflow.processes.base import Process
from ogcflow.runtime import Runtime
from ogcflow.store.processes import NewPackage

#: name -> the text of a package shipped with the server (registered by plugins)
ShippedPackages = Mapping[str, Callable[[], str]]


@dataclass(frozen=True, slots=True)
class Offered:
    """A process as a namespace sees it."""

    process: Process
    #: deployed (may be replaced and undeployed), not built in
    mutable: bool


@dataclass(frozen=True, slots=True)
class ProcessPage:
    processes: list[Offered]
    more: bool


def _new(pkg: CWLPackage, media: str, source: tuple[str, str] | None = None) -> NewPackage:
    return NewPackage(id=pkg.entry, version=pkg.description.version, description=pkg.description.dump(),
                      package=pkg.text, media_type=media, entry=pkg.entry, inputs_kind=pkg.inputs_kind,
                      source=source[0] if source else None, source_type=source[1] if source else None)


class ProcessService:
    def __init__(self, rt: Runtime, shipped: ShippedPackages | None = None) -> None:
        self.rt = rt
        self.shipped = dict(shipped or {})

    # -- reading --------------------------------------------------------------------------------------

    def _mutable_in(self, namespace: str) -> set[str]:
        return {r.id for r in self.rt.store.processes.all(namespace)}

    def page(self, caller: Caller, limit: int, offset: int) -> ProcessPage:
        everything = self.rt.catalog.all(caller.namespace)
        limit = min(limit, self.rt.settings.server.job_list_max)
        chosen = everything[offset: offset + limit]
        mine = self._mutable_in(caller.namespace) if chosen else set()
        return ProcessPage([Offered(p, p.id in mine) for p in chosen], more=offset + limit < len(everything))

    def all(self, caller: Caller) -> list[Process]:
        return self.rt.catalog.all(caller.namespace)

    def get(self, caller: Caller, process_id: str) -> Offered:
        """A process visible in the caller's namespace; ``mutable`` when it was deployed there."""
        catalog = self.rt.catalog
        process = catalog.get(process_id, caller.namespace)
        return Offered(process, catalog.scope_of(process_id, caller.namespace) == caller.namespace)

    def version(self, caller: Caller) -> tuple[int, str]:
        return self.rt.catalog.version(caller.namespace)

    async def package(self, caller: Caller, process_id: str, accept: str) -> tuple[str, str]:
        """The package as deployed (an application package comes back as that), or its CWL when the client
        asks for CWL: (text, media type)."""
        if self.rt.catalog.is_builtin(process_id):
            raise NoSuchProcess(f"'{process_id}' is a built-in process: it has no application package")
        scope = await asyncio.to_thread(self.rt.catalog.scope_of, process_id, caller.namespace)
        record = None if scope is None else await asyncio.to_thread(self.rt.store.processes.get, scope, process_id)
        if record is None:
            raise NoSuchProcess(f"There is no deployed process '{process_id}'.")
        wants_cwl = "cwl" in accept or "yaml" in accept
        if record.source is not None and record.source_type and not wants_cwl:
            return record.source, record.source_type
        text, media = record.package, record.media_type
        if "json" in accept and "yaml" not in accept:
            data = yaml.safe_load(text) if media != "application/cwl+json" else json.loads(text)
            return json.dumps(data, indent=2), "application/cwl+json"
        if media == "application/cwl+json":
            return yaml.safe_dump(json.loads(text), sort_keys=False), "application/cwl+yaml"
        return text, "application/cwl+yaml"

    # -- deploying ------------------------------------------------------------------------------------

    async def _read(self, data: bytes, media: str, w: str | None) -> tuple[CWLPackage, str, tuple[str, str] | None]:
        """The parsed package, the media type of its CWL, and the body as sent when it was not CWL."""
        pkg, cwl_media = await asyncio.to_thread(read_package, data, media, w, self.rt.settings.network)
        source = (data.decode("utf-8", errors="replace"), media) if media == APPPKG else None
        return pkg, cwl_media, source

    async def deploy(self, caller: Caller, data: bytes, media: str, w: str | None) -> models.Process:
        caller.require(Role.deployer, "deploying a process")
        pkg, media, source = await self._read(data, media, w)
        duplicate = OGCError(f"a process '{pkg.entry}' exists already; replace it with PUT /processes/{pkg.entry}",
                             status=409, type=ExceptionType.DUPLICATED_PROCESS, title="Duplicated process")
        if pkg.entry in self.rt.catalog.builtins or await asyncio.to_thread(
                self.rt.catalog.scope_of, pkg.entry, caller.namespace) is not None:
            raise duplicate
        if not await asyncio.to_thread(self.rt.store.processes.insert, caller.namespace, _new(pkg, media, source)):
            raise duplicate
        return pkg.description

    def check_mutable(self, caller: Caller, process_id: str) -> None:
        """403 unless the caller may deploy; 403 immutable-process for a built-in or server-wide process."""
        caller.require(Role.deployer, "replacing or undeploying a process")
        catalog = self.rt.catalog
        if catalog.is_builtin(process_id):
            raise OGCError(f"'{process_id}' is a built-in process: it cannot be replaced or undeployed",
                           status=403, type=ExceptionType.IMMUTABLE_PROCESS, title="Immutable process")
        if catalog.scope_of(process_id, caller.namespace) == SHARED_NAMESPACE:
            raise OGCError(f"'{process_id}' is a server-wide process: it cannot be replaced or undeployed here",
                           status=403, type=ExceptionType.IMMUTABLE_PROCESS, title="Immutable process")

    async def replace(self, caller: Caller, process_id: str, data: bytes, media: str, w: str | None) -> None:
        self.check_mutable(caller, process_id)
        try:
            pkg, media, source = await self._read(data, media, w or process_id)
        except OGCError as exc:
            if w is not None or exc.type != ExceptionType.WORKFLOW_NOT_FOUND:
                raise
            raise InvalidPackage(f"the package has no workflow or tool '{process_id}' to replace the process "
                                 f"with ({exc.detail.split('(', 1)[-1].rstrip(')')})") from None
        if pkg.entry != process_id:
            raise InvalidPackage(f"the package describes '{pkg.entry}', not '{process_id}'")
        if not await asyncio.to_thread(self.rt.store.processes.update, caller.namespace, _new(pkg, media, source)):
            raise NoSuchProcess(f"There is no process '{process_id}' to replace; deploy it with POST /processes.")

    async def undeploy(self, caller: Caller, process_id: str) -> None:
        self.check_mutable(caller, process_id)
        done = await asyncio.to_thread(self.rt.store.processes.delete, caller.namespace, process_id)
        self.rt.catalog.forget(caller.namespace, process_id)
        if not done:
            raise NoSuchProcess(f"There is no process '{process_id}'.")

    def seed(self, names: list[str], namespace: str = SHARED_NAMESPACE) -> list[str]:
        """Deploy the shipped packages ``names`` that were never deployed by default there before (so an
        operator's undeploy stays), server-wide unless another scope is given; return the ids deployed now."""
        rows = self.rt.store.processes
        done = rows.seeded(namespace)
        deployed = []
        for name in names:
            if name in done:
                continue
            if name not in self.shipped:
                known = ", ".join(sorted(self.shipped)) or "none"
                raise KeyError(f"no shipped package '{name}' (there are: {known})")
            pkg = parse_package(self.shipped[name]())
            if pkg.entry not in self.rt.catalog.builtins and rows.insert(namespace, _new(pkg, "application/cwl+yaml")):
                deployed.append(pkg.entry)
            rows.mark_seeded(namespace, name)
        return deployed
