"""Deployed processes in the store (OGC API - Processes - Part 2), by namespace, and the shipped packages
once seeded. The rows only: the process catalog turns them into processes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ogcflow.domain import JSONObject, utcnow
from ogcflow.store.db import naive
from ogcflow.store.schema import processes, seeded_packages


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A deployed package as stored: its description, its text and what running it needs."""

    namespace: str
    id: str
    description: JSONObject
    package: str
    media_type: str
    entry: str
    inputs_kind: dict[str, str]
    updated: datetime
    #: the request body as deployed when it was not the CWL itself (an OGC application package)
    source: str | None = None
    source_type: str | None = None

    @property
    def kind(self) -> str:
        """The kind of package (which factory builds its process): the media type's family."""
        media = self.media_type.split(";")[0].strip()
        return "cwl" if media.startswith("application/cwl") else media


@dataclass(frozen=True, slots=True)
class NewPackage:
    """What a deployment or replacement writes."""

    id: str
    version: str
    description: JSONObject
    package: str
    media_type: str
    entry: str
    inputs_kind: dict[str, str]
    source: str | None = None
    source_type: str | None = None


def _record(row: Row[Any]) -> ProcessRecord:
    d = row._mapping
    return ProcessRecord(namespace=d["namespace"], id=d["id"], description=dict(d["description"]),
                         package=d["package"], media_type=d["media_type"], entry=d["entry"],
                         inputs_kind=dict(d["inputs_kind"]), updated=d["updated"], source=d["source"],
                         source_type=d["source_type"])


class ProcessStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def stamp(self, namespace: str, process_id: str) -> datetime | None:
        """When the process was last deployed or replaced; None when there is none."""
        with self.engine.connect() as conn:
            value = conn.execute(select(processes.c.updated).where(
                processes.c.namespace == namespace, processes.c.id == process_id)).scalar()
        return value

    def get(self, namespace: str, process_id: str) -> ProcessRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(processes).where(processes.c.namespace == namespace,
                                                       processes.c.id == process_id)).first()
        return _record(row) if row else None

    def all(self, namespace: str) -> list[ProcessRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(processes).where(processes.c.namespace == namespace)).all()
        return [_record(r) for r in rows]

    def version(self, namespace: str) -> tuple[int, str]:
        """Changes whenever a process is deployed, replaced or undeployed (for caches such as /api)."""
        with self.engine.connect() as conn:
            count, latest = conn.execute(select(func.count(), func.max(processes.c.updated))
                                         .where(processes.c.namespace == namespace)).one()
        return int(count), str(latest)

    def insert(self, namespace: str, pkg: NewPackage) -> bool:
        """False when a process of that id exists already in the namespace."""
        now = naive(utcnow())
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(processes).values(namespace=namespace, created=now, updated=now,
                                                      **_values(pkg)))
        except IntegrityError:
            return False
        return True

    def update(self, namespace: str, pkg: NewPackage) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(update(processes).where(processes.c.namespace == namespace,
                                                        processes.c.id == pkg.id)
                                .values(updated=naive(utcnow()), **_values(pkg))).rowcount
        return bool(done == 1)

    def delete(self, namespace: str, process_id: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(delete(processes).where(processes.c.namespace == namespace,
                                                        processes.c.id == process_id)).rowcount
        return bool(done == 1)

    def seeded(self, namespace: str) -> set[str]:
        """The shipped packages deployed by default here before (an operator's undeploy is not undone)."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(seeded_packages.c.name)
                                    .where(seeded_packages.c.namespace == namespace)).scalars())

    def mark_seeded(self, namespace: str, name: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(seeded_packages).values(namespace=namespace, name=name,
                                                            seeded=naive(utcnow())))
        except IntegrityError:
            pass  # another process seeded it at the same moment


def _values(pkg: NewPackage) -> dict[str, Any]:
    return {"id": pkg.id, "version": pkg.version, "description": pkg.description, "package": pkg.package,
            "media_type": pkg.media_type, "entry": pkg.entry, "inputs_kind": pkg.inputs_kind, "source": pkg.source,
            "source_type": pkg.source_type}
