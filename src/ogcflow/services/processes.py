"""The process service: the processes of a namespace (list, describe) and their deployment (OGC API -
Processes - Part 2: deploy, replace, undeploy, the package as deployed, the shipped packages seeded)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import yaml

from ogcflow import models
from ogcflow.errors import ExceptionType, NoSuchProcess, OGCError
from ogcflow.packages.cwl import CWLPackage, InvalidPackage, parse_package
from ogcflow.packages.deploy import read_package
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


def _new(pkg: CWLPackage, media: str) -> NewPackage:
    return NewPackage(id=pkg.entry, version=pkg.description.version, description=pkg.description.dump(),
                      package=pkg.text, media_type=media, entry=pkg.entry, inputs_kind=pkg.inputs_kind)


class ProcessService:
    def __init__(self, rt: Runtime, shipped: ShippedPackages | None = None) -> None:
        self.rt = rt
        self.shipped = dict(shipped or {})

    # -- reading --------------------------------------------------------------------------------------

    def page(self, namespace: str, limit: int, offset: int) -> ProcessPage:
        catalog = self.rt.catalog
        everything = catalog.all(namespace)
        limit = min(limit, self.rt.settings.server.job_list_max)
        chosen = everything[offset: offset + limit]
        return ProcessPage([Offered(p, not catalog.is_builtin(p.id)) for p in chosen],
                           more=offset + limit < len(everything))

    def all(self, namespace: str) -> list[Process]:
        return self.rt.catalog.all(namespace)

    def get(self, namespace: str, process_id: str) -> Offered:
        catalog = self.rt.catalog
        return Offered(catalog.get(process_id, namespace), not catalog.is_builtin(process_id))

    def version(self, namespace: str) -> tuple[int, str]:
        return self.rt.catalog.version(namespace)

    async def package(self, namespace: str, process_id: str, accept: str) -> tuple[str, str]:
        """The package as deployed, as the client accepts it (CWL YAML or JSON): (text, media type)."""
        if self.rt.catalog.is_builtin(process_id):
            raise NoSuchProcess(f"'{process_id}' is a built-in process: it has no application package")
        record = await asyncio.to_thread(self.rt.store.processes.get, namespace, process_id)
        if record is None:
            raise NoSuchProcess(f"There is no deployed process '{process_id}'.")
        text, media = record.package, record.media_type
        if "json" in accept and "yaml" not in accept:
            data = yaml.safe_load(text) if media != "application/cwl+json" else json.loads(text)
            return json.dumps(data, indent=2), "application/cwl+json"
        if media == "application/cwl+json":
            return yaml.safe_dump(json.loads(text), sort_keys=False), "application/cwl+yaml"
        return text, "application/cwl+yaml"

    # -- deploying ------------------------------------------------------------------------------------

    async def _read(self, data: bytes, media: str, w: str | None) -> tuple[CWLPackage, str]:
        return await asyncio.to_thread(read_package, data, media, w, self.rt.settings.network)

    async def deploy(self, namespace: str, data: bytes, media: str, w: str | None) -> models.Process:
        pkg, media = await self._read(data, media, w)
        if pkg.entry in self.rt.catalog.builtins or not await asyncio.to_thread(
                self.rt.store.processes.insert, namespace, _new(pkg, media)):
            raise OGCError(f"a process '{pkg.entry}' exists already; replace it with PUT /processes/{pkg.entry}",
                           status=409, type=ExceptionType.DUPLICATED_PROCESS, title="Duplicated process")
        return pkg.description

    def check_mutable(self, process_id: str) -> None:
        """403 for a built-in process (it cannot be replaced or undeployed)."""
        if self.rt.catalog.is_builtin(process_id):
            raise OGCError(f"'{process_id}' is a built-in process: it cannot be replaced or undeployed",
                           status=403, type=ExceptionType.IMMUTABLE_PROCESS, title="Immutable process")

    async def replace(self, namespace: str, process_id: str, data: bytes, media: str, w: str | None) -> None:
        self.check_mutable(process_id)
        pkg, media = await self._read(data, media, w or process_id)
        if pkg.entry != process_id:
            raise InvalidPackage(f"the package describes '{pkg.entry}', not '{process_id}'")
        if not await asyncio.to_thread(self.rt.store.processes.update, namespace, _new(pkg, media)):
            raise NoSuchProcess(f"There is no process '{process_id}' to replace; deploy it with POST /processes.")

    async def undeploy(self, namespace: str, process_id: str) -> None:
        self.check_mutable(process_id)
        done = await asyncio.to_thread(self.rt.store.processes.delete, namespace, process_id)
        self.rt.catalog.forget(namespace, process_id)
        if not done:
            raise NoSuchProcess(f"There is no process '{process_id}'.")

    def seed(self, names: list[str], namespace: str) -> list[str]:
        """Deploy the shipped packages ``names`` that were never deployed by default here before (so an
        operator's undeploy stays); return the ids deployed now."""
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
