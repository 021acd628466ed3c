"""Callback deliveries in the store: queued when a job reaches a state its subscriber asked about, taken by
the dispatcher, retried with backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Row

from ogcflow.domain import CallbackDelivery, JSONObject, utcnow
from ogcflow.store.db import aware, naive
from ogcflow.store.schema import callbacks


def _delivery(row: Row[Any]) -> CallbackDelivery:
    data = dict(row._mapping)
    next_at = aware(data["next_at"])
    assert next_at is not None
    return CallbackDelivery(id=int(data["id"]), job_id=str(data["job_id"]), url=str(data["url"]),
                            payload=dict(data["payload"]), attempts=int(data["attempts"]), next_at=next_at,
                            state=str(data["state"]), last_error=data.get("last_error"))


class CallbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def queue(self, job_id: str, url: str, payload: JSONObject) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(callbacks).values(job_id=job_id, url=url, payload=payload, attempts=0,
                                                  next_at=naive(utcnow()), state="pending"))

    def due(self, limit: int = 20) -> list[CallbackDelivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(callbacks).where(callbacks.c.state == "pending", callbacks.c.next_at <= naive(utcnow()))
                .order_by(callbacks.c.next_at).limit(limit)
            ).all()
        return [_delivery(r) for r in rows]

    def attempted(self, cb_id: int, *, delivered: bool, error: str | None, retry_in: float | None) -> None:
        values: dict[str, Any] = {"attempts": callbacks.c.attempts + 1, "last_error": error}
        if delivered:
            values["state"] = "delivered"
        elif retry_in is None:
            values["state"] = "failed"
        else:
            values["next_at"] = naive(utcnow() + timedelta(seconds=retry_in))
        with self.engine.begin() as conn:
            conn.execute(update(callbacks).where(callbacks.c.id == cb_id).values(**values))

    def of_job(self, job_id: str) -> list[CallbackDelivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(callbacks).where(callbacks.c.job_id == job_id)).all()
        return [_delivery(r) for r in rows]
