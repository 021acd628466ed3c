"""API keys in the store (hashed; see ``ogcflow.auth.apikeys``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import Row

from ogcflow.domain import Role, utcnow
from ogcflow.store.db import aware, naive
from ogcflow.store.schema import api_keys


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    secret_hash: str
    namespace: str
    role: Role
    name: str | None
    created: datetime
    revoked: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked is None


def _record(row: Row[Any]) -> ApiKeyRecord:
    d = row._mapping
    created = aware(d["created"])
    assert created is not None
    return ApiKeyRecord(id=d["id"], secret_hash=d["secret_hash"], namespace=d["namespace"], role=Role(d["role"]),
                        name=d["name"], created=created, revoked=aware(d["revoked"]))


class ApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, key_id: str, secret_hash: str, namespace: str, role: Role, name: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(id=key_id, secret_hash=secret_hash, namespace=namespace,
                                                 role=role.value, name=name, created=naive(utcnow())))

    def get(self, key_id: str) -> ApiKeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        return _record(row) if row else None

    def all(self, namespace: str | None = None) -> list[ApiKeyRecord]:
        """Every key (the operator's listing), or those of one namespace."""
        stmt = select(api_keys).order_by(api_keys.c.created)
        if namespace is not None:
            stmt = stmt.where(api_keys.c.namespace == namespace)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(stmt).all()]

    def revoke(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked.is_(None))
                                .values(revoked=naive(utcnow()))).rowcount
        return bool(done == 1)

    def count(self) -> int:
        """Every key ever created, revoked ones included."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())
