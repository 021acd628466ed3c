"""All the processes of a namespace: the built-in ones and those deployed (Part 2), from the store.

Every API process and worker sharing the store sees a deployment at once: deployed processes are read from
the store, and the CWL process of a deployment is rebuilt only when its row changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from ogcflow import models
from ogcflow.errors import NoSuchProcess
from ogcflow.jobs.schema import processes, seeded_packages
from ogcflow.jobs.store import JobStore, _naive, utcnow
from ogcflow.processes.base import Process, ProcessRegistry
from ogcflow.settings import Settings


class ProcessCatalog:
    def __init__(self, builtins: ProcessRegistry, store: JobStore, settings: Settings) -> None:
        self.builtins = builtins
        self.store = store
        self.settings = settings
        self._cache: dict[tuple[str, str], tuple[datetime, Process]] = {}

    # -- reading ------------------------------------------------------------------------------------

    def is_builtin(self, process_id: str) -> bool:
        return process_id in self.builtins

    def get(self, process_id: str, namespace: str = "default") -> Process:
        if process_id in self.builtins:
            return self.builtins.get(process_id)
        where = (processes.c.namespace == namespace, processes.c.id == process_id)
        with self.store.engine.connect() as conn:
            stamp = conn.execute(select(processes.c.updated).where(*where)).scalar()
            hit = self._cache.get((namespace, process_id))
            if stamp is not None and hit is not None and hit[0] == stamp:
                return hit[1]
            row = conn.execute(select(processes).where(*where)).first() if stamp is not None else None
        if row is None:
            raise NoSuchProcess(f"There is no process '{process_id}'. See /processes.")
        return self._cached(namespace, row)

    def _cached(self, namespace: str, row: Any) -> Process:
        """The process of a store row, rebuilt only when the row changed."""
        hit = self._cache.get((namespace, row.id))
        if hit is not None and hit[0] == row.updated:
            return hit[1]
        from ogcflow.packages.process import CWLProcess

        data = row._mapping
        process = CWLProcess(models.Process.model_validate(data["description"]), data["package"], data["entry"],
                             data["inputs_kind"], self.settings)
        self._cache[(namespace, row.id)] = (row.updated, process)
        return process

    def all(self, namespace: str = "default") -> list[Process]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(processes).where(processes.c.namespace == namespace)).all()
        deployed = [self._cached(namespace, row) for row in rows]
        return sorted([*self.builtins, *deployed], key=lambda p: p.id)

    def __iter__(self) -> Iterator[Process]:
        return iter(self.all())

    def __contains__(self, process_id: str) -> bool:
        try:
            self.get(process_id)
        except NoSuchProcess:
            return False
        return True

    def version(self, namespace: str = "default") -> tuple[int, str]:
        """Changes whenever a process is deployed, replaced or undeployed (for caches such as /api)."""
        with self.store.engine.connect() as conn:
            count, latest = conn.execute(select(func.count(), func.max(processes.c.updated))
                                         .where(processes.c.namespace == namespace)).one()
        return count, str(latest)

    def package(self, process_id: str, namespace: str = "default") -> tuple[str, str]:
        """The package as deployed and its media type."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(processes.c.package, processes.c.media_type).where(
                processes.c.namespace == namespace, processes.c.id == process_id)).first()
        if row is None:
            raise NoSuchProcess(f"There is no deployed process '{process_id}'.")
        return row[0], row[1]

    # -- writing ------------------------------------------------------------------------------------

    def _values(self, description: models.Process, package: str, media_type: str, entry: str,
                inputs_kind: dict[str, str]) -> dict[str, Any]:
        return {"version": description.version, "description": description.dump(), "package": package,
                "media_type": media_type, "entry": entry, "inputs_kind": inputs_kind,
                "updated": _naive(utcnow())}

    def deploy(self, description: models.Process, package: str, media_type: str, entry: str,
               inputs_kind: dict[str, str], namespace: str = "default") -> bool:
        """False when a process of that id exists already."""
        from sqlalchemy.exc import IntegrityError

        if description.id in self.builtins:
            return False
        values = self._values(description, package, media_type, entry, inputs_kind)
        try:
            with self.store.engine.begin() as conn:
                conn.execute(insert(processes).values(namespace=namespace, id=description.id,
                                                      created=values["updated"], **values))
        except IntegrityError:
            return False
        return True

    def replace(self, process_id: str, description: models.Process, package: str, media_type: str, entry: str,
                inputs_kind: dict[str, str], namespace: str = "default") -> bool:
        values = self._values(description, package, media_type, entry, inputs_kind)
        with self.store.engine.begin() as conn:
            done = conn.execute(update(processes).where(processes.c.namespace == namespace,
                                                        processes.c.id == process_id).values(**values)).rowcount
        return done == 1

    def undeploy(self, process_id: str, namespace: str = "default") -> bool:
        with self.store.engine.begin() as conn:
            done = conn.execute(delete(processes).where(processes.c.namespace == namespace,
                                                        processes.c.id == process_id)).rowcount
        self._cache.pop((namespace, process_id), None)
        return done == 1

    def seed(self, names: list[str], namespace: str = "default") -> list[str]:
        """Deploy the shipped packages ``names`` that were never deployed by default here before (so an
        operator's undeploy stays); return the ids deployed now."""
        from sqlalchemy.exc import IntegrityError

        from ogcflow.eo.packages import shipped_package
        from ogcflow.packages.cwl import parse_package

        with self.store.engine.connect() as conn:
            done = set(conn.execute(select(seeded_packages.c.name)
                                    .where(seeded_packages.c.namespace == namespace)).scalars())
        deployed = []
        for name in names:
            if name in done:
                continue
            pkg = parse_package(shipped_package(name))
            if self.deploy(pkg.description, pkg.text, "application/cwl+yaml", pkg.entry, pkg.inputs_kind, namespace):
                deployed.append(pkg.entry)
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(insert(seeded_packages).values(namespace=namespace, name=name,
                                                                seeded=_naive(utcnow())))
            except IntegrityError:
                pass  # another process seeded it at the same moment
        return deployed
