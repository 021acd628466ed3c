"""All the processes of a namespace: the built-in ones, the server-wide packages (the shipped ones, e.g.
water-bodies) and those deployed in the namespace (Part 2).

Deployed processes are rows of the store (so every API process and worker sharing it sees a deployment at
once); a row becomes a process through the factory registered for its kind of package (``cwl``: see
``packages/``), rebuilt only when the row changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ogcflow.domain import SHARED_NAMESPACE
from ogcflow.errors import NoSuchProcess
from ogcflow.processes.base import Process, ProcessRegistry
from ogcflow.store.processes import ProcessRecord, ProcessStore

#: builds the process of a deployed package
ProcessFactory = Callable[[ProcessRecord], Process]


class ProcessCatalog:
    def __init__(self, builtins: ProcessRegistry, rows: ProcessStore) -> None:
        self.builtins = builtins
        self.rows = rows
        self.factories: dict[str, ProcessFactory] = {}
        self._cache: dict[tuple[str, str], tuple[datetime, Process]] = {}

    def register_factory(self, kind: str, factory: ProcessFactory) -> None:
        """Make deployed packages of ``kind`` (e.g. ``cwl``) runnable."""
        self.factories[kind] = factory

    def is_builtin(self, process_id: str) -> bool:
        return process_id in self.builtins

    def get(self, process_id: str, namespace: str) -> Process:
        """The process of that id visible in ``namespace`` (404 when there is none)."""
        if process_id in self.builtins:
            return self.builtins.get(process_id)
        for scope in (namespace, SHARED_NAMESPACE):
            found = self._deployed(process_id, scope)
            if found is not None:
                return found
        raise NoSuchProcess(f"There is no process '{process_id}'. See /processes.")

    def scope_of(self, process_id: str, namespace: str) -> str | None:
        """Where the process visible in ``namespace`` is deployed: the namespace, the shared scope, or None
        (a built-in, or no such process)."""
        if process_id in self.builtins:
            return None
        for scope in (namespace, SHARED_NAMESPACE):
            if self.rows.stamp(scope, process_id) is not None:
                return scope
        return None

    def _deployed(self, process_id: str, scope: str) -> Process | None:
        stamp = self.rows.stamp(scope, process_id)
        if stamp is None:
            return None
        hit = self._cache.get((scope, process_id))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        record = self.rows.get(scope, process_id)
        return self._build(record) if record is not None else None

    def _build(self, record: ProcessRecord) -> Process:
        """The process of a store row, rebuilt only when the row changed."""
        key = (record.namespace, record.id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == record.updated:
            return hit[1]
        factory = self.factories.get(record.kind)
        if factory is None:
            raise NoSuchProcess(f"process '{record.id}' is a {record.kind} package, which this server cannot run")
        process = factory(record)
        self._cache[key] = (record.updated, process)
        return process

    def all(self, namespace: str) -> list[Process]:
        found = {p.id: p for p in self.builtins}
        for scope in (SHARED_NAMESPACE, namespace):
            for record in self.rows.all(scope):
                if record.kind in self.factories and record.id not in self.builtins:
                    found[record.id] = self._build(record)
        return sorted(found.values(), key=lambda p: p.id)

    def version(self, namespace: str) -> tuple[int, str]:
        """Changes whenever a process visible in the namespace is deployed, replaced or undeployed (for
        caches such as /api)."""
        mine, shared = self.rows.version(namespace), self.rows.version(SHARED_NAMESPACE)
        return mine[0] + shared[0], f"{mine[1]}|{shared[1]}"

    def forget(self, namespace: str, process_id: str) -> None:
        self._cache.pop((namespace, process_id), None)
