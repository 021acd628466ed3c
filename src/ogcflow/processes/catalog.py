"""All the processes of a namespace: the built-in ones and those deployed (Part 2).

Deployed processes are rows of the store (so every API process and worker sharing it sees a deployment at
once); a row becomes a process through the factory registered for its kind of package (``cwl``: see
``packages/``), rebuilt only when the row changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

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
        if process_id in self.builtins:
            return self.builtins.get(process_id)
        stamp = self.rows.stamp(namespace, process_id)
        hit = self._cache.get((namespace, process_id))
        if stamp is not None and hit is not None and hit[0] == stamp:
            return hit[1]
        record = self.rows.get(namespace, process_id) if stamp is not None else None
        if record is None:
            raise NoSuchProcess(f"There is no process '{process_id}'. See /processes.")
        return self._build(record)

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
        deployed = [self._build(r) for r in self.rows.all(namespace) if r.kind in self.factories]
        return sorted([*self.builtins, *deployed], key=lambda p: p.id)

    def version(self, namespace: str) -> tuple[int, str]:
        """Changes whenever a process is deployed, replaced or undeployed (for caches such as /api)."""
        return self.rows.version(namespace)

    def forget(self, namespace: str, process_id: str) -> None:
        self._cache.pop((namespace, process_id), None)
